//! What the handlers share: the `?stale=` parameter of reads, the freshness
//! barrier it skips, and the errors of reading the state machine.

use orion_api::ApiError;
use orion_raft::command::Applied;
use orion_raft::RaftNode;
use orion_store::View;
use serde::Deserialize;

use crate::forward::Forwarder;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Answer from this peer without a leader round trip.
    #[serde(default)]
    pub stale: bool,
}

/// Makes this peer's state fresh enough for a linearizable read, unless the
/// caller asked for a stale one.
pub async fn fresh(leader: &Forwarder, stale: bool) -> Result<(), ApiError> {
    if stale {
        Ok(())
    } else {
        leader.linearizable_barrier().await
    }
}

pub fn storage(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("reading the state machine failed: {e}"))
}

pub fn unexpected_apply(applied: &Applied) -> ApiError {
    ApiError::internal(format!("unexpected apply result {applied:?}"))
}

/// Reads one consistent view of this peer's state machine: the revision it is at
/// (its last applied index) and what `read` finds in it, so a list or an object
/// and its revision always agree.
pub fn read_view<T, E: std::fmt::Display>(
    node: &RaftNode,
    read: impl FnOnce(&View<'_>) -> Result<T, E>,
) -> Result<(u64, T), ApiError> {
    node.reader.with_view(|view| {
        let revision = view.last_applied_index().map_err(storage)?;
        Ok((revision, read(view).map_err(storage)?))
    })
}
