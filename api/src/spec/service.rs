//! `kind: Service`: a long-running command kept at `replicas` copies, and the
//! pieces it shares with `kind: Job` (resources, restart, placement).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::constraint::{parse_constraint, Constraint};
use super::decode::{Decoder, Fields};
use super::expand::{expand, is_env_name};
use super::hooks::{decode_hooks, Hooks};
pub(crate) use super::names::decode_command;
pub use super::names::validate_name;
use super::node::{Node, Pos};
use super::quantity::{parse_cpu_millis, parse_memory_bytes};

/// Every top-level field of a Service document (`kind` included).
pub const SERVICE_FIELDS: &[&str] = &[
    "kind",
    "name",
    "replicas",
    "command",
    "args",
    "env",
    "working_dir",
    "ports",
    "resources",
    "health",
    "restart",
    "placement",
    "strategy",
    "hooks",
];
pub(crate) const RESOURCES_FIELDS: &[&str] = &["cpu", "memory"];
pub(crate) const HEALTH_FIELDS: &[&str] = &[
    "http",
    "tcp",
    "exec",
    "interval",
    "timeout",
    "failures",
    "successes",
    "initial_delay",
    "startup_grace",
];
pub(crate) const HTTP_FIELDS: &[&str] = &["port", "path"];
pub(crate) const TCP_FIELDS: &[&str] = &["port"];
pub(crate) const EXEC_FIELDS: &[&str] = &["command"];
pub(crate) const RESTART_FIELDS: &[&str] = &["policy", "backoff"];
pub(crate) const VARIABLE_REF_FIELDS: &[&str] = &["variable", "restart_on_change"];
pub(crate) const BACKOFF_FIELDS: &[&str] = &["initial", "max"];
pub(crate) const PLACEMENT_FIELDS: &[&str] = &["constraints"];
pub(crate) const STRATEGY_FIELDS: &[&str] = &[
    "max_unavailable",
    "max_surge",
    "min_healthy_time",
    "healthy_deadline",
    "auto_rollback",
];

/// A long-running service: the typed, validated form of one `kind: Service` document.
/// Durations are milliseconds, CPU millicores, memory bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique among services; a DNS label, so it can name hosts and metrics.
    pub name: String,
    /// How many copies should run.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// The program and its first arguments; never empty, `command[0]` non-empty.
    pub command: Vec<String>,
    /// Extra arguments after `command` (handy when `command` comes from a template).
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Relative to the agent's work folder for the replica when not absolute.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Named ports: the agent picks a free port for each, per replica, and passes
    /// it as `ORION_PORT_<NAME>` (and the first one also as `PORT`).
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub health: Option<HealthCheck>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub strategy: UpdateStrategy,
    /// Lifecycle hooks (see [`super::hooks`]).
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// Environment variables whose values come from Orion variables
    /// (`env: {DB_URL: {variable: prod/db_url}}`), by env name. The stored spec
    /// holds only the reference: the leader resolves it when it sends a replica to
    /// its agent, so a secret's value is never in the spec, its events or
    /// `describe`. Names here are not in `env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_variables: BTreeMap<String, VariableRef>,
    /// For each variable referenced with `restart_on_change`, its `mod_revision`
    /// when this generation was made (0: it did not exist). Written by apply, never
    /// by users: a newer `mod_revision` makes the leader roll a new generation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variable_revisions: BTreeMap<String, u64>,
}

/// An env value taken from a variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableRef {
    /// The variable's path (`prod/db_url`).
    pub variable: String,
    /// A change of the variable rolls the service (same rules as a spec change);
    /// without it, running replicas keep the value they started with.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_on_change: bool,
}

/// Most variable-backed env entries one service may have: each is a read on every
/// desired-set push to the service's agents.
pub const MAX_ENV_VARIABLES: usize = 64;

impl ServiceSpec {
    /// The variables referenced with `restart_on_change`, by path.
    pub fn restart_on_change_paths(&self) -> std::collections::BTreeSet<&str> {
        self.env_variables
            .values()
            .filter(|r| r.restart_on_change)
            .map(|r| r.variable.as_str())
            .collect()
    }
}

