//! Hosts the peer gRPC service of `orion-raft` on the peer port. Only peers call
//! it: the TLS config requires a client certificate with role `server`, and every
//! request carries the [`PeerCaller`] its certificate names, which the service
//! checks against the peer id the call claims.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use orion_raft::tls::{PeerCaller, HANDSHAKE_TIMEOUT};
use orion_raft::RaftNode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::Connected;
use tracing::debug;

/// Handshakes in progress at once; more wait in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 64;

/// Streams a peer may reset before this server accepted them, per connection.
/// openraft abandons an AppendEntries after one heartbeat interval, and its
/// client then resets the stream; under load dozens are pending at once. h2's
/// default (20, a guard against the "rapid reset" attack from strangers) then
/// tears down the whole connection with `GOAWAY ENHANCE_YOUR_CALM`, and the
/// next calls wait for a new TLS handshake, long enough for an election. Every
/// connection here passed mutual TLS against the cluster's CA before h2 sees
/// it, so the guard is raised (still bounded) rather than kept for strangers.
const MAX_PENDING_RESETS: usize = 4_096;

/// Serves `node`'s peer service on `listener` until `shutdown` is cancelled.
pub async fn serve(
    node: &RaftNode,
    listener: TcpListener,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> crate::error::Result<()> {
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
        .add_service(node.peer_service())
        .serve_with_incoming_shutdown(
            incoming(listener, node.peer_server_tls(), tasks, shutdown.clone()),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}

/// A peer connection after the TLS handshake, which tells tonic who is calling.
pub struct PeerConn(TlsStream<TcpStream>);

impl Connected for PeerConn {
    type ConnectInfo = PeerCaller;

    fn connect_info(&self) -> PeerCaller {
        PeerCaller::from_certs(self.0.get_ref().1.peer_certificates())
    }
}

impl AsyncRead for PeerConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Accepts TCP connections and yields those that complete the TLS handshake. A
/// client that sends garbage, plain HTTP or no certificate is dropped and logged
/// (WARN for a refused certificate, DEBUG for a timeout); it never stops the listener.
fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> ReceiverStream<std::io::Result<PeerConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let handshakes = tasks.clone();
    tasks.spawn(async move {
        while let Some((tcp, addr)) = crate::accept::accept(&listener, &shutdown, "peer").await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            handshakes.spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(PeerConn(tls))).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%addr, cause = %e, "refused a peer connection"),
                    Err(_) => debug!(%addr, "peer TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
