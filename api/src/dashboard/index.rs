//! The dashboard's jobs, newest first, with the runs of each job by name: what the jobs page
//! pages through, what a run's previous and next are, and what the history and the badge read.
//! Kept current by the ProwJob watch; a page is a walk from the newest row, so it costs what it
//! shows and what its filters pass over, never a sort.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::filter::{Filter, Page};
use super::row::{Interner, JobRow};

/// Where a row sorts: newest start first, then namespace and name.
type Key = (Reverse<i64>, Arc<str>, Arc<str>);

fn key_of(row: &JobRow) -> Key {
    (
        Reverse(row.started),
        row.namespace.clone(),
        row.name.clone(),
    )
}

/// Every job, ordered.
#[derive(Default, Debug)]
pub struct Index {
    rows: HashMap<(Arc<str>, Arc<str>), Arc<JobRow>>,
    order: BTreeMap<Key, Arc<JobRow>>,
    by_job: HashMap<Arc<str>, BTreeMap<Key, Arc<JobRow>>>,
    /// Unfinished rows by creation (the few a pool's waiting line is read from).
    open: BTreeMap<(i64, Arc<str>, Arc<str>), Arc<JobRow>>,
    /// The strings rows share.
    pub strings: Interner,
}

/// One page of matches.
#[derive(Debug)]
pub struct Found {
    /// Its rows, newest first.
    pub rows: Vec<Arc<JobRow>>,
    /// How many rows match in all.
    pub total: usize,
}

impl Index {
    /// Adds `row`, or replaces the row of the same namespace and name.
    pub fn apply(&mut self, row: JobRow) {
        self.put(Arc::new(row));
    }

    fn put(&mut self, row: Arc<JobRow>) {
        self.remove(&row.namespace.clone(), &row.name.clone());
        let key = key_of(&row);
        self.order.insert(key.clone(), row.clone());
        self.by_job
            .entry(row.job.clone())
            .or_default()
            .insert(key, row.clone());
        if !row.is_complete() {
            self.open.insert(
                (row.created, row.namespace.clone(), row.name.clone()),
                row.clone(),
            );
        }
        self.rows
            .insert((row.namespace.clone(), row.name.clone()), row);
    }

    /// Replaces the rows of `namespace` with the rows of `fresh` (a relist of that namespace
    /// alone: the other namespaces' rows stay).
    pub fn replace_namespace(&mut self, namespace: &str, fresh: Index) {
        let gone: Vec<Arc<str>> = self
            .rows
            .keys()
            .filter(|(ns, _)| &**ns == namespace)
            .map(|(_, name)| name.clone())
            .collect();
        for name in gone {
            self.remove(namespace, &name);
        }
        for row in fresh.rows.into_values() {
            self.put(row);
        }
        self.strings.absorb(fresh.strings);
        self.strings.prune();
    }

    /// Removes the row of `namespace`/`name`, if there is one.
    pub fn remove(&mut self, namespace: &str, name: &str) {
        let Some(old) = self.rows.remove(&(Arc::from(namespace), Arc::from(name))) else {
            return;
        };
        let key = key_of(&old);
        self.order.remove(&key);
        self.open
            .remove(&(old.created, old.namespace.clone(), old.name.clone()));
        if let Some(runs) = self.by_job.get_mut(&old.job) {
            runs.remove(&key);
            if runs.is_empty() {
                self.by_job.remove(&old.job);
            }
        }
    }