fn default_replicas() -> u32 {
    1
}

/// Most replicas one service may ask for. Orion drives fleets of tens of machines;
/// a thousand copies of one service is past any of them, while the leader's work
/// per reconcile round, the Raft entry that places them and `orion get replicas`
/// all grow with it. A typo (`replicas: 1000000`) is refused instead of taking
/// the leader down.
pub const MAX_REPLICAS: u32 = 1_000;

impl ServiceSpec {
    /// The argv to run: `command` then `args`, with `${NAME}` expanded from `env`
    /// (`$$` is a literal `$`). Fails naming the first unknown variable.
    pub fn expand_command(
        &self,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, crate::Invalid> {
        self.expand_command_text(env).map_err(crate::Invalid)
    }

    fn expand_command_text(&self, env: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
        self.command
            .iter()
            .chain(&self.args)
            .map(|part| expand(part, env).map_err(String::from))
            .collect()
    }

    /// The environment variable a port is given as: `http` → `ORION_PORT_HTTP`.
    pub fn port_env_name(port: &str) -> String {
        format!("ORION_PORT_{}", port.to_ascii_uppercase().replace('-', "_"))
    }
}

/// What one replica reserves on its node; the scheduler packs by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Thousandths of a CPU core (`250m`, `0.25`).
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Default for Resources {
    /// 100m CPU and 64Mi memory.
    fn default() -> Self {
        Resources {
            cpu_millis: 100,
            memory_bytes: 64 << 20,
        }
    }
}

/// How the agent decides a replica is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub probe: Probe,
    /// Time between two checks (default 10s).
    pub interval_ms: u64,
    /// How long one check may take before it counts as failed (default 1s).
    pub timeout_ms: u64,
    /// Consecutive failures before the replica is unhealthy (default 3).
    pub failures: u32,
    /// Consecutive successes before it is healthy again (default 1).
    pub successes: u32,
    /// Wait after start before the first check (default 0).
    pub initial_delay_ms: u64,
    /// Until a replica first passes its check, failures within this long of its
    /// start do not count (default 10s): a slow start is not a failure. Kubernetes
    /// calls this a startup probe, Nomad `check_restart.grace`.
    #[serde(default = "default_startup_grace_ms")]
    pub startup_grace_ms: u64,
}

/// The `startup_grace` a health check has when the spec gives none.
pub const DEFAULT_STARTUP_GRACE_MS: u64 = 10_000;

fn default_startup_grace_ms() -> u64 {
    DEFAULT_STARTUP_GRACE_MS
}

/// One kind of check; ports are names from the service's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    /// `GET path` on the port answers 2xx or 3xx.
    Http { port: String, path: String },
    /// The port accepts a TCP connection.
    Tcp { port: String },
    /// The command exits 0.
    Exec { command: Vec<String> },
}

/// When to restart an exited replica, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    pub policy: RestartMode,
    pub backoff: Backoff,
}

impl Default for RestartPolicy {
    /// A service's default: always restart, backoff 1s doubling to 1m.
    fn default() -> Self {
        RestartPolicy {
            policy: RestartMode::Always,
            backoff: Backoff::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// Whatever the exit status.
    Always,
    /// Only after a non-zero exit or a signal.
    OnFailure,
    Never,
}

impl RestartMode {
    const NAMES: [(&'static str, RestartMode); 3] = [
        ("always", RestartMode::Always),
        ("on-failure", RestartMode::OnFailure),
        ("never", RestartMode::Never),
    ];
}

/// Delay before restart number n: `initial * 2^(n-1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: 1_000,
            max_ms: 60_000,
        }
    }
}

/// Where replicas may run: every constraint must hold for the node's labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    pub constraints: Vec<Constraint>,
}

