//! Settings both binaries take, parsed by one grammar: durations as Go writes them, job queues,
//! and the default namespace of jobs' pods.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// Namespace of a job's pod when the job's `spec.namespace` is empty, in both binaries.
pub const DEFAULT_POD_NAMESPACE: &str = "default";

/// The pod utilities' image decorated jobs use where their `utility_images` name none: the one
/// `kind-tests/scripts/image.sh` builds, tagged with this version.
pub const DEFAULT_UTILITY_IMAGE: &str =
    concat!("prow-operator.local/prow-utils:", env!("CARGO_PKG_VERSION"));

/// A Go duration flag (`90s`, `1h30m`), as Prow's configuration writes them.
pub fn go_duration(text: &str) -> Result<Duration, String> {
    prow_api::duration::parse(text).map_err(|e| e.to_string())
}

/// A job queue named on the command line: `NAME` (a queue that exists, without a limit of its
/// own) or `NAME=N` (its capacity: 0 blocks, negative is unlimited). The operator enforces the
/// capacity; the webhook refuses jobs naming a queue not given, when any is given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobQueue {
    /// The queue's name, as jobs' `job_queue_name` says it.
    pub name: String,
    /// Its capacity, if one is given.
    pub capacity: Option<i64>,
}

impl JobQueue {
    /// The capacity the operator enforces: the one given, else unlimited (-1).
    pub fn capacity_or_unlimited(&self) -> i64 {
        self.capacity.unwrap_or(-1)
    }
}

impl FromStr for JobQueue {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, capacity) = match text.split_once('=') {
            Some((name, capacity)) => {
                let capacity = capacity.trim().parse().map_err(|_| {
                    format!("{text:?}: the capacity after '=' must be a whole number")
                })?;
                (name, Some(capacity))
            }
            None => (text, None),
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{text:?}: expected NAME or NAME=CAPACITY"));
        }
        Ok(Self {
            name: name.to_string(),
            capacity,
        })
    }
}

impl fmt::Display for JobQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.capacity {
            Some(n) => write!(f, "{}={n}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_queues_have_one_grammar() {
        // (text, the name and capacity read, or the error)
        type Case<'a> = (&'a str, Result<(&'a str, Option<i64>), &'a str>);
        let cases: &[Case] = &[
            ("gpu", Ok(("gpu", None))),
            ("gpu=2", Ok(("gpu", Some(2)))),
            (" gpu = 0 ", Ok(("gpu", Some(0)))),
            ("any=-1", Ok(("any", Some(-1)))),
            (
                "gpu=two",
                Err("\"gpu=two\": the capacity after '=' must be a whole number"),
            ),
            ("=3", Err("\"=3\": expected NAME or NAME=CAPACITY")),
            ("", Err("\"\": expected NAME or NAME=CAPACITY")),
        ];
        for (text, want) in cases {
            let got = text.parse::<JobQueue>();
            match want {
                Ok((name, capacity)) => {
                    let queue = got.unwrap_or_else(|e| panic!("{text:?}: {e}"));
                    assert_eq!((queue.name.as_str(), queue.capacity), (*name, *capacity));
                }
                Err(message) => assert_eq!(got.unwrap_err(), *message, "{text:?}"),
            }
        }
        let named: JobQueue = "gpu".parse().unwrap();
        assert_eq!(named.capacity_or_unlimited(), -1);
        assert_eq!(named.to_string(), "gpu");
        assert_eq!("gpu=3".parse::<JobQueue>().unwrap().to_string(), "gpu=3");
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(go_duration("soon").is_err());
    }
}