    /// How many jobs there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row of `namespace`/`name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<JobRow>> {
        self.rows
            .get(&(Arc::from(namespace), Arc::from(name)))
            .cloned()
    }

    /// The rows `filter` passes, newest first, on `page`, with how many pass in all. Without
    /// a filter the page is read straight off the order; with one, the matches are counted in
    /// one pass.
    pub fn find(&self, filter: &Filter, page: Page) -> Found {
        let mut total = 0;
        let mut rows = Vec::new();
        let offset = page.offset();
        if filter.is_empty() {
            return Found {
                rows: self
                    .order
                    .values()
                    .skip(offset)
                    .take(page.per_page)
                    .cloned()
                    .collect(),
                total: self.order.len(),
            };
        }
        // `job=` is matched against the job names once; one matching name walks its runs alone.
        let names: Option<std::collections::HashSet<&str>> = filter.job.as_ref().map(|p| {
            self.by_job
                .keys()
                .filter(|n| p.matches(n))
                .map(|n| &**n)
                .collect()
        });
        let walk: Box<dyn Iterator<Item = &Arc<JobRow>>> = match names.as_ref() {
            Some(names) if names.len() == 1 => {
                let name = names.iter().next().copied().unwrap_or_default();
                Box::new(self.by_job.get(name).into_iter().flat_map(|r| r.values()))
            }
            Some(names) if names.is_empty() => Box::new(std::iter::empty()),
            _ => Box::new(self.order.values()),
        };
        for row in walk {
            if !filter.matches_but_the_name(row)
                || names.as_ref().is_some_and(|n| !n.contains(&*row.job))
            {
                continue;
            }
            if total >= offset && rows.len() < page.per_page {
                rows.push(row.clone());
            }
            total += 1;
        }
        Found { rows, total }
    }

    /// The runs of `job`, newest first, at most `limit`.
    pub fn runs_of(&self, job: &str, limit: usize) -> Vec<Arc<JobRow>> {
        self.by_job
            .get(job)
            .into_iter()
            .flat_map(|r| r.values().cloned())
            .take(limit)
            .collect()
    }

    /// The runs of the same job just before (older) and after (newer) `row`.
    pub fn neighbours(&self, row: &JobRow) -> (Option<Arc<JobRow>>, Option<Arc<JobRow>>) {
        let Some(runs) = self.by_job.get(&row.job) else {
            return (None, None);
        };
        let key = key_of(row);
        let older = runs
            .range((std::ops::Bound::Excluded(&key), std::ops::Bound::Unbounded))
            .next();
        let newer = runs.range(..&key).next_back();
        (older.map(|(_, r)| r.clone()), newer.map(|(_, r)| r.clone()))
    }

    /// The jobs waiting for a cluster of the pool `namespace`/`pool`, first in line first, by
    /// the operator's rule (`prow_api::pool::line`): unfinished, no pod yet, holding no
    /// cluster, whose pods run in the pool's namespace (a job naming no pod namespace counts
    /// where it is itself), ordered by creation, then name.
    pub fn waiting_line(&self, namespace: &str, pool: &str) -> Vec<Arc<JobRow>> {
        self.open
            .values()
            .filter(|r| r.pool.as_deref() == Some(pool))
            .filter(|r| &**r.pods_namespace() == namespace)
            .filter(|r| r.state == crate::ProwJobState::Triggered && r.test_cluster.is_none())
            .cloned()
            .collect()
    }

    /// The pools unfinished jobs name, as (the namespace their pods run in, the pool).
    pub fn waiting_pools(&self) -> Vec<(String, String)> {
        let mut pools: Vec<(String, String)> = self
            .open
            .values()
            .filter_map(|r| Some((r.pods_namespace().to_string(), r.pool.as_ref()?.to_string())))
            .collect();
        pools.sort();
        pools.dedup();
        pools
    }

    /// Every job name, sorted.
    pub fn job_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.by_job.keys().cloned().collect();
        names.sort();
        names
    }

    /// Every row (in no order).
    pub fn rows(&self) -> impl Iterator<Item = &Arc<JobRow>> {
        self.rows.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::filter::{parse, tests::row};
    use crate::ProwJobState::*;

    fn at(mut r: JobRow, name: &str, started: i64) -> JobRow {
        r.name = Arc::from(name);
        r.started = started;
        r
    }

    fn names(rows: &[Arc<JobRow>]) -> Vec<&str> {
        rows.iter().map(|r| &*r.name).collect()
    }

    #[test]
    fn pages_walk_newest_first_and_count_every_match() {
        let mut index = Index::default();
        for i in 0..10 {
            let state = if i % 2 == 0 { Success } else { Failure };
            index.apply(at(
                row("unit", state, "acme/w", Some((i, "a"))),
                &format!("r{i}"),
                i,
            ));
        }
        index.apply(at(row("e2e", Success, "acme/w", None), "e", 100));
        let (filter, page) =
            parse([("job", "unit"), ("per_page", "3"), ("page", "2")]).expect("ok");
        let found = index.find(&filter, page);
        assert_eq!(found.total, 10);
        assert_eq!(names(&found.rows), ["r6", "r5", "r4"]);
        let (filter, page) = parse([("state", "failure"), ("per_page", "2")]).expect("ok");
        let found = index.find(&filter, page);
        assert_eq!((found.total, names(&found.rows)), (5, vec!["r9", "r7"]));
        let (all, page) = parse([]).expect("ok");
        assert_eq!(names(&index.find(&all, page).rows)[0], "e");
        let (_, second) = parse([("per_page", "2"), ("page", "2")]).expect("ok");
        let found = index.find(&all, second);
        assert_eq!(found.total, 11);
        assert_eq!(
            names(&found.rows),
            ["r8", "r7"],
            "no filter: straight off the order"
        );
        let (_, far) = parse([("page", "99")]).expect("ok");
        let beyond = index.find(&all, far);
        assert!(beyond.rows.is_empty() && beyond.total == 11);
    }

    #[test]
    fn a_changed_row_moves_and_a_deleted_one_goes_from_every_view() {
        let mut index = Index::default();
        index.apply(at(row("unit", Pending, "acme/w", None), "a", 5));
        index.apply(at(row("unit", Success, "acme/w", None), "b", 6));
        index.apply(at(row("unit", Success, "acme/w", None), "a", 10));
        assert_eq!(index.len(), 2);
        assert_eq!(names(&index.runs_of("unit", 10)), ["a", "b"]);
        let b = index.get("ci", "b").expect("b");
        let (older, newer) = index.neighbours(&b);
        assert!(older.is_none());
        assert_eq!(newer.map(|r| r.name.clone()).as_deref(), Some("a"));
        index.remove("ci", "a");
        index.remove("ci", "nothing");
        assert_eq!(names(&index.runs_of("unit", 10)), ["b"]);
        index.remove("ci", "b");
        assert!(index.is_empty() && index.job_names().is_empty());
    }

    #[test]
    fn a_pools_line_is_its_waiting_jobs_by_creation_and_leaves_with_a_lease_or_an_end() {
        let mut index = Index::default();
        let waiting = |name: &str, created: i64| {
            let mut r = at(row("e2e", Triggered, "acme/w", None), name, created);
            r.created = created;
            r.pool = Some(Arc::from("gke"));
            r
        };
        index.apply(waiting("late", 9));
        index.apply(waiting("early", 3));
        let mut holding = waiting("holding", 1);
        holding.test_cluster = Some("c1".into());
        index.apply(holding);
        let mut elsewhere = waiting("elsewhere", 2);
        elsewhere.pod_namespace = Arc::from("other");
        index.apply(elsewhere);
        let mut other_pool = waiting("other-pool", 2);
        other_pool.pool = Some(Arc::from("eks"));
        index.apply(other_pool);
        assert_eq!(names(&index.waiting_line("ci", "gke")), ["early", "late"]);
        assert_eq!(
            index.waiting_pools(),
            [
                ("ci".to_owned(), "eks".to_owned()),
                ("ci".to_owned(), "gke".to_owned()),
                ("other".to_owned(), "gke".to_owned())
            ]
        );
        let mut done = waiting("early", 3);
        done.state = Aborted;
        index.apply(done);
        assert_eq!(names(&index.waiting_line("ci", "gke")), ["late"]);
        index.remove("ci", "late");
        assert!(index.waiting_line("ci", "gke").is_empty());
    }

    #[test]
    fn a_namespaces_relist_replaces_its_rows_and_keeps_the_others() {
        let mut index = Index::default();
        let in_ns = |ns: &str, name: &str| {
            let mut r = at(row("unit", Success, "acme/w", None), name, 1);
            r.namespace = Arc::from(ns);
            r
        };
        index.apply(in_ns("a", "gone"));
        index.apply(in_ns("a", "kept"));
        index.apply(in_ns("b", "other"));
        let mut fresh = Index::default();
        fresh.apply(in_ns("a", "kept"));
        fresh.apply(in_ns("a", "new"));
        index.replace_namespace("a", fresh);
        assert!(index.get("a", "gone").is_none());
        assert!(index.get("a", "kept").is_some() && index.get("a", "new").is_some());
        assert!(
            index.get("b", "other").is_some(),
            "another namespace's rows stay"
        );
        assert_eq!(index.len(), 3);
        assert_eq!(index.runs_of("unit", 10).len(), 3);
    }

    #[test]
    fn runs_started_in_the_same_second_keep_one_order_by_name() {
        let mut index = Index::default();
        for name in ["c", "a", "b"] {
            index.apply(at(row("unit", Success, "acme/w", None), name, 1));
        }
        assert_eq!(names(&index.runs_of("unit", 10)), ["a", "b", "c"]);
        let b = index.get("ci", "b").expect("b");
        let (older, newer) = index.neighbours(&b);
        assert_eq!(older.map(|r| r.name.clone()).as_deref(), Some("c"));
        assert_eq!(newer.map(|r| r.name.clone()).as_deref(), Some("a"));
    }
}
