//! `orion dev`: three peers on loopback, each its own OS process, so a user can
//! kill one and watch the failover. Data and logs live under one folder; running it
//! again with the same folder restarts the same cluster.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use orion_launch::{AgentSpec, Cluster, Options, PeerSpec, Ports};
use tokio_util::sync::CancellationToken;

use crate::args::DevArgs;

const PEERS: u16 = 3;
/// How long the processes get to stop cleanly on Ctrl-C before they are killed.
const GRACE: Duration = Duration::from_secs(10);

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let exe = std::env::current_exe().context("cannot find the orion binary")?;
    let ports: Vec<Ports> = (0..PEERS)
        .map(|i| Ports {
            api: args.port + i,
            peer: args.port + 100 + i,
            agent: args.port + 200 + i,
        })
        .collect();
    for p in &ports {
        if std::net::UdpSocket::bind(("127.0.0.1", p.agent)).is_err() {
            bail!(
                "UDP port {} is in use (is another `orion dev` running?); pick others with --port",
                p.agent
            );
        }
        for port in [p.api, p.peer] {
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                bail!("port {port} is in use (is another `orion dev` running?); pick others with --port");
            }
        }
    }

    // Peer n in slot n; a folder from an earlier run restarts the same cluster.
    let mut opts = Options::new(exe, &dir);
    opts.token_description = "orion dev".into();
    let mut cluster = Cluster::new(opts);
    let specs: Vec<(u64, PeerSpec)> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u64 + 1, PeerSpec::loopback().ports(*p)))
        .collect();
    let opened = tokio::select! {
        r = cluster.open(specs) => r.map_err(anyhow::Error::from),
        () = shutdown.cancelled() => Err(anyhow!("interrupted")),
    };
    if let Err(e) = opened {
        cluster.stop_all(GRACE).await;
        return Err(e.context(format!(
            "the dev cluster did not start; see the logs in {}",
            dir.display()
        )));
    }
    let urls = cluster.urls();

    // One agent on this machine, so `orion apply` runs real processes at once.
    let agent = AgentSpec {
        name: None,
        data_dir: dir.join("agent"),
        log: dir.join("agent.log"),
        servers: urls.clone(),
        wrapper: Default::default(),
    };
    if let Err(e) = cluster.spawn_agent("agent", agent).await {
        eprintln!("could not start the agent: {e}");
    }
    let config_path = match write_context(&cluster, &urls) {
        Ok(p) => p,
        Err(e) => {
            cluster.stop_all(GRACE).await;
            return Err(e);
        }
    };
    println!(
        "Orion dev cluster is up: {PEERS} peers, data in {}",
        dir.display()
    );
    for p in cluster.peers() {
        println!(
            "  peer {}  {}  pid {}  log {}",
            p.id,
            p.url(),
            p.pid().unwrap_or_default(),
            p.log.display()
        );
    }
    if let Some(a) = cluster.agent("agent") {
        println!(
            "  agent          pid {}  log {}",
            a.pid().unwrap_or_default(),
            a.spec.log.display()
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

    // Run until Ctrl-C, or until a process dies on its own (say so, keep the rest).
    let mut reported = BTreeSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for exit in cluster.exits() {
            if reported.insert(exit.pid) {
                eprintln!(
                    "{} (pid {}) exited: {}; see {}",
                    exit.what,
                    exit.pid,
                    exit.status,
                    exit.log.display()
                );
            }
        }
    }
    eprintln!("stopping the dev cluster…");
    for e in cluster.stop_all(GRACE).await {
        eprintln!("{e}");
    }
    Ok(())
}

/// Saves context "dev" (servers, CA, admin token) and makes it current.
fn write_context(cluster: &Cluster, urls: &[String]) -> anyhow::Result<std::path::PathBuf> {
    let (Some(ca), Some(token)) = (cluster.ca_pem(), cluster.admin_token()) else {
        bail!("the cluster has no admin credentials");
    };
    let mut config = crate::context::Config::load()?;
    config.contexts.insert(
        "dev".into(),
        crate::context::Context {
            servers: urls.to_vec(),
            ca: ca.to_string(),
            token: Some(token.to_string()),
        },
    );
    config.current_context = Some("dev".into());
    config.save()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_launcher_reads_the_listen_file_peers_write() {
        assert_eq!(
            orion_launch::LISTEN_FILE,
            orion_apiserver::server::LISTEN_FILE
        );
    }
}
