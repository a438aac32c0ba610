//! One typed call per REST endpoint: the request and answer types are
//! `orion-api`'s, and the paths and query strings are written here and nowhere
//! else. Reads fail over between the peers; writes are also retried under one
//! request id (see [`crate::rest`]); `exec`, token creation and member addition are
//! sent once.

use std::io::Write;

use orion_api::agent_proto::{ExecResult, LogCursor};
use orion_api::security::{
    CreateToken, CreatedToken, IssuedCert, JoinCertRequest, RevokedToken, TokenList,
};
use orion_api::workload::DrainRequest;
use orion_api::{
    AgentBootstrap, ApplyRequest, ApplyResponse, ClusterStatus, DeleteResponse, DeletedService,
    Event, ExecRequest, JoinRequest, ListResponse, MembersResponse, NodeList, NodeObject, Overview,
    PeerIdentity, PutVariable, ReplicaList, RestartedReplica, RolloutUndo, ServiceList,
    ServiceResponse, TransferRequest, TransferResponse, VariableResponse, WatchStart,
    WriteResponse,
};
use orion_api::{DeletedJob, JobList, JobResponse, StartedRun};
use reqwest::Method;

use crate::rest::{query_value, segment, Stream};
use crate::{Client, ClientError, Result};

/// A change to where a node takes replicas ([`Client::schedule_node`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// No new replicas; those it has stay.
    Cordon,
    /// Takes replicas again; ends a drain.
    Uncordon,
    /// Cordon, and move every replica off within each service's
    /// `max_unavailable`; the rest move at once after `deadline_seconds`.
    Drain { deadline_seconds: u64 },
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed with the leader first (the default).
    #[default]
    Linearizable,
    /// Answered from the peer's own applied state, without a leader round trip
    /// (`?stale=true`).
    Stale,
}

impl Consistency {
    /// [`Consistency::Stale`] if `stale`, as a `--stale` flag says.
    pub fn stale_if(stale: bool) -> Self {
        if stale {
            Consistency::Stale
        } else {
            Consistency::Linearizable
        }
    }
}

/// `GET /v1/variables`: one page of the variables under a prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariableQuery {
    pub prefix: String,
    /// Start after this path (the `next` of the previous page).
    pub start_after: Option<String>,
    /// Page size; the server's default when `None`.
    pub limit: Option<usize>,
    pub consistency: Consistency,
}

/// `GET /v1/events`: the most recent events still in the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events of this kind (`Service`, `Replica`, `Node`, `Variable`).
    pub resource: Option<String>,
    /// Only events whose key starts with this.
    pub prefix: String,
    /// At most this many (the server's default when `None`).
    pub limit: Option<usize>,
}

/// `GET /v1/watch`: changes from a position, of keys under a prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchQuery {
    /// Where to start; after the current revision when `None`.
    pub from: Option<WatchStart>,
    pub prefix: String,
}

/// `GET /v1/replicas/{id}/logs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Lines of the end of the log to send first.
    pub tail: usize,
    /// Keep the stream open for new lines.
    pub follow: bool,
    /// One JSON `LogRecord` per line instead of raw text.
    pub records: bool,
    /// Resume after this cursor (then no tail is sent).
    pub from: Option<LogCursor>,
}

/// A query string, its values percent-encoded.
#[derive(Default)]
struct Query(String);

impl Query {
    fn push(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.0.push(if self.0.is_empty() { '?' } else { '&' });
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&query_value(&value.to_string()));
        self
    }

    fn push_if(self, cond: bool, key: &str, value: impl std::fmt::Display) -> Self {
        if cond {
            self.push(key, value)
        } else {
            self
        }
    }

    fn push_opt(self, key: &str, value: Option<impl std::fmt::Display>) -> Self {
        match value {
            Some(v) => self.push(key, v),
            None => self,
        }
    }

    fn stale(self, consistency: Consistency) -> Self {
        self.push_if(consistency == Consistency::Stale, "stale", true)
    }
}

/// `REV` or `REV.SEQ`, as `from=` takes it.
pub(crate) fn position_text(position: WatchStart) -> String {
    match position {
        WatchStart::Revision(r) => r.to_string(),
        WatchStart::After(c) => c.to_string(),
    }
}

