//! The agent's link to the control plane: find the cluster, verify it, follow
//! redirects to the leader, and keep one QUIC session to it.
//!
//! The first start trades a join token for an agent certificate naming this node
//! (the token carries the CA fingerprint, so the cluster is verified before it is
//! trusted); later starts load it from `<data-dir>/tls`. Gateways are found
//! through any peer's API and reached with mutual TLS 1.3: the agent accepts only
//! server certificates of its cluster, and the gateway only agent certificates.
//! The certificate is renewed two thirds into its life without a restart.
//! A follower redirects to the leader; on any loss the agent reconnects with
//! exponential backoff and jitter. Its processes keep running while it is
//! disconnected: the supervisor only changes what it runs when a new desired set
//! arrives.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orion_api::agent_proto::{
    self, write_frame, AgentMessage, DesiredReplica, ExecResult, FrameReader, LogCursor, LogRecord,
    LogRecordKind, LogStreamName, NodeUsage, ReplicaReport, ServerMessage, StreamRequest, ALPN,
};
use orion_api::spec::Resources;
use orion_api::AgentBootstrap;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::logs::{self, LogEvent, LogStream};
use crate::supervisor::{ReplicaSpec, ReplicaState, Supervisor};

/// How long a silent QUIC link lives: how fast a dead leader is noticed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Who this agent is and where the cluster is.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// API URLs of any peers.
    pub servers: Vec<String>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    /// Replica records, logs and port allocations.
    pub data_dir: PathBuf,
    /// A single-use agent join token, needed until the agent has a certificate.
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Io(String),
}

/// Runs the agent until `shutdown`. Processes are left running at shutdown; a
/// restarted agent adopts them again.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), SessionError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| SessionError::Io(e.to_string()))?;
    let supervisor = Arc::new(Supervisor::new(
        config.data_dir.join("supervisor"),
        shutdown.child_token(),
    ));
    let mut ports = PortBook::load(config.data_dir.join("ports.json"));
    let creds = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        c = credentials(&config) => c?,
    };
    let live = creds
        .live_for(&orion_tls::Identity::agent(&config.name))
        .map_err(|e| {
            SessionError::Io(format!(
                "{}: {e}; use another --data-dir or join again",
                config.data_dir.join("tls").display()
            ))
        })?;
    let renewal = tokio::spawn(renew_loop(
        config.clone(),
        creds.ca_pem.clone(),
        live.clone(),
        shutdown.clone(),
    ));
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(
            orion_tls::config::client_config(&creds.ca_pem, None)
                .map_err(|e| SessionError::Io(e.to_string()))?,
        )
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| SessionError::Io(e.to_string()))?;
    let client = client_config(&creds.ca_pem, live.clone()).map_err(SessionError::Io)?;
    let mut backoff = Backoff::default();
    let mut target: Option<String> = None;
    while !shutdown.is_cancelled() {
        let Some(boot) = bootstrap(&http, &config.servers).await else {
            backoff.wait(&shutdown).await;
            continue;
        };
        let addrs: Vec<String> = target.take().into_iter().chain(boot.agent_addrs).collect();
        for addr in addrs {
            match connect_once(&config, &client, &addr, &supervisor, &mut ports, &shutdown).await {
                Outcome::Redirect(Some(leader)) => {
                    target = Some(leader);
                    break;
                }
                Outcome::Redirect(None) | Outcome::Failed => continue,
                Outcome::SessionEnded => {
                    backoff.reset();
                    break;
                }
            }
        }
        if target.is_none() {
            backoff.wait(&shutdown).await;
        }
    }
    renewal.abort();
    supervisor.detach();
    Ok(())
}

