//! The cluster CA (created once, kept in the replicated state) and the certificates
//! it issues to each peer's agent gateway. Agents verify the gateway against the CA.
//! Issue [C] turns this into the full join-token PKI with client certificates.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Other(String),
}

/// The CA's fixed identity. Rebuilding the CA certificate object from these params
/// and the stored key yields the same issuer name and key, which is all a leaf's
/// signature depends on.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Orion cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    Ok(params)
}

/// A new CA: `(certificate PEM, private key PEM)`.
pub fn generate_ca() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ca(key_pem: &str) -> Result<(Certificate, KeyPair), PkiError> {
    let key = KeyPair::from_pem(key_pem)?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok((cert, key))
}

/// A server certificate for `hosts` (IP addresses or DNS names), signed by the CA.
pub fn issue_server_cert(
    ca_key_pem: &str,
    hosts: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
    let (ca_cert, ca_key) = ca(ca_key_pem)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "orion agent gateway");
    for host in hosts {
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.clone()
                    .try_into()
                    .map_err(|e| PkiError::Other(format!("bad host name {host:?}: {e}")))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    Ok((
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}

/// TLS 1.3, ring, ALPN `orion/1`: the QUIC server side of the agent gateway.
pub fn gateway_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<quinn::ServerConfig, PkiError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![orion_api::agent_proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| PkiError::Other(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(8u32.into());
    transport.max_idle_timeout(Some(
        std::time::Duration::from_secs(2)
            .try_into()
            .map_err(|e| PkiError::Other(format!("{e}")))?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_issued_from_the_stored_key_verifies_against_the_original_ca() {
        use rustls::client::danger::ServerCertVerifier;
        let (ca_pem, key_pem) = generate_ca().expect("ca");
        let (chain, _key) = issue_server_cert(&key_pem, &["127.0.0.1".into()]).expect("leaf");
        let mut roots = rustls::RootCertStore::empty();
        let ca_der =
            rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).expect("ca pem");
        roots.add(ca_der).expect("add root");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        verifier
            .verify_server_cert(
                &chain[0],
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("leaf verifies against the CA");
    }
}
