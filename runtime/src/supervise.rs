//! The long-running tasks of a process, watched: a task that ends before shutdown was asked
//! for (it panicked, or its loop returned) takes the whole process down, so that it is
//! restarted, instead of leaving it up with health probes saying all is well.
//!
//! Reconciles are not tasks here: the work queue catches a reconcile's panic and retries that
//! object. What this catches is the machinery around them (the queue itself, a watch, a sweep).

use std::future::Future;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::health::Readiness;

/// A set of named long-running tasks that live until `stop`.
pub struct Supervisor {
    tasks: JoinSet<&'static str>,
    stop: CancellationToken,
    readiness: Readiness,
}

impl Supervisor {
    /// Tasks that are expected to run until `stop` is cancelled; a death is reported to
    /// `readiness` (`/healthz` fails).
    pub fn new(stop: CancellationToken, readiness: Readiness) -> Self {
        Self {
            tasks: JoinSet::new(),
            stop,
            readiness,
        }
    }

    /// Runs `task` under the name `name`.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(async move {
            task.await;
            name
        });
    }

    /// Waits until `stop` is cancelled, then for every task to finish. If a task ends first, it
    /// marks the process dead, cancels `stop` so the others wind down, and returns the error
    /// naming the task (the process then exits non-zero).
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut died = None;
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => {}
            Some(result) = self.tasks.join_next() => {
                let why = match result {
                    Ok(name) => format!("task {name} stopped unexpectedly"),
                    Err(e) if e.is_panic() => format!("a task panicked: {}", panic_message(e)),
                    Err(e) => format!("a task was cancelled: {e}"),
                };
                tracing::error!(reason = %why, "a task the process depends on died; stopping so it is restarted");
                self.readiness.set_dead(why.clone());
                died = Some(why);
                self.stop.cancel();
            }
        }
        while let Some(ended) = self.tasks.join_next().await {
            if let Err(e) = ended {
                if e.is_panic() {
                    tracing::error!(panic = %panic_message(e), "a task panicked while stopping");
                }
            }
        }
        match died {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => Ok(()),
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_panicking_task_stops_the_others_and_marks_the_process_dead() {
        let stop = CancellationToken::new();
        let readiness = Readiness::default();
        readiness.set_ready();
        let mut tasks = Supervisor::new(stop.clone(), readiness.clone());
        let other_stopped = CancellationToken::new();
        {
            let (stop, other_stopped) = (stop.clone(), other_stopped.clone());
            tasks.spawn("waits for stop", async move {
                stop.cancelled().await;
                other_stopped.cancel();
            });
        }
        tasks.spawn("queue", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("invalid deadline");
        });
        let err = tasks.run().await.expect_err("the process must fail");
        assert!(err.to_string().contains("invalid deadline"), "{err}");
        assert!(other_stopped.is_cancelled(), "the other task wound down");
        assert!(readiness.dead_because().is_some());
        assert!(!readiness.is_ready());
    }

    #[tokio::test]
    async fn a_task_that_returns_early_is_a_death_too() {
        let stop = CancellationToken::new();
        let mut tasks = Supervisor::new(stop.clone(), Readiness::default());
        tasks.spawn("sweep", async {});
        let err = tasks.run().await.expect_err("fails");
        assert_eq!(err.to_string(), "task sweep stopped unexpectedly");
    }

    #[tokio::test]
    async fn a_requested_shutdown_is_clean() {
        let stop = CancellationToken::new();
        let mut tasks = Supervisor::new(stop.clone(), Readiness::default());
        let s = stop.clone();
        tasks.spawn("controller", async move { s.cancelled().await });
        stop.cancel();
        tasks.run().await.expect("clean");
    }
}
