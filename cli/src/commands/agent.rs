//! `orion agent`: the node daemon.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use orion_agent::{AgentConfig, AgentMetrics};
use orion_api::spec::Resources;
use orion_apiserver::server::LISTEN_FILE;
use tokio_util::sync::CancellationToken;
use tracing::info;

use serde::Deserialize;

use crate::args::{AgentArgs, DEFAULT_SERVERS};

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

/// The settings `orion agent --config FILE` reads: the flags' names in kebab case.
/// Unknown keys are errors, so a misspelled setting is never silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentFile {
    pub servers: Vec<String>,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub token: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub metrics_addr: Option<SocketAddr>,
}

/// The most labels a node carries, and the longest key or value.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_CHARS: usize = 253;

impl AgentFile {
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("{}", path.display()))
    }

    /// Checks what can be checked before the agent starts: server URLs, labels,
    /// capacity.
    pub fn validate(&self) -> anyhow::Result<()> {
        for url in &self.servers {
            if !url.starts_with("https://") {
                bail!("server URL {url:?} must start with https:// (the API is served over TLS)");
            }
        }
        if self.labels.len() > MAX_LABELS {
            bail!(
                "{} labels given; a node carries at most {MAX_LABELS}",
                self.labels.len()
            );
        }
        for (k, v) in &self.labels {
            if k.is_empty() || k.len() > MAX_LABEL_CHARS || v.len() > MAX_LABEL_CHARS {
                bail!("label {k:?}={v:?}: keys must be 1 to {MAX_LABEL_CHARS} characters, values at most {MAX_LABEL_CHARS}");
            }
        }
        if self.cpu_millis == Some(0) || self.memory_bytes == Some(0) {
            bail!("cpu-millis and memory-bytes must be above 0 when set");
        }
        Ok(())
    }

    /// The flags given on the command line win over the file's settings.
    fn overridden_by(mut self, args: AgentArgs) -> anyhow::Result<Self> {
        if !args.servers.is_empty() {
            self.servers = args.servers;
        }
        if !args.labels.is_empty() {
            self.labels.clear();
            for l in &args.labels {
                let Some((k, v)) = l.split_once('=') else {
                    bail!("label {l:?} must be key=value");
                };
                self.labels
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        self.name = args.name.or(self.name);
        self.token = args.token.or(self.token);
        self.data_dir = args.data_dir.or(self.data_dir);
        self.cpu_millis = args.cpu_millis.or(self.cpu_millis);
        self.memory_bytes = args.memory_bytes.or(self.memory_bytes);
        self.metrics_addr = args.metrics_addr.or(self.metrics_addr);
        Ok(self)
    }
}

/// The agent's settings, and the address to serve its metrics on (if any).
pub fn config_from(args: AgentArgs) -> anyhow::Result<(AgentConfig, Option<SocketAddr>)> {
    let file = match &args.config {
        Some(path) => AgentFile::from_file(path)?,
        None => AgentFile::default(),
    };
    let settings = file.overridden_by(args)?;
    settings.validate()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let capacity = Resources {
        cpu_millis: settings.cpu_millis.unwrap_or(cores * 1000),
        memory_bytes: settings
            .memory_bytes
            .or_else(memory_bytes)
            .context("cannot read the machine's memory; pass --memory-bytes")?,
    };
    let servers = if settings.servers.is_empty() {
        DEFAULT_SERVERS.split(',').map(str::to_string).collect()
    } else {
        settings.servers
    };
    let metrics_addr = settings.metrics_addr;
    let config = AgentConfig {
        servers,
        name: settings.name.unwrap_or_else(host_name),
        labels: settings.labels,
        capacity,
        data_dir: settings
            .data_dir
            .unwrap_or_else(|| PathBuf::from("orion-agent-data")),
        token: settings.token,
    };
    Ok((config, metrics_addr))
}

pub async fn run(args: AgentArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (config, metrics_addr) =
        config_from(args).map_err(|e| super::InvalidConfig(format!("{e:#}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `deploy/agent.toml` of the checkout under test (read when the test runs, so
    /// two checkouts sharing a target directory each read their own).
    fn template() -> PathBuf {
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        manifest.join("../deploy/agent.toml")
    }

    #[test]
    fn deploy_agent_template_parses_and_validates() {
        let file = AgentFile::from_file(&template()).expect("template parses");
        file.validate().expect("template validates");
        assert!(!file.servers.is_empty(), "the template names its servers");
        assert!(file.data_dir.is_some());
    }

    #[test]
    fn a_misspelled_key_in_the_agent_template_is_an_error() {
        let text = std::fs::read_to_string(template()).expect("read template");
        let broken = text.replace("data-dir", "data-directory");
        assert_ne!(broken, text, "the template sets data-dir");
        let err = AgentFile::from_toml(&broken).expect_err("unknown key refused");
        assert!(format!("{err:#}").contains("data-directory"), "{err:#}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = AgentFile::from_toml(
            "servers = [\"https://a:7400\"]\nname = \"w1\"\nlabels = { zone = \"a\" }\n",
        )
        .expect("parses");
        let args = AgentArgs {
            config: None,
            servers: vec!["https://b:7400".into()],
            name: None,
            labels: vec!["zone=b".into(), "disk=ssd".into()],
            token: None,
            data_dir: None,
            cpu_millis: Some(500),
            memory_bytes: None,
            log_format: crate::args::LogFormat::Text,
            metrics_addr: None,
        };
        let merged = file.overridden_by(args).expect("merge");
        assert_eq!(merged.servers, ["https://b:7400"]);
        assert_eq!(merged.name.as_deref(), Some("w1"));
        assert_eq!(merged.labels.len(), 2);
        assert_eq!(merged.labels["zone"], "b");
        assert_eq!(merged.cpu_millis, Some(500));
    }

    #[test]
    fn bad_settings_are_named() {
        let file = AgentFile::from_toml("servers = [\"http://a:7400\"]\n").expect("parses");
        let err = file.validate().expect_err("http refused");
        assert!(err.to_string().contains("https://"), "{err}");
        let file = AgentFile::from_toml("cpu-millis = 0\n").expect("parses");
        assert!(file.validate().is_err());
    }
}
