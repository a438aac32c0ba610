//! `orion dev`: three peers on loopback, each its own OS process, so a user can
//! kill one and watch the failover. Data and logs live under one folder; running it
//! again with the same folder restarts the same cluster.

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use orion_api::{MemberRole, MembersResponse};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::args::DevArgs;
use orion_client::Client;

const PEERS: u16 = 3;

/// A process `orion dev` started: a peer (id 1..), or the agent (id 0).
struct Peer {
    id: u16,
    api: String,
    child: Child,
}

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let exe = std::env::current_exe().context("cannot find the orion binary")?;
    let ports: Vec<(u16, u16, u16)> = (0..PEERS)
        .map(|i| (args.port + i, args.port + 100 + i, args.port + 200 + i))
        .collect();
    for &(api, peer, agent) in &ports {
        if std::net::UdpSocket::bind(("127.0.0.1", agent)).is_err() {
            bail!("UDP port {agent} is in use (is another `orion dev` running?); pick others with --port");
        }
        for port in [api, peer] {
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                bail!("port {port} is in use (is another `orion dev` running?); pick others with --port");
            }
        }
    }

    let first_api = format!("https://127.0.0.1:{}", ports[0].0);
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("https://127.0.0.1:{}", p.0))
        .collect();
    let mut peers = Vec::new();
    let mut admin: Option<Client> = None;
    for (i, &(api, peer, agent)) in ports.iter().enumerate() {
        let id = i as u16 + 1;
        let data = dir.join(format!("peer-{id}"));
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("server")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .args(["--api-addr", &format!("127.0.0.1:{api}")])
            .args(["--peer-addr", &format!("127.0.0.1:{peer}")])
            .args(["--agent-addr", &format!("127.0.0.1:{agent}")]);
        if id == 1 {
            cmd.arg("--bootstrap");
        } else {
            cmd.args(["--join", &first_api]);
            if !data.join("tls").exists() {
                // A new peer: mint it a single-use server token through peer 1.
                let client = match &admin {
                    Some(c) => c,
                    None => match admin_client(&dir, &urls[..1], &mut peers, &shutdown).await {
                        Ok(c) => admin.insert(c),
                        Err(e) => {
                            stop_all(&mut peers);
                            return Err(e);
                        }
                    },
                };
                let t = join_token(client, "server").await;
                match t {
                    Ok(t) => {
                        cmd.env("ORION_JOIN_TOKEN", t);
                    }
                    Err(e) => {
                        stop_all(&mut peers);
                        return Err(e);
                    }
                }
            }
        }
        match spawn_logged(cmd, &dir.join(format!("peer-{id}.log"))) {
            Ok(child) => peers.push(Peer {
                id,
                api: urls[i].clone(),
                child,
            }),
            Err(e) => {
                stop_all(&mut peers);
                return Err(e);
            }
        }
    }

    let ready = async {
        let client = match admin.take() {
            Some(c) => c,
            None => admin_client(&dir, &urls, &mut peers, &shutdown).await?,
        };
        wait_for_cluster(&client, &mut peers, &dir, &shutdown).await?;
        Ok::<_, anyhow::Error>(client)
    }
    .await;
    let client = match ready {
        Ok(c) => c,
        Err(e) => {
            stop_all(&mut peers);
            return Err(e);
        }
    };
    // One agent on this machine, so `orion apply` runs real processes at once.
    let agent_dir = dir.join("agent");
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("agent")
        .args(["--servers", &urls.join(",")])
        .arg("--data-dir")
        .arg(&agent_dir);
    if !agent_dir.join("tls").exists() {
        cmd.env("ORION_JOIN_TOKEN", join_token(&client, "agent").await?);
    }
    match spawn_logged(cmd, &dir.join("agent.log")) {
        Ok(child) => peers.push(Peer {
            id: 0,
            api: "agent".into(),
            child,
        }),
        Err(e) => eprintln!("could not start the agent: {e}"),
    }
    let config_path = write_context(&dir, &urls)?;
    println!(
        "Orion dev cluster is up: {PEERS} peers, data in {}",
        dir.display()
    );
    for p in &peers {
        if p.id == 0 {
            println!(
                "  agent          pid {}  log {}",
                p.child.id(),
                dir.join("agent.log").display()
            );
            continue;
        }
        println!(
            "  peer {}  {}  pid {}  log {}",
            p.id,
            p.api,
            p.child.id(),
            dir.join(format!("peer-{}.log", p.id)).display()
        );
    }
    println!();
    println!(
        "The CLI is set up: context \"dev\" (admin token, cluster CA) is current in {}.",
        config_path.display()
    );
    println!("Try, in another terminal:");
    println!("  orion cluster members");
    println!("  orion var put app/greeting hello && orion var get app/greeting");
    println!("  orion apply -f examples/web.yaml && orion get replicas -o yaml");
    println!("  kill -9 <leader pid>     # and watch `orion cluster members` elect a new leader");
    println!("Ctrl-C stops the cluster; `orion dev` again restarts it with its data.");

    // Run until Ctrl-C, or until a peer dies on its own (say so, keep the rest).
    let mut reported = vec![false; peers.len()];
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for (i, p) in peers.iter_mut().enumerate() {
            if let Ok(Some(status)) = p.child.try_wait() {
                if !reported[i] {
                    eprintln!("peer {} (pid {}) exited: {status}", p.id, p.child.id());
                    reported[i] = true;
                }
            }
        }
    }
    eprintln!("stopping the dev cluster…");
    stop_all(&mut peers);
    Ok(())
}

