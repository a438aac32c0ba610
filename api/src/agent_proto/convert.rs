//! The messages of [`super`] to and from their [`wire`] forms.
//!
//! Going to the wire cannot fail. Coming from it checks what protobuf cannot: a
//! frame kind, a message field or an enum value that must be set, numbers that
//! must fit. Each failure is a [`FrameError::Invalid`] naming the field.

use std::collections::BTreeMap;

use super::codec::{Frame, FrameError};
use super::{
    wire, AgentMessage, DesiredReplica, ExecResult, LogCursor, NodeUsage, ReplicaReport,
    ReplicaState, RestartResult, ServerMessage, StreamRequest, VariableValues,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use crate::spec::constraint::Constraint;
use crate::spec::hooks::{CommandHook, Hooks};
use crate::spec::service::{
    Backoff, HealthCheck, Placement, Probe, Resources, RestartMode, RestartPolicy, ServiceSpec,
    UpdateStrategy, VariableRef,
};

type Checked<T> = Result<T, String>;

fn required<T>(value: Option<T>, field: &str) -> Checked<T> {
    value.ok_or_else(|| format!("{field} is missing"))
}

/// The sender's protocol version; 0 is a peer that did not say. One below
/// [`MIN_PROTOCOL_VERSION`] is refused naming both; a newer one is accepted, and
/// each side sends only what both announced (see `agent.proto`).
fn protocol(version: u32) -> Checked<()> {
    if version == 0 {
        return Err("protocol version is missing (a peer older than orion.agent.v1?)".into());
    }
    if version < MIN_PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {version} is older than this side speaks \
             ({MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}); upgrade the other side"
        ));
    }
    Ok(())
}

impl Frame for AgentMessage {
    type Wire = wire::AgentFrame;
    const NAME: &'static str = "AgentFrame";

    fn to_wire(&self) -> wire::AgentFrame {
        use wire::agent_frame::Kind;
        let kind = match self {
            AgentMessage::Hello {
                node,
                labels,
                capacity,
            } => Kind::Hello(wire::Hello {
                protocol: PROTOCOL_VERSION,
                node: node.clone(),
                labels: labels.clone(),
                capacity: Some(resources_to_wire(capacity)),
            }),
            AgentMessage::Heartbeat {
                replicas_running,
                usage,
            } => Kind::Heartbeat(wire::Heartbeat {
                replicas_running: *replicas_running,
                usage: Some(wire::NodeUsage {
                    load_milli: usage.load_milli,
                    memory_total_bytes: usage.memory_total_bytes,
                    memory_available_bytes: usage.memory_available_bytes,
                }),
            }),
            AgentMessage::Status { replicas } => Kind::Status(wire::Status {
                replicas: replicas.iter().map(report_to_wire).collect(),
            }),
        };
        wire::AgentFrame { kind: Some(kind) }
    }

    fn from_wire(frame: wire::AgentFrame) -> Result<Self, FrameError> {
        use wire::agent_frame::Kind;
        let checked = match required(frame.kind, "the frame kind") {
            Err(e) => Err(e),
            Ok(Kind::Hello(h)) => protocol(h.protocol).and_then(|()| {
                Ok(AgentMessage::Hello {
                    node: h.node,
                    labels: h.labels,
                    capacity: resources_from_wire(required(h.capacity, "hello.capacity")?),
                })
            }),
            Ok(Kind::Heartbeat(h)) => {
                required(h.usage, "heartbeat.usage").map(|u| AgentMessage::Heartbeat {
                    replicas_running: h.replicas_running,
                    usage: NodeUsage {
                        load_milli: u.load_milli,
                        memory_total_bytes: u.memory_total_bytes,
                        memory_available_bytes: u.memory_available_bytes,
                    },
                })
            }
            Ok(Kind::Status(s)) => s
                .replicas
                .into_iter()
                .map(report_from_wire)
                .collect::<Checked<_>>()
                .map(|replicas| AgentMessage::Status { replicas }),
        };
        checked.map_err(FrameError::invalid::<Self>)
    }
}

