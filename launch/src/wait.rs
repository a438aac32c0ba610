//! Polling with a deadline: the one way this crate waits for anything.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Result;

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `f` every [`POLL`] until it gives `Ok(Some(_))` or an error, or until
/// `timeout` has passed (`Ok(None)`). `f` runs at least once.
pub async fn poll<T, F, Fut>(timeout: Duration, mut f: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(Some(v));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}