/// How a rolling update replaces replicas (Nomad's `update` block, Kubernetes'
/// `RollingUpdate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateStrategy {
    /// Replicas that may be down at once during the update (default 1).
    pub max_unavailable: u32,
    /// Extra replicas of the new revision that may run above `replicas` during the
    /// update (default 1): surge slots at ordinals `replicas ..`, removed once the
    /// update completes. With `max_unavailable: 0` no replica is taken down before a
    /// new one is available.
    pub max_surge: u32,
    /// How long a new replica must stay healthy before it counts as available and
    /// the next batch may start (default 0s).
    #[serde(default)]
    pub min_healthy_time_ms: u64,
    /// A replica of the new revision that is not available this long after it was
    /// started fails the rollout (default 5m).
    #[serde(default = "default_healthy_deadline_ms")]
    pub healthy_deadline_ms: u64,
    /// A failed rollout restores the previous revision by itself (default false).
    #[serde(default)]
    pub auto_rollback: bool,
}

impl ServiceSpec {
    /// The spec as one replica's process sees it: without the replica count, the
    /// update strategy and the hooks the leader runs (`after_deploy`, `on_failure`),
    /// so scaling a service, changing how it rolls or what it tells afterwards
    /// restarts no replica. Two replicas need the same process exactly when these
    /// are equal. `before_start` stays: it is part of each start.
    pub fn process_view(&self) -> ServiceSpec {
        ServiceSpec {
            replicas: 1,
            strategy: UpdateStrategy::default(),
            hooks: Hooks {
                before_start: self.hooks.before_start.clone(),
                after_deploy: None,
                on_failure: None,
            },
            ..self.clone()
        }
    }
}

/// The `healthy_deadline` of a strategy that gives none: five minutes.
pub const DEFAULT_HEALTHY_DEADLINE_MS: u64 = 5 * 60 * 1000;

fn default_healthy_deadline_ms() -> u64 {
    DEFAULT_HEALTHY_DEADLINE_MS
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        UpdateStrategy {
            max_unavailable: 1,
            max_surge: 1,
            min_healthy_time_ms: 0,
            healthy_deadline_ms: DEFAULT_HEALTHY_DEADLINE_MS,
            auto_rollback: false,
        }
    }
}

/// `name`, read and checked; with the position of its value.
pub(crate) fn decode_name(dec: &mut Decoder, f: &Fields) -> Option<(String, Pos)> {
    let node = dec.required(f, "name")?;
    let name = dec.string(node, "name")?;
    dec.check(node, "name", validate_name(&name))?;
    Some((name, node.at))
}

/// The parts of a Service a Job shares: how to run the process and where.
pub(crate) struct Process {
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Env entries taken from variables (`{variable: path}`).
    pub env_variables: BTreeMap<String, VariableRef>,
    pub working_dir: Option<String>,
    pub resources: Resources,
    pub restart: RestartPolicy,
    pub placement: Placement,
}

pub(crate) fn decode_process(
    dec: &mut Decoder,
    f: &Fields,
    default_restart: RestartMode,
) -> Option<Process> {
    let command = dec
        .required(f, "command")
        .and_then(|n| decode_command(dec, n, "command"));
    let args = match f.get("args") {
        None => Some(Vec::new()),
        Some(n) => dec
            .text_list(n, "args")
            .map(|v| v.into_iter().map(|(s, _)| s).collect()),
    };
    let env = f
        .get("env")
        .map_or(Some(Env::default()), |n| decode_env(dec, n));
    let working_dir = match f.get("working_dir") {
        None => Some(None),
        Some(n) => dec.string(n, "working_dir").map(Some),
    };
    let resources = f
        .get("resources")
        .map_or(Some(Resources::default()), |n| decode_resources(dec, n));
    let restart = match f.get("restart") {
        None => Some(RestartPolicy {
            policy: default_restart,
            backoff: Backoff::default(),
        }),
        Some(n) => decode_restart(dec, n, default_restart),
    };
    let placement = f
        .get("placement")
        .map_or(Some(Placement::default()), |n| decode_placement(dec, n));
    let env = env?;
    let (command, args) = (command?, args?);
    let argv = [("command", command.as_slice()), ("args", args.as_slice())];
    if !check_no_variable_in_argv(dec, f, &argv, &env.variables) {
        return None;
    }
    Some(Process {
        command,
        args,
        env: env.literal,
        env_variables: env.variables,
        working_dir: working_dir?,
        resources: resources?,
        restart: restart?,
        placement: placement?,
    })
}

/// A decoded `env`: literal values and variable references.
#[derive(Default)]
struct Env {
    literal: BTreeMap<String, String>,
    variables: BTreeMap<String, VariableRef>,
}