fn report_to_wire(r: &ReplicaReport) -> wire::ReplicaReport {
    use wire::ReplicaState as W;
    let state = match r.state {
        ReplicaState::Starting => W::Starting,
        ReplicaState::Running => W::Running,
        ReplicaState::Healthy => W::Healthy,
        ReplicaState::Unhealthy => W::Unhealthy,
        ReplicaState::Backoff => W::Backoff,
        ReplicaState::Exited => W::Exited,
        ReplicaState::Failed => W::Failed,
        ReplicaState::Stopped => W::Stopped,
    };
    wire::ReplicaReport {
        id: r.id.clone(),
        pid: r.pid,
        state: state.into(),
        restarts: r.restarts,
        reason: r.reason.clone(),
        ports: r
            .ports
            .iter()
            .map(|(name, port)| (name.clone(), u32::from(*port)))
            .collect(),
        generation: r.generation,
        exit_code: r.exit_code,
    }
}

fn report_from_wire(r: wire::ReplicaReport) -> Checked<ReplicaReport> {
    use wire::ReplicaState as W;
    let state = match W::try_from(r.state) {
        Ok(W::Starting) => ReplicaState::Starting,
        Ok(W::Running) => ReplicaState::Running,
        Ok(W::Healthy) => ReplicaState::Healthy,
        Ok(W::Unhealthy) => ReplicaState::Unhealthy,
        Ok(W::Backoff) => ReplicaState::Backoff,
        Ok(W::Exited) => ReplicaState::Exited,
        Ok(W::Failed) => ReplicaState::Failed,
        Ok(W::Stopped) => ReplicaState::Stopped,
        Ok(W::Unspecified) => return Err(format!("replica {:?} has no state", r.id)),
        Err(_) => {
            return Err(format!(
                "replica {:?} has state {}, unknown to this version",
                r.id, r.state
            ))
        }
    };
    let ports = r
        .ports
        .into_iter()
        .map(|(name, port)| match u16::try_from(port) {
            Ok(p) => Ok((name, p)),
            Err(_) => Err(format!(
                "replica {:?}: port {name} = {port} is not a port number",
                r.id
            )),
        })
        .collect::<Checked<BTreeMap<_, _>>>()?;
    Ok(ReplicaReport {
        id: r.id,
        pid: r.pid,
        state,
        restarts: r.restarts,
        reason: r.reason,
        ports,
        generation: r.generation,
        exit_code: r.exit_code,
    })
}

impl Frame for ServerMessage {
    type Wire = wire::ServerFrame;
    const NAME: &'static str = "ServerFrame";

    fn to_wire(&self) -> wire::ServerFrame {
        use wire::server_frame::Kind;
        let kind = match self {
            ServerMessage::Redirect { agent_addr } => Kind::Redirect(wire::Redirect {
                agent_addr: agent_addr.clone(),
            }),
            ServerMessage::Welcome { node } => Kind::Welcome(wire::Welcome {
                protocol: PROTOCOL_VERSION,
                node: node.clone(),
            }),
            ServerMessage::Desired { revision, replicas } => Kind::Desired(wire::Desired {
                revision: *revision,
                replicas: replicas
                    .iter()
                    .map(|d| wire::DesiredReplica {
                        id: d.id.clone(),
                        generation: d.generation,
                        service: Some(service_to_wire(&d.service)),
                        variables: Some(wire::VariableValues {
                            values: d.variables.values.clone(),
                            missing: d.variables.missing.clone(),
                        }),
                    })
                    .collect(),
            }),
        };
        wire::ServerFrame { kind: Some(kind) }
    }

    fn from_wire(frame: wire::ServerFrame) -> Result<Self, FrameError> {
        use wire::server_frame::Kind;
        let checked = match required(frame.kind, "the frame kind") {
            Err(e) => Err(e),
            Ok(Kind::Redirect(r)) => Ok(ServerMessage::Redirect {
                agent_addr: r.agent_addr,
            }),
            Ok(Kind::Welcome(w)) => {
                protocol(w.protocol).map(|()| ServerMessage::Welcome { node: w.node })
            }
            Ok(Kind::Desired(d)) => d
                .replicas
                .into_iter()
                .map(|r| {
                    let service = required(r.service, "desired replica service")
                        .and_then(service_from_wire)
                        .map_err(|e| format!("replica {:?}: {e}", r.id))?;
                    let variables = r.variables.unwrap_or_default();
                    Ok(DesiredReplica {
                        id: r.id,
                        generation: r.generation,
                        service,
                        variables: VariableValues {
                            values: variables.values,
                            missing: variables.missing,
                        },
                    })
                })
                .collect::<Checked<_>>()
                .map(|replicas| ServerMessage::Desired {
                    revision: d.revision,
                    replicas,
                }),
        };
        checked.map_err(FrameError::invalid::<Self>)
    }
}

