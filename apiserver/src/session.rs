//! Browser sessions of the dashboard: the session cookie and the CSRF header.
//!
//! The cookie carries the API token itself (`HttpOnly`, `Secure`,
//! `SameSite=Strict`, expiring with the token), so a session is self-contained:
//! any peer, behind any load balancer, checks it exactly as it checks a bearer
//! token — signature, expiry and the replicated record, so a revoked token ends
//! its sessions on every peer at once. Nothing is kept per session.
//!
//! Writes authenticated by the cookie must carry the CSRF header
//! ([`CSRF_HEADER`]) with the session's CSRF token
//! ([`orion_tls::token::csrf_token`]: an HMAC of the token id under the cluster's
//! token key), and an `Origin`, when sent, must be the page's own. A cross-site
//! form can neither set a header nor read the value; a cross-site `fetch` with a
//! custom header needs a CORS preflight, which no route answers.

use axum::http::{header, HeaderMap, HeaderValue};

/// The session cookie's name.
pub const COOKIE: &str = "orion_session";

/// The header a page sends its CSRF token in on every write.
pub const CSRF_HEADER: &str = "x-orion-csrf";

/// Longest `Cookie` header looked at, in bytes (a token is a few hundred).
const MAX_COOKIE_HEADER: usize = 8 * 1024;

/// The token in the session cookie, if the request has one.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter(|v| v.len() <= MAX_COOKIE_HEADER)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that starts a session holding `token` for `max_age_secs`.
pub fn set_cookie(token: &str, max_age_secs: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict"
    ))
    .ok()
}

/// The `Set-Cookie` value that ends the session.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("orion_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// Whether the request's `Origin`, when it has one, is the host it was sent to
/// (`Host`, or the URI's authority under HTTP/2). Browsers send `Origin` on every
/// cross-site write; a same-site one matches the host.
pub fn origin_matches_host(headers: &HeaderMap, authority: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(authority);
    let Some(host) = host else {
        return false;
    };
    origin
        .to_str()
        .ok()
        .and_then(|o| o.strip_prefix("https://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; orion_session=orion.abc.def; b=2")]);
        assert_eq!(cookie_token(&h).as_deref(), Some("orion.abc.def"));
        assert_eq!(cookie_token(&headers(&[("cookie", "a=1")])), None);
        assert_eq!(
            cookie_token(&headers(&[("cookie", "orion_session=")])),
            None
        );
    }

    #[test]
    fn the_cookie_is_locked_down() {
        let v = set_cookie("orion.x.y", 60).expect("cookie");
        let v = v.to_str().expect("text");
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Max-Age=60",
            "Path=/",
        ] {
            assert!(v.contains(part), "{v}");
        }
    }

    #[test]
    fn a_foreign_origin_is_refused() {
        let same = headers(&[
            ("host", "10.0.0.1:8443"),
            ("origin", "https://10.0.0.1:8443"),
        ]);
        assert!(origin_matches_host(&same, None));
        let other = headers(&[
            ("host", "10.0.0.1:8443"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!origin_matches_host(&other, None));
        let plain = headers(&[
            ("host", "10.0.0.1:8443"),
            ("origin", "http://10.0.0.1:8443"),
        ]);
        assert!(!origin_matches_host(&plain, None));
        assert!(origin_matches_host(&headers(&[("host", "h")]), None));
        let h2 = headers(&[("origin", "https://10.0.0.1:8443")]);
        assert!(origin_matches_host(&h2, Some("10.0.0.1:8443")));
        assert!(!origin_matches_host(&h2, None));
    }
}