fn decode_env(dec: &mut Decoder, node: &Node) -> Option<Env> {
    let f = dec.mapping(node, "env")?;
    let mut env = Env::default();
    let mut ok = true;
    for (key, value) in f.entries() {
        let field = format!("env.{}", key.name);
        if !is_env_name(&key.name) {
            dec.error(
                key.at,
                &field,
                format!(
                    "`{}` is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
                    key.name
                ),
            );
            ok = false;
        }
        if matches!(value.value, super::node::Value::Map(_)) {
            if env.variables.len() == MAX_ENV_VARIABLES {
                dec.error(
                    value.at,
                    &field,
                    format!(
                        "more than {MAX_ENV_VARIABLES} env entries take their value from a variable"
                    ),
                );
                ok = false;
                continue;
            }
            match decode_variable_ref(dec, value, &field) {
                Some(r) => {
                    env.variables.insert(key.name.clone(), r);
                }
                None => ok = false,
            }
            continue;
        }
        match dec.text(value, &field) {
            Some(v) => {
                env.literal.insert(key.name.clone(), v);
            }
            None => ok = false,
        }
    }
    ok.then_some(env)
}

/// `{variable: prod/db_url, restart_on_change: true}`.
fn decode_variable_ref(dec: &mut Decoder, node: &Node, field: &str) -> Option<VariableRef> {
    let f = dec.fields(node, field, VARIABLE_REF_FIELDS)?;
    let path = dec.required(&f, "variable").and_then(|n| {
        let path_field = f.path("variable");
        let path = dec.string(n, &path_field)?;
        dec.check(n, &path_field, crate::variable::validate_path(&path))?;
        Some(path)
    });
    let restart = f.get("restart_on_change").map_or(Some(false), |n| {
        dec.boolean(n, &f.path("restart_on_change"))
    });
    Some(VariableRef {
        variable: path?,
        restart_on_change: restart?,
    })
}

/// A variable-backed env entry may not be expanded into `command` or `args`: the
/// argv of a process is readable by every user of the machine (`ps`,
/// `/proc/<pid>/cmdline`), and the value may be a secret. Records the error and
/// returns false when one is.
fn check_no_variable_in_argv(
    dec: &mut Decoder,
    f: &Fields,
    argv: &[(&str, &[String])],
    variables: &BTreeMap<String, VariableRef>,
) -> bool {
    let mut ok = true;
    for (field, parts) in argv {
        for (i, part) in parts.iter().enumerate() {
            for name in super::expand::referenced_names(part) {
                let Some(r) = variables.get(&name) else {
                    continue;
                };
                let at = f
                    .get(field.split('.').next().unwrap_or(field))
                    .map_or(f.at, |n| n.at);
                dec.error(
                    at,
                    &format!("{field}[{i}]"),
                    format!(
                        "`${{{name}}}` would put the value of variable `{}` on the command line, \
                         which every user of the machine can read (ps, /proc/PID/cmdline); \
                         read {name} from the environment in the program instead",
                        r.variable
                    ),
                );
                ok = false;
            }
        }
    }
    ok
}

fn decode_resources(dec: &mut Decoder, node: &Node) -> Option<Resources> {
    let f = dec.fields(node, "resources", RESOURCES_FIELDS)?;
    let defaults = Resources::default();
    let cpu = match f.get("cpu") {
        None => Some(defaults.cpu_millis),
        Some(n) => {
            let text = dec.text(n, "resources.cpu")?;
            dec.check(n, "resources.cpu", parse_cpu_millis(&text))
        }
    };
    let memory = match f.get("memory") {
        None => Some(defaults.memory_bytes),
        Some(n) => {
            let text = dec.text(n, "resources.memory")?;
            dec.check(n, "resources.memory", parse_memory_bytes(&text))
        }
    };
    Some(Resources {
        cpu_millis: cpu?,
        memory_bytes: memory?,
    })
}