impl Frame for StreamRequest {
    type Wire = wire::StreamRequest;
    const NAME: &'static str = "StreamRequest";

    fn to_wire(&self) -> wire::StreamRequest {
        use wire::stream_request::Kind;
        let kind = match self {
            StreamRequest::Logs {
                replica,
                tail,
                follow,
                from,
                records,
            } => Kind::Logs(wire::LogsRequest {
                replica: replica.clone(),
                tail: *tail as u64,
                follow: *follow,
                from: from.map(|c| wire::LogCursor {
                    stdout: c.stdout,
                    stderr: c.stderr,
                }),
                records: *records,
            }),
            StreamRequest::Exec {
                replica,
                command,
                timeout_ms,
                env,
            } => Kind::Exec(wire::ExecRequest {
                replica: replica.clone(),
                command: command.clone(),
                timeout_ms: *timeout_ms,
                env: env.clone(),
            }),
            StreamRequest::Restart { replica } => Kind::Restart(wire::RestartRequest {
                replica: replica.clone(),
            }),
        };
        wire::StreamRequest { kind: Some(kind) }
    }

    fn from_wire(request: wire::StreamRequest) -> Result<Self, FrameError> {
        use wire::stream_request::Kind;
        let checked = match required(request.kind, "the request kind") {
            Err(e) => Err(e),
            Ok(Kind::Logs(l)) => usize::try_from(l.tail)
                .map_err(|_| format!("tail {} is too large", l.tail))
                .map(|tail| StreamRequest::Logs {
                    replica: l.replica,
                    tail,
                    follow: l.follow,
                    from: l.from.map(|c| LogCursor {
                        stdout: c.stdout,
                        stderr: c.stderr,
                    }),
                    records: l.records,
                }),
            Ok(Kind::Exec(e)) => Ok(StreamRequest::Exec {
                replica: e.replica,
                command: e.command,
                timeout_ms: e.timeout_ms,
                env: e.env,
            }),
            Ok(Kind::Restart(r)) => Ok(StreamRequest::Restart { replica: r.replica }),
        };
        checked.map_err(FrameError::invalid::<Self>)
    }
}

impl Frame for RestartResult {
    type Wire = wire::RestartResult;
    const NAME: &'static str = "RestartResult";

    fn to_wire(&self) -> wire::RestartResult {
        wire::RestartResult {
            pid: self.pid,
            restarts: self.restarts,
            error: self.error.clone(),
        }
    }

    fn from_wire(r: wire::RestartResult) -> Result<Self, FrameError> {
        Ok(RestartResult {
            pid: r.pid,
            restarts: r.restarts,
            error: r.error,
        })
    }
}

impl Frame for ExecResult {
    type Wire = wire::ExecResult;
    const NAME: &'static str = "ExecResult";

    fn to_wire(&self) -> wire::ExecResult {
        wire::ExecResult {
            exit_code: self.exit_code,
            signal: self.signal,
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
            error: self.error.clone(),
        }
    }

    fn from_wire(r: wire::ExecResult) -> Result<Self, FrameError> {
        Ok(ExecResult {
            exit_code: r.exit_code,
            signal: r.signal,
            stdout: r.stdout,
            stderr: r.stderr,
            error: r.error,
        })
    }
}

fn resources_to_wire(r: &Resources) -> wire::Resources {
    wire::Resources {
        cpu_millis: r.cpu_millis,
        memory_bytes: r.memory_bytes,
    }
}

fn resources_from_wire(r: wire::Resources) -> Resources {
    Resources {
        cpu_millis: r.cpu_millis,
        memory_bytes: r.memory_bytes,
    }
}

