//! Tokens, certificates and the exchanges that hand them out.

use serde::{Deserialize, Serialize};

/// A token as the replicated state records it. The token string itself is never
/// stored; only its id, so a leaked database does not leak usable tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRecord {
    pub id: String,
    /// `admin`, `developer`, `readonly`, `server` or `agent`.
    pub role: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
    pub created_at: u64,
    #[serde(default)]
    pub description: String,
    /// Join tokens: set by their one use.
    #[serde(default)]
    pub used: bool,
    #[serde(default)]
    pub revoked: bool,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[schema(pattern = "^(admin|developer|readonly|server|agent)$")]
    pub role: String,
    /// Lifetime in seconds.
    #[schema(minimum = 1, maximum = 315360000)]
    pub ttl_seconds: u64,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: String,
    pub record: TokenRecord,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenRecord>,
}

/// Answer of `DELETE /v1/tokens/{id}`: the id of the token revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevokedToken {
    pub revoked: String,
}

/// `POST /v1/join`: a join token and a CSR, exchanged for a certificate.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinCertRequest {
    pub token: String,
    /// PEM certificate signing request; only its public key is used.
    pub csr: String,
    /// The peer id (server tokens) or node name (agent tokens) to certify.
    pub name: String,
    /// Host names or IPs the certificate must be valid for (server tokens only).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `POST /v1/certificates/renew`: a CSR, signed for the caller's own identity.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub csr: String,
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub ca_pem: String,
}