/// One path segment naming `what`, encoded; an empty name is refused here rather
/// than sent as another route.
fn name(what: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(ClientError::Invalid(format!("the {what} is empty")));
    }
    Ok(segment(value))
}

/// A variable's path under `/v1/variables/`, encoded (its `/` kept).
fn variable_path(path: &str) -> Result<String> {
    if path.is_empty() {
        return Err(ClientError::Invalid("the variable path is empty".into()));
    }
    Ok(format!("/v1/variables/{}", query_value(path)))
}

pub(crate) fn variables_path(q: &VariableQuery) -> String {
    let query = Query::default()
        .push("prefix", &q.prefix)
        .push_opt("start_after", q.start_after.as_deref())
        .push_opt("limit", q.limit)
        .stale(q.consistency);
    format!("/v1/variables{}", query.0)
}

pub(crate) fn events_path(q: &EventQuery) -> String {
    let query = Query::default()
        .push_opt("resource", q.resource.as_deref())
        .push_if(!q.prefix.is_empty(), "prefix", &q.prefix)
        .push_opt("limit", q.limit);
    format!("/v1/events{}", query.0)
}

pub(crate) fn watch_path(q: &WatchQuery) -> String {
    let query = Query::default()
        .push_opt("from", q.from.map(position_text))
        .push("prefix", &q.prefix);
    format!("/v1/watch{}", query.0)
}

pub(crate) fn logs_path(id: &str, q: &LogQuery) -> Result<String> {
    let query = Query::default()
        .push("follow", q.follow)
        .push("records", q.records)
        .push("tail", q.tail)
        .push_opt("stdout_offset", q.from.map(|c| c.stdout))
        .push_opt("stderr_offset", q.from.map(|c| c.stderr));
    Ok(format!(
        "/v1/replicas/{}/logs{}",
        name("replica id", id)?,
        query.0
    ))
}

fn stale_path(path: &str, consistency: Consistency) -> String {
    format!("{path}{}", Query::default().stale(consistency).0)
}

/// Variables: `/v1/variables`.
impl Client {
    /// `GET /v1/variables/{path}`. A missing variable is a `404`
    /// ([`ClientError::is_not_found`]).
    pub async fn variable(&self, path: &str, consistency: Consistency) -> Result<VariableResponse> {
        self.get(&stale_path(&variable_path(path)?, consistency))
            .await
    }

    /// `GET /v1/variables?prefix=…`: one page; follow `next` with `start_after`.
    pub async fn variables(&self, query: &VariableQuery) -> Result<ListResponse> {
        self.get(&variables_path(query)).await
    }

    /// `PUT /v1/variables/{path}`: a write, or a compare-and-set when
    /// `expected_revision` is set (`0`: create only). A failed comparison is a `409`.
    pub async fn put_variable(&self, path: &str, body: &PutVariable) -> Result<WriteResponse> {
        self.put(&variable_path(path)?, body).await
    }

    /// `DELETE /v1/variables/{path}`, only at `expected_revision` if given.
    pub async fn delete_variable(
        &self,
        path: &str,
        expected_revision: Option<u64>,
    ) -> Result<DeleteResponse> {
        let query = Query::default().push_opt("expected_revision", expected_revision);
        self.delete(&format!("{}{}", variable_path(path)?, query.0))
            .await
    }
}

/// Workloads: apply, services, nodes, replicas, their logs and exec.
impl Client {
    /// `POST /v1/apply`: every resource of every file in one entry, or none.
    pub async fn apply(&self, request: &ApplyRequest) -> Result<ApplyResponse> {
        self.post_idempotent("/v1/apply", request).await
    }

    /// `GET /v1/services`.
    pub async fn services(&self, consistency: Consistency) -> Result<ServiceList> {
        self.get(&stale_path("/v1/services", consistency)).await
    }

    /// `GET /v1/services/{name}`.
    pub async fn service(
        &self,
        service: &str,
        consistency: Consistency,
    ) -> Result<ServiceResponse> {
        let path = format!("/v1/services/{}", name("service name", service)?);
        self.get(&stale_path(&path, consistency)).await
    }

    /// `DELETE /v1/services/{name}`: the service and, by the controllers, its replicas.
    pub async fn delete_service(&self, service: &str) -> Result<DeletedService> {
        self.delete(&format!("/v1/services/{}", name("service name", service)?))
            .await
    }