fn service_to_wire(s: &ServiceSpec) -> wire::ServiceSpec {
    wire::ServiceSpec {
        name: s.name.clone(),
        replicas: s.replicas,
        command: s.command.clone(),
        args: s.args.clone(),
        env: s.env.clone(),
        working_dir: s.working_dir.clone(),
        ports: s.ports.clone(),
        resources: Some(resources_to_wire(&s.resources)),
        health: s.health.as_ref().map(|h| {
            use wire::health_check::Probe as P;
            wire::HealthCheck {
                probe: Some(match &h.probe {
                    Probe::Http { port, path } => P::Http(wire::HttpProbe {
                        port: port.clone(),
                        path: path.clone(),
                    }),
                    Probe::Tcp { port } => P::Tcp(wire::TcpProbe { port: port.clone() }),
                    Probe::Exec { command } => P::Exec(wire::ExecProbe {
                        command: command.clone(),
                    }),
                }),
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
                failures: h.failures,
                successes: h.successes,
                initial_delay_ms: h.initial_delay_ms,
                startup_grace_ms: h.startup_grace_ms,
            }
        }),
        restart: Some(wire::RestartPolicy {
            policy: match s.restart.policy {
                RestartMode::Always => wire::RestartMode::Always,
                RestartMode::OnFailure => wire::RestartMode::OnFailure,
                RestartMode::Never => wire::RestartMode::Never,
            }
            .into(),
            backoff_initial_ms: s.restart.backoff.initial_ms,
            backoff_max_ms: s.restart.backoff.max_ms,
        }),
        placement: Some(wire::Placement {
            constraints: s
                .placement
                .constraints
                .iter()
                .map(constraint_to_wire)
                .collect(),
        }),
        strategy: Some(wire::UpdateStrategy {
            max_unavailable: s.strategy.max_unavailable,
            max_surge: s.strategy.max_surge,
            min_healthy_time_ms: s.strategy.min_healthy_time_ms,
            healthy_deadline_ms: s.strategy.healthy_deadline_ms,
            auto_rollback: s.strategy.auto_rollback,
        }),
        before_start: s
            .hooks
            .before_start
            .as_ref()
            .map(|h| wire::BeforeStartHook {
                command: h.command.clone(),
                timeout_ms: h.timeout_ms,
            }),
        env_variables: s
            .env_variables
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    wire::VariableRef {
                        variable: r.variable.clone(),
                        restart_on_change: r.restart_on_change,
                    },
                )
            })
            .collect(),
        variable_revisions: s.variable_revisions.clone(),
    }
}

fn service_from_wire(s: wire::ServiceSpec) -> Checked<ServiceSpec> {
    let health = match s.health {
        None => None,
        Some(h) => {
            use wire::health_check::Probe as P;
            let probe = match required(h.probe, "health.probe")? {
                P::Http(p) => Probe::Http {
                    port: p.port,
                    path: p.path,
                },
                P::Tcp(p) => Probe::Tcp { port: p.port },
                P::Exec(p) => Probe::Exec { command: p.command },
            };
            Some(HealthCheck {
                probe,
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
                failures: h.failures,
                successes: h.successes,
                initial_delay_ms: h.initial_delay_ms,
                startup_grace_ms: h.startup_grace_ms,
            })
        }
    };
    let restart = required(s.restart, "restart")?;
    let policy = match wire::RestartMode::try_from(restart.policy) {
        Ok(wire::RestartMode::Always) => RestartMode::Always,
        Ok(wire::RestartMode::OnFailure) => RestartMode::OnFailure,
        Ok(wire::RestartMode::Never) => RestartMode::Never,
        Ok(wire::RestartMode::Unspecified) => return Err("restart.policy is missing".into()),
        Err(_) => {
            return Err(format!(
                "restart.policy {} is unknown to this version",
                restart.policy
            ))
        }
    };
    let strategy = required(s.strategy, "strategy")?;
    Ok(ServiceSpec {
        name: s.name,
        replicas: s.replicas,
        command: s.command,
        args: s.args,
        env: s.env,
        working_dir: s.working_dir,
        ports: s.ports,
        resources: resources_from_wire(required(s.resources, "resources")?),
        health,
        restart: RestartPolicy {
            policy,
            backoff: Backoff {
                initial_ms: restart.backoff_initial_ms,
                max_ms: restart.backoff_max_ms,
            },
        },
        placement: Placement {
            constraints: required(s.placement, "placement")?
                .constraints
                .into_iter()
                .map(constraint_from_wire)
                .collect::<Checked<_>>()?,
        },
        strategy: UpdateStrategy {
            max_unavailable: strategy.max_unavailable,
            max_surge: strategy.max_surge,
            min_healthy_time_ms: strategy.min_healthy_time_ms,
            healthy_deadline_ms: strategy.healthy_deadline_ms,
            auto_rollback: strategy.auto_rollback,
        },
        // The agent runs only `before_start`; the other hooks are not sent.
        hooks: Hooks {
            before_start: s.before_start.map(|h| CommandHook {
                command: h.command,
                timeout_ms: h.timeout_ms,
            }),
            after_deploy: None,
            on_failure: None,
        },
        env_variables: s
            .env_variables
            .into_iter()
            .map(|(name, r)| {
                (
                    name,
                    VariableRef {
                        variable: r.variable,
                        restart_on_change: r.restart_on_change,
                    },
                )
            })
            .collect(),
        variable_revisions: s.variable_revisions,
    })
}

