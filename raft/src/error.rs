//! What this crate's calls fail with. Nothing here is HTTP-shaped: the apiserver
//! decides which status and error code each case becomes.

use openraft::error::{ChangeMembershipError, Fatal, InitializeError, RaftError};

use crate::read::ReadError;
use crate::types::{Member, NodeId};

/// Starting or running a peer failed: storage, settings or Raft itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage: {0}")]
    Store(#[from] orion_store::Error),
    #[error(transparent)]
    Settings(#[from] InvalidSettings),
    #[error("raft settings: {0}")]
    Config(Box<openraft::ConfigError>),
    #[error("raft stopped: {0}")]
    Fatal(Box<Fatal<NodeId>>),
    /// A metric could not be made or registered (a bug: a bad name, or registered twice).
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("initializing the cluster: {0}")]
    Initialize(Box<RaftError<NodeId, InitializeError<NodeId, Member>>>),
}

impl From<Fatal<NodeId>> for Error {
    fn from(e: Fatal<NodeId>) -> Self {
        Error::Fatal(Box::new(e))
    }
}

impl From<openraft::ConfigError> for Error {
    fn from(e: openraft::ConfigError) -> Self {
        Error::Config(Box::new(e))
    }
}

impl From<RaftError<NodeId, InitializeError<NodeId, Member>>> for Error {
    fn from(e: RaftError<NodeId, InitializeError<NodeId, Member>>) -> Self {
        Error::Initialize(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A `[raft]` setting out of range; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSettings(pub String);

/// Why a leader-only operation could not be done here.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// This peer is not the leader; the leader it knows of, if any.
    #[error("not the leader")]
    NotLeader { leader: Option<(NodeId, Member)> },
    /// Another membership change is still in progress; try again shortly.
    #[error("another membership change is in progress")]
    Busy,
    /// The membership change was understood and refused.
    #[error(transparent)]
    Rejected(#[from] MembershipRefusal),
    /// A leadership transfer was refused or did not complete.
    #[error(transparent)]
    Transfer(#[from] TransferRefusal),
    /// Raft is shutting down, or broken.
    #[error("raft: {0}")]
    Fatal(Box<FatalError>),
}

impl From<FatalError> for LeaderError {
    fn from(e: FatalError) -> Self {
        LeaderError::Fatal(Box::new(e))
    }
}

/// Raft or its state machine cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    #[error("{0}")]
    Raft(#[from] Fatal<NodeId>),
    #[error("{0}")]
    Read(#[from] ReadError),
}

/// Why a membership change was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipRefusal {
    #[error("member id {id} is already in use by {by}; ids are never reused")]
    IdInUse { id: NodeId, by: Member },
    #[error("member id {id} belonged to a removed peer; ids are never reused")]
    IdRetired { id: NodeId },
    #[error("another member already uses an address of this peer ({other})")]
    AddressTaken { other: Member },
    #[error("member {other} already uses an address of member {id} ({member})")]
    AddressOfOther {
        other: NodeId,
        id: NodeId,
        member: Member,
    },
    #[error("no member with id {id}")]
    UnknownMember { id: NodeId },
    #[error("member {id} is the last voter; removing it would leave no cluster")]
    LastVoter { id: NodeId },
    #[error("membership change refused: {0}")]
    Refused(Box<ChangeMembershipError<NodeId>>),
}

impl MembershipRefusal {
    /// Whether the refusal is a conflict with the current membership (an id or an
    /// address already taken), rather than a request that names nothing there or
    /// asks for something impossible.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            MembershipRefusal::IdInUse { .. }
                | MembershipRefusal::IdRetired { .. }
                | MembershipRefusal::AddressTaken { .. }
                | MembershipRefusal::AddressOfOther { .. }
        )
    }
}

/// Why a leadership transfer was refused or did not complete. Every case but
/// [`TransferRefusal::NotWon`] changed nothing; after each one writes go on.
#[derive(Debug, thiserror::Error)]
pub enum TransferRefusal {
    #[error("member {id} is the leader already; name another voter")]
    ToSelf { id: NodeId },
    #[error("no member with id {id}")]
    UnknownMember { id: NodeId },
    #[error("member {id} is a learner; leadership can only go to a voter")]
    NotVoter { id: NodeId },
    #[error("member {id} has not answered the leader recently; leadership can only go to a reachable voter")]
    Unreachable { id: NodeId },
    #[error("no other voter is reachable; there is nobody to hand leadership to")]
    NoCandidate,
    #[error(
        "writes or a membership change in flight did not finish within {ms} ms; nothing changed"
    )]
    InFlight { ms: u64 },
    #[error("member {id} did not catch up with the log within {ms} ms (it has {matched} of {last}); nothing changed")]
    Behind {
        id: NodeId,
        matched: u64,
        last: u64,
        ms: u64,
    },
    #[error(
        "member {id} runs an orion without leadership transfer (peer protocol 1); upgrade it first"
    )]
    TooOld { id: NodeId },
    #[error("member {id} refused to start an election: {reason}; nothing changed")]
    Refused { id: NodeId, reason: String },
    #[error("member {id} did not win the election within {ms} ms; the leader is now {}; writes go on", leader.map_or("not known yet".to_string(), |l| format!("member {l}")))]
    NotWon {
        id: NodeId,
        ms: u64,
        leader: Option<NodeId>,
    },
}

impl TransferRefusal {
    /// Whether the request named something that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TransferRefusal::UnknownMember { .. })
    }
}
