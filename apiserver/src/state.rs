//! The router's state: the peer's parts, each owned by the module that keeps it,
//! put side by side. A handler extracts only the parts it uses
//! (`State<Arc<Forwarder>>`, `State<RaftNode>`, ...), through the [`FromRef`]
//! impls here; no handler sees the whole.
//!
//! | part | owner | what it is |
//! |---|---|---|
//! | [`RaftNode`] | `orion_raft` | the Raft node and its state machine's reader |
//! | [`Forwarder`] | `forward.rs` | the way to the leader, held through elections |
//! | [`Security`], [`PeerCreds`] | `security.rs` | this peer's credentials, the replicated CA and token keys |
//! | [`Tokens`] | `auth.rs` | checking bearer tokens |
//! | [`AgentRegistry`] | `gateway/registry.rs` | what connected agents report, and their connections |
//! | [`Unplaced`] | `controllers/replicas.rs` | replicas no node can take now |
//! | [`Sessions`], [`AgentStreams`] | `api/streams.rs` | the bound on log and exec relays; what a relay takes |
//! | [`StaleReads`] | `api/variables.rs` | `debug-stale-reads` |
//! | [`Draining`] | `https.rs` | cancelled when the API stops accepting |
//! | [`PeerIdentity`] | `server.rs` | this peer as it advertises itself |
//! | [`PeerMetrics`] | `metrics.rs` | the peer's metrics registry |

use std::sync::Arc;

use axum::extract::FromRef;
use orion_api::PeerIdentity;
use orion_raft::RaftNode;

use crate::api::streams::{AgentStreams, Sessions};
use crate::api::variables::StaleReads;
use crate::auth::Tokens;
use crate::controllers::replicas::Unplaced;
use crate::forward::Forwarder;
use crate::gateway::registry::AgentRegistry;
use crate::https::Draining;
use crate::metrics::PeerMetrics;
use crate::security::{PeerCreds, Security};

#[derive(Clone)]
pub struct AppState {
    pub node: RaftNode,
    pub leader: Arc<Forwarder>,
    pub security: Arc<Security>,
    pub agents: Arc<AgentRegistry>,
    pub unplaced: Arc<Unplaced>,
    pub sessions: Sessions,
    pub stale_reads: StaleReads,
    pub draining: Draining,
    pub me: PeerIdentity,
    pub metrics: Arc<PeerMetrics>,
}

impl AppState {
    /// The token checker the auth middleware and `POST /v1/join` use.
    pub fn tokens(&self) -> Tokens {
        Tokens {
            security: self.security.clone(),
            leader: self.leader.clone(),
        }
    }
}

macro_rules! part {
    ($ty:ty, |$s:ident| $get:expr) => {
        impl FromRef<AppState> for $ty {
            fn from_ref($s: &AppState) -> Self {
                $get
            }
        }
    };
}

part!(RaftNode, |s| s.node.clone());
part!(Arc<Forwarder>, |s| s.leader.clone());
part!(Arc<Security>, |s| s.security.clone());
part!(Arc<PeerCreds>, |s| s.security.creds().clone());
part!(Tokens, |s| s.tokens());
part!(Arc<AgentRegistry>, |s| s.agents.clone());
part!(Arc<Unplaced>, |s| s.unplaced.clone());
part!(AgentStreams, |s| AgentStreams {
    node: s.node.clone(),
    agents: s.agents.clone(),
    sessions: s.sessions.clone(),
    metrics: s.metrics.clone(),
});
part!(StaleReads, |s| s.stale_reads);
part!(Draining, |s| s.draining.clone());
part!(PeerIdentity, |s| s.me.clone());
part!(Arc<PeerMetrics>, |s| s.metrics.clone());
