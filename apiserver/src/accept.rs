//! The TCP accept loop of the API and peer listeners.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The next TCP connection on `listener` (with Nagle off), or `None` once
/// `shutdown` is cancelled. A failed accept (out of file descriptors and the
/// like) is logged at debug level as `what` and retried after a short pause: it
/// never stops the listener.
pub async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    what: &str,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, addr)) => {
                let _ = tcp.set_nodelay(true);
                return Some((tcp, addr));
            }
            Err(e) => {
                debug!(cause = %e, "{what} accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}