fn decode_restart(dec: &mut Decoder, node: &Node, default: RestartMode) -> Option<RestartPolicy> {
    let f = dec.fields(node, "restart", RESTART_FIELDS)?;
    let policy = match f.get("policy") {
        None => Some(default),
        Some(n) => {
            let text = dec.string(n, "restart.policy")?;
            let found = RestartMode::NAMES.iter().find(|(name, _)| *name == text);
            dec.check(
                n,
                "restart.policy",
                found.map(|(_, mode)| *mode).ok_or_else(|| {
                    format!("unknown policy `{text}`, expected `always`, `on-failure` or `never`")
                }),
            )
        }
    };
    let backoff = match f.get("backoff") {
        None => Some(Backoff::default()),
        Some(n) => decode_backoff(dec, n, "restart.backoff", Backoff::default()),
    };
    Some(RestartPolicy {
        policy: policy?,
        backoff: backoff?,
    })
}

/// Decodes a `{initial, max}` backoff at `path` (a service's `restart.backoff`, a
/// job's `backoff`); a field left out takes its value from `defaults`.
pub(crate) fn decode_backoff(
    dec: &mut Decoder,
    node: &Node,
    path: &str,
    defaults: Backoff,
) -> Option<Backoff> {
    let f = dec.fields(node, path, BACKOFF_FIELDS)?;
    let (initial_path, max_path) = (format!("{path}.initial"), format!("{path}.max"));
    let initial = f.get("initial").map_or(Some(defaults.initial_ms), |n| {
        dec.duration(n, &initial_path)
    });
    let max = f
        .get("max")
        .map_or(Some(defaults.max_ms), |n| dec.duration(n, &max_path));
    let (initial_ms, max_ms) = (initial?, max?);
    if initial_ms == 0 {
        let at = f.get("initial").map_or(f.at, |n| n.at);
        dec.error(at, &initial_path, "must be greater than zero");
        return None;
    }
    if initial_ms > max_ms {
        let (field, at) = match (f.get("initial"), f.get("max")) {
            (_, Some(n)) => (max_path.as_str(), n.at),
            (Some(n), None) => (initial_path.as_str(), n.at),
            (None, None) => (path, f.at),
        };
        dec.error(
            at,
            field,
            format!(
                "initial backoff ({}) is longer than max ({})",
                super::duration::format_duration_ms(initial_ms),
                super::duration::format_duration_ms(max_ms)
            ),
        );
        return None;
    }
    Some(Backoff { initial_ms, max_ms })
}

fn decode_placement(dec: &mut Decoder, node: &Node) -> Option<Placement> {
    let f = dec.fields(node, "placement", PLACEMENT_FIELDS)?;
    let Some(list) = f.get("constraints") else {
        return Some(Placement::default());
    };
    let items = dec.text_list(list, "placement.constraints")?;
    let mut constraints = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, (text, at)) in items.iter().enumerate() {
        match parse_constraint(text) {
            Ok(c) => constraints.push(c),
            Err(e) => {
                dec.error(*at, &format!("placement.constraints[{i}]"), e);
                ok = false;
            }
        }
    }
    ok.then_some(Placement { constraints })
}

/// Port names: valid, unique; with positions for the health check to refer to.
fn decode_ports(dec: &mut Decoder, node: &Node) -> Option<Vec<(String, Pos)>> {
    let ports = dec.text_list(node, "ports")?;
    let mut ok = true;
    for (i, (name, at)) in ports.iter().enumerate() {
        let field = format!("ports[{i}]");
        if let Err(e) = validate_name(name) {
            dec.error(*at, &field, e);
            ok = false;
        } else if let Some((_, first)) = ports[..i].iter().find(|(n, _)| n == name) {
            dec.error(
                *at,
                &field,
                format!(
                    "port `{name}` is listed twice (first at line {})",
                    first.line
                ),
            );
            ok = false;
        }
    }
    ok.then_some(ports)
}

