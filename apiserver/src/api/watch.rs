//! `GET /v1/watch?from=POS&prefix=P`: changes as server-sent events, resumable.
//!
//! Each event's SSE `id` is its cursor `REV.SEQ` (the `seq`-th change of the write at
//! revision `REV`). A client resumes with `from=` its last cursor, or by sending it
//! as `Last-Event-ID` (what a browser `EventSource` does by itself on reconnect; the
//! header wins over `from`), and gets every later event exactly once, in order.
//! `from=REV` starts at the first event of revision `REV`; `from=0` at the oldest
//! event still kept. Without either, the watch starts after the current revision.
//! A position whose later events have left the window is refused with `410` and
//! code `relist_required`, before the stream starts or as an `error` event that ends
//! it: the client lists again and watches from the list's revision. Events are read
//! from this peer's applied state, so any peer serves a watch, leader or not.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use orion_api::{ApiError, ErrorCode, Event, WatchStart};
use orion_raft::read::{self, ReadError};
use orion_raft::RaftNode;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::error::HttpResult;
use crate::https::Draining;

/// Events read from storage per round.
const BATCH: usize = 512;

/// The SSE header a reconnecting `EventSource` sends with the last `id` it saw.
const LAST_EVENT_ID: &str = "last-event-id";

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchParams {
    /// `REV` or `REV.SEQ`; see the module docs.
    #[param(pattern = r"^[0-9]{1,19}(\.[0-9]{1,9})?$")]
    pub from: Option<String>,
    /// Only keys that start with this.
    #[serde(default)]
    pub prefix: String,
    /// End the stream after this many seconds (Kubernetes' `timeoutSeconds`);
    /// without it the stream runs until the client or the peer stops.
    #[param(minimum = 1, maximum = 86400)]
    pub timeout_seconds: Option<u64>,
}

/// Longest `timeout_seconds` a watch takes: one day.
const MAX_WATCH_SECONDS: u64 = 86_400;

