//! Who may call what. Every route is declared once, with its [`Access`], in
//! `routes.rs`; the router is built from that table and this middleware
//! enforces it, so a route cannot exist without a policy.
//!
//! Callers are identified by a bearer token (`Authorization: Bearer orion.…`), by
//! the dashboard's session cookie (which holds a token; its writes must carry the
//! CSRF header, see `session.rs`) or, for peer and certificate routes, by the
//! client certificate of the connection.
//! 401 means "who are you?" (no, expired, badly signed, revoked or unknown token);
//! 403 means "you may not" (the role does not allow the route).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use orion_api::ApiError;
use orion_tls::token::{self, TokenError};
use orion_tls::{Identity, Role, TokenRole};
use tracing::debug;

use crate::caller::Caller;
use crate::error::HttpError;
use crate::forward::Forwarder;
use crate::https::ConnInfo;
use crate::security::Security;
use crate::session;

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone: health checks, the public CA certificate, the join exchange.
    Public,
    /// Any API token: `readonly`, `developer`, `admin`.
    Read,
    /// `developer` or `admin`: change workloads and variables.
    Write,
    /// `developer` or `admin`: logs and exec (logs may hold secrets).
    Sessions,
    /// `admin` only: membership, nodes, tokens.
    Admin,
    /// An `admin` token or a peer's server certificate (a peer joining).
    AdminOrPeer,
    /// A peer's server certificate only.
    Peer,
    /// Any certificate of this cluster (renewing it).
    Certified,
}

