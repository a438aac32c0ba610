//! The supervisor's knobs.

use std::time::Duration;

use crate::logs::LogConfig;

/// Knobs of the supervisor; the defaults suit production, tests shrink them.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub logs: LogConfig,
    /// SIGTERM→SIGKILL grace when `reconcile` stops or replaces a replica, and when
    /// an unhealthy replica is killed (default 10 s).
    pub stop_grace: Duration,
    /// A run at least this long resets the backoff (default 10 s).
    pub backoff_reset: Duration,
    /// How often an adopted (non-child) process is checked for exit (default 500 ms).
    pub adopted_poll: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            logs: LogConfig::default(),
            stop_grace: Duration::from_secs(10),
            backoff_reset: Duration::from_secs(10),
            adopted_poll: Duration::from_millis(500),
        }
    }
}
