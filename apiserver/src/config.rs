//! A peer's settings: flags and `--config FILE` (TOML) fill the same struct.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use orion_raft::RaftSettings;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// This peer's member id: unique in the cluster, never reused, above 0.
    pub id: u64,
    /// Where RocksDB and the snapshots live.
    pub data_dir: PathBuf,
    /// Where the REST API listens (`host:port`).
    pub api_addr: String,
    /// Where the Raft gRPC service listens (`host:port`).
    pub peer_addr: String,
    /// Where the QUIC agent gateway listens (`host:port`, UDP).
    pub agent_addr: String,
    /// Address agents use, when it differs from `agent-addr`.
    pub advertise_agent_addr: Option<String>,
    /// Address others use to reach the API, when it differs from `api-addr`
    /// (for example when listening on 0.0.0.0).
    pub advertise_api_addr: Option<String>,
    /// Address other peers use for Raft, when it differs from `peer-addr`.
    pub advertise_peer_addr: Option<String>,
    /// Start a new cluster with this peer as its only voter (ignored once initialized).
    pub bootstrap: bool,
    /// URLs of existing members to ask for admission (ignored once initialized).
    pub join: Vec<String>,
    /// A single-use `server` join token (with `join`), from `orion token create --role server`.
    pub token: Option<String>,
    /// Extra names or IPs for this peer's certificate (say, a load balancer's).
    pub tls_san: Vec<String>,
    /// Lifetime of the certificates this cluster issues; renewed at two thirds.
    pub cert_lifetime_secs: u64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a call waits for a leader during an election before failing.
    pub leader_hold_ms: u64,
    /// How long an agent may miss heartbeats before its node is marked down.
    pub node_ttl_ms: u64,
    /// Debug builds only, for the jepsen harness: answer every variable read from
    /// the local state without the read-index barrier, so the checker can be shown
    /// to catch stale reads. Refused by release builds.
    pub debug_stale_reads: bool,
    pub raft: RaftSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            id: 0,
            data_dir: PathBuf::from("orion-data"),
            api_addr: "127.0.0.1:7400".into(),
            peer_addr: "127.0.0.1:7500".into(),
            agent_addr: "127.0.0.1:7600".into(),
            advertise_agent_addr: None,
            advertise_api_addr: None,
            advertise_peer_addr: None,
            bootstrap: false,
            join: Vec::new(),
            token: None,
            tls_san: Vec::new(),
            cert_lifetime_secs: 30 * 24 * 3600,
            max_body_bytes: 1 << 20,
            leader_hold_ms: 5_000,
            node_ttl_ms: 5_000,
            debug_stale_reads: false,
            raft: RaftSettings::default(),
        }
    }
}

impl ServerConfig {
    /// Reads a TOML config file; unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn from_toml(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::Config(m));
        if self.id == 0 {
            return fail("id must be a positive integer (member ids start at 1)".into());
        }
        if self.bootstrap && !self.join.is_empty() {
            return fail(
                "bootstrap and join exclude each other: a peer starts a cluster or joins one"
                    .into(),
            );
        }
        for (name, addr) in [
            ("api-addr", &self.api_addr),
            ("peer-addr", &self.peer_addr),
            ("agent-addr", &self.agent_addr),
        ] {
            if addr.parse::<SocketAddr>().is_err() {
                return fail(format!("{name} {addr:?} is not an IP:port address"));
            }
        }
        for (name, addr) in [
            ("advertise-api-addr", &self.advertise_api_addr),
            ("advertise-peer-addr", &self.advertise_peer_addr),
        ] {
            if let Some(a) = addr {
                if !a.contains(':') {
                    return fail(format!("{name} {a:?} must be host:port"));
                }
            }
        }
        for url in &self.join {
            if !url.starts_with("https://") {
                return fail(format!(
                    "join URL {url:?} must start with https:// (the API is served over TLS)"
                ));
            }
        }
        if self.debug_stale_reads && !cfg!(debug_assertions) {
            return fail("debug-stale-reads exists only in debug builds".into());
        }
        if self.cert_lifetime_secs < 10 {
            return fail("cert-lifetime-secs must be at least 10".into());
        }
        if self.max_body_bytes < 1024 {
            return fail("max-body-bytes must be at least 1024".into());
        }
        if self.leader_hold_ms == 0 {
            return fail("leader-hold-ms must be above 0".into());
        }
        if self.node_ttl_ms < 1_000 {
            return fail(
                "node-ttl-ms must be at least 1000 (agents heartbeat every second)".into(),
            );
        }
        self.raft.validate().map_err(Error::Config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let err = ServerConfig::from_toml("id = 1\nbogus = 2\n").expect_err("unknown key");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn validate_names_the_problem() {
        let c = ServerConfig {
            id: 1,
            api_addr: "nowhere".into(),
            ..Default::default()
        };
        let err = c.validate().expect_err("bad addr").to_string();
        assert!(err.contains("api-addr"), "{err}");
        assert!(
            ServerConfig::default().validate().is_err(),
            "id 0 is refused"
        );
    }
}