    /// `POST /v1/services/{name}/rollout/undo`: restores the previous spec (or the
    /// generation `to`) as a new generation, which then rolls out.
    pub async fn rollout_undo(&self, service: &str, to: Option<u64>) -> Result<ServiceResponse> {
        let path = format!(
            "/v1/services/{}/rollout/undo",
            name("service name", service)?
        );
        self.post_idempotent(&path, &RolloutUndo { to_revision: to })
            .await
    }

    /// `POST /v1/services/{name}/rollout/pause` (`paused`) or `.../resume`.
    pub async fn rollout_pause(&self, service: &str, paused: bool) -> Result<ServiceResponse> {
        let verb = if paused { "pause" } else { "resume" };
        let path = format!(
            "/v1/services/{}/rollout/{verb}",
            name("service name", service)?
        );
        self.post_idempotent(&path, &serde_json::json!({})).await
    }

    /// `GET /v1/jobs`.
    pub async fn jobs(&self, consistency: Consistency) -> Result<JobList> {
        self.get(&stale_path("/v1/jobs", consistency)).await
    }

    /// `GET /v1/jobs/{name}`: the job, its runs, and its next scheduled run.
    pub async fn job(&self, job: &str, consistency: Consistency) -> Result<JobResponse> {
        let path = format!("/v1/jobs/{}", name("job name", job)?);
        self.get(&stale_path(&path, consistency)).await
    }

    /// `DELETE /v1/jobs/{name}`: the job and its runs; running tasks stop.
    pub async fn delete_job(&self, job: &str) -> Result<DeletedJob> {
        self.delete(&format!("/v1/jobs/{}", name("job name", job)?))
            .await
    }

    /// `POST /v1/jobs/{name}/run`: starts a run now; retried under one request
    /// id, so a lost answer never starts a second run.
    pub async fn run_job(&self, job: &str) -> Result<StartedRun> {
        let path = format!("/v1/jobs/{}/run", name("job name", job)?);
        self.post_idempotent(&path, &serde_json::json!({})).await
    }

    /// `GET /v1/nodes`, with the usage their agents report.
    pub async fn nodes(&self, consistency: Consistency) -> Result<NodeList> {
        self.get(&stale_path("/v1/nodes", consistency)).await
    }

    /// `PUT /v1/nodes/{name}`: registers or updates `node` by hand (admin).
    pub async fn put_node(&self, node: &NodeObject) -> Result<NodeObject> {
        self.put(
            &format!("/v1/nodes/{}", name("node name", &node.name)?),
            node,
        )
        .await
    }

    /// `POST /v1/nodes/{name}/cordon|uncordon|drain` (admin): `action` is one of
    /// those three; `drain` takes a deadline.
    pub async fn schedule_node(&self, node: &str, action: NodeAction) -> Result<NodeObject> {
        let name = name("node name", node)?;
        let (verb, body) = match action {
            NodeAction::Cordon => ("cordon", DrainRequest::default()),
            NodeAction::Uncordon => ("uncordon", DrainRequest::default()),
            NodeAction::Drain { deadline_seconds } => (
                "drain",
                DrainRequest {
                    deadline_seconds: Some(deadline_seconds),
                },
            ),
        };
        let path = format!("/v1/nodes/{name}/{verb}");
        self.post_idempotent(&path, &body).await
    }

    /// `DELETE /v1/nodes/{name}` (admin): forgets a node that is gone.
    pub async fn delete_node(&self, node: &str) -> Result<NodeObject> {
        self.delete(&format!("/v1/nodes/{}", name("node name", node)?))
            .await
    }

    /// `GET /v1/replicas`: placed replicas, their agents' reports, the unplaced.
    pub async fn replicas(&self, consistency: Consistency) -> Result<ReplicaList> {
        self.get(&stale_path("/v1/replicas", consistency)).await
    }

    /// `GET /v1/replicas/{id}/logs`, copied to `out` as it arrives, with no time limit.
    pub async fn logs(&self, replica: &str, query: &LogQuery, out: impl Write) -> Result<()> {
        self.stream(&logs_path(replica, query)?, out).await
    }

    /// `GET /v1/replicas/{id}/logs`, opened for the caller to read
    /// ([`Stream::chunk`]), with no time limit.
    pub async fn open_logs(&self, replica: &str, query: &LogQuery) -> Result<Stream> {
        self.open_stream(&logs_path(replica, query)?).await
    }

