//! `GET /v1/watch?from=REV&prefix=P`: changes as server-sent events, resumable.
//!
//! Each event's SSE `id` is its revision, so a client that reconnects resumes with
//! `from = last id + 1` and misses nothing while the revision is in the window.
//! Without `from`, the watch starts after the current revision. Events are read from
//! this peer's applied state, in revision order.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use orion_api::{ApiError, ErrorCode, Event};
use orion_raft::read::{self, ReadError};
use serde::Deserialize;

use crate::error::HttpResult;
use crate::leader::ClusterRef;

/// Events read from storage per round.
const BATCH: usize = 512;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchParams {
    pub from: Option<u64>,
    #[serde(default)]
    pub prefix: String,
}

fn read_error(e: ReadError) -> ApiError {
    match e {
        ReadError::Compacted { .. } => ApiError::new(ErrorCode::Compacted, e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

struct Cursor {
    cluster: ClusterRef,
    next: u64,
    prefix: String,
    metrics: tokio::sync::watch::Receiver<orion_raft::types::RaftMetrics>,
}

impl Cursor {
    /// The next batch of matching events, waiting for new ones when caught up.
    /// `None` ends the stream (shutdown, or the window moved past us).
    async fn next_batch(&mut self) -> Option<Vec<SseEvent>> {
        loop {
            let next = self.next;
            let events = self
                .cluster
                .node
                .reader
                .with_view(|v| read::events_since(v, next, BATCH));
            match events {
                Ok(events) if !events.is_empty() => {
                    self.next = events.last().map_or(next, |e| e.revision + 1);
                    let out = events
                        .into_iter()
                        .filter(|e: &Event| e.key.starts_with(&self.prefix))
                        .map(to_sse)
                        .collect::<Vec<_>>();
                    if !out.is_empty() {
                        return Some(out);
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        changed = self.metrics.changed() => if changed.is_err() { return None },
                        () = self.cluster.shutdown.cancelled() => return None,
                    }
                }
                Err(e) => {
                    // Report once, then end the stream: the window moved past this watcher.
                    self.next = u64::MAX;
                    let body = serde_json::to_string(&read_error(e)).unwrap_or_default();
                    return Some(vec![SseEvent::default().event("error").data(body)]);
                }
            }
        }
    }
}

fn to_sse(e: Event) -> SseEvent {
    SseEvent::default()
        .id(e.revision.to_string())
        .event(match e.kind {
            orion_api::EventKind::Put => "put",
            orion_api::EventKind::Delete => "delete",
        })
        .data(serde_json::to_string(&e).unwrap_or_default())
}

pub async fn watch(
    State(cluster): State<ClusterRef>,
    Query(params): Query<WatchParams>,
) -> HttpResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let current = cluster
        .node
        .reader
        .with_view(|v| v.last_applied_index())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let from = params.from.unwrap_or(current + 1);
    // Refuse a compacted start up front, with a status code, rather than mid-stream.
    cluster
        .node
        .reader
        .with_view(|v| read::events_since(v, from, 1))
        .map_err(read_error)?;
    let cursor = Cursor {
        metrics: cluster.node.raft.metrics(),
        cluster,
        next: from,
        prefix: params.prefix,
    };
    let events = stream::unfold(cursor, |mut cursor| async move {
        if cursor.next == u64::MAX {
            return None;
        }
        cursor.next_batch().await.map(|batch| (batch, cursor))
    })
    .flat_map(|batch| stream::iter(batch.into_iter().map(Ok)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only events of this kind (`Service`, `Replica`, `Node`, `Variable`).
    pub resource: Option<String>,
    /// Only events whose key starts with this.
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    50
}

/// `GET /v1/events`: the most recent matching events still in the window, oldest first.
pub async fn recent(
    State(cluster): State<ClusterRef>,
    Query(q): Query<EventQuery>,
) -> HttpResult<axum::Json<Vec<Event>>> {
    let all = cluster
        .node
        .reader
        .with_view(|v| read::events_since(v, 0, usize::MAX))
        .map_err(read_error)?;
    let mut matching: Vec<Event> = all
        .into_iter()
        .filter(|e| q.resource.as_deref().is_none_or(|r| e.resource == r))
        .filter(|e| e.key.starts_with(&q.prefix))
        .collect();
    let keep = q.limit.min(1_000);
    if matching.len() > keep {
        matching.drain(..matching.len() - keep);
    }
    Ok(axum::Json(matching))
}