fn constraint_to_wire(c: &Constraint) -> wire::Constraint {
    use wire::constraint::Op;
    let op = match c {
        Constraint::Equals { value, .. } => Op::Equals(value.clone()),
        Constraint::NotEquals { value, .. } => Op::NotEquals(value.clone()),
        Constraint::In { values, .. } => Op::OneOf(wire::ValueList {
            values: values.clone(),
        }),
        Constraint::Exists { .. } => Op::Exists(true),
    };
    wire::Constraint {
        label: c.label().to_owned(),
        op: Some(op),
    }
}

fn constraint_from_wire(c: wire::Constraint) -> Checked<Constraint> {
    use wire::constraint::Op;
    let label = c.label;
    Ok(match c.op {
        Some(Op::Equals(value)) => Constraint::Equals { label, value },
        Some(Op::NotEquals(value)) => Constraint::NotEquals { label, value },
        Some(Op::OneOf(list)) => Constraint::In {
            label,
            values: list.values,
        },
        Some(Op::Exists(true)) => Constraint::Exists { label },
        Some(Op::Exists(false)) | None => {
            return Err(format!("placement constraint on {label:?} has no operator"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `StreamRequest` as agents built before `RestartRequest` know it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct OldStreamRequest {
        #[prost(oneof = "OldKind", tags = "1, 2")]
        kind: Option<OldKind>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    enum OldKind {
        #[prost(message, tag = "1")]
        Logs(wire::LogsRequest),
        #[prost(message, tag = "2")]
        Exec(wire::ExecRequest),
    }

    /// An older agent decodes a restart request as one with no kind, which it
    /// refuses (and resets the stream: the leader answers 503 saying why), while
    /// logs and exec still read as before.
    #[test]
    fn an_older_agent_refuses_a_restart_request_and_still_reads_the_rest() {
        use prost::Message;
        let restart = StreamRequest::Restart {
            replica: "web-0".into(),
        };
        let bytes = restart.to_wire().encode_to_vec();
        let old = OldStreamRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(old.kind, None);
        let as_old_agent_sees_it =
            wire::StreamRequest::decode(old.encode_to_vec().as_slice()).expect("decodes");
        let err = StreamRequest::from_wire(as_old_agent_sees_it).expect_err("refused");
        assert!(err.to_string().contains("request kind"), "{err}");
        let back = StreamRequest::from_wire(
            wire::StreamRequest::decode(bytes.as_slice()).expect("decodes"),
        )
        .expect("a new agent reads it");
        assert_eq!(back, restart);
        let exec = StreamRequest::Exec {
            replica: "web-0".into(),
            command: vec!["true".into()],
            timeout_ms: 5_000,
            env: BTreeMap::from([("ORION_HOOK".into(), "after_deploy".into())]),
        };
        let round = StreamRequest::from_wire(
            wire::StreamRequest::decode(exec.to_wire().encode_to_vec().as_slice())
                .expect("decodes"),
        )
        .expect("a new agent reads it");
        assert_eq!(round, exec);
        let old =
            OldStreamRequest::decode(exec.to_wire().encode_to_vec().as_slice()).expect("decodes");
        assert!(matches!(old.kind, Some(OldKind::Exec(_))));
    }

    #[test]
    fn a_service_spec_survives_the_wire() {
        let spec = ServiceSpec {
            name: "web".into(),
            replicas: 1,
            command: vec!["python3".into(), "-m".into(), "http.server".into()],
            args: vec!["${PORT}".into()],
            env: BTreeMap::from([("A".into(), "b".into())]),
            working_dir: Some("site".into()),
            ports: vec!["http".into()],
            resources: Resources {
                cpu_millis: 250,
                memory_bytes: 1 << 20,
            },
            health: Some(HealthCheck {
                probe: Probe::Http {
                    port: "http".into(),
                    path: "/".into(),
                },
                interval_ms: 100,
                timeout_ms: 50,
                failures: 3,
                successes: 1,
                initial_delay_ms: 0,
                startup_grace_ms: 2_000,
            }),
            restart: RestartPolicy {
                policy: RestartMode::OnFailure,
                backoff: Backoff {
                    initial_ms: 10,
                    max_ms: 20,
                },
            },
            placement: Placement {
                constraints: vec![
                    Constraint::Equals {
                        label: "zone".into(),
                        value: "a".into(),
                    },
                    Constraint::NotEquals {
                        label: "os".into(),
                        value: "bsd".into(),
                    },
                    Constraint::In {
                        label: "arch".into(),
                        values: vec!["x86".into(), "arm".into()],
                    },
                    Constraint::Exists {
                        label: "gpu".into(),
                    },
                ],
            },
            strategy: UpdateStrategy {
                max_unavailable: 2,
                max_surge: 0,
                min_healthy_time_ms: 1_500,
                healthy_deadline_ms: 60_000,
                auto_rollback: true,
            },
            hooks: Hooks {
                before_start: Some(CommandHook {
                    command: vec!["sh".into(), "-c".into(), "true".into()],
                    timeout_ms: 3_000,
                }),
                after_deploy: None,
                on_failure: None,
            },
            env_variables: BTreeMap::from([(
                "DB_URL".into(),
                VariableRef {
                    variable: "prod/db_url".into(),
                    restart_on_change: true,
                },
            )]),
            variable_revisions: BTreeMap::from([("prod/db_url".into(), 7)]),
        };
        assert_eq!(service_from_wire(service_to_wire(&spec)), Ok(spec));
    }

    #[test]
    fn an_unknown_state_is_refused_with_the_replica_named() {
        let mut r = report_to_wire(&ReplicaReport {
            id: "web-0".into(),
            pid: None,
            state: ReplicaState::Running,
            restarts: 0,
            reason: None,
            ports: BTreeMap::from([("http".into(), 1)]),
            generation: 2,
            exit_code: None,
        });
        r.state = 99;
        let err = report_from_wire(r.clone()).expect_err("unknown state");
        assert!(err.contains("\"web-0\"") && err.contains("99"), "{err}");
        r.state = wire::ReplicaState::Running.into();
        r.ports.insert("big".into(), 70_000);
        let err = report_from_wire(r).expect_err("port out of range");
        assert!(err.contains("70000"), "{err}");
    }

    #[test]
    fn a_hello_carries_the_version_and_one_without_is_refused() {
        let hello = AgentMessage::Hello {
            node: "web-1".into(),
            labels: BTreeMap::new(),
            capacity: Resources::default(),
        };
        let mut wire = hello.to_wire();
        let Some(wire::agent_frame::Kind::Hello(h)) = wire.kind.as_mut() else {
            panic!("not a hello: {wire:?}");
        };
        assert_eq!(h.protocol, PROTOCOL_VERSION);
        // A newer agent is accepted: it sends only what both announced.
        h.protocol = PROTOCOL_VERSION + 1;
        assert_eq!(AgentMessage::from_wire(wire.clone()).ok(), Some(hello));
        let Some(wire::agent_frame::Kind::Hello(h)) = wire.kind.as_mut() else {
            panic!("not a hello");
        };
        h.protocol = 0;
        let err = AgentMessage::from_wire(wire)
            .expect_err("no version")
            .to_string();
        assert!(err.contains("protocol version is missing"), "{err}");
    }
}