/// `ports` is `None` when they could not be read (their error is already recorded).
fn decode_health(
    dec: &mut Decoder,
    node: &Node,
    ports: Option<&[(String, Pos)]>,
) -> Option<HealthCheck> {
    let f = dec.fields(node, "health", HEALTH_FIELDS)?;
    let kinds: Vec<&str> = ["http", "tcp", "exec"]
        .into_iter()
        .filter(|k| f.get(k).is_some())
        .collect();
    let probe = match kinds.as_slice() {
        [] => {
            dec.error(f.at, "health", "needs one of `http`, `tcp` or `exec`");
            None
        }
        [kind] => decode_probe(dec, &f, kind, ports),
        [first, second, ..] => {
            let at = f.key_at(second).unwrap_or(f.at);
            dec.error(
                at,
                &format!("health.{second}"),
                format!("only one of `http`, `tcp` or `exec` may be given (found `{first}` too)"),
            );
            None
        }
    };
    let duration = |dec: &mut Decoder, name: &str, default: u64| {
        f.get(name).map_or(Some(default), |n| {
            dec.duration(n, &format!("health.{name}"))
        })
    };
    let interval = duration(dec, "interval", 10_000);
    let timeout = duration(dec, "timeout", 1_000);
    let initial_delay = duration(dec, "initial_delay", 0);
    let startup_grace = duration(dec, "startup_grace", DEFAULT_STARTUP_GRACE_MS);
    let failures = f
        .get("failures")
        .map_or(Some(3), |n| dec.positive::<u32>(n, "health.failures"));
    let successes = f
        .get("successes")
        .map_or(Some(1), |n| dec.positive::<u32>(n, "health.successes"));
    for (name, value) in [("interval", interval), ("timeout", timeout)] {
        if value == Some(0) {
            let at = f.get(name).map_or(f.at, |n| n.at);
            dec.error(at, &format!("health.{name}"), "must be greater than zero");
            return None;
        }
    }
    Some(HealthCheck {
        probe: probe?,
        interval_ms: interval?,
        timeout_ms: timeout?,
        failures: failures?,
        successes: successes?,
        initial_delay_ms: initial_delay?,
        startup_grace_ms: startup_grace?,
    })
}

fn decode_probe(
    dec: &mut Decoder,
    health: &Fields,
    kind: &str,
    ports: Option<&[(String, Pos)]>,
) -> Option<Probe> {
    let node = health.get(kind)?;
    let path = format!("health.{kind}");
    match kind {
        "exec" => {
            let f = dec.fields(node, &path, EXEC_FIELDS)?;
            let command = dec.required(&f, "command")?;
            decode_command(dec, command, "health.exec.command")
                .map(|command| Probe::Exec { command })
        }
        _ => {
            let allowed = if kind == "http" {
                HTTP_FIELDS
            } else {
                TCP_FIELDS
            };
            let f = dec.fields(node, &path, allowed)?;
            let port = dec.required(&f, "port").and_then(|n| {
                let field = f.path("port");
                let name = dec.string(n, &field)?;
                let Some(ports) = ports else {
                    return Some(name);
                };
                if ports.iter().any(|(p, _)| *p == name) {
                    return Some(name);
                }
                let known = if ports.is_empty() {
                    "the service has no `ports`".to_owned()
                } else {
                    let names: Vec<String> = ports.iter().map(|(p, _)| format!("`{p}`")).collect();
                    format!("expected one of {}", names.join(", "))
                };
                dec.error(
                    n.at,
                    &field,
                    format!("port `{name}` is not in `ports`: {known}"),
                );
                None
            });
            if kind == "tcp" {
                return Some(Probe::Tcp { port: port? });
            }
            let http_path = match f.get("path") {
                None => Some("/".to_owned()),
                Some(n) => {
                    let field = f.path("path");
                    let p = dec.string(n, &field)?;
                    if p.starts_with('/') {
                        Some(p)
                    } else {
                        dec.error(n.at, &field, format!("`{p}` must start with `/`"));
                        None
                    }
                }
            };
            Some(Probe::Http {
                port: port?,
                path: http_path?,
            })
        }
    }
}

