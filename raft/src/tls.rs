//! TLS for the peer transport: mutual TLS where both sides must hold a server
//! certificate of this cluster (the rustls configs enforce chain and role; see
//! `orion-tls`). The service also checks that the peer id a call claims is the one
//! its certificate names.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The rustls configs for both directions of the peer transport.
#[derive(Clone)]
pub struct PeerTls {
    /// Requires a client certificate with role `server`.
    pub server: Arc<rustls::ServerConfig>,
    /// Presents this peer's certificate and accepts only server certificates.
    pub client: Arc<rustls::ClientConfig>,
}

/// How long a connecting peer has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more wait in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 64;

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

/// Accepts TCP connections and yields those that complete the TLS handshake. A
/// client that sends garbage, plain HTTP or no certificate is dropped and logged at
/// debug level; it never stops the listener.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        while let Some((tcp, addr)) = accept(&listener, &shutdown, "peer").await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%addr, cause = %e, "refused a peer connection"),
                    Err(_) => debug!(%addr, "peer TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A tonic connector that dials TCP and then TLS with the peer client config.
pub fn connector(
    config: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone {
    let connector = tokio_rustls::TlsConnector::from(config);
    tower::service_fn(move |uri: tonic::transport::Uri| {
        let connector = connector.clone();
        async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other(format!("no host in {uri}")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp =
                tokio::time::timeout(connect_timeout, TcpStream::connect((host.as_str(), port)))
                    .await
                    .map_err(|_| {
                        std::io::Error::other(format!("connecting to {host}:{port} timed out"))
                    })??;
            let _ = tcp.set_nodelay(true);
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| std::io::Error::other(format!("bad peer host {host:?}: {e}")))?;
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| {
                    std::io::Error::other(format!("TLS handshake with {host}:{port} timed out"))
                })??;
            Ok(hyper_util::rt::TokioIo::new(tls))
        }
    })
}

/// The peer id named by the certificate of the connection a request came on.
pub fn caller_id<T>(request: &tonic::Request<T>) -> Option<u64> {
    let certs = request.peer_certs()?;
    let id = orion_tls::cert::identity_of(certs.first()?.as_ref())?;
    (id.role == orion_tls::Role::Server)
        .then(|| id.name.parse().ok())
        .flatten()
}
