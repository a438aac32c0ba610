//! The hook controller: runs services' `after_deploy` and `on_failure` hooks (a
//! command on a chosen node, through its agent, or a webhook this leader calls),
//! with timeouts and retries, and records every attempt through Raft.
//!
//! Triggers, per service (each fires once, named by a key in a slot, see
//! [`orion_api::hook_run`]):
//! - `after_deploy`: the rollout of the current generation reached `Complete`
//!   (slot `after_deploy`, key `after_deploy/<generation>`);
//! - `on_failure`, for a replica: its agent reports it `exited` after a failure
//!   (a non-zero code, a signal or an unknown status) and its restart policy does
//!   not restart it (`never`; under `on-failure` a failed exit is restarted, so it is
//!   never beyond the policy), or `unhealthy` under `never` (slot
//!   `on_failure/<replica>`, key `on_failure/<replica>/<generation>/<restarts>`);
//! - `on_failure`, for the rollout: it was marked `failed` (slot
//!   `on_failure/rollout`, key `on_failure/rollout/<generation>`). With
//!   `auto_rollback`, the rollback is a new generation and may fire `after_deploy`.
//!
//! Delivery is at least once. Each attempt is recorded `running` before it is
//! made ([`Command::RecordHookRun`]); the first one claims the trigger in apply, so
//! a trigger seen again (or by the next leader) is not run twice. A run the next
//! leader finds `running` or `retrying` was cut by the leader change: it makes the
//! next attempt, within the hook's retries. Between attempts the wait doubles from
//! 1s to at most 30s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orion_api::agent_proto::{ExecResult, FrameReader, ReplicaReport, ReplicaState, StreamRequest};
use orion_api::hook_run::{tail_of, HookName, HookOutcome, HookRun};
use orion_api::spec::{EventHook, HookAction, RestartMode};
use orion_api::{ReplicaObject, RolloutState, ServiceObject};
use orion_raft::command::Applied;
use orion_raft::{read, Command, RaftNode};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::gateway::open_stream;
use crate::gateway::registry::AgentRegistry;

/// How often a round runs besides on every applied change: agents' reports are
/// not Raft changes.
const TICK: Duration = Duration::from_millis(500);
/// How long a node command waits for the node's agent to be connected.
const AGENT_WAIT: Duration = Duration::from_secs(5);
/// The largest webhook body this leader sends.
pub const MAX_WEBHOOK_BODY: usize = 16 << 10;
/// How much of a webhook's answer is read.
const MAX_ANSWER: usize = 4 << 10;

/// A run to make: which service, the trigger and the attempt to start at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub service: String,
    pub slot: String,
    pub hook: HookName,
    pub key: String,
    pub trigger: String,
    pub generation: u64,
    /// The replica a replica's `on_failure` is about.
    pub replica: Option<String>,
    /// The attempt to make next (1 for a new trigger).
    pub attempt: u32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether `report` says the replica failed beyond its restart policy `policy`.
fn failed_beyond_policy(report: &ReplicaReport, policy: RestartMode) -> bool {
    match report.state {
        ReplicaState::Exited => match report.exit_code {
            Some(code) => code != 0,
            // Killed by a signal, or reported by an agent older than `exit_code`,
            // whose reason text is then the only word on how it ended.
            None => !report
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("exited with code 0")),
        },
        ReplicaState::Unhealthy => policy == RestartMode::Never,
        _ => false,
    }
}

/// The slot a key belongs to: the key without its generation (and restarts).
fn slot_of(key: &str) -> String {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["after_deploy", ..] => "after_deploy".to_string(),
        ["on_failure", "rollout", ..] => "on_failure/rollout".to_string(),
        ["on_failure", replica, ..] => format!("on_failure/{replica}"),
        _ => key.to_string(),
    }
}