/// Loads this agent's credentials, or trades the join token for them.
async fn credentials(config: &AgentConfig) -> Result<orion_tls::Credentials, SessionError> {
    let dir = config.data_dir.join("tls");
    let io = |e: orion_tls::TlsError| SessionError::Io(e.to_string());
    if let Some(c) = orion_tls::Credentials::load(&dir).map_err(io)? {
        return Ok(c);
    }
    let Some(token) = &config.token else {
        return Err(SessionError::Io(format!(
            "{} holds no certificate: start the agent once with --token (an admin makes one with \
             `orion token create --role agent`)",
            dir.display()
        )));
    };
    // The cluster may still be starting: retry until it answers, but give up at
    // once on a refusal (a used, expired or revoked token).
    let mut backoff = Backoff::default();
    loop {
        match orion_client::join::exchange(&config.servers, token, &config.name, &[]).await {
            Ok(c) => {
                c.save(&dir).map_err(io)?;
                info!(node = %config.name, "joined the cluster with the token");
                return Ok(c);
            }
            Err(e @ orion_client::ClientError::Refused(_)) => {
                return Err(SessionError::Io(e.to_string()))
            }
            Err(e) => {
                warn!(cause = %e, "cannot join the cluster yet; retrying");
                backoff.wait(&CancellationToken::new()).await;
            }
        }
    }
}

/// Renews the agent certificate two thirds into its life, in place.
async fn renew_loop(
    config: AgentConfig,
    ca_pem: String,
    live: Arc<orion_tls::LiveCert>,
    shutdown: CancellationToken,
) {
    loop {
        let wait = orion_tls::cert::until_renewal(&live.cert_pem());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let renewed = orion_client::join::renew(&config.servers, &ca_pem, &live).await;
        let saved = renewed.and_then(|c| {
            c.save(&config.data_dir.join("tls"))?;
            Ok(live.replace(&c.cert_pem, &c.key_pem)?)
        });
        match saved {
            Ok(()) => info!("renewed the agent certificate"),
            Err(e) => {
                warn!(cause = %e, "could not renew the agent certificate; retrying in 10 s");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
        }
    }
}

async fn bootstrap(http: &reqwest::Client, servers: &[String]) -> Option<AgentBootstrap> {
    for url in servers {
        let url = format!("{}/v1/cluster/ca", url.trim_end_matches('/'));
        match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => match r.json::<AgentBootstrap>().await {
                Ok(b) => return Some(b),
                Err(e) => warn!(%url, cause = %e, "unreadable cluster bootstrap answer"),
            },
            Ok(r) => warn!(%url, status = %r.status(), "cluster bootstrap not available yet"),
            Err(e) => warn!(%url, cause = %e, "cannot reach the cluster API"),
        }
    }
    None
}

fn client_config(
    ca_pem: &str,
    live: Arc<orion_tls::LiveCert>,
) -> Result<quinn::ClientConfig, String> {
    let mut tls =
        orion_tls::config::client_config(ca_pem, Some(live)).map_err(|e| e.to_string())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // A dead leader is noticed after the idle timeout; keep-alives keep a live but
    // quiet link open.
    transport.keep_alive_interval(Some(Duration::from_millis(500)));
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().map_err(|e| format!("{e}"))?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

enum Outcome {
    Redirect(Option<String>),
    Failed,
    SessionEnded,
}

async fn connect_once(
    config: &AgentConfig,
    client: &quinn::ClientConfig,
    addr: &str,
    supervisor: &Arc<Supervisor>,
    ports: &mut PortBook,
    shutdown: &CancellationToken,
) -> Outcome {
    let result = async {
        let sock: SocketAddr = addr
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or_else(|| format!("{addr} resolves to nothing"))?;
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let bind: SocketAddr = if sock.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(|e| format!("{e}"))?;
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(client.clone());
        let conn = endpoint
            .connect(sock, host)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let hello = AgentMessage::Hello {
            node: config.name.clone(),
            labels: config.labels.clone(),
            capacity: config.capacity,
        };
        write_frame(&mut send, &hello)
            .await
            .map_err(|e| e.to_string())?;
        let mut frames = FrameReader::<_, ServerMessage>::new(recv);
        match frames.next().await.map_err(|e| e.to_string())? {
            Some(ServerMessage::Redirect { agent_addr }) => {
                conn.close(0u32.into(), b"redirected");
                return Ok(Outcome::Redirect(agent_addr));
            }
            Some(ServerMessage::Welcome { .. }) => {}
            other => return Err(format!("unexpected first answer {other:?}")),
        }
        info!(%addr, "connected to the leader");
        let streams = tokio::spawn(accept_streams(conn.clone(), supervisor.clone()));
        let ended = serve(send, frames, supervisor, ports, shutdown).await;
        streams.abort();
        conn.close(0u32.into(), b"bye");
        endpoint.wait_idle().await;
        if let Err(e) = ended {
            warn!(%addr, cause = %e, "session with the leader ended");
        }
        Ok::<_, String>(Outcome::SessionEnded)
    }
    .await;
    result.unwrap_or_else(|e| {
        warn!(%addr, cause = %e, "cannot reach an agent gateway");
        Outcome::Failed
    })
}

/// The session: heartbeats every second, status on every supervisor change, and a
/// reconcile on every desired set.
async fn serve(
    mut send: quinn::SendStream,
    mut frames: FrameReader<quinn::RecvStream, ServerMessage>,
    supervisor: &Supervisor,
    ports: &mut PortBook,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut changes = supervisor.subscribe();
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    // A new leader knows nothing of this node's replicas yet: report them at once.
    let hello_status = AgentMessage::Status {
        replicas: reports(supervisor),
    };
    write_frame(&mut send, &hello_status)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            _ = beat.tick() => {
                let running = supervisor.statuses().iter().filter(|s| s.pid.is_some()).count() as u32;
                let msg = AgentMessage::Heartbeat { replicas_running: running, usage: usage() };
                if let Err(e) = write_frame(&mut send, &msg).await { break Err(e.to_string()) }
            }
            changed = changes.changed() => {
                if changed.is_err() { break Ok(()) }
                let msg = AgentMessage::Status { replicas: reports(supervisor) };
                if let Err(e) = write_frame(&mut send, &msg).await { break Err(e.to_string()) }
            }
            // Reading a frame is cancel-safe.
            frame = frames.next() => match frame {
                Ok(Some(ServerMessage::Desired { revision, replicas })) => {
                    info!(revision, replicas = replicas.len(), "desired replica set");
                    let specs = ports.specs(replicas);
                    supervisor.reconcile(specs).await;
                }
                Ok(Some(other)) => break Err(format!("unexpected message {other:?}")),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.to_string()),
            },
        }
    }
}

