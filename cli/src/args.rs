//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The URLs `orion dev` serves on.
pub const DEFAULT_SERVERS: &str =
    "https://127.0.0.1:7401,https://127.0.0.1:7402,https://127.0.0.1:7403";

#[derive(Debug, Parser)]
#[command(
    name = "orion",
    version,
    about = "Orion: a fault-tolerant control plane for running services on a fleet"
)]
pub struct Cli {
    /// Client options written before the subcommand (`orion --server X get …`).
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// [`ClientOpts`] written before the subcommand. clap cannot declare one flag at
/// both levels (and `server`/`agent` have a `--token` of their own), so these
/// are separate and [`ClientOpts::or_global`] merges them: a flag after the
/// subcommand wins over the same flag before it.
///
/// The environment variables belong here, so their precedence is: the flag after
/// the subcommand, the flag before it, the variable, the context.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalOpts {
    /// API URLs of one or more peers; calls fail over between them (default: the context's).
    #[arg(
        long = "server",
        env = "ORION_SERVER",
        value_delimiter = ',',
        value_name = "SERVER"
    )]
    pub server: Vec<String>,
    /// The context to use from the config file (default: its current context).
    #[arg(long = "context", env = "ORION_CONTEXT", value_name = "CONTEXT")]
    pub context: Option<String>,
    /// Bearer token (default: the context's).
    #[arg(
        long = "token",
        env = "ORION_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// The cluster CA certificate, PEM (default: the context's).
    #[arg(long = "ca-file", env = "ORION_CA_FILE", value_name = "CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Output format of read commands.
    #[arg(short = 'o', long = "output", value_enum, value_name = "OUTPUT")]
    pub output: Option<Output>,
}

