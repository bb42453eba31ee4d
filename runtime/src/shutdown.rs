//! Clean shutdown on SIGTERM or Ctrl-C, in the stages a rollout needs ([`Stages`]).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::Readiness;

/// Returns a token cancelled at the first SIGTERM or SIGINT.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}

/// A serving process's way down from SIGTERM. The Service keeps sending to a pod for a moment
/// after it is told to stop, and what the process took in must not be lost, so it goes in
/// three steps, each a token cancelled in turn:
#[derive(Clone, Debug, Default)]
pub struct Stages {
    /// SIGTERM came: the process says it is not ready, keeps serving, and asks each connection
    /// to close after its answer (clients dial again, and reach a pod that stays).
    pub signalled: CancellationToken,
    /// The shutdown delay is over: the listener closes once the requests in flight are
    /// answered.
    pub closing: CancellationToken,
    /// Everything taken in is done (`drained`), or the grace period ran out: every task stops.
    pub stop: CancellationToken,
}

impl Stages {
    /// The stages of a process stopped by SIGTERM or SIGINT: unready from the signal on,
    /// `closing` after `delay`, `stop` once `drained` is cancelled (right after `closing` when
    /// there is nothing to drain) or `grace` after `closing`, whichever comes first.
    pub fn on_signal(
        ready: &Readiness,
        delay: Duration,
        grace: Duration,
        drained: Option<CancellationToken>,
    ) -> Self {
        Self::after(on_signal(), ready, delay, grace, drained)
    }

    /// The same stages, started by `signalled`.
    pub fn after(
        signalled: CancellationToken,
        ready: &Readiness,
        delay: Duration,
        grace: Duration,
        drained: Option<CancellationToken>,
    ) -> Self {
        let stages = Self {
            signalled,
            ..Self::default()
        };
        let (s, ready) = (stages.clone(), ready.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = s.signalled.cancelled() => {}
                // A task died and stopped the process: nothing is left to stage.
                _ = s.stop.cancelled() => return,
            }
            ready.waiting_for("shutdown", format!("shutting down in {delay:?}"));
            tokio::time::sleep(delay).await;
            s.closing.cancel();
            if let Some(drained) = drained {
                tokio::select! {
                    _ = drained.cancelled() => {}
                    _ = tokio::time::sleep(grace) => {
                        tracing::warn!(grace = ?grace, "the grace period ran out before what was taken in was done");
                    }
                }
            }
            s.stop.cancel();
        });
        stages
    }

    /// Completes when the listener should close: at `closing`, or at `stop` when a task died.
    pub async fn listener_closes(self) {
        tokio::select! {
            _ = self.closing.cancelled() => {}
            _ = self.stop.cancelled() => {}
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_secs(5);
    const GRACE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn each_stage_waits_for_the_one_before_and_the_drain_ends_the_grace_early() {
        let (signal, drained, ready) = (
            CancellationToken::new(),
            CancellationToken::new(),
            Readiness::default(),
        );
        ready.set_ready();
        let stages = Stages::after(signal.clone(), &ready, DELAY, GRACE, Some(drained.clone()));
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!stages.closing.is_cancelled() && !stages.stop.is_cancelled());
        assert!(ready.is_ready());

        signal.cancel();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!ready.is_ready(), "unready from the signal on");
        assert!(ready
            .not_ready_because()
            .unwrap_or_default()
            .contains("shutting down"));
        assert!(
            !stages.closing.is_cancelled(),
            "still serving within the delay"
        );
        tokio::time::sleep(DELAY).await;
        assert!(stages.closing.is_cancelled());
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!stages.stop.is_cancelled(), "waits for the drain");
        drained.cancel();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(stages.stop.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_period_bounds_the_drain_and_without_one_stop_follows_closing() {
        let ready = Readiness::default();
        let signal = CancellationToken::new();
        let never = CancellationToken::new();
        let bounded = Stages::after(signal.clone(), &ready, DELAY, GRACE, Some(never));
        let plain = Stages::after(signal.clone(), &ready, DELAY, GRACE, None);
        signal.cancel();
        tokio::time::sleep(DELAY + Duration::from_millis(1)).await;
        assert!(plain.closing.is_cancelled() && plain.stop.is_cancelled());
        assert!(bounded.closing.is_cancelled() && !bounded.stop.is_cancelled());
        tokio::time::sleep(GRACE).await;
        assert!(bounded.stop.is_cancelled(), "the grace period is a bound");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_without_a_signal_closes_the_listener() {
        let stages = Stages::after(
            CancellationToken::new(),
            &Readiness::default(),
            DELAY,
            GRACE,
            None,
        );
        stages.stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), stages.clone().listener_closes())
            .await
            .expect("closes at stop");
        assert!(!stages.closing.is_cancelled());
    }
}
