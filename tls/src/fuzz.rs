//! Fuzz checks for what unauthenticated callers hand this crate: tokens (any
//! API call, `POST /v1/join`) and CSRs (`POST /v1/join`, `POST
//! /v1/certificates/renew`). The cargo-fuzz targets in `fuzz/` call these; the
//! suite replays their committed corpus with [`orion_api::fuzz::replay`].

use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::cert::{self, Identity, Role};
use crate::token::{self, Claims, TokenError, TokenRole, MAX_TOKEN_LEN};

/// The fixed key and clock the token check verifies against.
const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const NOW: u64 = 1_800_000_000;

/// A token: the first byte picks how the rest is used. Even: the rest is the
/// token text, as a caller sends it. Odd: the rest is the claims JSON, signed
/// with the right key, so the claims decoder and the expiry check are reached.
/// What verifies must peek the same, be unexpired, and re-sign to a token that
/// verifies; another cluster's key must never verify it; errors say why.
pub fn token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        text.to_owned()
    } else {
        token::sign_claims_json(rest, KEY)
    };
    let verified = token::verify(&text, KEY, NOW);
    let peeked = token::peek(&text);
    match &verified {
        Ok(claims) => {
            assert!(claims.exp > NOW, "an expired token verified");
            assert_eq!(peeked.as_ref(), Ok(claims), "peek and verify disagree");
            let again = token::sign(claims, KEY);
            assert_eq!(token::verify(&again, KEY, NOW).as_ref(), Ok(claims));
            assert_eq!(
                token::verify(&text, &KEY.replace('0', "1"), NOW),
                Err(TokenError::BadSignature),
                "a token verified under another cluster's key"
            );
            assert!(claims.role.as_str().parse::<TokenRole>() == Ok(claims.role));
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if text.len() > MAX_TOKEN_LEN {
                assert!(
                    matches!(e, TokenError::Malformed(m) if m.contains("at most")),
                    "{e}"
                );
            }
        }
    }
    if let Err(e) = &peeked {
        assert!(
            matches!(e, TokenError::Malformed(m) if !m.is_empty()),
            "{e}"
        );
    }
}

/// A CSR and what it is to certify. The first byte picks the role (bit 2:
/// server, else agent) and the mode (the rest modulo 3): 0, the rest is the PEM
/// text a caller sends; 1, the rest is the DER inside a PEM wrapper (so the ASN.1
/// parser and the signature check are reached); 2, the rest is `name\nhost…` with
/// a valid CSR. A request that checks is signed, and the certificate must name
/// exactly the identity and (for a server) the hosts asked for.
pub fn csr(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let role = if mode & 4 == 0 {
        Role::Agent
    } else {
        Role::Server
    };
    let (pem, name, hosts) = match mode % 3 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            (text.to_owned(), "7".to_owned(), vec!["10.0.0.1".to_owned()])
        }
        1 => {
            let body = STANDARD.encode(rest);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .filter_map(|c| std::str::from_utf8(c).ok())
                .collect();
            let pem = format!(
                "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
                lines.join("\n")
            );
            (pem, "node-a".to_owned(), Vec::new())
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let mut lines = text.split('\n');
            let name = lines.next().unwrap_or_default().to_owned();
            (
                fixture().csr_pem.clone(),
                name,
                lines.map(str::to_owned).collect(),
            )
        }
    };
    let id = Identity { role, name };
    let lifetime = Duration::from_secs(3600);
    match cert::signing_request(&pem, &id, &hosts, lifetime) {
        Ok(_) => {
            let signed = cert::sign_csr(&fixture().ca_key_pem, &pem, &id, &hosts, lifetime)
                .expect("a checked request signs");
            let der = CertificateDer::from_pem_slice(signed.as_bytes()).expect("issued PEM");
            assert_eq!(
                cert::identity_of(der.as_ref()).as_ref(),
                Some(&id),
                "the certificate does not name the identity it was issued for"
            );
            let expected = match role {
                Role::Server => cert::normalize_hosts(&hosts),
                Role::Agent => Vec::new(),
            };
            assert_eq!(cert::hosts_of(&signed).expect("issued names"), expected);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

struct Fixture {
    ca_key_pem: String,
    csr_pem: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (_, ca_key_pem) = cert::generate_ca().expect("a CA");
        let (_, csr_pem) = cert::new_csr().expect("a CSR");
        Fixture {
            ca_key_pem,
            csr_pem,
        }
    })
}

/// Seeds for [`token`]: real tokens of each role, expired and tampered ones, and
/// claims bodies.
pub fn token_seeds() -> Vec<Vec<u8>> {
    let claims = |role, exp| Claims {
        id: "0123456789abcdef01234567".into(),
        role,
        exp,
        ca: "ab".repeat(32),
    };
    let mut seeds = Vec::new();
    for role in [
        TokenRole::Readonly,
        TokenRole::Developer,
        TokenRole::Admin,
        TokenRole::Server,
        TokenRole::Agent,
    ] {
        let good = token::sign(&claims(role, NOW + 3600), KEY);
        seeds.push([&[0u8][..], good.as_bytes()].concat());
        let json = serde_json::to_vec(&claims(role, NOW + 60)).expect("claims JSON");
        seeds.push([&[1u8][..], &json].concat());
    }
    let expired = token::sign(&claims(TokenRole::Admin, NOW - 1), KEY);
    seeds.push([&[0u8][..], expired.as_bytes()].concat());
    let other = token::sign(&claims(TokenRole::Admin, NOW + 60), "another key");
    seeds.push([&[0u8][..], other.as_bytes()].concat());
    seeds.push(b"\x00Bearer orion.e30.AAAA".to_vec());
    seeds.push(br#"{"id":"x","role":"admin","exp":1,"ca":"","extra":1}"#.to_vec());
    seeds
}

/// Seeds for [`csr`]: real CSRs (P-256, P-384, Ed25519) as PEM and as DER, and
/// names with hosts.
pub fn csr_seeds() -> Vec<Vec<u8>> {
    use rcgen::{
        CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    };
    let mut seeds = Vec::new();
    for alg in [
        &PKCS_ECDSA_P256_SHA256,
        &PKCS_ECDSA_P384_SHA384,
        &PKCS_ED25519,
    ] {
        let key = KeyPair::generate_for(alg).expect("key");
        let mut params =
            CertificateParams::new(vec!["asked-for.example".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "orion://server/1");
        let csr = params.serialize_request(&key).expect("csr");
        let pem = csr.pem().expect("pem");
        seeds.push([&[0u8][..], pem.as_bytes()].concat());
        seeds.push([&[4u8 * 3][..], pem.as_bytes()].concat());
        seeds.push([&[1u8][..], csr.der().as_ref()].concat());
    }
    seeds.push(b"\x02node-a".to_vec());
    seeds.push(b"\x0e7\n10.0.0.1\n::1\nLB.example.test\n10.0.0.1".to_vec());
    seeds.push(b"\x05\n".to_vec());
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;
    use orion_api::fuzz::replay;

    #[test]
    fn fuzz_corpus_token() {
        replay("token", token_seeds(), 20_000, token);
    }

    #[test]
    #[ignore = "writes the seed corpus into the checkout"]
    fn write_fuzz_seeds() {
        orion_api::fuzz::write_seeds("token", &token_seeds()).expect("token seeds");
        orion_api::fuzz::write_seeds("csr", &csr_seeds()).expect("csr seeds");
    }

    #[test]
    fn fuzz_corpus_csr() {
        replay("csr", csr_seeds(), 2_000, csr);
    }
}