/// The runs due for `service` now: new triggers, and runs left unfinished by an
/// earlier leader (not in `running`, the keys this leader runs). Pure.
pub fn due(
    service: &ServiceObject,
    replicas: &[&ReplicaObject],
    reports: &BTreeMap<String, ReplicaReport>,
    running: &BTreeSet<String>,
) -> Vec<Due> {
    let name = &service.spec.name;
    let hooks = &service.spec.hooks;
    let generation = service.generation;
    let mut out = Vec::new();
    let mut fire = |hook: HookName, slot: String, key: String, trigger: String, replica| {
        if !service.hooks.has_fired(&slot, &key) && !running.contains(&key) {
            out.push(Due {
                service: name.clone(),
                slot,
                hook,
                key,
                trigger,
                generation,
                replica,
                attempt: 1,
            });
        }
    };
    if hooks.after_deploy.is_some() && service.rollout.state == RolloutState::Complete {
        fire(
            HookName::AfterDeploy,
            "after_deploy".into(),
            format!("after_deploy/{generation}"),
            format!("rollout of revision {generation} complete"),
            None,
        );
    }
    if hooks.on_failure.is_some() {
        if service.rollout.state == RolloutState::Failed {
            let why = service.rollout.reason.as_deref().unwrap_or("failed");
            fire(
                HookName::OnFailure,
                "on_failure/rollout".into(),
                format!("on_failure/rollout/{generation}"),
                tail_of(&format!("rollout of revision {generation} failed: {why}")),
                None,
            );
        }
        for r in replicas {
            let id = r.id();
            let Some(report) = reports.get(&id) else {
                continue;
            };
            let policy = service
                .spec_of(r.generation)
                .map_or(service.spec.restart.policy, |s| s.restart.policy);
            if report.generation != r.generation || !failed_beyond_policy(report, policy) {
                continue;
            }
            let why = report.reason.as_deref().unwrap_or("failed");
            fire(
                HookName::OnFailure,
                format!("on_failure/{id}"),
                format!("on_failure/{id}/{}/{}", r.generation, report.restarts),
                tail_of(&format!("replica {id} {why}")),
                Some(id.clone()),
            );
        }
    }
    // Left unfinished by an earlier leader: carry on with the next attempt.
    for run in &service.hooks.runs {
        if run.outcome.is_final() || running.contains(&run.key) {
            continue;
        }
        out.push(Due {
            service: name.clone(),
            slot: slot_of(&run.key),
            hook: run.hook,
            key: run.key.clone(),
            trigger: run.trigger.clone(),
            generation: run.generation,
            replica: run
                .key
                .strip_prefix("on_failure/")
                .and_then(|k| k.split('/').next())
                .filter(|r| *r != "rollout")
                .map(str::to_string),
            attempt: run.attempt.saturating_add(1),
        });
    }
    out
}

/// What one attempt came to.
struct Attempt {
    ok: bool,
    exit_code: Option<i32>,
    http_status: Option<u16>,
    output: String,
}

impl Attempt {
    fn error(output: impl Into<String>) -> Self {
        Attempt {
            ok: false,
            exit_code: None,
            http_status: None,
            output: tail_of(&output.into()),
        }
    }
}

/// What every run needs.
struct Runner {
    node: RaftNode,
    agents: Arc<AgentRegistry>,
    http: Option<reqwest::Client>,
    /// Keys of the runs this leader is making.
    running: Mutex<BTreeSet<String>>,
}

