//! The one retry schedule of the agent (joining, reaching the cluster, reconnecting)
//! and the rule for logging the faults it retries.

use std::fmt::Display;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

const MIN_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Exponential backoff with jitter: 200 ms doubling to 5 s, for ever.
pub(crate) fn delays() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Sleeps the next delay of `delays`, or until `shutdown`.
pub(crate) async fn pause(delays: &mut ExponentialBackoff, shutdown: &CancellationToken) {
    let delay = delays.next().unwrap_or(MAX_DELAY);
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}

/// Ordinary faults (no leader yet, a gateway gone, a reconnect) are logged at WARN
/// the first time and at DEBUG after that, until the agent is connected again.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    warned: bool,
}

impl Faults {
    pub fn report(&mut self, what: &str, at: &str, cause: &dyn Display) {
        if self.warned {
            tracing::debug!(%at, %cause, "{what}");
        } else {
            self.warned = true;
            tracing::warn!(%at, %cause, "{what} (retrying; further faults are logged at debug)");
        }
    }

    /// Connected: the next fault is news again.
    pub fn reset(&mut self) {
        self.warned = false;
    }
}
