//! rustls configs for every link. Both sides check the chain to the cluster CA and
//! the role the other side's certificate names:
//!
//! | listener          | client certificate                  |
//! |-------------------|-------------------------------------|
//! | peer gRPC         | required, role `server`             |
//! | agent gateway     | required, role `agent`              |
//! | REST API          | optional (bearer tokens), any role  |
//!
//! Clients accept only a server certificate (role `server`) whose SAN matches the
//! address dialled. Certificates live in a [`LiveCert`], so renewing one swaps it
//! in for every new handshake without restarting anything.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::cert::{identity_of, Identity, Role};
use crate::{provider, Result, TlsError};

/// The handshake-signature methods every verifier here shares: ring's algorithms,
/// as webpki's own verifiers use.
macro_rules! signatures_by_ring {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &ALGORITHMS)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &ALGORITHMS)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            ALGORITHMS.supported_schemes()
        }
    };
}

static ALGORITHMS: std::sync::LazyLock<rustls::crypto::WebPkiSupportedAlgorithms> =
    std::sync::LazyLock::new(|| {
        rustls::crypto::ring::default_provider().signature_verification_algorithms
    });

/// This process's own certificate and key, replaceable at run time.
#[derive(Debug)]
pub struct LiveCert {
    current: RwLock<(Arc<CertifiedKey>, String)>,
}

fn certified(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Invalid("no certificate in the PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::Invalid(format!("private key: {e}")))?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider())?))
}

impl LiveCert {
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Arc<Self>> {
        Ok(Arc::new(LiveCert {
            current: RwLock::new((certified(cert_pem, key_pem)?, cert_pem.to_string())),
        }))
    }

    /// Uses a new certificate and key from the next handshake on.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<()> {
        let key = certified(cert_pem, key_pem)?;
        if let Ok(mut cur) = self.current.write() {
            *cur = (key, cert_pem.to_string());
        }
        Ok(())
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.0.clone())
    }

    /// The current certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.current.read().map(|c| c.1.clone()).unwrap_or_default()
    }

    pub fn identity(&self) -> Option<Identity> {
        let key = self.get()?;
        identity_of(key.cert.first()?.as_ref())
    }
}

impl rustls::server::ResolvesServerCert for LiveCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

impl rustls::client::ResolvesClientCert for LiveCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Roots holding only the cluster CA.
pub fn roots(ca_pem: &str) -> Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let der = der.map_err(|e| TlsError::Invalid(format!("CA certificate: {e}")))?;
        roots.add(der)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Invalid("no CA certificate in the PEM".into()));
    }
    Ok(Arc::new(roots))
}

/// What a listener asks of its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate of this cluster naming this role.
    Require(Role),
    /// A certificate is optional; one that is sent must chain to the CA.
    Optional,
}

fn bad_role(want: Role, got: Option<&Identity>) -> rustls::Error {
    rustls::Error::General(match got {
        Some(id) => format!(
            "certificate is for {id}, but this port accepts only {} certificates",
            want.as_str()
        ),
        None => "certificate names no Orion role".into(),
    })
}

/// Checks the chain with webpki, then the role.
#[derive(Debug)]
struct RoleClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    role: Option<Role>,
}

impl ClientCertVerifier for RoleClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        self.role.is_some()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = identity_of(end_entity.as_ref());
        match self.role {
            Some(want) if id.as_ref().map(|i| i.role) != Some(want) => {
                Err(bad_role(want, id.as_ref()))
            }
            None if id.is_none() => Err(bad_role(Role::Server, None)),
            _ => Ok(ClientCertVerified::assertion()),
        }
    }
    signatures_by_ring!();
}

/// A server config: TLS 1.3 only, our certificate from `cert`.
pub fn server_config(
    ca_pem: &str,
    cert: Arc<LiveCert>,
    auth: ClientAuth,
) -> Result<rustls::ServerConfig> {
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider());
    let inner = match auth {
        ClientAuth::Require(_) => builder.build(),
        ClientAuth::Optional => builder.allow_unauthenticated().build(),
    }
    .map_err(|e| TlsError::Invalid(format!("client verifier: {e}")))?;
    let role = match auth {
        ClientAuth::Require(r) => Some(r),
        ClientAuth::Optional => None,
    };
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(RoleClientVerifier { inner, role }))
        .with_cert_resolver(cert))
}

/// Checks the chain and host name with webpki, then that the server is a peer.
#[derive(Debug)]
struct PeerServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        let id = identity_of(end_entity.as_ref());
        if id.as_ref().map(|i| i.role) != Some(Role::Server) {
            return Err(bad_role(Role::Server, id.as_ref()));
        }
        Ok(ServerCertVerified::assertion())
    }
    signatures_by_ring!();
}

/// A client config that trusts only peers of the cluster whose CA is `ca_pem`, and
/// presents `cert` when one is given.
pub fn client_config(ca_pem: &str, cert: Option<Arc<LiveCert>>) -> Result<rustls::ClientConfig> {
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca_pem)?, provider())
            .build()
            .map_err(|e| TlsError::Invalid(format!("server verifier: {e}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerServerVerifier { inner }));
    Ok(match cert {
        Some(c) => builder.with_client_cert_resolver(c),
        None => builder.with_no_client_auth(),
    })
}

/// The identity in the first certificate of a verified chain.
pub fn peer_identity(chain: Option<&[CertificateDer<'_>]>) -> Option<Identity> {
    identity_of(chain?.first()?.as_ref())
}

/// Only for fetching the CA before a token's fingerprint is checked against it:
/// accepts any server certificate. Nothing but the public CA may be read over it.
pub fn insecure_client_config() -> Result<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AnyServer;
    impl ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        signatures_by_ring!();
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth())
}