impl Runner {
    fn running(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `run` through Raft; whether the stored run is now exactly it (false:
    /// the trigger was claimed already, or the service is gone).
    async fn record(&self, service: &str, slot: &str, run: &HookRun) -> Result<bool, String> {
        let cmd = Command::RecordHookRun {
            service: service.to_string(),
            slot: slot.to_string(),
            run: run.clone(),
        };
        let result = self.node.propose(cmd).await.map_err(|e| e.to_string())?;
        match result.outcome {
            Ok(Applied::Service(s)) => Ok(s.hooks.run(&run.key) == Some(run)),
            Ok(_) => Ok(false),
            Err(r) => Err(r.message),
        }
    }

    /// Makes the attempts of one run, from `due.attempt`, recording each.
    async fn run(&self, due: Due, hook: EventHook, revision: u64, token: CancellationToken) {
        let max = hook.retries.saturating_add(1);
        let mut attempt = due.attempt;
        let mut run = HookRun {
            hook: due.hook,
            key: due.key.clone(),
            trigger: due.trigger.clone(),
            generation: due.generation,
            attempt,
            outcome: HookOutcome::Running,
            exit_code: None,
            http_status: None,
            output: String::new(),
            started_unix_ms: now_ms(),
            finished_unix_ms: None,
        };
        if attempt > max {
            // An earlier leader was cut during the last attempt it had.
            run.attempt = max;
            run.outcome = HookOutcome::Failed;
            run.output =
                "the leader making the last attempt stopped leading; no retries left".into();
            run.finished_unix_ms = Some(now_ms());
            let _ = self.record(&due.service, &due.slot, &run).await;
            return;
        }
        loop {
            run.attempt = attempt;
            run.outcome = HookOutcome::Running;
            run.started_unix_ms = now_ms();
            run.finished_unix_ms = None;
            match self.record(&due.service, &due.slot, &run).await {
                Ok(true) => {}
                Ok(false) => {
                    debug!(service = %due.service, key = %due.key, "hook run claimed already");
                    return;
                }
                Err(e) => {
                    debug!(service = %due.service, key = %due.key, cause = %e, "cannot record a hook attempt");
                    return;
                }
            }
            info!(service = %due.service, hook = %due.hook, key = %due.key, attempt, "running hook");
            let outcome = tokio::select! {
                () = token.cancelled() => return,
                a = self.attempt(&due, &hook, revision, attempt) => a,
            };
            run.exit_code = outcome.exit_code;
            run.http_status = outcome.http_status;
            run.output = outcome.output;
            run.finished_unix_ms = Some(now_ms());
            run.outcome = if outcome.ok {
                HookOutcome::Succeeded
            } else if attempt < max {
                HookOutcome::Retrying
            } else {
                HookOutcome::Failed
            };
            if !outcome.ok {
                // WARN once per run, then DEBUG: the run record holds the detail.
                if attempt == 1 {
                    warn!(service = %due.service, hook = %due.hook, key = %due.key, output = %run.output, "hook attempt failed");
                } else {
                    debug!(service = %due.service, key = %due.key, attempt, output = %run.output, "hook attempt failed");
                }
            }
            if let Err(e) = self.record(&due.service, &due.slot, &run).await {
                debug!(service = %due.service, key = %due.key, cause = %e, "cannot record a hook result");
                return;
            }
            if run.outcome.is_final() {
                return;
            }
            let wait =
                Duration::from_secs(1u64 << (attempt - 1).min(5)).min(Duration::from_secs(30));
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            attempt += 1;
        }
    }

    async fn attempt(&self, due: &Due, hook: &EventHook, revision: u64, attempt: u32) -> Attempt {
        let timeout = Duration::from_millis(hook.timeout_ms);
        match &hook.action {
            HookAction::Command { command, node } => {
                let env = BTreeMap::from([
                    ("ORION_SERVICE".to_string(), due.service.clone()),
                    ("ORION_GENERATION".to_string(), due.generation.to_string()),
                    ("ORION_HOOK".to_string(), due.hook.to_string()),
                    ("ORION_TRIGGER".to_string(), due.trigger.clone()),
                    ("ORION_ATTEMPT".to_string(), attempt.to_string()),
                    (
                        "ORION_FAILED_REPLICA".to_string(),
                        due.replica.clone().unwrap_or_default(),
                    ),
                ]);
                // The agent kills the command at `timeout`; the margin covers the link.
                let whole = timeout + AGENT_WAIT + Duration::from_secs(5);
                tokio::time::timeout(whole, self.on_node(node, command, env, timeout))
                    .await
                    .unwrap_or_else(|_| {
                        Attempt::error(format!("no answer from node {node:?} within {whole:?}"))
                    })
            }
            HookAction::Webhook { url, headers } => {
                self.webhook(due, url, headers, timeout, revision, attempt)
                    .await
            }
        }
    }

    async fn on_node(
        &self,
        node: &str,
        command: &[String],
        env: BTreeMap<String, String>,
        timeout: Duration,
    ) -> Attempt {
        let Some(conn) = self.agents.wait_for_connection(node, AGENT_WAIT).await else {
            return Attempt::error(format!(
                "the agent of node {node:?} is not connected (waited {}s)",
                AGENT_WAIT.as_secs()
            ));
        };
        let request = StreamRequest::Exec {
            replica: String::new(),
            command: command.to_vec(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            env,
        };
        let recv = match open_stream(&conn, &request).await {
            Ok((_send, recv)) => recv,
            Err(e) => {
                return Attempt::error(format!("cannot reach the agent of node {node:?}: {e}"))
            }
        };
        match FrameReader::<_, ExecResult>::new(recv).next().await {
            Ok(Some(r)) => match r.error {
                Some(e) => Attempt::error(format!("on node {node}: {e}")),
                None => {
                    let text = if r.stderr.trim().is_empty() { r.stdout } else { r.stderr };
                    Attempt {
                        ok: r.exit_code == Some(0),
                        exit_code: r.exit_code,
                        http_status: None,
                        output: tail_of(&match r.signal {
                            Some(sig) if r.exit_code.is_none() => format!("killed by signal {sig}; {text}"),
                            _ => text,
                        }),
                    }
                }
            },
            Ok(None) => Attempt::error(format!(
                "the agent of node {node:?} closed the stream without an answer (an agent older than hooks?)"
            )),
            Err(e) => Attempt::error(format!("bad answer from the agent of node {node:?}: {e}")),
        }
    }

    async fn webhook(
        &self,
        due: &Due,
        url: &str,
        headers: &BTreeMap<String, String>,
        timeout: Duration,
        revision: u64,
        attempt: u32,
    ) -> Attempt {
        let Some(http) = &self.http else {
            return Attempt::error("this leader has no HTTP client for webhooks (see its log)");
        };
        let body = serde_json::json!({
            "service": due.service,
            "hook": due.hook,
            "key": due.key,
            "trigger": due.trigger,
            "generation": due.generation,
            "revision": revision,
            "replica": due.replica,
            "attempt": attempt,
        });
        let body = match serde_json::to_vec(&body) {
            Ok(b) if b.len() <= MAX_WEBHOOK_BODY => b,
            Ok(b) => {
                return Attempt::error(format!(
                    "the webhook body is {} bytes, above the limit of {MAX_WEBHOOK_BODY}",
                    b.len()
                ))
            }
            Err(e) => return Attempt::error(format!("cannot encode the webhook body: {e}")),
        };
        let mut request = http
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, "orion-hooks/1")
            .body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut answer = match request.send().await {
            Ok(a) => a,
            Err(e) => return Attempt::error(format!("POST {url}: {}", error_chain(&e))),
        };
        let status = answer.status();
        let mut text = Vec::new();
        let read = tokio::time::timeout(timeout, async {
            while text.len() < MAX_ANSWER {
                match answer.chunk().await {
                    Ok(Some(chunk)) => text.extend_from_slice(&chunk),
                    _ => break,
                }
            }
        });
        let _ = read.await;
        text.truncate(MAX_ANSWER);
        let text = String::from_utf8_lossy(&text);
        Attempt {
            ok: status.is_success(),
            exit_code: None,
            http_status: Some(status.as_u16()),
            output: tail_of(&format!("HTTP {status}: {}", text.trim())),
        }
    }
}

/// `e` and its sources, joined: reqwest's own message says little.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The webhook client: the OS's trusted roots, TLS 1.2+, no redirects followed
/// (a webhook answers where it is asked).
fn webhook_client() -> Result<reqwest::Client, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or("none found".to_string(), ToString::to_string);
        warn!(cause = %why, "no trusted CA roots for https webhooks; they will fail");
    }
    let tls = rustls::ClientConfig::builder_with_provider(orion_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("webhook TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("webhook client: {e}"))
}

/// Runs rounds until `token` is cancelled (leadership lost, or shutdown); the
/// runs it started end with it (an unfinished one is the next leader's).
pub async fn run(node: RaftNode, agents: Arc<AgentRegistry>, token: CancellationToken) {
    let http = match webhook_client() {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(cause = %e, "cannot build the webhook client; webhook hooks will fail");
            None
        }
    };
    let runner = Arc::new(Runner {
        node: node.clone(),
        agents: agents.clone(),
        http,
        running: Mutex::new(BTreeSet::new()),
    });
    let tasks = TaskTracker::new();
    let mut metrics = node.raft.metrics();
    loop {
        let state = node
            .reader
            .with_view(|v| Ok::<_, read::ReadError>((read::services(v)?, read::replicas(v)?)));
        match state {
            Ok((services, replicas)) => {
                let ids: BTreeSet<String> = replicas.iter().map(ReplicaObject::id).collect();
                let reports = agents.reports(|id| ids.contains(id));
                for service in services.iter().filter(|s| {
                    s.spec.hooks.after_deploy.is_some()
                        || s.spec.hooks.on_failure.is_some()
                        || !s.hooks.runs.is_empty()
                }) {
                    let mine: Vec<&ReplicaObject> = replicas
                        .iter()
                        .filter(|r| r.service == service.spec.name)
                        .collect();
                    let running = runner.running().clone();
                    for d in due(service, &mine, &reports, &running) {
                        let hook = match d.hook {
                            HookName::AfterDeploy => service.spec.hooks.after_deploy.clone(),
                            HookName::OnFailure => service.spec.hooks.on_failure.clone(),
                        };
                        let Some(hook) = hook else {
                            // Unfinished, but its hook was taken out of the spec.
                            let run = service.hooks.run(&d.key).cloned();
                            if let Some(mut run) = run {
                                run.outcome = HookOutcome::Failed;
                                run.output = "the hook was removed from the spec".into();
                                run.finished_unix_ms = Some(now_ms());
                                let _ = runner.record(&d.service, &d.slot, &run).await;
                            }
                            continue;
                        };
                        runner.running().insert(d.key.clone());
                        let (r, t, revision) =
                            (runner.clone(), token.clone(), service.mod_revision);
                        tasks.spawn(async move {
                            let key = d.key.clone();
                            r.run(d, hook, revision, t).await;
                            r.running().remove(&key);
                        });
                    }
                }
            }
            Err(e) => warn!(cause = %e, "hook controller cannot read state; retrying"),
        }
        tokio::select! {
            () = token.cancelled() => break,
            changed = metrics.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(TICK) => {}
        }
    }
    tasks.close();
    tasks.wait().await;
}

#[cfg(test)]
mod tests {
    use orion_api::hook_run::HookRuns;
    use orion_api::spec::{parse_documents, Resource, Resources};

