//! The cluster CA and the role certificates it signs.
//!
//! A leaf names exactly one role and identity in a URI SAN (`orion://server/3`,
//! `orion://agent/node-a`); the subject's CN is informational only, so a CN that
//! looks like a role grants nothing (etcd CVE-2018-16886). Server certificates are
//! good for TLS server and client auth; agent certificates for client auth only.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::{Result, TlsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A control-plane peer.
    Server,
    /// A node agent.
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }
}

/// Who a certificate speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub role: Role,
    /// A peer id for [`Role::Server`], a node name for [`Role::Agent`].
    pub name: String,
}

impl Identity {
    pub fn server(id: u64) -> Self {
        Identity {
            role: Role::Server,
            name: id.to_string(),
        }
    }

    pub fn agent(node: &str) -> Self {
        Identity {
            role: Role::Agent,
            name: node.to_string(),
        }
    }

    fn uri(&self) -> String {
        format!("orion://{}/{}", self.role.as_str(), self.name)
    }

    fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("orion://")?;
        let (role, name) = rest.split_once('/')?;
        let role = match role {
            "server" => Role::Server,
            "agent" => Role::Agent,
            _ => return None,
        };
        if name.is_empty() {
            return None;
        }
        Some(Identity {
            role,
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.role.as_str(), self.name)
    }
}

/// The CA's fixed identity. Rebuilding the CA certificate object from these params
/// and the stored key yields the same issuer name and key, which is all a leaf's
/// signature depends on.
fn ca_params() -> Result<CertificateParams> {
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
pub fn generate_ca() -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ca(key_pem: &str) -> Result<(Certificate, KeyPair)> {
    let key = KeyPair::from_pem(key_pem)?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok((cert, key))
}

/// The SHA-256 of the CA certificate's DER, in hex: what tokens carry so a joining
/// machine can check it reached the right cluster before trusting it.
pub fn fingerprint(ca_pem: &str) -> Result<String> {
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| TlsError::Invalid(format!("CA certificate: {e}")))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

fn leaf_params(id: &Identity, hosts: &[String], lifetime: Duration) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("orion {id}"));
    // The name must read back from the certificate as this identity, or the
    // certificate would be issued and then name nobody.
    if Identity::from_uri(&id.uri()).as_ref() != Some(id) {
        return Err(TlsError::Invalid(format!(
            "identity name {:?} cannot be written in a certificate (it must not be empty)",
            id.name
        )));
    }
    let uri = id
        .uri()
        .try_into()
        .map_err(|e| TlsError::Invalid(format!("identity {:?}: {e}", id.name)))?;
    params.subject_alt_names.push(SanType::URI(uri));
    if id.role == Role::Server {
        for host in hosts {
            let san = match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    host.clone()
                        .try_into()
                        .map_err(|e| TlsError::Invalid(format!("bad host name {host:?}: {e}")))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // A little slack for clocks that are behind: five minutes, or a tenth of a
    // short lifetime (so renewal, due two thirds in, stays in the future).
    let now = time::OffsetDateTime::now_utc();
    let life = time::Duration::try_from(lifetime)
        .map_err(|e| TlsError::Invalid(format!("certificate lifetime: {e}")))?;
    let slack: time::Duration = life / 10;
    params.not_before = now - slack.min(time::Duration::minutes(5));
    params.not_after = now + life;
    Ok(params)
}

/// Issues a key and certificate here (a peer renewing its own, or bootstrap).
/// Returns `(certificate PEM, key PEM)`.
pub fn issue(
    ca_key_pem: &str,
    id: &Identity,
    hosts: &[String],
    lifetime: Duration,
) -> Result<(String, String)> {
    let (ca_cert, ca_key) = ca(ca_key_pem)?;
    let key = KeyPair::generate()?;
    let cert = leaf_params(id, hosts, lifetime)?.signed_by(&key, &ca_cert, &ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A key pair and a CSR for it: `(key PEM, CSR PEM)`. The key never leaves the machine.
pub fn new_csr() -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// Longest CSR accepted, in bytes of PEM. An RSA-4096 request is under 2 KiB.
pub const MAX_CSR_PEM: usize = 16 * 1024;
/// Most host names one certificate is issued for: a peer's advertised addresses
/// and its `tls-san` names (at most 32) fit with room.
pub const MAX_CERT_HOSTS: usize = 64;
/// Longest host name (a DNS name is at most 253 characters).
pub const MAX_HOST_LEN: usize = 253;

/// Checks a CSR and what is to be certified before anything is signed: the PEM
/// is at most [`MAX_CSR_PEM`] bytes and holds a CSR whose self-signature checks,
/// and `id` and `hosts` make valid certificate names. Only the key is taken
/// from the CSR: names, usages and lifetime are decided here.
pub fn signing_request(
    csr_pem: &str,
    id: &Identity,
    hosts: &[String],
    lifetime: Duration,
) -> Result<CertificateSigningRequestParams> {
    if csr_pem.len() > MAX_CSR_PEM {
        return Err(TlsError::Invalid(format!(
            "certificate signing request is {} bytes; at most {MAX_CSR_PEM}",
            csr_pem.len()
        )));
    }
    if hosts.len() > MAX_CERT_HOSTS {
        return Err(TlsError::Invalid(format!(
            "{} host names for one certificate; at most {MAX_CERT_HOSTS}",
            hosts.len()
        )));
    }
    if let Some(long) = hosts.iter().find(|h| h.len() > MAX_HOST_LEN) {
        return Err(TlsError::Invalid(format!(
            "host name of {} characters; at most {MAX_HOST_LEN}",
            long.len()
        )));
    }
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| TlsError::Invalid(format!("certificate signing request: {e}")))?;
    Ok(CertificateSigningRequestParams {
        params: leaf_params(id, hosts, lifetime)?,
        public_key: csr.public_key,
    })
}

/// Signs the public key of `csr_pem` for `id`, once [`signing_request`] has
/// checked it.
pub fn sign_csr(
    ca_key_pem: &str,
    csr_pem: &str,
    id: &Identity,
    hosts: &[String],
    lifetime: Duration,
) -> Result<String> {
    let request = signing_request(csr_pem, id, hosts, lifetime)?;
    let (ca_cert, ca_key) = ca(ca_key_pem)?;
    Ok(request.signed_by(&ca_cert, &ca_key)?.pem())
}

/// The role and identity a leaf names, if it names exactly one.
pub fn identity_of(der: &[u8]) -> Option<Identity> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Identity::from_uri(u),
        _ => None,
    });
    let id = found.next()?;
    found.next().is_none().then_some(id)
}

