//! `orion logs`, `orion exec` and `orion restart`: `GET /v1/replicas/{id}/logs`,
//! `POST /v1/replicas/{id}/exec` and `POST /v1/replicas/{id}/restart`.
//!
//! Only the leader holds the agents' connections. It opens a new QUIC stream to the
//! replica's agent for each call, so a busy log never delays the control stream. A
//! follower relays the call to the leader ([`Forwarder::relay`]; once: a relayed
//! call that lands on a non-leader gets 503 rather than bouncing on).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use orion_api::agent_proto::{ExecResult, FrameReader, LogCursor, RestartResult, StreamRequest};
use orion_api::{ApiError, RestartedReplica};
use orion_raft::{read, RaftNode};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{HttpResult, JsonBody};
use crate::forward::Forwarder;
use crate::gateway::open_stream;
use crate::gateway::registry::AgentRegistry;
use crate::https::Draining;
use crate::metrics::PeerMetrics;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Lines of the end of the log to send first (100 when absent).
    /// More than 100000 is 100000.
    #[serde(default = "default_tail")]
    pub tail: u64,
    #[serde(default)]
    pub follow: bool,
    /// One JSON [`orion_api::agent_proto::LogRecord`] per line instead of raw text:
    /// each says how far into its stream's live file the reader is.
    #[serde(default)]
    pub records: bool,
    /// Resume: start after this byte offset of the live `stdout.log` (the last
    /// record's `offset`); given with `stderr_offset`, and then no tail is sent.
    pub stdout_offset: Option<u64>,
    pub stderr_offset: Option<u64>,
}

impl LogParams {
    /// The resume cursor, if both offsets are given; an error if only one is.
    fn cursor(&self) -> Result<Option<LogCursor>, ApiError> {
        match (self.stdout_offset, self.stderr_offset) {
            (None, None) => Ok(None),
            (Some(stdout), Some(stderr)) => Ok(Some(LogCursor { stdout, stderr })),
            _ => Err(ApiError::invalid(
                "stdout_offset and stderr_offset go together: a cursor names both streams",
            )),
        }
    }

    /// The same parameters as a query string, to forward to the leader.
    fn query(&self) -> String {
        let mut q = format!(
            "tail={}&follow={}&records={}",
            self.tail, self.follow, self.records
        );
        if let (Some(o), Some(e)) = (self.stdout_offset, self.stderr_offset) {
            q.push_str(&format!("&stdout_offset={o}&stderr_offset={e}"));
        }
        q
    }
}

fn default_tail() -> u64 {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub command: Vec<String>,
}

/// Log and exec sessions the leader relays at once; more get 429.
pub const MAX_SESSIONS: usize = 64;

/// The bound on log and exec sessions relayed at once.
#[derive(Clone)]
pub struct Sessions(Arc<Semaphore>);

impl Default for Sessions {
    fn default() -> Self {
        Sessions(Arc::new(Semaphore::new(MAX_SESSIONS)))
    }
}

impl Sessions {
    fn permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.0.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                orion_api::ErrorCode::TooManyRequests,
                format!("{MAX_SESSIONS} log and exec sessions are open already; retry later"),
            )
        })
    }
}

/// How long a log or exec call waits for the agent of the replica's node to be
/// connected. Agents find a new leader within a few seconds of an election, so a
/// call right after a failover waits instead of failing.
const AGENT_WAIT: Duration = Duration::from_secs(5);

/// What relaying a session to an agent takes: where replicas are placed, the
/// agents' connections, and the bound on sessions.
#[derive(Clone)]
pub struct AgentStreams {
    pub node: RaftNode,
    pub agents: Arc<AgentRegistry>,
    pub sessions: Sessions,
    /// `orion_log_streams`.
    pub metrics: Arc<PeerMetrics>,
}