    use super::*;

    fn service(state: RolloutState) -> ServiceObject {
        let text = "kind: Service\nname: web\nreplicas: 2\ncommand: [x]\nrestart: {policy: never}\nhooks:\n  after_deploy: {command: ['true'], node: n1}\n  on_failure: {webhook: {url: 'http://127.0.0.1:9/h'}}\n";
        let Resource::Service(spec) = parse_documents("t.yaml", text).expect("spec").remove(0)
        else {
            panic!("a service");
        };
        ServiceObject {
            spec,
            create_revision: 1,
            mod_revision: 1,
            generation: 1,
            history: Vec::new(),
            rollout: orion_api::Rollout {
                state,
                ..Default::default()
            },
            hooks: HookRuns::default(),
        }
    }

    fn replica(ordinal: u32) -> ReplicaObject {
        ReplicaObject {
            service: "web".into(),
            ordinal,
            node: "n1".into(),
            generation: 1,
            resources: Resources::default(),
            create_revision: 1,
        }
    }

    fn report(id: &str, state: ReplicaState, reason: &str) -> (String, ReplicaReport) {
        (
            id.to_string(),
            ReplicaReport {
                id: id.into(),
                pid: None,
                state,
                restarts: 0,
                reason: Some(reason.into()),
                ports: BTreeMap::new(),
                generation: 1,
                exit_code: None,
            },
        )
    }

