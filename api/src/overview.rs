//! `GET /v1/overview`: everything the dashboard's first view needs, in one answer.
//!
//! The replicated lists are read from one point-in-time view of the state, so they
//! agree with each other and with `revision`: a client watches from `revision + 1`
//! and misses nothing. What only the leader holds in memory (agent reports, usage,
//! unplaced replicas, members' replication progress) is added by the leader when
//! the call reaches it. Every list is bounded: services, nodes and replicas are all
//! of them (as `GET /v1/services`, `/v1/nodes` and `/v1/replicas` answer; at most
//! [`crate::spec::MAX_REPLICAS`] replicas per service), variables the first
//! [`OVERVIEW_VARIABLES`] by path (`variables_next` continues them through
//! `GET /v1/variables?start_after=`), events the last [`OVERVIEW_EVENTS`] of the
//! watch window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent_proto::{NodeUsage, ReplicaReport};
use crate::cluster::{ClusterStatus, MembersResponse};
use crate::event::Event;
use crate::variable::Variable;
use crate::workload::{NodeObject, ReplicaObject, ServiceObject, UnplacedReplicas};

/// Variables an overview carries at most (the first by path).
pub const OVERVIEW_VARIABLES: usize = 1_000;

/// Events an overview carries at most (the most recent).
pub const OVERVIEW_EVENTS: usize = 200;

/// The answer of `GET /v1/overview`; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Overview {
    /// The revision every list below was read at: watch from `revision + 1`.
    pub revision: u64,
    pub services: Vec<ServiceObject>,
    pub nodes: Vec<NodeObject>,
    /// The latest heartbeat usage per node (from the leader).
    #[schema(value_type = Object)]
    pub usage: BTreeMap<String, NodeUsage>,
    pub replicas: Vec<ReplicaObject>,
    /// What the agents last reported, by replica id (from the leader).
    #[schema(value_type = Object)]
    pub observed: BTreeMap<String, ReplicaReport>,
    /// Replicas no node can take now (from the leader).
    pub unplaced: Vec<UnplacedReplicas>,
    /// The first [`OVERVIEW_VARIABLES`] variables by path; secret values are
    /// redacted for a `readonly` caller, as `GET /v1/variables` does.
    pub variables: Vec<Variable>,
    /// Set when the variables were cut: pass it to `GET /v1/variables` as
    /// `start_after` for the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables_next: Option<String>,
    /// The last [`OVERVIEW_EVENTS`] events of the watch window, oldest first.
    pub events: Vec<Event>,
    /// The control-plane members with their replication progress (the leader's view).
    pub members: MembersResponse,
    /// The view of the peer the caller asked (not the leader it relayed to).
    pub status: ClusterStatus,
}
