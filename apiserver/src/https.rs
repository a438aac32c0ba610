//! The REST API's listener: TLS, then HTTP/1.1 or HTTP/2, with limits that keep a
//! slow or hostile client from tying the peer up:
//!
//! - the TLS handshake must finish within [`HANDSHAKE_TIMEOUT`];
//! - request headers must arrive within [`HEADER_TIMEOUT`] (no slowloris), and an
//!   idle keep-alive connection is closed after the same time;
//! - at most [`MAX_CONNECTIONS`] connections at once, [`MAX_STREAMS`] HTTP/2 streams
//!   each; more wait in the kernel's accept queue.
//!
//! Plain HTTP, garbage and failed handshakes are dropped at debug level. The client
//! certificate, if one was sent and verified, is handed to the handlers as a
//! [`ConnInfo`] request extension.
//!
//! Every connection, and every HTTP/2 stream hyper runs, is a task of the
//! listener's own tracker: [`serve`] returns only when all of them have ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use orion_tls::Identity;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::debug;

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_CONNECTIONS: usize = 2048;
pub const MAX_STREAMS: u32 = 128;

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The identity in a verified client certificate, if one was sent.
    pub peer: Option<Identity>,
}

/// Cancelled when the API stops accepting calls: long-lived answers (watches,
/// followed logs) end with it rather than hold the drain up.
#[derive(Clone)]
pub struct Draining(pub CancellationToken);

/// Runs what hyper spawns (HTTP/2 streams) as tasks of the listener's tracker.
#[derive(Clone)]
struct Tracked(TaskTracker);

impl<F> hyper::rt::Executor<F> for Tracked
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

/// Serves `app` until `shutdown`; then in-flight requests get `drain` to finish,
/// and connections still open after it are dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let tracker = TaskTracker::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let Some((tcp, remote)) = crate::accept::accept(&listener, &shutdown, "API").await else {
            break;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        let executor = Tracked(tracker.clone());
        tracker.spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            let tls = match tokio::select! {
                h = handshake => h,
                () = shutdown.cancelled() => return,
            } {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%remote, cause = %e, "refused an API connection");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "API TLS handshake timed out");
                    return;
                }
            };
            let peer = orion_tls::config::peer_identity(tls.get_ref().1.peer_certificates());
            let info = ConnInfo { remote, peer };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut().insert(info.clone());
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(executor);
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS)
                .keep_alive_interval(Duration::from_secs(20))
                .keep_alive_timeout(Duration::from_secs(20));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%remote, cause = %e, "API connection ended with an error");
                    }
                }
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    if tokio::time::timeout(drain, conn).await.is_err() {
                        debug!(%remote, "API connection still busy after the drain deadline; dropped");
                    }
                }
            }
        });
    }
    tracker.close();
    // Each connection gives up by the drain deadline; what hyper spawned for it
    // ends with it.
    if tokio::time::timeout(drain * 2, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = tracker.len(),
            "API tasks still running well after the drain deadline"
        );
    }
}