/// Serves the leader's log and exec requests, each on its own stream.
async fn accept_streams(conn: quinn::Connection, supervisor: Arc<Supervisor>) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(handle_stream(send, recv, supervisor.clone()));
    }
}

async fn handle_stream(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    supervisor: Arc<Supervisor>,
) {
    let request = match FrameReader::<_, StreamRequest>::new(recv).next().await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            warn!(cause = %e, "closing a bad log or exec stream from the leader");
            let _ = send.reset(1u32.into());
            return;
        }
    };
    match request {
        StreamRequest::Exec { replica, command } => {
            let result = match supervisor
                .exec(&replica, &command, Duration::from_secs(60))
                .await
            {
                Ok(out) => ExecResult {
                    exit_code: out.exit_code,
                    signal: out.signal,
                    stdout: out.stdout,
                    stderr: out.stderr,
                    error: None,
                },
                Err(e) => ExecResult {
                    exit_code: None,
                    signal: None,
                    stdout: String::new(),
                    stderr: String::new(),
                    error: Some(e),
                },
            };
            match write_frame(&mut send, &result).await {
                Ok(()) => {
                    let _ = send.finish();
                }
                Err(e) => debug!(%replica, cause = %e, "cannot answer an exec request"),
            }
        }
        StreamRequest::Logs {
            replica,
            tail,
            follow,
            from,
            records,
        } => {
            let dir = supervisor.log_dir(&replica);
            let mut out = LogWriter { send, records };
            if send_logs(&mut out, &dir, tail, follow, from).await.is_ok() {
                let _ = out.send.finish();
            }
        }
    }
}

/// Writes log lines to the leader's stream: raw text, or [`LogRecord`]s.
struct LogWriter {
    send: quinn::SendStream,
    records: bool,
}

/// The leader stopped reading.
struct Gone;

impl LogWriter {
    async fn line(&mut self, stream: LogStream, text: &str, offset: u64) -> Result<(), Gone> {
        let bytes = if self.records {
            record_line(stream, text, offset, LogRecordKind::Line)
        } else {
            format!("{text}\n")
        };
        self.send
            .write_all(bytes.as_bytes())
            .await
            .map_err(|_| Gone)
    }

