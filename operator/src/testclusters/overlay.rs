//! This process's own TestCluster writes that the watch cache does not show yet, and those
//! it is making.
//!
//! A job that ends hands its cluster to the next in line within milliseconds: the release and
//! the next lease are two writes in a row, often before the watch has delivered the first. A
//! reader must see the newest write, or it decides on a copy two versions old and its own
//! write is refused as a conflict (and decided again later). So a write remembers every
//! version it replaced in a row of this process's writes, and shows itself while the cache is
//! at any of them. A write being made (a claim) shows over both, so a second decision made
//! while it is in flight picks another cluster.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use kube::ResourceExt;
use prow_api::TestCluster;

/// The newest write of each object, until the cache shows it or something newer, and the
/// writes in flight.
pub struct Overlay<K> {
    writes: HashMap<K, Written>,
    claims: HashMap<K, Arc<TestCluster>>,
}

struct Written {
    /// The resourceVersions this write and the writes of this process it followed replaced.
    replaced: Vec<String>,
    /// The cluster as written.
    cluster: Arc<TestCluster>,
}

impl<K> Default for Overlay<K> {
    fn default() -> Self {
        Self {
            writes: HashMap::new(),
            claims: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> Overlay<K> {
    /// Records that `written` replaced the version `based_on` of object `key`.
    pub fn wrote(&mut self, key: K, based_on: String, written: Arc<TestCluster>) {
        let mut replaced = match self.writes.remove(&key) {
            // A write on top of this process's previous one: the cache may still show any
            // version that one replaced.
            Some(previous) if previous.cluster.resource_version().as_ref() == Some(&based_on) => {
                previous.replaced
            }
            _ => Vec::new(),
        };
        replaced.push(based_on);
        self.writes.insert(
            key,
            Written {
                replaced,
                cluster: written,
            },
        );
    }

    /// Records that this process is writing `cluster` as object `key`, until [`Overlay::unclaim`].
    pub fn claim(&mut self, key: K, cluster: Arc<TestCluster>) {
        self.claims.insert(key, cluster);
    }

    /// The write claimed for `key` is done (or failed).
    pub fn unclaim(&mut self, key: &K) {
        self.claims.remove(key);
    }

    /// What to decide on for object `key` when the cache shows `cached`: a write in flight;
    /// else this process's newer write while the cache shows a version it replaced; else the
    /// cached copy (and the write is forgotten: the cache shows it, or something written after
    /// it).
    pub fn show(&mut self, key: &K, cached: Arc<TestCluster>) -> Arc<TestCluster> {
        if let Some(claimed) = self.claims.get(key) {
            return claimed.clone();
        }
        let Some(written) = self.writes.get(key) else {
            return cached;
        };
        let at = cached.resource_version().unwrap_or_default();
        if written.replaced.contains(&at) {
            return written.cluster.clone();
        }
        self.writes.remove(key);
        cached
    }

    /// Whether no write is remembered or in flight.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.claims.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: &str) -> Arc<TestCluster> {
        let mut cluster = TestCluster::new("c1", Default::default());
        cluster.metadata.resource_version = Some(version.into());
        Arc::new(cluster)
    }

    fn shown(overlay: &mut Overlay<&str>, cached: &str) -> String {
        overlay
            .show(&"c1", at(cached))
            .resource_version()
            .unwrap_or_default()
    }

    #[test]
    fn the_newest_write_shows_while_the_cache_is_behind_it() {
        // (writes as (based on, written), cache version, version shown)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[], "5", "5"),
            (&[("5", "6")], "5", "6"),
            (&[("5", "6")], "6", "6"),
            (&[("5", "6")], "7", "7"),
            // A release and the next lease in a row: the cache may show either older version.
            (&[("5", "6"), ("6", "7")], "5", "7"),
            (&[("5", "6"), ("6", "7")], "6", "7"),
            (&[("5", "6"), ("6", "7")], "7", "7"),
            (&[("5", "6"), ("6", "7"), ("7", "8")], "5", "8"),
            // A write based on a version from someone else starts a new row.
            (&[("5", "6"), ("9", "10")], "5", "5"),
            (&[("5", "6"), ("9", "10")], "9", "10"),
        ];
        for (writes, cached, want) in cases {
            let mut overlay = Overlay::default();
            for (based_on, written) in *writes {
                overlay.wrote("c1", based_on.to_string(), at(written));
            }
            assert_eq!(
                shown(&mut overlay, cached),
                *want,
                "writes {writes:?}, cache at {cached}"
            );
        }
    }

    #[test]
    fn a_write_is_forgotten_once_the_cache_shows_it_or_something_newer() {
        let mut overlay = Overlay::default();
        overlay.wrote("c1", "5".into(), at("6"));
        overlay.wrote("c1", "6".into(), at("7"));
        assert_eq!(shown(&mut overlay, "6"), "7");
        assert!(!overlay.is_empty());
        assert_eq!(shown(&mut overlay, "7"), "7");
        assert!(overlay.is_empty(), "the cache caught up");
        assert_eq!(
            shown(&mut overlay, "6"),
            "6",
            "a forgotten write never shows again"
        );
        assert_eq!(
            overlay.show(&"c2", at("3")).resource_version().unwrap(),
            "3"
        );
    }

    #[test]
    fn a_write_in_flight_shows_over_the_cache_and_earlier_writes_until_done() {
        let mut overlay = Overlay::default();
        overlay.wrote("c1", "5".into(), at("6"));
        // Decided on version 6: the claim carries it, and the new status.
        overlay.claim("c1", at("6-claimed"));
        assert_eq!(shown(&mut overlay, "5"), "6-claimed");
        assert_eq!(shown(&mut overlay, "6"), "6-claimed");
        assert!(!overlay.is_empty());
        overlay.unclaim(&"c1");
        assert_eq!(shown(&mut overlay, "6"), "6", "the cache again");
        assert!(overlay.is_empty());
        overlay.claim("c2", at("1-claimed"));
        overlay.unclaim(&"c2");
        assert_eq!(
            overlay.show(&"c2", at("1")).resource_version().unwrap(),
            "1",
            "failed write"
        );
    }
}