fn spawn_logged(mut cmd: std::process::Command, log: &Path) -> anyhow::Result<Child> {
    let file = File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("cannot start an orion process")
}

fn check_alive(peers: &mut [Peer], dir: &Path) -> anyhow::Result<()> {
    for p in peers.iter_mut() {
        if let Ok(Some(status)) = p.child.try_wait() {
            bail!(
                "peer {} exited during start-up ({status}); see {}",
                p.id,
                dir.join(format!("peer-{}.log", p.id)).display()
            );
        }
    }
    Ok(())
}

/// Waits for peer 1's admin token and CA (written at bootstrap), and returns an
/// admin client for `urls`.
async fn admin_client(
    dir: &Path,
    urls: &[String],
    peers: &mut [Peer],
    shutdown: &CancellationToken,
) -> anyhow::Result<Client> {
    let peer1 = dir.join("peer-1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let token = std::fs::read_to_string(peer1.join("admin.token"));
        let ca = std::fs::read_to_string(peer1.join("tls/ca.crt"));
        if let (Ok(token), Ok(ca)) = (token, ca) {
            return Ok(Client::new(urls, &ca, Some(token))?);
        }
        check_alive(peers, dir)?;
        if Instant::now() > deadline {
            bail!(
                "peer 1 did not bootstrap within 60 s; see {}",
                dir.join("peer-1.log").display()
            );
        }
        tokio::select! {
            () = shutdown.cancelled() => bail!("interrupted"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// A single-use join token, valid ten minutes.
async fn join_token(client: &Client, role: &str) -> anyhow::Result<String> {
    let req = orion_api::security::CreateToken {
        role: role.into(),
        ttl_seconds: 600,
        description: "orion dev".into(),
    };
    let created: orion_api::security::CreatedToken = client.post("/v1/tokens", &req).await?;
    Ok(created.token)
}

/// Saves context "dev" (servers, CA, admin token) and makes it current.
fn write_context(dir: &Path, urls: &[String]) -> anyhow::Result<std::path::PathBuf> {
    let peer1 = dir.join("peer-1");
    let mut config = crate::context::Config::load()?;
    config.contexts.insert(
        "dev".into(),
        crate::context::Context {
            servers: urls.to_vec(),
            ca: std::fs::read_to_string(peer1.join("tls/ca.crt"))?,
            token: Some(std::fs::read_to_string(peer1.join("admin.token"))?),
        },
    );
    config.current_context = Some("dev".into());
    config.save()
}

async fn wait_for_cluster(
    client: &Client,
    peers: &mut [Peer],
    dir: &Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(m) = client.get::<MembersResponse>("/v1/cluster/members").await {
            let voters = m
                .members
                .iter()
                .filter(|x| x.role == MemberRole::Voter)
                .count();
            if m.leader.is_some() && voters == PEERS as usize {
                return Ok(());
            }
        }
        check_alive(peers, dir)?;
        if Instant::now() > deadline {
            bail!(
                "the cluster did not form within 60 s; see the peer logs in {}",
                dir.display()
            );
        }
        tokio::select! {
            () = shutdown.cancelled() => bail!("interrupted"),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// SIGTERM every peer, give them 10 s to stop cleanly, then SIGKILL.
fn stop_all(peers: &mut [Peer]) {
    for p in peers.iter() {
        if let Ok(pid) = i32::try_from(p.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for p in peers.iter_mut() {
        loop {
            match p.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if std::time::Instant::now() > deadline => {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
