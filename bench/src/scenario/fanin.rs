//! `fan-in`: N simulated agents on one leader of a real 3-peer cluster.
//!
//! Every simulated agent is a real agent as far as the leader can tell: it joins
//! with its own single-use agent token (`POST /v1/join`, a CSR signed by the
//! cluster CA), connects over QUIC with that certificate (mutual TLS, ALPN
//! `orion/2`), says hello, reads the welcome and its desired sets, and heartbeats
//! every second with the same frames as `agent/`. They all live in this process,
//! spread over a few client endpoints (UDP sockets).
//!
//! Measured at each N, over `--duration`: the leader's CPU (utime + stime from
//! `/proc`, in % of one core) and resident memory, the QUIC round trip of each
//! heartbeat (the protocol has no application-level acknowledgement: quinn's
//! round-trip estimate of the connection, sampled as each heartbeat is sent, is
//! how long the leader's QUIC stack takes to acknowledge it), the sessions lost,
//! and how many of the N nodes the leader lists as ready at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use orion_api::agent_proto::{
    write_frame, AgentMessage, FrameReader, NodeUsage, ServerMessage, ALPN,
};
use orion_api::security::{CreateToken, JoinCertRequest};
use orion_api::NodeStatus;
use orion_client::{Client, Consistency};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::args::{check_count, FanInArgs, MAX_FANIN_AGENTS};
use crate::cluster::{OrionCluster, SIZE};
use crate::report::{Better, Figure, Report};

/// Client endpoints (UDP sockets) the simulated agents share.
const ENDPOINTS: usize = 16;
/// Joins and connects in flight at once.
const IN_FLIGHT: usize = 64;

/// One simulated agent's credentials.
struct Joined {
    name: String,
    config: quinn::ClientConfig,
}

/// What the running agents record while a window is measured.
#[derive(Default)]
struct Shared {
    measuring: std::sync::atomic::AtomicBool,
    rtt_us: Mutex<Vec<u64>>,
    heartbeats: AtomicU64,
    lost: AtomicU64,
}

