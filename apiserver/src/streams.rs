//! `orion logs` and `orion exec`: `GET /v1/replicas/{id}/logs` and
//! `POST /v1/replicas/{id}/exec`.
//!
//! Only the leader holds the agents' connections. It opens a new QUIC stream to the
//! replica's agent for each call, so a busy log never delays the control stream. A
//! follower proxies the call to the leader (once: a forwarded call that lands on a
//! non-leader gets 503 rather than bouncing on).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use orion_api::agent_proto::{write_frame, ExecResult, FrameReader, LogCursor, StreamRequest};
use orion_api::ApiError;
use orion_raft::read;
use serde::Deserialize;

use crate::error::{HttpResult, JsonBody};
use crate::leader::ClusterRef;

const FORWARDED: &str = "x-orion-forwarded";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    #[serde(default = "default_tail")]
    pub tail: usize,
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

fn default_tail() -> usize {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub command: Vec<String>,
}

/// The leader's API URL for `path_and_query`, or why there is none.
pub(crate) fn leader_url(
    cluster: &ClusterRef,
    headers: &HeaderMap,
    path_and_query: &str,
) -> Result<String, ApiError> {
    if headers.contains_key(FORWARDED) {
        return Err(ApiError::unavailable(
            "leadership moved while the call was forwarded; retry",
        ));
    }
    let (_, member) = cluster
        .node
        .leader()
        .ok_or_else(|| ApiError::unavailable("no leader is known right now; retry"))?;
    Ok(format!("https://{}{path_and_query}", member.api_addr))
}

/// Log and exec sessions the leader relays at once; more get 429.
pub const MAX_SESSIONS: usize = 64;

fn session_permit(cluster: &ClusterRef) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    cluster.sessions.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            orion_api::ErrorCode::TooManyRequests,
            format!("{MAX_SESSIONS} log and exec sessions are open already; retry later"),
        )
    })
}

/// Opens a stream to the agent running replica `id` and sends `request`.
async fn open(
    cluster: &ClusterRef,
    id: &str,
    request: &StreamRequest,
) -> Result<(quinn::SendStream, quinn::RecvStream), ApiError> {
    let node = cluster
        .node
        .reader
        .with_view(read::replicas)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .into_iter()
        .find(|r| r.id() == id)
        .map(|r| r.node)
        .ok_or_else(|| ApiError::not_found(format!("replica {id:?} does not exist")))?;
    let conn = cluster
        .agents
        .lock()
        .ok()
        .and_then(|t| t.conns.get(&node).cloned())
        .ok_or_else(|| {
            ApiError::unavailable(format!("the agent of node {node:?} is not connected"))
        })?;
    let (mut send, recv) = conn.open_bi().await.map_err(|e| {
        ApiError::unavailable(format!("cannot reach the agent of node {node:?}: {e}"))
    })?;
    write_frame(&mut send, request)
        .await
        .map_err(|e| ApiError::unavailable(format!("agent of node {node:?}: {e}")))?;
    Ok((send, recv))
}

/// Sends `req` to the leader with the caller's credentials, so the leader
/// authorizes the original caller, not this peer.
pub(crate) async fn proxied(
    mut req: reqwest::RequestBuilder,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(auth) = headers.get(axum::http::header::AUTHORIZATION) {
        req = req.header(reqwest::header::AUTHORIZATION, auth.as_bytes());
    }
    let resp = req
        .header(FORWARDED, "1")
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("the leader did not answer: {e}")))?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let body = Body::from_stream(resp.bytes_stream());
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response())
}

/// `GET /v1/replicas/{id}/logs?tail=N&follow=true`: plain text, one line per line;
/// with `records=true`, one JSON record per line carrying the stream's offset, and
/// `stdout_offset=A&stderr_offset=B` resumes after a record (`orion logs -f` does
/// both, to reconnect through a leader change without losing or repeating a line).
pub async fn logs(
    State(cluster): State<ClusterRef>,
    Path(id): Path<String>,
    Query(params): Query<LogParams>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    let from = params.cursor()?;
    if !cluster.node.is_leader() {
        let url = leader_url(
            &cluster,
            &headers,
            &format!("/v1/replicas/{id}/logs?{}", params.query()),
        )?;
        return Ok(proxied(cluster.http.get(url), &headers).await?);
    }
    let request = StreamRequest::Logs {
        replica: id.clone(),
        tail: params.tail.min(100_000),
        follow: params.follow,
        from,
        records: params.records,
    };
    let permit = session_permit(&cluster)?;
    let (send, recv) = open(&cluster, &id, &request).await?;
    // The permit lives as long as the stream does; `None` once it ended.
    let chunks = futures::stream::unfold(Some((send, recv, permit)), |state| async move {
        let (send, mut recv, permit) = state?;
        match recv.read_chunk(64 << 10, true).await {
            Ok(Some(chunk)) => Some((
                Ok::<_, std::io::Error>(chunk.bytes),
                Some((send, recv, permit)),
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
    State(cluster): State<ClusterRef>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ExecRequest>,
) -> HttpResult<Response> {
    if body.command.first().is_none_or(String::is_empty) {
        return Err(ApiError::invalid("command must name a program").into());
    }
    if !cluster.node.is_leader() {
        let url = leader_url(&cluster, &headers, &format!("/v1/replicas/{id}/exec"))?;
        let req = cluster
            .http
            .post(url)
            .json(&serde_json::json!({"command": body.command}));
        return Ok(proxied(req, &headers).await?);
    }
    let request = StreamRequest::Exec {
        replica: id.clone(),
        command: body.command,
    };
    let _permit = session_permit(&cluster)?;
    let (_send, recv) = open(&cluster, &id, &request).await?;
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
