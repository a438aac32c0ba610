//! Who is calling: the identity the auth middleware (`auth.rs`) established
//! for a request, handed to handlers as a request extension.

use orion_tls::{Identity, TokenRole};

/// The caller, as the middleware established it; handlers may read it.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    Token { id: String, role: TokenRole },
    Cert(Identity),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Anonymous => write!(f, "anonymous"),
            Caller::Token { id, role } => write!(f, "token {id} ({})", role.as_str()),
            Caller::Cert(id) => write!(f, "{id}"),
        }
    }
}