pub type Policy = Arc<HashMap<(Method, &'static str), Access>>;

/// What checking a token takes: the token key and records ([`Security`]), and
/// the way to the leader, to catch up on a token minted through another peer.
#[derive(Clone)]
pub struct Tokens {
    pub security: Arc<Security>,
    pub leader: Arc<Forwarder>,
}

/// The middleware's state: how to check tokens, and the route table's policy.
#[derive(Clone)]
pub struct Auth {
    pub tokens: Tokens,
    pub policy: Policy,
}

const LOGIN_HINT: &str = "log in with `orion context add NAME --server URL --token TOKEN`; \
     an admin makes tokens with `orion token create --role developer`";

fn role_allows(role: TokenRole, access: Access) -> bool {
    use TokenRole::{Admin, Developer, Readonly};
    match access {
        Access::Public => true,
        Access::Read => matches!(role, Admin | Developer | Readonly),
        Access::Write | Access::Sessions => matches!(role, Admin | Developer),
        Access::Admin | Access::AdminOrPeer => role == Admin,
        Access::Peer | Access::Certified => false,
    }
}

fn cert_allows(id: &Identity, access: Access) -> bool {
    match access {
        Access::Public | Access::Certified => true,
        Access::Peer | Access::AdminOrPeer => id.role == Role::Server,
        _ => false,
    }
}

fn bearer(req: &Request) -> Result<Option<&str>, ApiError> {
    let Some(v) = req.headers().get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::unauthenticated("the Authorization header is not text"))?;
    match v.strip_prefix("Bearer ") {
        Some(t) => Ok(Some(t.trim())),
        None => Err(ApiError::unauthenticated(
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

impl Tokens {
    /// Checks a token's signature, expiry and record; returns its claims.
    pub async fn verify(&self, tok: &str) -> Result<token::Claims, ApiError> {
        let key = self.security.token_key()?;
        let claims = token::verify(tok, &key, token::now()).map_err(|e| match e {
        TokenError::Expired => ApiError::unauthenticated(format!("the token expired; {LOGIN_HINT}")),
        TokenError::BadSignature => ApiError::unauthenticated(
            "the token's signature is not valid for this cluster (a token of another cluster, or altered)",
        ),
        TokenError::Malformed(m) => ApiError::unauthenticated(format!("the token is malformed: {m}")),
    })?;
        let mut record = self.security.token_record(&claims.id)?;
        if record.is_none() {
            // Minted a moment ago through another peer? Catch up once, then decide.
            self.leader.linearizable_barrier().await?;
            record = self.security.token_record(&claims.id)?;
        }
        match record {
            None => Err(ApiError::unauthenticated(
                "the token is not known to this cluster",
            )),
            Some(r) if r.revoked => Err(ApiError::unauthenticated(format!(
                "the token was revoked; {LOGIN_HINT}"
            ))),
            Some(_) => Ok(claims),
        }
    }
}

/// The middleware: identify, authorize, then run the handler with a [`Caller`].
pub async fn enforce(
    State(Auth { tokens, policy }): State<Auth>,
    mut req: Request,
    next: Next,
) -> Response {
    let access = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| policy.get(&(req.method().clone(), p.as_str())).copied())
        // A known path with a method it does not take: only callers with a token
        // learn that. (Unknown paths never reach this layer: they are plain 404s.)
        .unwrap_or(Access::Read);
    let cert = req
        .extensions()
        .get::<ConnInfo>()
        .and_then(|c| c.peer.clone());
    let mut token = match bearer(&req) {
        Ok(t) => t.map(str::to_string),
        Err(e) => return HttpError(e).into_response(),
    };
    // No bearer token: the dashboard's session cookie, if any. Its writes must
    // prove they come from the page (CSRF header, same Origin).
    let mut csrf = CsrfCheck::NotNeeded;
    if token.is_none() && access != Access::Public {
        if let Some(from_cookie) = session::cookie_token(req.headers()) {
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                let authority = req.uri().authority().map(|a| a.as_str());
                if !session::origin_matches_host(req.headers(), authority) {
                    let e = ApiError::denied(
                        "a write from a browser session must come from the dashboard's own origin",
                    );
                    return HttpError(e).into_response();
                }
                csrf = CsrfCheck::Required(
                    req.headers()
                        .get(session::CSRF_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                );
            }
            // A call this peer relays to the leader carries the token on.
            if let Ok(v) = axum::http::HeaderValue::from_str(&format!("Bearer {from_cookie}")) {
                req.headers_mut()
                    .insert(axum::http::header::AUTHORIZATION, v);
            }
            token = Some(from_cookie);
        }
    }
    let what = format!("{} {}", req.method(), req.uri().path());
    match authorize(&tokens, cert, token, &what, access, csrf).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            debug!(call = %what, cause = %e.message, "refused");
            HttpError(e).into_response()
        }
    }
}

/// Whether a call must show its session's CSRF token.
enum CsrfCheck {
    /// A bearer token, or a read.
    NotNeeded,
    /// A write authenticated by the session cookie, with the header it sent.
    Required(Option<String>),
}

async fn authorize(
    tokens: &Tokens,
    cert: Option<Identity>,
    token: Option<String>,
    what: &str,
    access: Access,
    csrf: CsrfCheck,
) -> Result<Caller, ApiError> {
    if access == Access::Public {
        return Ok(cert.map_or(Caller::Anonymous, Caller::Cert));
    }
    if let Some(tok) = token {
        let claims = tokens.verify(&tok).await?;
        if claims.role.is_join() {
            return Err(ApiError::denied(
                "a join token can only be exchanged for a certificate (POST /v1/join)",
            ));
        }
        if let CsrfCheck::Required(sent) = csrf {
            let key = tokens.security.token_key()?;
            let ok = sent
                .as_deref()
                .is_some_and(|c| token::csrf_matches(c, &claims.id, &key));
            if !ok {
                return Err(ApiError::denied(format!(
                    "a write from a browser session needs its CSRF token in the {} header; \
                     reload the dashboard",
                    session::CSRF_HEADER
                )));
            }
        }
        if !role_allows(claims.role, access) {
            return Err(ApiError::denied(format!(
                "the {} role may not {what}",
                claims.role.as_str(),
            )));
        }
        return Ok(Caller::Token {
            id: claims.id,
            role: claims.role,
        });
    }
    match cert {
        Some(id) if cert_allows(&id, access) => Ok(Caller::Cert(id)),
        Some(id) => Err(ApiError::denied(format!(
            "a certificate for {id} may not {what}; use a token"
        ))),
        None => Err(ApiError::unauthenticated(format!(
            "this call needs a token; {LOGIN_HINT}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_certificates_grant_only_their_routes() {
        use Access::*;
        for a in [Read, Write, Sessions, Admin, AdminOrPeer] {
            assert!(role_allows(TokenRole::Admin, a), "{a:?}");
        }
        assert!(role_allows(TokenRole::Developer, Write));
        assert!(!role_allows(TokenRole::Developer, Admin));
        assert!(!role_allows(TokenRole::Readonly, Sessions));
        assert!(!role_allows(TokenRole::Admin, Peer));
        assert!(cert_allows(&Identity::server(1), Peer));
        assert!(!cert_allows(&Identity::agent("a"), Peer));
        assert!(!cert_allows(&Identity::server(1), Read));
        assert!(cert_allows(&Identity::agent("a"), Certified));
    }
}