impl ClientOpts {
    /// These options, with what was written before the subcommand filling the
    /// ones not given after it (nor by their environment variable).
    pub fn or_global(mut self, global: &GlobalOpts) -> ClientOpts {
        if self.server.is_empty() {
            self.server.clone_from(&global.server);
        }
        if self.context.is_none() {
            self.context.clone_from(&global.context);
        }
        if self.token.is_none() {
            self.token.clone_from(&global.token);
        }
        if self.ca_file.is_none() {
            self.ca_file.clone_from(&global.ca_file);
        }
        if self.output == Output::default() {
            self.output = global.output.unwrap_or_default();
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// API URLs of one or more peers; calls fail over between them (default: the context's).
    #[arg(long, value_delimiter = ',', global = true)]
    pub server: Vec<String>,
    /// The context to use from the config file (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Bearer token (default: the context's).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// The cluster CA certificate, PEM (default: the context's).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Request id (Idempotency-Key) of this command's write, to send again a write
    /// whose outcome was unknown: the cluster applies an id once (default: a new one).
    #[arg(long, env = "ORION_REQUEST_ID", global = true)]
    pub request_id: Option<String>,
    /// Output format of read commands.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a control-plane peer.
    Server(Box<ServerArgs>),
    /// Run the node agent: connect to the cluster and run the replicas placed here.
    Agent(AgentArgs),
    /// Start a local three-peer cluster on loopback, each peer its own process.
    Dev(DevArgs),
    /// Inspect and change the control-plane membership.
    Cluster {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Create or update the workloads described in YAML files (`-f -` reads stdin).
    Apply {
        #[command(flatten)]
        opts: ClientOpts,
        /// A file, a folder of `.yaml`/`.yml` files, or `-` for standard input. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Then follow each changed service's rollout until it completes (exit 0) or
        /// fails (exit 1).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (e.g. 90s, 10m).
        #[arg(long, default_value = "10m", requires = "wait")]
        timeout: String,
    },
    /// Cordon, drain, uncordon or delete a node (admin).
    Node {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Follow, inspect and steer a service's rolling update.
    Rollout {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// List or show workloads.
    Get {
        #[command(flatten)]
        opts: ClientOpts,
        kind: Kind,
        name: Option<String>,
        #[arg(long)]
        stale: bool,
        /// Then print each change as it happens (Ctrl-C stops); survives failovers.
        #[arg(short, long)]
        watch: bool,
        /// With --watch: start from this position (a `REV.SEQ` cursor, as printed, or a
        /// revision) instead of listing first.
        #[arg(long, value_name = "POS", requires = "watch")]
        from: Option<String>,
    },
    /// Show a service: its spec, its replicas with node and state, recent events.
    Describe {
        #[command(flatten)]
        opts: ClientOpts,
        kind: Kind,
        name: String,
    },
    /// Delete a workload.
    Delete {
        #[command(flatten)]
        opts: ClientOpts,
        kind: Kind,
        name: String,
    },
    /// Print a replica's logs (stdout and stderr), or every replica's of a service.
    Logs {
        #[command(flatten)]
        opts: ClientOpts,
        /// A replica id (`web-0`) or a service name.
        target: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Lines of history per stream.
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// Run a command in a replica's environment and working folder; exits with its code.
    Exec {
        #[command(flatten)]
        opts: ClientOpts,
        replica: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Restart a replica's process: stopped (SIGTERM, then SIGKILL after the
    /// agent's grace) and started again, whatever its restart policy.
    Restart {
        #[command(flatten)]
        opts: ClientOpts,
        /// The replica, `SERVICE-ORDINAL` (e.g. `web-0`).
        replica: String,
    },
    /// Print the JSON Schema of an `orion.yaml` document, for editors.
    Schema,
    /// Print the OpenAPI 3.1 document of the REST API (what every peer serves at
    /// `/v1/openapi.json`; `docs/openapi.json` is this output).
    Openapi,
    /// Print this CLI's version and the version of the server it reaches.
    Version {
        #[command(flatten)]
        opts: ClientOpts,
        /// Print only the CLI's own version, without asking a server.
        #[arg(long)]
        client: bool,
    },
    /// Create, list and revoke tokens (admin).
    Token {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Named connections (servers, CA, token) in the config file, like kubeconfig.
    Context {
        #[command(subcommand)]
        command: ContextCommand,
    },
    /// Back up the replicated state, check a backup, or restore one into a new
    /// one-peer cluster.
    Snapshot(SnapshotArgs),
    /// Read and write variables (small CAS-able config values).
    Var {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        command: VarCommand,
    },
    /// Run a job now (`orion job run NAME`).
    Job {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        command: JobCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Start a run of the job now, whatever its schedule; prints the run's id.
    /// Retried under one request id: a lost answer never starts a second run.
    Run { job: String },
}

/// Workload kinds the CLI can get and delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    #[value(alias = "service", alias = "svc")]
    Services,
    #[value(alias = "node")]
    Nodes,
    #[value(alias = "replica")]
    Replicas,
    #[value(alias = "job")]
    Jobs,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML file with the same settings as the flags; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Member id: unique, above 0, never reused.
    #[arg(long)]
    pub id: Option<u64>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// REST API listen address (host:port).
    #[arg(long)]
    pub api_addr: Option<String>,
    /// Raft gRPC listen address (ip:port; default: the --api-addr host, port 7500).
    #[arg(long)]
    pub peer_addr: Option<String>,
    /// QUIC agent gateway listen address (ip:port, UDP; default: the --api-addr host, port 7600).
    #[arg(long)]
    pub agent_addr: Option<String>,
    #[arg(long)]
    pub advertise_agent_addr: Option<String>,
    #[arg(long)]
    pub advertise_api_addr: Option<String>,
    #[arg(long)]
    pub advertise_peer_addr: Option<String>,
    /// Start a new cluster with this peer as its first member.
    #[arg(long)]
    pub bootstrap: bool,
    /// Join the cluster that any of these member URLs belongs to.
    #[arg(long, value_delimiter = ',')]
    pub join: Vec<String>,
    /// A single-use `server` join token (`orion token create --role server`).
    #[arg(long, env = "ORION_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An extra DNS name or IP for this peer's certificate, such as a load
    /// balancer's. Repeatable; replaces the config file's `tls-san`.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_san: Vec<String>,
    /// After a majority of the peers is lost for good: make this peer a one-peer
    /// cluster with its own data, which fresh peers then join. Writes that never
    /// reached this peer are lost; remove the flag once it has started.
    #[arg(long)]
    pub force_new_cluster: bool,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Write a consistent backup, taken on the leader, to FILE (via FILE.tmp,
    /// fsynced, renamed); prints its revision, size and checksum.
    Save {
        #[command(flatten)]
        opts: ClientOpts,
        file: PathBuf,
    },
    /// Check a backup offline (checksum, format, header) and print what it holds.
    Status {
        file: PathBuf,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Make a new data directory (--data-dir, absent or empty) holding a one-peer
    /// cluster seeded from FILE: same objects and revisions, same CA and tokens
    /// unless --new-ca. Then start it with `orion server` and the same flags, and
    /// join fresh peers to it.
    Restore {
        file: PathBuf,
        /// A new CA and token key: every old token and certificate (agents', too)
        /// stops working; the first start writes a new admin token.
        #[arg(long)]
        new_ca: bool,
        /// The peer's settings, as `orion server` takes them (`--id` defaults to 1).
        #[command(flatten)]
        server: Box<ServerArgs>,
    },
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// TOML file with the same settings as the flags (see `deploy/agent.toml`);
    /// flags override it, unknown keys are errors.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// API URLs of any peers; the agent finds the leader's gateway from them
    /// (default: the `orion dev` URLs).
    #[arg(long, env = "ORION_SERVER", value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Node name (default: this machine's host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Node labels, `k=v,k=v`, matched by placement constraints; replace the
    /// config file's.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// A single-use `agent` join token (`orion token create --role agent`); needed
    /// only the first time, until the agent has its certificate.
    #[arg(long, env = "ORION_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the agent keeps its certificate, replica records, logs and ports
    /// (default: `orion-agent-data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// CPU offered to replicas, in millicores (default: all cores).
    #[arg(long)]
    pub cpu_millis: Option<u64>,
    /// Memory offered to replicas, in bytes (default: the machine's memory).
    #[arg(long)]
    pub memory_bytes: Option<u64>,
    /// Serve this agent's Prometheus metrics at `http://ADDR/metrics` (plain HTTP,
    /// no token: keep it on loopback or a monitoring network). Off by default;
    /// port 0 picks one, written to `<data-dir>/listen.json` as `metrics`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Folder for the peers' data and logs.
    #[arg(long, default_value = ".orion-dev")]
    pub dir: PathBuf,
    /// First API port; peers use this and the next two. Raft ports start 100 higher,
    /// agent gateway (UDP) ports 200 higher.
    #[arg(long, default_value_t = 7401)]
    pub port: u16,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members with their addresses, role, leader, and replication lag.
    Members {
        /// Answer from the contacted peer without asking the leader.
        #[arg(long)]
        stale: bool,
    },
    /// The contacted peer's own view: state, term, log and applied indexes.
    Status,
    /// Add a running peer (not yet a member) to the cluster, by its API URL.
    Join { url: String },
    /// Remove a member by id. Its id is never used again.
    Remove { id: u64 },
    /// Hand leadership to voter ID (default: the most up-to-date voter). New
    /// writes wait meanwhile, then go to the new leader; none fails.
    TransferLeader { id: Option<u64> },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// No new replicas on the node; those it runs stay.
    Cordon { node: String },
    /// The node takes replicas again (this also ends a drain).
    Uncordon { node: String },
    /// Cordon the node and move its replicas elsewhere, never more of a service at
    /// once than its `strategy.max_unavailable`; follows until the node is empty.
    Drain {
        node: String,
        /// After this long, every replica left moves at once (e.g. 90s, 1h; at most 7 days).
        #[arg(long, default_value = "1h")]
        deadline: String,
        /// Start the drain and return instead of following it.
        #[arg(long)]
        detach: bool,
    },
    /// Forget a node that is gone for good: its replicas are placed elsewhere. A
    /// live agent registers again when it reconnects.
    Delete { node: String },
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Print the rollout's progress until it completes or fails (exit 1).
    Status {
        service: String,
        /// Print once and return instead of following.
        #[arg(long)]
        no_follow: bool,
        /// Give up following after this long (e.g. 90s, 10m).
        #[arg(long, default_value = "10m")]
        timeout: String,
    },
    /// The service's revisions: the current one and those `undo` can restore.
    History { service: String },
    /// Restore the previous revision (or `--to-revision N`); it rolls out as a new one.
    Undo {
        service: String,
        #[arg(long)]
        to_revision: Option<u64>,
    },
    /// Stop moving replicas to the new revision.
    Pause { service: String },
    /// Carry on after `pause`.
    Resume { service: String },
}

#[derive(Debug, Subcommand)]
pub enum VarCommand {
    /// Create or replace a variable.
    Put {
        path: String,
        value: String,
        /// Only if the variable's revision is this (0: only if it does not exist).
        #[arg(long)]
        expected_revision: Option<u64>,
        /// A secret: kept out of events and hidden from readonly tokens.
        #[arg(long)]
        secret: bool,
    },
    /// Read a variable.
    Get {
        path: String,
        #[arg(long)]
        stale: bool,
    },
    /// Delete a variable.
    Delete {
        path: String,
        #[arg(long)]
        expected_revision: Option<u64>,
    },
    /// List variables by path prefix.
    List {
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long)]
        stale: bool,
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token and print it (it is shown only this once).
    Create {
        /// admin, developer, readonly; or server, agent for single-use join tokens.
        #[arg(long)]
        role: String,
        /// Lifetime: `90s`, `30m`, `1h`, `7d`.
        #[arg(long, default_value = "24h")]
        ttl: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Token records: id, role, expiry, used, revoked (never the tokens).
    List,
    /// Revoke a token by id; every peer refuses it from then on.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Add (or replace) a context and make it current. Without `--ca-file`, the CA
    /// is fetched from the server and checked against the token's fingerprint.
    Add {
        name: String,
        #[arg(long, value_delimiter = ',', required = true)]
        server: Vec<String>,
        #[arg(long)]
        token: String,
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Make a context the current one.
    Use { name: String },
    /// The contexts; `*` marks the current one.
    List,
}