    /// A [`LogRecordKind::Notice`] or [`LogRecordKind::Mark`] (records only: raw
    /// text has no place for them that cannot be mistaken for the replica's output).
    async fn meta(
        &mut self,
        kind: LogRecordKind,
        stream: LogStream,
        text: &str,
        offset: u64,
    ) -> Result<(), Gone> {
        if !self.records {
            return Ok(());
        }
        let bytes = record_line(stream, text, offset, kind);
        self.send
            .write_all(bytes.as_bytes())
            .await
            .map_err(|_| Gone)
    }
}

fn record_line(stream: LogStream, text: &str, offset: u64, kind: LogRecordKind) -> String {
    let record = LogRecord {
        stream: match stream {
            LogStream::Stdout => LogStreamName::Stdout,
            LogStream::Stderr => LogStreamName::Stderr,
        },
        offset,
        text: text.to_owned(),
        kind,
    };
    // A struct of strings and numbers always serializes.
    let mut line = serde_json::to_string(&record).unwrap_or_default();
    line.push('\n');
    line
}

/// What a truncation means to the reader, in words.
fn truncation_notice(stream: LogStream, at: u64, len: u64) -> String {
    format!(
        "{} is {len} bytes, shorter than offset {at} this reader had reached: it was \
         rotated or truncated since; following it from its start (lines written just \
         before that may be missing, or are in {}.1)",
        stream.file_name(),
        stream.file_name()
    )
}

/// `orion logs`: the tail of both streams (or, resuming, what the live files hold
/// after the reader's cursor), then with `follow` every new line as it comes.
async fn send_logs(
    out: &mut LogWriter,
    dir: &std::path::Path,
    tail: usize,
    follow: bool,
    from: Option<LogCursor>,
) -> Result<(), Gone> {
    let mut cursor = [0u64; 2];
    match from {
        Some(c) => cursor = [c.stdout, c.stderr],
        None => {
            for (k, stream) in LogStream::ALL.into_iter().enumerate() {
                let (lines, end) = logs::tail_at(dir, stream, tail).unwrap_or_default();
                for line in lines {
                    out.line(stream, &line.text, line.end).await?;
                }
                out.meta(LogRecordKind::Mark, stream, "", end).await?;
                cursor[k] = end;
            }
        }
    }
    let every = Duration::from_millis(200);
    if !follow {
        // A resumed read without follow: what was written since, once.
        if from.is_some() {
            for (k, stream) in LogStream::ALL.into_iter().enumerate() {
                let mut reader = logs::LogReader::new(logs::log_path(dir, stream), cursor[k]);
                loop {
                    for event in reader.poll() {
                        send_event(out, stream, event).await?;
                    }
                    if !reader.behind() {
                        break;
                    }
                }
            }
        }
        return Ok(());
    }
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let mut streams = LogStream::ALL.map(|stream| {
        let k = usize::from(stream == LogStream::Stderr);
        logs::follow(
            logs::log_path(dir, stream),
            cursor[k],
            every,
            cancel.clone(),
        )
    });
    let [outs, errs] = &mut streams;
    loop {
        let (stream, event) = tokio::select! {
            e = outs.recv() => (LogStream::Stdout, e),
            e = errs.recv() => (LogStream::Stderr, e),
            _ = out.send.stopped() => return Err(Gone),
        };
        let Some(event) = event else { return Ok(()) };
        send_event(out, stream, event).await?;
    }
}

async fn send_event(out: &mut LogWriter, stream: LogStream, event: LogEvent) -> Result<(), Gone> {
    match event {
        LogEvent::Line(line) => out.line(stream, &line.text, line.end).await,
        LogEvent::Truncated { at, len } => {
            let text = truncation_notice(stream, at, len);
            out.meta(LogRecordKind::Notice, stream, &text, 0).await
        }
    }
}

/// The node's load and memory, from /proc (zeros where unreadable).
fn usage() -> NodeUsage {
    let load_milli = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|l| l.parse::<f64>().ok())
        })
        .map_or(0, |l| (l * 1000.0) as u64);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    NodeUsage {
        load_milli,
        memory_total_bytes: field("MemTotal:"),
        memory_available_bytes: field("MemAvailable:"),
    }
}

