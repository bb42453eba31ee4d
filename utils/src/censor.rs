//! Scrubbing Secret values (and their base64 forms) from what the sidecar uploads.

use std::path::Path;

use base64::Engine as _;

/// The values to scrub, longest first so a value inside another is not left half-hidden.
#[derive(Default, Debug)]
pub struct Censor {
    secrets: Vec<Vec<u8>>,
}

impl Censor {
    /// Reads every file under `directories` (Secret mounts); values shorter than `minimum`
    /// bytes are left alone (they would scrub ordinary words).
    pub fn load(directories: &[String], minimum: usize) -> Self {
        let mut values = Vec::new();
        for dir in directories {
            collect(Path::new(dir), &mut values);
        }
        let mut secrets = Vec::new();
        for value in values {
            let trimmed = value.trim_ascii_end().to_vec();
            for v in [value, trimmed] {
                if v.len() < minimum.max(1) {
                    continue;
                }
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(&v)
                    .into_bytes();
                secrets.push(v);
                secrets.push(encoded);
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// `data` with every secret replaced by as many `*`.
    pub fn scrub(&self, data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        for secret in &self.secrets {
            let mut i = 0;
            while i + secret.len() <= out.len() {
                if out[i..].starts_with(secret) {
                    out[i..i + secret.len()].fill(b'*');
                    i += secret.len();
                } else {
                    i += 1;
                }
            }
        }
        out
    }
}

/// Every regular file's contents under `path`, following kubelet's `..data` links once.
fn collect(path: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(path) else {
        if let Ok(bytes) = std::fs::read(path) {
            out.push(bytes);
        }
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // Kubelet's atomic writer keeps the files in `..<timestamp>` and `..data`; the visible
        // names link to them, so the hidden ones would only repeat the values.
        if name.to_string_lossy().starts_with("..") {
            continue;
        }
        let p = entry.path();
        if p.is_dir() {
            collect(&p, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_their_base64_forms_are_scrubbed() {
        let dir = std::env::temp_dir().join(format!("censor-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("nested")).unwrap();
        std::fs::write(dir.join("token"), "hunter22\n").unwrap();
        std::fs::write(dir.join("nested/key"), "s3cr3t-key").unwrap();
        std::fs::write(dir.join("short"), "ab").unwrap();
        let censor = Censor::load(&[dir.to_string_lossy().into_owned()], 3);
        let text = b"token=hunter22 b64=aHVudGVyMjI= key s3cr3t-key ab\n";
        assert_eq!(
            String::from_utf8(censor.scrub(text)).unwrap(),
            "token=******** b64=************ key ********** ab\n"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
