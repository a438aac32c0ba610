//! TLS for the peer transport (the dialing side; the listening side is hosted by
//! `orion-apiserver`): mutual TLS where both sides must hold a server
//! certificate of this cluster (the rustls configs enforce chain and role; see
//! `orion-tls`). The service also checks that the peer id a call claims is the one
//! its certificate names.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

/// The rustls configs for both directions of the peer transport.
#[derive(Clone)]
pub struct PeerTls {
    /// Requires a client certificate with role `server`.
    pub server: Arc<rustls::ServerConfig>,
    /// Presents this peer's certificate and accepts only server certificates.
    pub client: Arc<rustls::ClientConfig>,
}

/// How long a peer has to finish a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Who is calling, as the certificate of the connection a request came on names
/// it. The server that hosts the peer service (in `orion-apiserver`) puts one in
/// every request's extensions; [`crate::service`] refuses a call whose claimed
/// sender differs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCaller {
    /// The peer id of a `server` certificate, or `None` for any other certificate.
    pub id: Option<u64>,
}

impl PeerCaller {
    /// The caller named by the first certificate of a verified chain.
    pub fn from_certs(certs: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Self {
        let id = certs
            .and_then(|c| c.first())
            .and_then(|leaf| orion_tls::cert::identity_of(leaf.as_ref()))
            .filter(|id| id.role == orion_tls::Role::Server)
            .and_then(|id| id.name.parse().ok());
        PeerCaller { id }
    }
}

/// The peer id named by the certificate of the connection a request came on.
pub fn caller_id<T>(request: &tonic::Request<T>) -> Option<u64> {
    request.extensions().get::<PeerCaller>()?.id
}