fn reports(supervisor: &Supervisor) -> Vec<ReplicaReport> {
    let mut ports = supervisor.ports();
    supervisor
        .statuses()
        .into_iter()
        .map(|s| ReplicaReport {
            state: match &s.state {
                ReplicaState::Starting => agent_proto::ReplicaState::Starting,
                ReplicaState::Running => agent_proto::ReplicaState::Running,
                ReplicaState::Healthy => agent_proto::ReplicaState::Healthy,
                ReplicaState::Unhealthy => agent_proto::ReplicaState::Unhealthy,
                ReplicaState::Backoff => agent_proto::ReplicaState::Backoff,
                ReplicaState::Exited { .. } => agent_proto::ReplicaState::Exited,
                ReplicaState::Failed { .. } => agent_proto::ReplicaState::Failed,
                ReplicaState::Stopped => agent_proto::ReplicaState::Stopped,
            },
            ports: ports.remove(&s.id).unwrap_or_default(),
            id: s.id,
            pid: s.pid,
            restarts: s.restarts,
            reason: s.reason,
        })
        .collect()
}

/// Named ports per replica, allocated once and kept on disk, so an agent restart
/// gives an adopted replica the same ports (and so does not restart it).
struct PortBook {
    path: PathBuf,
    ports: BTreeMap<String, BTreeMap<String, u16>>,
}

impl PortBook {
    fn load(path: PathBuf) -> Self {
        let ports = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        PortBook { path, ports }
    }

    fn specs(&mut self, desired: Vec<DesiredReplica>) -> Vec<ReplicaSpec> {
        self.ports
            .retain(|id, _| desired.iter().any(|d| &d.id == id));
        let mut booked: std::collections::BTreeSet<u16> = self
            .ports
            .values()
            .flat_map(|b| b.values().copied())
            .collect();
        let specs = desired
            .into_iter()
            .map(|d| {
                let book = self.ports.entry(d.id.clone()).or_default();
                book.retain(|name, _| d.service.ports.contains(name));
                for name in &d.service.ports {
                    if !book.contains_key(name) {
                        if let Some(p) = free_port(&booked) {
                            booked.insert(p);
                            book.insert(name.clone(), p);
                        }
                    }
                }
                ReplicaSpec {
                    id: d.id,
                    ports: book.clone(),
                    service: d.service,
                    env: BTreeMap::new(),
                }
            })
            .collect();
        if let Ok(bytes) = serde_json::to_vec(&self.ports) {
            let tmp = self.path.with_extension("tmp");
            if std::fs::write(&tmp, bytes)
                .and_then(|()| std::fs::rename(&tmp, &self.path))
                .is_err()
            {
                warn!(path = %self.path.display(), "cannot save port allocations");
            }
        }
        specs
    }
}

/// Ports handed to replicas come from this range, as Nomad's dynamic ports do. It is
/// below Linux's ephemeral range (32768 and up), so the OS never gives one of these to
/// an outgoing connection or a bind to port 0 between our check and the child's bind.
const DYNAMIC_PORTS: std::ops::Range<u16> = 20000..32000;

/// A port from [`DYNAMIC_PORTS`] that is not booked and that nothing listens on now,
/// starting at a random place so agents on one machine rarely race for the same one.
fn free_port(booked: &std::collections::BTreeSet<u16>) -> Option<u16> {
    use std::hash::{BuildHasher, Hasher};
    let span = DYNAMIC_PORTS.end - DYNAMIC_PORTS.start;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let start = u16::try_from(h.finish() % u64::from(span)).unwrap_or(0);
    (0..span)
        .map(|i| DYNAMIC_PORTS.start + (start + i) % span)
        .filter(|p| !booked.contains(p))
        .find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
}

/// Exponential backoff with jitter for reconnects: 200 ms doubling to 5 s.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(200),
        }
    }
}

impl Backoff {
    fn reset(&mut self) {
        *self = Backoff::default();
    }

    async fn wait(&mut self, shutdown: &CancellationToken) {
        let jitter = rand::rng().random_range(0..=self.next.as_millis() as u64 / 5);
        let delay = self.next + Duration::from_millis(jitter);
        self.next = (self.next * 2).min(Duration::from_secs(5));
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
}