    #[test]
    fn an_exit_code_decides_failure_before_the_reason_text() {
        let (_, mut ok) = report("web-0", ReplicaState::Exited, "finished");
        ok.exit_code = Some(0);
        assert!(!failed_beyond_policy(&ok, RestartMode::Never));
        let (_, mut bad) = report("web-0", ReplicaState::Exited, "exited with code 0?");
        bad.exit_code = Some(7);
        assert!(failed_beyond_policy(&bad, RestartMode::Never));
        let (_, signalled) = report("web-0", ReplicaState::Exited, "killed by signal 9");
        assert!(failed_beyond_policy(&signalled, RestartMode::Never));
        let (_, old_agent) = report("web-0", ReplicaState::Exited, "exited with code 0");
        assert!(!failed_beyond_policy(&old_agent, RestartMode::Never));
    }

    #[test]
    fn triggers_fire_once_and_unfinished_runs_resume() {
        let (r0, r1) = (replica(0), replica(1));
        let reports = BTreeMap::from([
            report(
                "web-0",
                ReplicaState::Exited,
                "exited with code 3; not restarted",
            ),
            report(
                "web-1",
                ReplicaState::Exited,
                "exited with code 0; not restarted",
            ),
        ]);
        let mut svc = service(RolloutState::Complete);
        let found = due(&svc, &[&r0, &r1], &reports, &BTreeSet::new());
        let keys: Vec<&str> = found.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["after_deploy/1", "on_failure/web-0/1/0"]);
        // Running here: not again.
        let running: BTreeSet<String> = keys.iter().map(|k| k.to_string()).collect();
        assert!(due(&svc, &[&r0, &r1], &reports, &running).is_empty());
        // Claimed and finished: never again; claimed and cut: the next attempt.
        for d in &found {
            let run = HookRun {
                hook: d.hook,
                key: d.key.clone(),
                trigger: d.trigger.clone(),
                generation: 1,
                attempt: 1,
                outcome: if d.hook == HookName::AfterDeploy {
                    HookOutcome::Succeeded
                } else {
                    HookOutcome::Running
                },
                exit_code: None,
                http_status: None,
                output: String::new(),
                started_unix_ms: 0,
                finished_unix_ms: None,
            };
            assert!(svc.hooks.record(&d.slot, run));
        }
        let again = due(&svc, &[&r0, &r1], &reports, &BTreeSet::new());
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!(
            (
                again[0].key.as_str(),
                again[0].attempt,
                again[0].slot.as_str()
            ),
            ("on_failure/web-0/1/0", 2, "on_failure/web-0")
        );
        assert_eq!(again[0].replica.as_deref(), Some("web-0"));

        // A failed rollout fires on_failure once.
        let failed = service(RolloutState::Failed);
        let found = due(&failed, &[], &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "on_failure/rollout/1");
    }
}