/// `hosts` as certificate names compare: IP addresses in canonical form, DNS
/// names in lower case, sorted, without duplicates.
pub fn normalize_hosts(hosts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = hosts
        .iter()
        .map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => h.to_ascii_lowercase(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The host names (DNS and IP SANs) a PEM certificate is valid for, normalized
/// as [`normalize_hosts`] does.
pub fn hosts_of(cert_pem: &str) -> Result<Vec<String>> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::Invalid(format!("certificate names: {e}")))?;
    let names = san
        .map(|s| s.value.general_names.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(b)
                    .ok()
                    .map(|a| IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(b)
                    .ok()
                    .map(|a| IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>();
    Ok(normalize_hosts(&names))
}

/// When a PEM certificate expires.
pub fn not_after(cert_pem: &str) -> Result<SystemTime> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// When to renew a certificate: two thirds into its life.
pub fn renew_at(cert_pem: &str) -> Result<SystemTime> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    let from = cert.validity().not_before.timestamp();
    let to = cert.validity().not_after.timestamp();
    let at = from + (to - from) * 2 / 3;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0)))
}

/// How long until a certificate is due for renewal (at least a second, so a
/// failing renewal never spins).
pub fn until_renewal(cert_pem: &str) -> Duration {
    renew_at(cert_pem)
        .ok()
        .and_then(|at| at.duration_since(SystemTime::now()).ok())
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_csr_names_the_identity_given_not_the_one_asked_for() {
        let (_ca, ca_key) = generate_ca().expect("ca");
        let (_key, csr) = new_csr().expect("csr");
        let cert = sign_csr(
            &ca_key,
            &csr,
            &Identity::agent("node-a"),
            &["10.0.0.1".into()],
            Duration::from_secs(3600),
        )
        .expect("sign");
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem");
        assert_eq!(identity_of(der.as_ref()), Some(Identity::agent("node-a")));
        let left = not_after(&cert)
            .expect("not after")
            .duration_since(SystemTime::now())
            .expect("in the future");
        assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600));
    }

    #[test]
    fn hosts_of_reads_back_the_names_issued() {
        let (_ca, ca_key) = generate_ca().expect("ca");
        let hosts: Vec<String> = ["127.0.0.11", "LB.example.test", "::1", "127.0.0.11"]
            .map(String::from)
            .to_vec();
        let (cert, _key) = issue(
            &ca_key,
            &Identity::server(1),
            &hosts,
            Duration::from_secs(3600),
        )
        .expect("issue");
        assert_eq!(
            hosts_of(&cert).expect("names"),
            vec!["127.0.0.11", "::1", "lb.example.test"]
        );
        assert_eq!(hosts_of(&cert).expect("names"), normalize_hosts(&hosts));
    }

    #[test]
    fn a_garbage_csr_is_refused() {
        let (_ca, ca_key) = generate_ca().expect("ca");
        let err = sign_csr(
            &ca_key,
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            &Identity::server(1),
            &[],
            Duration::from_secs(60),
        );
        assert!(err.is_err());
    }

    /// Found by the `csr` fuzz target: an empty name was signed into a
    /// certificate that `identity_of` then read as nobody.
    #[test]
    fn an_identity_the_certificate_cannot_name_is_refused_before_signing() {
        let (_ca, ca_key) = generate_ca().expect("ca");
        let (_key, csr) = new_csr().expect("csr");
        for id in [
            Identity::agent(""),
            Identity {
                role: Role::Server,
                name: String::new(),
            },
        ] {
            let err = sign_csr(&ca_key, &csr, &id, &[], Duration::from_secs(60))
                .expect_err("an empty name is refused");
            assert!(err.to_string().contains("must not be empty"), "{err}");
        }
    }

    #[test]
    fn identity_uris_round_trip_and_junk_is_none() {
        for id in [Identity::server(7), Identity::agent("web-1")] {
            assert_eq!(Identity::from_uri(&id.uri()), Some(id));
        }
        for junk in [
            "orion://admin/x",
            "orion://server/",
            "http://server/1",
            "orion:/agent",
        ] {
            assert_eq!(Identity::from_uri(junk), None, "{junk}");
        }
    }
}