fn decode_strategy(dec: &mut Decoder, node: &Node) -> Option<UpdateStrategy> {
    let f = dec.fields(node, "strategy", STRATEGY_FIELDS)?;
    let defaults = UpdateStrategy::default();
    let unavailable = f
        .get("max_unavailable")
        .map_or(Some(defaults.max_unavailable), |n| {
            dec.uint::<u32>(n, "strategy.max_unavailable")
        });
    let surge = f.get("max_surge").map_or(Some(defaults.max_surge), |n| {
        dec.uint::<u32>(n, "strategy.max_surge")
    });
    let min_healthy = f
        .get("min_healthy_time")
        .map_or(Some(defaults.min_healthy_time_ms), |n| {
            dec.duration(n, "strategy.min_healthy_time")
        });
    let deadline = f
        .get("healthy_deadline")
        .map_or(Some(defaults.healthy_deadline_ms), |n| {
            dec.duration(n, "strategy.healthy_deadline")
        });
    let auto_rollback = f
        .get("auto_rollback")
        .map_or(Some(false), |n| dec.boolean(n, "strategy.auto_rollback"));
    let (max_unavailable, max_surge) = (unavailable?, surge?);
    let (min_healthy_time_ms, healthy_deadline_ms, auto_rollback) =
        (min_healthy?, deadline?, auto_rollback?);
    if healthy_deadline_ms == 0 {
        let at = f.get("healthy_deadline").map_or(f.at, |n| n.at);
        dec.error(at, "strategy.healthy_deadline", "must be greater than zero");
        return None;
    }
    for (field, n) in [
        ("max_unavailable", max_unavailable),
        ("max_surge", max_surge),
    ] {
        if n > MAX_REPLICAS {
            let at = f.get(field).map_or(f.at, |n| n.at);
            dec.error(
                at,
                &format!("strategy.{field}"),
                format!("{n} is above the limit of {MAX_REPLICAS} (the most replicas a service can have)"),
            );
            return None;
        }
    }
    if max_unavailable == 0 && max_surge == 0 {
        dec.error(
            f.at,
            "strategy",
            "`max_unavailable` and `max_surge` cannot both be 0: an update could never start",
        );
        return None;
    }
    Some(UpdateStrategy {
        max_unavailable,
        max_surge,
        min_healthy_time_ms,
        healthy_deadline_ms,
        auto_rollback,
    })
}

/// Decodes one `kind: Service` document; `None` once any error was recorded.
/// Also returns where the name is written, for duplicate-name errors.
pub(crate) fn decode_service(dec: &mut Decoder, node: &Node) -> Option<(ServiceSpec, Pos)> {
    let before = dec.errors.len();
    let f = dec.fields(node, "", SERVICE_FIELDS)?;
    let name = decode_name(dec, &f);
    let replicas = f.get("replicas").map_or(Some(1), |n| {
        let r = dec.uint::<u32>(n, "replicas")?;
        if r > MAX_REPLICAS {
            dec.error(
                n.at,
                "replicas",
                format!("{r} is above the limit of {MAX_REPLICAS} replicas per service"),
            );
            return None;
        }
        Some(r)
    });
    let process = decode_process(dec, &f, RestartMode::Always);
    let ports = f
        .get("ports")
        .map_or(Some(Vec::new()), |n| decode_ports(dec, n));
    let health = match f.get("health") {
        None => Some(None),
        Some(n) => decode_health(dec, n, ports.as_deref()).map(Some),
    };
    let strategy = f
        .get("strategy")
        .map_or(Some(UpdateStrategy::default()), |n| decode_strategy(dec, n));
    let hooks = f
        .get("hooks")
        .map_or(Some(Hooks::default()), |n| decode_hooks(dec, n));
    if let (Some(process), Some(Some(health))) = (&process, &health) {
        if let Probe::Exec { command } = &health.probe {
            let argv = [("health.exec.command", command.as_slice())];
            check_no_variable_in_argv(dec, &f, &argv, &process.env_variables);
        }
    }
    if dec.errors.len() > before {
        return None;
    }
    let (name, name_at) = name?;
    let process = process?;
    let spec = ServiceSpec {
        name,
        replicas: replicas?,
        command: process.command,
        args: process.args,
        env: process.env,
        working_dir: process.working_dir,
        ports: ports?.into_iter().map(|(p, _)| p).collect(),
        resources: process.resources,
        health: health?,
        restart: process.restart,
        placement: process.placement,
        strategy: strategy?,
        hooks: hooks?,
        env_variables: process.env_variables,
        variable_revisions: BTreeMap::new(),
    };
    Some((spec, name_at))
}