pub async fn run(args: FanInArgs) -> anyhow::Result<Report> {
    let mut steps = args.agents.clone();
    anyhow::ensure!(!steps.is_empty(), "--agents needs at least one count");
    for n in &steps {
        check_count("agents", *n, MAX_FANIN_AGENTS)?;
    }
    steps.sort_unstable();
    steps.dedup();
    let programs = super::orion_programs(&args.common)?;
    let mut report = Report::new(
        "fan-in",
        serde_json::json!({
            "agents": steps,
            "duration_s": args.duration.as_secs_f64(),
            "members": SIZE,
            "heartbeat_interval_s": 1,
        }),
    );
    eprintln!("orion: starting a {SIZE}-member cluster");
    let mut cluster = OrionCluster::start(&programs, 4).await?;
    let leader = cluster.wait_healthy().await?;
    let client = Arc::new(cluster.client_of(leader)?);
    let pid = cluster
        .peer_pids()
        .into_iter()
        .find(|(m, _)| *m == leader)
        .map(|(_, p)| p)
        .context("the leader is not running")?;
    let boot = client.bootstrap().await.context("GET /v1/cluster/ca")?;
    let gateway: std::net::SocketAddr = boot
        .agent_addrs
        .get(leader)
        .context("the leader has no agent address")?
        .parse()
        .context("the leader's agent address")?;
    let mut endpoints = Vec::new();
    for _ in 0..ENDPOINTS {
        endpoints.push(quinn::Endpoint::client(([127, 0, 0, 1], 0).into())?);
    }
    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let mut agents = JoinSet::new();
    let mut started = 0usize;
    let mut max_ok = 0usize;
    for n in steps {
        eprintln!("orion: joining and connecting agents {started}..{n}");
        let t = Instant::now();
        let joined = join_all(&client, &boot.ca_pem, started, n).await?;
        let joined_in = t.elapsed();
        for (i, j) in joined.into_iter().enumerate() {
            let endpoint = endpoints[(started + i) % ENDPOINTS].clone();
            let shared = shared.clone();
            let stop = stop.clone();
            agents.spawn(async move {
                let r = agent(endpoint, gateway, j, shared.clone(), stop).await;
                if r.is_err() {
                    shared.lost.fetch_add(1, Ordering::Relaxed);
                }
                r
            });
            if i % IN_FLIGHT == IN_FLIGHT - 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        started = n;
        wait_ready(&client, n, Duration::from_secs(120)).await?;
        let connected_in = t.elapsed();
        // A few seconds to settle, then the measured window.
        tokio::time::sleep(Duration::from_secs(2)).await;
        shared
            .rtt_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        shared.heartbeats.store(0, Ordering::Relaxed);
        let lost_before = shared.lost.load(Ordering::Relaxed);
        let cpu0 = cpu_ticks(pid)?;
        let w = Instant::now();
        shared.measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(args.duration).await;
        shared.measuring.store(false, Ordering::Relaxed);
        let window = w.elapsed().as_secs_f64();
        let cpu = (cpu_ticks(pid)? - cpu0) as f64 / ticks_per_s() / window * 100.0;
        let rss = crate::fleet::rss_mib(pid)?;
        let ready = ready_count(&client).await?;
        let mut rtt = shared
            .rtt_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        rtt.sort_unstable();
        let q = |p: f64| -> f64 {
            if rtt.is_empty() {
                return f64::NAN;
            }
            let i = ((rtt.len() as f64 - 1.0) * p).round() as usize;
            rtt[i] as f64 / 1000.0
        };
        let (p50, p99) = (q(0.50), q(0.99));
        let lost = shared.lost.load(Ordering::Relaxed) - lost_before;
        let heartbeats = shared.heartbeats.load(Ordering::Relaxed);
        let fig = |name: &str, unit: &'static str, better, v| {
            Figure::new(format!("fan_in.{n}.{name}"), unit, better, v, None)
        };
        report
            .figures
            .push(fig("leader_cpu_pct", "%", Better::Lower, cpu));
        report
            .figures
            .push(fig("leader_rss_mib", "MiB", Better::Lower, rss));
        report
            .figures
            .push(fig("heartbeat_rtt_p50_ms", "ms", Better::Lower, p50));
        report
            .figures
            .push(fig("heartbeat_rtt_p99_ms", "ms", Better::Lower, p99));
        report.figures.push(fig(
            "heartbeats_per_s",
            "1/s",
            Better::Higher,
            heartbeats as f64 / window,
        ));
        report.notes.push(format!(
            "{n} agents: joined in {:.1}s, all ready after {:.1}s; {ready} nodes ready at the end, {lost} sessions lost in the window",
            joined_in.as_secs_f64(),
            connected_in.as_secs_f64()
        ));
        if p99 < 100.0 && lost == 0 && ready >= n {
            max_ok = n;
        }
    }
    report.figures.push(Figure::new(
        "fan_in.max_agents_p99_under_100ms".into(),
        "agents",
        Better::Higher,
        max_ok as f64,
        None,
    ));
    report.notes.push(
        "heartbeat latency: the QUIC round trip quinn estimates as each heartbeat is sent \
         (the agent protocol has no heartbeat acknowledgement); etcd has no agents: Orion alone"
            .into(),
    );
    stop.cancel();
    while agents.join_next().await.is_some() {}
    for e in &endpoints {
        e.close(0u32.into(), b"done");
    }
    drop(cluster);
    Ok(report)
}

