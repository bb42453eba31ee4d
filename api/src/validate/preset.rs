//! Rules for Presets: a usable selector and names, and no collision with another preset that
//! can apply to the same job.

use super::{is_dns_label, is_env_name, is_qualified_name, Report, Violation};
use crate::labels::is_valid_label_value;
use crate::preset::{collisions, Preset};

/// Every rule a Preset must pass on its own.
pub fn preset(p: &Preset) -> Vec<Violation> {
    let mut r = Report::new();
    let spec = &p.spec;
    if spec.selector.is_empty() {
        r.add(
            "spec.selector",
            "must name at least one label: a preset for every job is too easy to apply by mistake",
        );
    }
    for (key, value) in &spec.selector {
        if !is_qualified_name(key) || !is_valid_label_value(value) {
            r.add(
                format!("spec.selector[{key}]"),
                format!("{key}={value:?} is not a valid label"),
            );
        }
    }
    for (i, e) in spec.env.iter().enumerate() {
        if !is_env_name(&e.name) {
            r.add(
                format!("spec.env[{i}].name"),
                format!("{:?} is not a valid variable name", e.name),
            );
        }
    }
    for (i, v) in spec.volumes.iter().enumerate() {
        if !is_dns_label(&v.name) {
            r.add(
                format!("spec.volumes[{i}].name"),
                format!(
                    "{:?} is not a valid volume name: lower-case letters, digits and '-'",
                    v.name
                ),
            );
        }
    }
    for (i, m) in spec.volume_mounts.iter().enumerate() {
        if !is_dns_label(&m.name) {
            r.add(
                format!("spec.volumeMounts[{i}].name"),
                format!("{:?} is not a valid volume name", m.name),
            );
        }
        if !m.mount_path.starts_with('/') {
            r.add(
                format!("spec.volumeMounts[{i}].mountPath"),
                "must be an absolute path",
            );
        }
    }
    r.done()
}

/// Collisions of a new or changed preset with the other presets of its namespace: same item
/// name, different value, and selectors some job could match both of.
pub fn preset_collisions<'a>(
    p: &Preset,
    others: impl IntoIterator<Item = &'a Preset>,
) -> Vec<Violation> {
    let mut r = Report::new();
    let name = p.metadata.name.clone().unwrap_or_default();
    for other in others {
        let other_name = other.metadata.name.clone().unwrap_or_default();
        if other_name == name {
            continue;
        }
        for c in collisions(&p.spec, &other.spec) {
            r.add(
                c.field,
                format!(
                    "{} {:?} differs from preset {other_name:?}, which can apply to the same jobs: \
                     give it another name or make the selectors exclusive",
                    c.kind, c.item
                ),
            );
        }
    }
    r.done()
}