impl AgentStreams {
    /// Opens a stream to the agent running replica `id` and sends `request`.
    async fn open(
        &self,
        id: &str,
        request: &StreamRequest,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ApiError> {
        self.open_on(id, request)
            .await
            .map(|(_, send, recv)| (send, recv))
    }

    /// [`AgentStreams::open`], also saying which node the replica is on.
    async fn open_on(
        &self,
        id: &str,
        request: &StreamRequest,
    ) -> Result<(String, quinn::SendStream, quinn::RecvStream), ApiError> {
        let (replicas, jobs) = self
            .node
            .reader
            .with_view(|v| Ok::<_, read::ReadError>((read::replicas(v)?, read::jobs(v)?)))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        // A replica of a service, or a job's task attempt of a run still kept.
        let placed_on = replicas
            .into_iter()
            .find(|r| r.id() == id)
            .map(|r| r.node)
            .or_else(|| {
                jobs.iter().find_map(|j| {
                    j.all_tasks()
                        .find(|(task_id, _, _)| *task_id == id)
                        .and_then(|(_, _, t)| t.node.clone())
                })
            })
            .ok_or_else(|| ApiError::not_found(format!("replica {id:?} does not exist")))?;
        let conn = self
            .agents
            .wait_for_connection(&placed_on, AGENT_WAIT)
            .await
            .ok_or_else(|| {
                ApiError::unavailable(format!(
                    "the agent of node {placed_on:?} is not connected (waited {}s)",
                    AGENT_WAIT.as_secs()
                ))
            })?;
        let (send, recv) = open_stream(&conn, request).await.map_err(|e| {
            ApiError::unavailable(format!("cannot reach the agent of node {placed_on:?}: {e}"))
        })?;
        Ok((placed_on, send, recv))
    }
}

/// `GET /v1/replicas/{id}/logs?tail=N&follow=true`: plain text, one line per line;
/// with `records=true`, one JSON record per line carrying the stream's offset, and
/// `stdout_offset=A&stderr_offset=B` resumes after a record (`orion logs -f` does
/// both, to reconnect through a leader change without losing or repeating a line).
pub async fn logs(
    State(leader): State<Arc<Forwarder>>,
    State(streams): State<AgentStreams>,
    State(Draining(draining)): State<Draining>,
    Path(id): Path<String>,
    Query(params): Query<LogParams>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let from = params.cursor()?;
    let path = format!("/v1/replicas/{id}/logs?{}", params.query());
    if let Some(relayed) = leader.relay(&headers, Method::GET, &path, None).await? {
        return Ok(relayed);
    }
    let request = StreamRequest::Logs {
        replica: id.clone(),
        tail: usize::try_from(params.tail.min(100_000)).unwrap_or(100_000),
        follow: params.follow,
        from,
        records: params.records,
    };
    let permit = streams.sessions.permit()?;
    let (send, recv) = streams.open(&id, &request).await?;
    // The permit (and the stream's count) lives as long as the stream does; `None`
    // once it ended.
    let permit = (permit, streams.metrics.log_stream());
    let state = Some((send, recv, permit, draining));
    let chunks = futures::stream::unfold(state, |state| async move {
        let (send, mut recv, permit, draining) = state?;
        let chunk = tokio::select! {
            c = recv.read_chunk(64 << 10, true) => c,
            // Cut, not ended: the client resumes at another peer.
            () = draining.cancelled() => {
                return Some((Err(std::io::Error::other("this peer is shutting down")), None))
            }
        };
        match chunk {
            Ok(Some(chunk)) => Some((
                Ok::<_, std::io::Error>(chunk.bytes),
                Some((send, recv, permit, draining)),
            )),
            Ok(None) => None,
            // Break the HTTP stream too, so the client knows the log was cut
            // (and may resume) rather than seeing a clean end.
            Err(e) => Some((
                Err(std::io::Error::other(format!(
                    "the agent's log stream broke: {e}"
                ))),
                None,
            )),
        }
    });
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        Body::from_stream(chunks.boxed()),
    )
        .into_response())
}

/// `POST /v1/replicas/{id}/exec` with `{"command": [...]}`.
pub async fn exec(
    State(leader): State<Arc<Forwarder>>,
    State(streams): State<AgentStreams>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ExecRequest>,
) -> HttpResult<Response> {
    if body.command.first().is_none_or(String::is_empty) {
        return Err(ApiError::invalid("command must name a program").into());
    }
    let path = format!("/v1/replicas/{id}/exec");
    let relay_body = serde_json::json!({"command": body.command});
    if let Some(relayed) = leader
        .relay(&headers, Method::POST, &path, Some(relay_body))
        .await?
    {
        return Ok(relayed);
    }
    let request = StreamRequest::Exec {
        replica: id.clone(),
        command: body.command,
        timeout_ms: 0,
        env: Default::default(),
    };
    let _permit = streams.sessions.permit()?;
    let (_send, recv) = streams.open(&id, &request).await?;
    let result = FrameReader::<_, ExecResult>::new(recv)
        .next()
        .await
        .map_err(|e| {
            tracing::warn!(replica = %id, cause = %e, "bad exec answer from the agent");
            ApiError::unavailable(format!("the agent's exec answer: {e}"))
        })?
        .ok_or_else(|| {
            ApiError::unavailable("the agent closed the exec stream without an answer")
        })?;
    if let Some(error) = &result.error {
        return Err(ApiError::invalid(format!("exec in {id}: {error}")).into());
    }
    Ok(Json(result).into_response())
}

/// `POST /v1/replicas/{id}/restart`: the replica's agent stops its process (SIGTERM,
/// SIGKILL after its stop grace) and starts it again, whatever the restart policy
/// (Nomad's `alloc restart`). Answers once the new process runs. An agent older
/// than this request resets the stream: that is a 503 saying so.
pub async fn restart(
    State(leader): State<Arc<Forwarder>>,
    State(streams): State<AgentStreams>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let path = format!("/v1/replicas/{id}/restart");
    if let Some(relayed) = leader.relay(&headers, Method::POST, &path, None).await? {
        return Ok(relayed);
    }
    let request = StreamRequest::Restart {
        replica: id.clone(),
    };
    let _permit = streams.sessions.permit()?;
    let (node, _send, recv) = streams.open_on(&id, &request).await?;
    let older = |cause: String| {
        ApiError::unavailable(format!(
            "the agent of node {node:?} did not answer the restart of {id}: {cause}; \
             an agent older than `orion restart` cannot restart replicas (upgrade it)"
        ))
    };
    let result = FrameReader::<_, RestartResult>::new(recv)
        .next()
        .await
        .map_err(|e| older(e.to_string()))?
        .ok_or_else(|| older("it closed the stream".to_owned()))?;
    if let Some(error) = result.error {
        return Err(ApiError::unavailable(format!("restarting {id}: {error}")).into());
    }
    Ok(Json(RestartedReplica {
        replica: id,
        node,
        pid: result.pid,
        restarts: result.restarts,
    })
    .into_response())
}