fn read_error(e: ReadError) -> ApiError {
    match e {
        ReadError::Compacted { .. } => ApiError::new(ErrorCode::RelistRequired, e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

/// Where the watch starts: `Last-Event-ID`, else `from`, else `None` (now).
fn requested_start(
    headers: &HeaderMap,
    params: &WatchParams,
) -> Result<Option<WatchStart>, ApiError> {
    // An empty header is no position: a browser sends none until it saw an id.
    let given = headers
        .get(LAST_EVENT_ID)
        .filter(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace));
    if let Some(value) = given {
        let text = value
            .to_str()
            .map_err(|_| ApiError::invalid("the Last-Event-ID header is not text"))?;
        let cursor = text
            .trim()
            .parse::<orion_api::EventCursor>()
            .map_err(|m| ApiError::invalid(format!("the Last-Event-ID header: {m}")))?;
        return Ok(Some(WatchStart::After(cursor)));
    }
    params
        .from
        .as_deref()
        .map(|from| {
            from.parse::<WatchStart>()
                .map_err(|m| ApiError::invalid(format!("from: {m}")))
        })
        .transpose()
}

struct Cursor {
    node: RaftNode,
    /// Cancelled when the API stops: the stream ends.
    draining: CancellationToken,
    /// What to read next: after the last event sent, once one was.
    next: WatchStart,
    prefix: String,
    /// The stream has sent its last item.
    ended: bool,
    metrics: tokio::sync::watch::Receiver<orion_raft::types::RaftMetrics>,
}

impl Cursor {
    /// The next batch of matching events, waiting for new ones when caught up.
    /// `None` ends the stream (shutdown, or the window moved past us).
    async fn next_batch(&mut self) -> Option<Vec<SseEvent>> {
        loop {
            let next = self.next;
            let events = self.node.reader.with_view(|v| read::events(v, next, BATCH));
            match events {
                Ok(events) if !events.is_empty() => {
                    if let Some(last) = events.last() {
                        self.next = WatchStart::After(last.cursor());
                    }
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
                        () = self.draining.cancelled() => return None,
                    }
                }
                Err(e) => {
                    // Report once, then end the stream: the window moved past this watcher.
                    self.ended = true;
                    let body = serde_json::to_string(&orion_api::ErrorBody {
                        error: read_error(e),
                    })
                    .unwrap_or_default();
                    return Some(vec![SseEvent::default().event("error").data(body)]);
                }
            }
        }
    }
}

fn position_text(start: WatchStart) -> String {
    match start {
        WatchStart::Revision(r) => format!("revision {r}"),
        WatchStart::After(c) => format!("after {c}"),
    }
}

fn to_sse(e: Event) -> SseEvent {
    SseEvent::default()
        .id(e.cursor().to_string())
        .event(match e.kind {
            orion_api::EventKind::Put => "put",
            orion_api::EventKind::Delete => "delete",
        })
        .data(serde_json::to_string(&e).unwrap_or_default())
}

pub async fn watch(
    State(node): State<RaftNode>,
    State(Draining(draining)): State<Draining>,
    headers: HeaderMap,
    Query(params): Query<WatchParams>,
) -> HttpResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let timeout = match params.timeout_seconds {
        None => None,
        Some(s) if (1..=MAX_WATCH_SECONDS).contains(&s) => Some(Duration::from_secs(s)),
        Some(s) => {
            return Err(ApiError::invalid(format!(
                "timeout_seconds is {s}; it must be between 1 and {MAX_WATCH_SECONDS}"
            ))
            .into())
        }
    };
    let start = match requested_start(&headers, &params)? {
        Some(start) => start,
        None => {
            let current = node
                .reader
                .with_view(|v| v.last_applied_index())
                .map_err(|e| ApiError::internal(e.to_string()))?;
            WatchStart::Revision(current.saturating_add(1))
        }
    };
    // Refuse a compacted start up front, with a status code, rather than mid-stream.
    node.reader
        .with_view(|v| read::events(v, start, 1))
        .map_err(read_error)?;
    // A comment first, so a client knows at once that it is connected (a browser
    // ignores it).
    let hello = SseEvent::default().comment(format!("watching from {}", position_text(start)));
    let cursor = Cursor {
        metrics: node.raft.metrics(),
        node,
        draining,
        next: start,
        prefix: params.prefix,
        ended: false,
    };
    let events = stream::unfold(cursor, |mut cursor| async move {
        if cursor.ended {
            return None;
        }
        cursor.next_batch().await.map(|batch| (batch, cursor))
    })
    .flat_map(|batch| stream::iter(batch.into_iter().map(Ok)));
    let events = stream::once(async move { Ok(hello) })
        .chain(events)
        .take_until(async move {
            match timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of this kind (`Service`, `Replica`, `Node`, `Variable`).
    pub resource: Option<String>,
    /// Only events whose key starts with this.
    #[serde(default)]
    pub prefix: String,
    /// At most this many, the newest (50 when absent).
    #[serde(default = "default_limit")]
    #[param(minimum = 0, maximum = 1000)]
    pub limit: usize,
}

/// Most events `GET /v1/events` returns.
const MAX_RECENT: usize = 1_000;

fn default_limit() -> usize {
    50
}

/// `GET /v1/events`: the most recent matching events still in the window, oldest first.
pub async fn recent(
    State(node): State<RaftNode>,
    Query(q): Query<EventQuery>,
) -> HttpResult<axum::Json<Vec<Event>>> {
    if q.limit > MAX_RECENT {
        return Err(ApiError::invalid(format!(
            "limit is {}; it must be at most {MAX_RECENT}",
            q.limit
        ))
        .into());
    }
    let all = node
        .reader
        .with_view(|v| read::events(v, WatchStart::Revision(0), usize::MAX))
        .map_err(read_error)?;
    let mut matching: Vec<Event> = all
        .into_iter()
        .filter(|e| q.resource.as_deref().is_none_or(|r| e.resource == r))
        .filter(|e| e.key.starts_with(&q.prefix))
        .collect();
    let keep = q.limit;
    if matching.len() > keep {
        matching.drain(..matching.len() - keep);
    }
    Ok(axum::Json(matching))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by schemathesis: an empty `Last-Event-ID` was a 400; it is no position.
    #[test]
    fn an_empty_last_event_id_is_no_position() {
        let mut headers = HeaderMap::new();
        headers.insert(LAST_EVENT_ID, axum::http::HeaderValue::from_static(""));
        let params = WatchParams::default();
        assert_eq!(requested_start(&headers, &params), Ok(None));
        headers.insert(LAST_EVENT_ID, axum::http::HeaderValue::from_static("7.2"));
        assert_eq!(
            requested_start(&headers, &params),
            Ok(Some(WatchStart::After(orion_api::EventCursor {
                revision: 7,
                seq: 2
            })))
        );
        headers.insert(LAST_EVENT_ID, axum::http::HeaderValue::from_static("x"));
        assert!(requested_start(&headers, &params).is_err());
    }
}