    /// `POST /v1/replicas/{id}/exec`: runs `command` in the replica; sent once.
    pub async fn exec(&self, replica: &str, command: Vec<String>) -> Result<ExecResult> {
        let path = format!("/v1/replicas/{}/exec", name("replica id", replica)?);
        self.post(&path, &ExecRequest { command }).await
    }

    /// `GET /v1/overview`: the dashboard's first view (services, nodes, replicas
    /// with reports, variables, events, members) at one revision, from the leader.
    pub async fn overview(&self) -> Result<Overview> {
        self.get("/v1/overview").await
    }

    /// `POST /v1/replicas/{id}/restart`: stops the replica's process and starts
    /// it again; answers once the new one runs. Sent once (a restart is not
    /// idempotent).
    pub async fn restart_replica(&self, replica: &str) -> Result<RestartedReplica> {
        let path = format!("/v1/replicas/{}/restart", name("replica id", replica)?);
        self.post(&path, &serde_json::json!({})).await
    }
}

/// Changes: the watch and the recent events.
impl Client {
    /// `GET /v1/watch`: the server-sent event stream, copied to `out` as it
    /// arrives, with no time limit. Ends when the server ends it or `out` fails.
    pub async fn watch(&self, query: &WatchQuery, out: impl Write) -> Result<()> {
        self.stream(&watch_path(query), out).await
    }

    /// `GET /v1/events`: matching events, oldest first.
    pub async fn events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        self.get(&events_path(query)).await
    }
}

/// The control plane: members, status, identity.
impl Client {
    /// `GET /v1/cluster/members`: from the leader, with replication lag, unless stale.
    pub async fn members(&self, consistency: Consistency) -> Result<MembersResponse> {
        self.get(&stale_path("/v1/cluster/members", consistency))
            .await
    }

    /// `POST /v1/cluster/members`: adds a running peer as a learner, then a voter
    /// once it caught up. Sent once.
    pub async fn add_member(&self, peer: &JoinRequest) -> Result<MembersResponse> {
        self.post("/v1/cluster/members", peer).await
    }

    /// `DELETE /v1/cluster/members/{id}`.
    pub async fn remove_member(&self, id: u64) -> Result<MembersResponse> {
        self.delete(&format!("/v1/cluster/members/{id}")).await
    }

    /// `POST /v1/cluster/transfer-leader`: hands leadership to voter `to` (or the
    /// most up-to-date one) and answers once it leads. Sent once: a second
    /// transfer would move leadership again.
    pub async fn transfer_leader(&self, to: Option<u64>) -> Result<TransferResponse> {
        self.post("/v1/cluster/transfer-leader", &TransferRequest { to })
            .await
    }

    /// `GET /v1/cluster/status`: the answering peer's own view (its leader, term,
    /// log), never forwarded.
    pub async fn status(&self) -> Result<ClusterStatus> {
        self.get("/v1/cluster/status").await
    }

    /// The leader the answering peer knows of, from its status.
    pub async fn leader(&self) -> Result<Option<u64>> {
        Ok(self.status().await?.leader)
    }

    /// `GET /v1/cluster/self`: who the answering peer is.
    pub async fn identity(&self) -> Result<PeerIdentity> {
        self.get("/v1/cluster/self").await
    }

    /// `GET /v1/cluster/snapshot` (admin): a backup of the replicated state, taken
    /// on the leader, opened for the caller to read ([`Stream::chunk`]) with no
    /// time limit.
    pub async fn open_snapshot(&self) -> Result<Stream> {
        self.open_stream("/v1/cluster/snapshot").await
    }

    /// `GET /v1/cluster/ca` (public): the CA and where the agent gateways are.
    pub async fn bootstrap(&self) -> Result<AgentBootstrap> {
        self.get("/v1/cluster/ca").await
    }
}

/// Tokens and certificates.
impl Client {
    /// `POST /v1/tokens` (admin): mints a token; sent once.
    pub async fn create_token(&self, request: &CreateToken) -> Result<CreatedToken> {
        self.post("/v1/tokens", request).await
    }

    /// `GET /v1/tokens` (admin): the records, never the tokens.
    pub async fn tokens(&self) -> Result<TokenList> {
        self.get("/v1/tokens").await
    }

