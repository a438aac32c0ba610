//! `orion agent`: the node daemon.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use orion_agent::AgentConfig;
use orion_api::spec::Resources;
use tokio_util::sync::CancellationToken;

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
    let config = config_from(args)?;
    orion_agent::session::run(config, shutdown).await?;
    Ok(())
}
