//! `orion agent`: the node daemon.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use orion_agent::{AgentConfig, AgentMetrics};
use orion_api::spec::Resources;
use orion_apiserver::server::LISTEN_FILE;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::args::AgentArgs;

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Total memory from /proc/meminfo, in bytes.
fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn config_from(args: AgentArgs) -> anyhow::Result<AgentConfig> {
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!("label {l:?} must be key=value");
        };
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let capacity = Resources {
        cpu_millis: args.cpu_millis.unwrap_or(cores * 1000),
        memory_bytes: args
            .memory_bytes
            .or_else(memory_bytes)
            .context("cannot read the machine's memory; pass --memory-bytes")?,
    };
    Ok(AgentConfig {
        servers: args.servers,
        name: args.name.unwrap_or_else(host_name),
        labels,
        capacity,
        data_dir: args.data_dir,
        token: args.token,
    })
}

pub async fn run(args: AgentArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics_addr = args.metrics_addr;
    let config = config_from(args)?;
    let metrics = Arc::new(AgentMetrics::new().context("cannot make the agent's metrics")?);
    let served = match metrics_addr {
        Some(addr) => {
            Some(serve_metrics(addr, &config.data_dir, metrics.clone(), &shutdown).await?)
        }
        None => None,
    };
    let outcome = orion_agent::session::run(config, metrics, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(task) = served {
        let _ = task.await;
    }
    outcome?;
    Ok(())
}

/// Binds `addr`, records the bound address in `<data-dir>/listen.json` and serves
/// `GET /metrics` there until `shutdown`.
async fn serve_metrics(
    addr: SocketAddr,
    data_dir: &Path,
    metrics: Arc<AgentMetrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let listen = data_dir.join(LISTEN_FILE);
    let tmp = data_dir.join(format!("{LISTEN_FILE}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec(&serde_json::json!({ "metrics": bound.to_string() }))?,
    )
    .and_then(|()| std::fs::rename(&tmp, &listen))
    .with_context(|| format!("cannot write {}", listen.display()))?;
    info!(addr = %bound, "serving metrics at /metrics");
    let encode = move || metrics.encode().map_err(|e| e.to_string());
    Ok(tokio::spawn(orion_apiserver::metrics::serve_text(
        listener,
        Arc::new(encode),
        shutdown.clone(),
    )))
}
