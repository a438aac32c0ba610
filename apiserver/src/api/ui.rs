//! The dashboard: `/ui` and its assets, compiled into the binary from
//! `apiserver/ui/` (plain modern JavaScript, no build step), and the exchange of
//! an API token for a browser session (`session.rs` says how sessions work).
//!
//! Every peer serves the same bytes; the page talks only to the origin it came
//! from, so it works the same through a follower and behind a load balancer.
//! Assets are sent with a strict Content-Security-Policy (no inline script or
//! style), `frame-ancestors 'none'`, `nosniff`, and an `ETag` from their content
//! with `Cache-Control: no-cache`, so a browser revalidates and an upgraded peer
//! never serves a stale page.

use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use orion_api::ApiError;
use orion_tls::token;
use serde::{Deserialize, Serialize};

use crate::auth::Tokens;
use crate::caller::Caller;
use crate::error::{HttpResult, JsonBody};
use crate::session;

/// One file of the dashboard.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../ui/favicon.svg"),
    },
];

/// The `ETag` of each asset, from its content and this binary's version.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            a.body.hash(&mut h);
            env!("CARGO_PKG_VERSION").hash(&mut h);
            format!("\"{:016x}\"", h.finish())
        })
        .collect()
});

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn serve(index: usize, request: &HeaderMap) -> Response {
    let (Some(asset), Some(etag)) = (ASSETS.get(index), ETAGS.get(index)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `GET /`: to the dashboard.
pub async fn root() -> Redirect {
    Redirect::to("/ui")
}

/// `GET /ui`: the page. It asks for a token when it has no session.
pub async fn index(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

/// `GET /ui/assets/{file}`.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == file) {
        Some(i) if i > 0 => serve(i, &headers),
        _ => crate::error::HttpError(ApiError::not_found(format!(
            "the dashboard has no asset {file:?}"
        )))
        .into_response(),
    }
}

/// Body of `POST /ui/login`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub token: String,
}

/// What the page knows of its session (`POST /ui/login`, `GET /ui/session`).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub token_id: String,
    pub role: String,
    /// Seconds since the Unix epoch; the cookie expires then too.
    pub expires_at: u64,
    /// Sent back in the `X-Orion-CSRF` header on every write.
    pub csrf: String,
}

/// Longest token accepted at login, in bytes.
const MAX_TOKEN_LEN: usize = 4096;

/// `POST /ui/login`: exchanges an API token for a session cookie. The page must
/// send the CSRF header (any value) so a cross-site form cannot log a browser in.
pub async fn login(
    State(tokens): State<Tokens>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Login>,
) -> HttpResult<Response> {
    if !headers.contains_key(session::CSRF_HEADER) {
        return Err(ApiError::denied(format!(
            "logging in from a page needs the {} header",
            session::CSRF_HEADER
        ))
        .into());
    }
    let tok = body.token.trim();
    if tok.len() > MAX_TOKEN_LEN {
        return Err(ApiError::invalid(format!(
            "the token is {} bytes; tokens are at most {MAX_TOKEN_LEN}",
            tok.len()
        ))
        .into());
    }
    let claims = tokens.verify(tok).await?;
    if claims.role.is_join() {
        return Err(ApiError::denied(
            "a join token cannot log in to the dashboard; use an admin, developer or readonly token",
        )
        .into());
    }
    let key = tokens.security.token_key()?;
    let max_age = claims.exp.saturating_sub(token::now());
    let cookie = session::set_cookie(tok, max_age)
        .ok_or_else(|| ApiError::invalid("the token holds characters a cookie cannot"))?;
    let info = SessionInfo {
        csrf: token::csrf_token(&claims.id, &key),
        token_id: claims.id,
        role: claims.role.as_str().to_string(),
        expires_at: claims.exp,
    };
    let mut resp = Json(info).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `POST /ui/logout`: ends this browser's session (the token stays valid).
pub async fn logout() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    resp
}

/// `GET /ui/session`: who the session is, and its CSRF token (after a reload).
pub async fn current(
    State(tokens): State<Tokens>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let Caller::Token { id, role } = caller else {
        return Err(ApiError::unauthenticated("the dashboard needs a token session").into());
    };
    let expires_at = session::cookie_token(&headers)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
        })
        .and_then(|t| token::peek(&t).ok())
        .map_or(0, |c| c.exp);
    let key = tokens.security.token_key()?;
    let mut resp = Json(SessionInfo {
        csrf: token::csrf_token(&id, &key),
        token_id: id,
        role: role.as_str().to_string(),
        expires_at,
    })
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_carry_their_security_headers_and_revalidate() {
        let resp = serve(1, &HeaderMap::new());
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().expect("csp");
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let etag = h[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve(1, &again).status(), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn the_page_has_no_inline_script_or_remote_asset() {
        let html = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        assert!(!html.contains("<script>"), "inline script");
        assert!(!html.contains("style="), "inline style");
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.body).replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{}",
                a.name
            );
        }
    }
}