/// Joins agents `from..to`: a single-use agent token each, then a CSR for it.
async fn join_all(
    client: &Arc<Client>,
    ca_pem: &str,
    from: usize,
    to: usize,
) -> anyhow::Result<Vec<Joined>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for i in from..to {
        let client = client.clone();
        let ca_pem = ca_pem.to_string();
        let permit = sem.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let _permit = permit;
            let name = format!("fan-{i}");
            let token = client
                .create_token(&CreateToken {
                    role: "agent".into(),
                    ttl_seconds: 3600,
                    description: "orion-bench fan-in".into(),
                })
                .await
                .context("POST /v1/tokens")?;
            let (key_pem, csr) = orion_tls::cert::new_csr()?;
            let issued = client
                .join_certificate(&JoinCertRequest {
                    token: token.token,
                    csr,
                    name: name.clone(),
                    hosts: vec![],
                })
                .await
                .with_context(|| format!("POST /v1/join for {name}"))?;
            let live = orion_tls::LiveCert::new(&issued.cert_pem, &key_pem)?;
            let mut tls = orion_tls::config::client_config(&ca_pem, Some(live))?;
            tls.alpn_protocols = vec![ALPN.to_vec()];
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
            let mut config = quinn::ClientConfig::new(Arc::new(crypto));
            let mut transport = quinn::TransportConfig::default();
            transport.keep_alive_interval(Some(Duration::from_millis(500)));
            transport.max_idle_timeout(Some(quinn::VarInt::from_u32(2_000).into()));
            config.transport_config(Arc::new(transport));
            Ok::<_, anyhow::Error>((i, Joined { name, config }))
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r??);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, j)| j).collect())
}

/// One simulated agent: hello, welcome, then a heartbeat every second until
/// `stop`; desired sets are read and dropped. An error is a lost session.
async fn agent(
    endpoint: quinn::Endpoint,
    gateway: std::net::SocketAddr,
    me: Joined,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let conn = endpoint
        .connect_with(me.config, gateway, "127.0.0.1")?
        .await
        .with_context(|| format!("{} connecting", me.name))?;
    let (mut send, recv) = conn.open_bi().await?;
    let hello = AgentMessage::Hello {
        node: me.name.clone(),
        labels: Default::default(),
        capacity: orion_api::spec::Resources {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
        },
    };
    write_frame(&mut send, &hello).await?;
    let mut frames = FrameReader::<_, ServerMessage>::new(recv);
    match frames.next().await? {
        Some(ServerMessage::Welcome { .. }) => {}
        other => anyhow::bail!("{}: first answer {other:?}", me.name),
    }
    // Spread the heartbeats over the second.
    let offset = Duration::from_micros(rand_offset(&me.name));
    let mut tick = tokio::time::interval_at(Instant::now() + offset, Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            frame = frames.next() => match frame {
                Ok(Some(_)) => {}
                Ok(None) => break Err(anyhow::anyhow!("{}: the leader ended the session", me.name)),
                Err(e) => break Err(anyhow::anyhow!("{}: {e}", me.name)),
            },
            _ = tick.tick() => {
                let hb = AgentMessage::Heartbeat {
                    replicas_running: 0,
                    usage: NodeUsage::default(),
                };
                if let Err(e) = write_frame(&mut send, &hb).await {
                    break Err(anyhow::anyhow!("{}: {e}", me.name));
                }
                if shared.measuring.load(Ordering::Relaxed) {
                    shared.heartbeats.fetch_add(1, Ordering::Relaxed);
                    let rtt = conn.rtt().as_micros() as u64;
                    shared.rtt_us.lock().unwrap_or_else(|p| p.into_inner()).push(rtt);
                }
            }
        }
    };
    conn.close(0u32.into(), b"bye");
    result
}

/// A fixed offset in `0..1s` from the name, so heartbeats do not all fall at once.
fn rand_offset(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h % 1_000_000
}

async fn ready_count(client: &Client) -> anyhow::Result<usize> {
    Ok(client
        .nodes(Consistency::Linearizable)
        .await?
        .items
        .iter()
        .filter(|n| n.name.starts_with("fan-") && n.status == NodeStatus::Ready)
        .count())
}

/// Polls until `n` simulated nodes are ready.
async fn wait_ready(client: &Client, n: usize, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let ready = ready_count(client).await.unwrap_or(0);
        if ready >= n {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "only {ready} of {n} simulated nodes ready after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // Fields after the command name (which may hold spaces) end with ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    match (num(11), num(12)) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => anyhow::bail!("cannot read the CPU time of process {pid}"),
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ: 100 on Linux whatever
/// the kernel's own tick rate).
fn ticks_per_s() -> f64 {
    100.0
}