    /// `DELETE /v1/tokens/{id}` (admin).
    pub async fn revoke_token(&self, id: &str) -> Result<RevokedToken> {
        self.delete(&format!("/v1/tokens/{}", name("token id", id)?))
            .await
    }

    /// `POST /v1/join` (public): a join token and a CSR for a certificate; sent
    /// once. [`crate::join::exchange`] is the whole exchange (CA check, key, CSR).
    pub async fn join_certificate(&self, request: &JoinCertRequest) -> Result<IssuedCert> {
        self.call(Method::POST, "/v1/join", Some(request)).await
    }
}

#[cfg(test)]
mod tests {
    use orion_api::EventCursor;

    use super::*;

    #[test]
    fn variable_paths_keep_their_slashes_and_encode_the_rest() {
        assert_eq!(
            variable_path("app/db url").ok().as_deref(),
            Some("/v1/variables/app/db%20url")
        );
        assert_eq!(
            variable_path("a?b#c&d=e%").ok().as_deref(),
            Some("/v1/variables/a%3Fb%23c%26d%3De%25")
        );
        assert!(matches!(variable_path(""), Err(ClientError::Invalid(m)) if m.contains("empty")));
    }

    #[test]
    fn names_are_one_segment() {
        assert_eq!(name("service name", "a/b").ok().as_deref(), Some("a%2Fb"));
        assert_eq!(name("replica id", "web-0").ok().as_deref(), Some("web-0"));
        assert!(
            matches!(name("token id", ""), Err(ClientError::Invalid(m)) if m == "the token id is empty")
        );
    }

    #[test]
    fn list_queries_carry_only_what_is_set() {
        let q = VariableQuery {
            prefix: "jepsen/set/e".into(),
            ..Default::default()
        };
        assert_eq!(variables_path(&q), "/v1/variables?prefix=jepsen/set/e");
        let q = VariableQuery {
            prefix: "a b&c".into(),
            start_after: Some("a b&c/x".into()),
            limit: Some(10_000),
            consistency: Consistency::Stale,
        };
        assert_eq!(
            variables_path(&q),
            "/v1/variables?prefix=a%20b%26c&start_after=a%20b%26c/x&limit=10000&stale=true"
        );
        assert_eq!(
            stale_path("/v1/nodes", Consistency::stale_if(false)),
            "/v1/nodes"
        );
        assert_eq!(
            stale_path("/v1/nodes", Consistency::stale_if(true)),
            "/v1/nodes?stale=true"
        );
    }

    #[test]
    fn event_and_watch_queries() {
        let q = EventQuery {
            resource: Some("Service".into()),
            prefix: String::new(),
            limit: Some(100),
        };
        assert_eq!(events_path(&q), "/v1/events?resource=Service&limit=100");
        let q = EventQuery {
            prefix: "web".into(),
            limit: Some(20),
            ..Default::default()
        };
        assert_eq!(events_path(&q), "/v1/events?prefix=web&limit=20");
        let q = WatchQuery {
            from: Some(WatchStart::After(EventCursor {
                revision: 7,
                seq: 2,
            })),
            prefix: "x y".into(),
        };
        assert_eq!(watch_path(&q), "/v1/watch?from=7.2&prefix=x%20y");
        let q = WatchQuery {
            from: Some(WatchStart::Revision(0)),
            prefix: String::new(),
        };
        assert_eq!(watch_path(&q), "/v1/watch?from=0&prefix=");
        assert_eq!(watch_path(&WatchQuery::default()), "/v1/watch?prefix=");
    }

    #[test]
    fn log_queries_resume_from_both_offsets() {
        let first = LogQuery {
            tail: 10,
            follow: false,
            records: false,
            from: None,
        };
        assert_eq!(
            logs_path("web-0", &first).ok().as_deref(),
            Some("/v1/replicas/web-0/logs?follow=false&records=false&tail=10")
        );
        let resume = LogQuery {
            tail: 0,
            follow: true,
            records: true,
            from: Some(LogCursor {
                stdout: 120,
                stderr: 7,
            }),
        };
        assert_eq!(
            logs_path("web-0", &resume).ok().as_deref(),
            Some(
                "/v1/replicas/web-0/logs?follow=true&records=true&tail=0\
                 &stdout_offset=120&stderr_offset=7"
            )
        );
        assert!(logs_path("", &first).is_err());
    }
}
