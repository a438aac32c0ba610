//! The command set: every change to the replicated state is one of these.

use orion_api::security::TokenRecord;
use orion_api::spec::Resource;
use orion_api::{
    ApiError, ApplyResult, ErrorCode, NodeObject, ReplicaObject, ServiceObject, Variable,
};
use serde::{Deserialize, Serialize};

/// A write, as appended to the Raft log. Validated before it is proposed and again
/// in apply, so a bad command can never change state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Create or replace a variable; with `expected_revision`, only if its
    /// `mod_revision` matches (`0`: only if absent).
    PutVariable {
        path: String,
        value: String,
        expected_revision: Option<u64>,
        #[serde(default)]
        secret: bool,
    },
    /// Delete a variable; with `expected_revision`, only if its `mod_revision` matches.
    DeleteVariable {
        path: String,
        expected_revision: Option<u64>,
    },
    /// Record that a member id was removed, so it is never used again.
    RetireMember { id: u64 },
    /// Create or update workload resources, all in this one entry or none.
    ApplyResources { resources: Vec<Resource> },
    /// Delete a service by name.
    DeleteService { name: String },
    /// Record the cluster CA and the token signing key. The first recorded stays;
    /// later ones are ignored.
    SetClusterCa {
        cert_pem: String,
        key_pem: String,
        token_key: String,
    },
    /// Record a newly minted token (its id, role and expiry; never the token).
    PutToken { record: TokenRecord },
    /// Revoke a token: from the apply on, no peer accepts it.
    RevokeToken { id: String },
    /// Spend a single-use join token; refused if it was used, revoked or expired
    /// at `now` (seconds since the epoch, from the proposer, so apply stays
    /// deterministic).
    UseToken { id: String, now: u64 },
    /// Register or update a node.
    UpsertNode { node: NodeObject },
    /// The replica controller's decisions: place new replicas, remove old ones.
    /// Idempotent: placing an existing replica or removing a missing one is a no-op.
    ReconcileReplicas {
        place: Vec<ReplicaObject>,
        remove: Vec<(String, u32)>,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// The variable after a put.
    Put(Variable),
    /// The variable as it was before a delete.
    Deleted(Variable),
    /// What applying each resource did, in request order.
    Resources(Vec<ApplyResult>),
    /// The service as it was before a delete.
    DeletedService(Box<ServiceObject>),
    /// A command with no object result.
    Done,
}

/// Why apply refused a command. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError {
            code: r.code,
            message: r.message,
            current_revision: r.current_revision,
            leader_hint: None,
        }
    }
}

/// The result of applying one log entry, returned to the client that proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The log index of the entry: the cluster revision of this write.
    pub revision: u64,
    pub outcome: Result<Applied, Rejection>,
}

/// Longest request id the log accepts, in bytes (a client key of at most 128 bytes
/// plus the caller it is scoped by).
pub const MAX_REQUEST_ID_LEN: usize = 256;

/// A client request id: names one logical write, so that sending it again (after a
/// lost answer or a leader change) applies it once. Clients send it as the
/// `Idempotency-Key` header; the first peer makes one up when a client sends none.
/// 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII characters, no quote or backslash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    /// Checks `id`; the error says what is wrong with it.
    pub fn parse(id: &str) -> Result<Self, String> {
        if id.is_empty() {
            return Err("the request id is empty".into());
        }
        if id.len() > MAX_REQUEST_ID_LEN {
            return Err(format!(
                "the request id is {} bytes long; the limit is {MAX_REQUEST_ID_LEN}",
                id.len()
            ));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !c.is_ascii_graphic() || *c == '"' || *c == '\\')
        {
            return Err(format!(
                "the request id holds {bad:?}; only visible ASCII characters other than \
                 '\"' and '\\' are allowed"
            ));
        }
        Ok(RequestId(id.to_string()))
    }

    /// A new random id (128 bits, hex), for a write whose client sent none.
    pub fn random() -> Self {
        RequestId(format!("{:032x}", rand::random::<u128>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RequestId::parse(&s)
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> Self {
        id.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a log entry carries: a [`Command`] and, for writes a client may retry, the
/// request id that makes the retry apply once (see [`crate::session`]).
///
/// Entries written before request ids existed hold a bare [`Command`]; they still
/// decode, as a proposal without an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ProposalWire")]
pub struct Proposal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub command: Command,
}

impl Proposal {
    pub fn new(request_id: RequestId, command: Command) -> Self {
        Proposal {
            request_id: Some(request_id),
            command,
        }
    }
}

impl From<Command> for Proposal {
    /// A proposal no client will retry (no request id).
    fn from(command: Command) -> Self {
        Proposal {
            request_id: None,
            command,
        }
    }
}

/// The two shapes of a log entry's payload: the envelope, or a bare command from
/// before request ids. A command never has a field named `command`, so the two
/// cannot be confused.
#[derive(Deserialize)]
#[serde(untagged)]
enum ProposalWire {
    Envelope {
        #[serde(default)]
        request_id: Option<RequestId>,
        command: Command,
    },
    Bare(Command),
}

impl From<ProposalWire> for Proposal {
    fn from(w: ProposalWire) -> Self {
        match w {
            ProposalWire::Envelope {
                request_id,
                command,
            } => Proposal {
                request_id,
                command,
            },
            ProposalWire::Bare(command) => command.into(),
        }
    }
}
