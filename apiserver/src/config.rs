//! A peer's settings: flags and `--config FILE` (TOML) fill the same struct.
//!
//! # Addresses
//! A peer has three listeners: the REST API (`api-addr`), Raft (`peer-addr`) and the
//! QUIC agent gateway (`agent-addr`, UDP). `peer-addr` and `agent-addr` default to
//! the host of `api-addr` on ports 7500 and 7600 (port 0, the OS's pick, when
//! `api-addr`'s port is 0), so a peer given only `--api-addr 10.0.0.11:7400` is
//! reachable on that host everywhere. What the membership records (and so what
//! other peers, agents and `GET /v1/cluster/ca` use) is each listener's
//! *advertised* address: `advertise-*-addr` when set, else the address bound. A
//! listener on every interface (`0.0.0.0`, `::`) has no address to advertise, so
//! it needs `advertise-<name>-addr`, or `advertise-api-addr`, whose host it then
//! uses with its own port. The advertised addresses may change from one start to
//! the next: the peer updates its membership record (see `advertise.rs`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use orion_raft::RaftSettings;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// This peer's member id: unique in the cluster, never reused, above 0.
    pub id: u64,
    /// Where RocksDB and the snapshots live.
    pub data_dir: PathBuf,
    /// Where the REST API listens (`host:port`).
    pub api_addr: String,
    /// Where the Raft gRPC service listens (`ip:port`; default: the host of
    /// `api-addr`, port 7500).
    pub peer_addr: Option<String>,
    /// Where the QUIC agent gateway listens (`ip:port`, UDP; default: the host of
    /// `api-addr`, port 7600).
    pub agent_addr: Option<String>,
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
    /// `--force-new-cluster`: before starting, make this peer a one-peer cluster
    /// with its own data (after a majority was lost for good). A flag only: never
    /// read from a config file, where it would be applied at every start.
    #[serde(skip)]
    pub force_new_cluster: bool,
    /// A single-use `server` join token (with `join`), from `orion token create --role server`.
    pub token: Option<String>,
    /// Extra DNS names or IPs for this peer's certificate, such as a load
    /// balancer's (at most [`MAX_TLS_SANS`]). The certificate is issued again at
    /// start when these or the advertised addresses change.
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
            peer_addr: None,
            agent_addr: None,
            advertise_agent_addr: None,
            advertise_api_addr: None,
            advertise_peer_addr: None,
            bootstrap: false,
            join: Vec::new(),
            force_new_cluster: false,
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

/// Default Raft and agent gateway ports, when `api-addr` names a fixed port.
pub const DEFAULT_PEER_PORT: u16 = 7500;
pub const DEFAULT_AGENT_PORT: u16 = 7600;
/// Most extra certificate names (`tls-san`) a peer takes.
pub const MAX_TLS_SANS: usize = 32;
/// Longest address or name accepted (a DNS name is at most 253 characters).
const MAX_NAME_LEN: usize = 253;

/// Where a peer's three listeners bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listeners {
    pub api: SocketAddr,
    pub peer: SocketAddr,
    pub agent: SocketAddr,
}

/// The addresses a peer advertises: what the membership records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub api: String,
    pub peer: String,
    pub agent: String,
}

impl ServerConfig {
    /// Where each listener binds, with `peer-addr` and `agent-addr` defaulting to
    /// the host of `api-addr` (ports 7500 and 7600, or 0 when `api-addr`'s is 0).
    pub fn listen_addrs(&self) -> Result<Listeners> {
        let parse = |name: &str, addr: &str| -> Result<SocketAddr> {
            addr.parse::<SocketAddr>().map_err(|_| {
                Error::Config(format!(
                    "{name} {addr:?} is not an IP:port address (listeners bind IP addresses; \
                     put host names in advertise-{name})"
                ))
            })
        };
        let api = parse("api-addr", &self.api_addr)?;
        let derived = |port: u16| SocketAddr::new(api.ip(), if api.port() == 0 { 0 } else { port });
        let peer = match &self.peer_addr {
            Some(a) => parse("peer-addr", a)?,
            None => derived(DEFAULT_PEER_PORT),
        };
        let agent = match &self.agent_addr {
            Some(a) => parse("agent-addr", a)?,
            None => derived(DEFAULT_AGENT_PORT),
        };
        Ok(Listeners { api, peer, agent })
    }

    /// What this peer advertises, given where its listeners are bound (the ports
    /// the OS picked, for port 0): `advertise-*-addr` when set, else the bound
    /// address; a listener on every interface takes the advertised API host with
    /// its own port, and without one it is an error naming the setting to add.
    pub fn advertised(&self, bound: &Listeners) -> Result<Advertised> {
        for (name, addr) in [
            ("advertise-api-addr", &self.advertise_api_addr),
            ("advertise-peer-addr", &self.advertise_peer_addr),
            ("advertise-agent-addr", &self.advertise_agent_addr),
        ] {
            if let Some(a) = addr {
                check_advertised(name, a)?;
            }
        }
        let api = match (&self.advertise_api_addr, bound.api.ip().is_unspecified()) {
            (Some(a), _) => a.clone(),
            (None, false) => bound.api.to_string(),
            (None, true) => {
                return Err(Error::Config(format!(
                    "api-addr {} listens on every interface, so there is no address to tell \
                     clients and other peers: set advertise-api-addr (e.g. 10.0.0.11:{})",
                    bound.api,
                    bound.api.port()
                )))
            }
        };
        // The advertised API host, for listeners on every interface.
        let api_host = api.rsplit_once(':').map_or(api.as_str(), |(h, _)| h);
        let other = |set: &Option<String>, at: SocketAddr| -> String {
            match set {
                Some(a) => a.clone(),
                None if at.ip().is_unspecified() => format!("{api_host}:{}", at.port()),
                None => at.to_string(),
            }
        };
        Ok(Advertised {
            peer: other(&self.advertise_peer_addr, bound.peer),
            agent: other(&self.advertise_agent_addr, bound.agent),
            api,
        })
    }

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
        if self.force_new_cluster && (self.bootstrap || !self.join.is_empty()) {
            return fail(
                "force-new-cluster keeps this peer's own data: it excludes bootstrap and join"
                    .into(),
            );
        }
        let bound = self.listen_addrs()?;
        self.advertised(&bound)?;
        validate_sans(&self.tls_san)?;
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
        self.raft
            .validate()
            .map_err(|e| Error::Config(e.to_string()))
    }
}

/// An advertised address is `host:port`, where others can reach this peer.
fn check_advertised(name: &str, addr: &str) -> Result<()> {
    let fail = |why: &str| Err(Error::Config(format!("{name} {addr:?} {why}")));
    if addr.len() > MAX_NAME_LEN + 8 {
        return fail("is too long");
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return fail("must be host:port");
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return fail("must be host:port");
    }
    if port == "0" {
        return fail("must name the port others reach, not 0");
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare == host && host.contains(':') {
        return fail("must put an IPv6 address in brackets: [addr]:port");
    }
    match bare.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => {
            fail("must be an address others can reach, not every interface")
        }
        Ok(_) => Ok(()),
        Err(_) => check_name(bare).map_err(|why| Error::Config(format!("{name} {addr:?}: {why}"))),
    }
}

/// A certificate name: an IP address, or a DNS name without wildcards.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} characters"));
    }
    if name.contains('*') {
        return Err("wildcard names are not supported; list each name".into());
    }
    rustls::pki_types::ServerName::try_from(name)
        .map(|_| ())
        .map_err(|_| "is neither an IP address nor a valid DNS name".into())
}

fn validate_sans(sans: &[String]) -> Result<()> {
    if sans.len() > MAX_TLS_SANS {
        return Err(Error::Config(format!(
            "tls-san lists {} names; at most {MAX_TLS_SANS} are accepted",
            sans.len()
        )));
    }
    for san in sans {
        check_name(san).map_err(|why| Error::Config(format!("tls-san {san:?}: {why}")))?;
    }
    Ok(())
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

    fn peer(api: &str) -> ServerConfig {
        ServerConfig {
            id: 1,
            api_addr: api.into(),
            ..Default::default()
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn listeners_default_to_the_api_host() {
        let l = peer("10.0.0.11:7400").listen_addrs().expect("listeners");
        assert_eq!(l.peer, addr("10.0.0.11:7500"));
        assert_eq!(l.agent, addr("10.0.0.11:7600"));
        // Port 0 (the OS picks) carries over, so test peers never collide.
        let l = peer("127.0.0.11:0").listen_addrs().expect("listeners");
        assert_eq!(
            (l.peer, l.agent),
            (addr("127.0.0.11:0"), addr("127.0.0.11:0"))
        );
        // An explicit address wins.
        let c = ServerConfig {
            agent_addr: Some("127.0.0.31:9000".into()),
            ..peer("127.0.0.11:7400")
        };
        assert_eq!(
            c.listen_addrs().expect("listeners").agent,
            addr("127.0.0.31:9000")
        );
        let a = c
            .advertised(&c.listen_addrs().expect("listeners"))
            .expect("advertised");
        assert_eq!(
            (a.api.as_str(), a.peer.as_str(), a.agent.as_str()),
            ("127.0.0.11:7400", "127.0.0.11:7500", "127.0.0.31:9000")
        );
    }

    #[test]
    fn every_interface_needs_an_advertised_address() {
        let err = peer("0.0.0.0:7400")
            .validate()
            .expect_err("nothing to advertise");
        assert!(err.to_string().contains("advertise-api-addr"), "{err}");
        // The advertised API host serves the other listeners, with their own ports.
        let c = ServerConfig {
            advertise_api_addr: Some("node-1.example:7400".into()),
            ..peer("0.0.0.0:7400")
        };
        c.validate().expect("valid");
        let bound = Listeners {
            api: addr("0.0.0.0:7400"),
            peer: addr("0.0.0.0:7500"),
            agent: addr("0.0.0.0:40123"),
        };
        let a = c.advertised(&bound).expect("advertised");
        assert_eq!(a.peer, "node-1.example:7500");
        assert_eq!(a.agent, "node-1.example:40123");
        // A specific API address serves an agent gateway on every interface.
        let c = ServerConfig {
            agent_addr: Some("0.0.0.0:7600".into()),
            ..peer("10.0.0.11:7400")
        };
        let a = c
            .advertised(&c.listen_addrs().expect("listeners"))
            .expect("advertised");
        assert_eq!(a.agent, "10.0.0.11:7600");
    }

    #[test]
    fn bad_addresses_and_names_are_named() {
        for (c, needle) in [
            (
                ServerConfig {
                    advertise_agent_addr: Some("0.0.0.0:7600".into()),
                    ..peer("10.0.0.11:7400")
                },
                "advertise-agent-addr",
            ),
            (
                ServerConfig {
                    advertise_peer_addr: Some("::1:7500".into()),
                    ..peer("10.0.0.11:7400")
                },
                "brackets",
            ),
            (
                ServerConfig {
                    peer_addr: Some("node-1:7500".into()),
                    ..peer("10.0.0.11:7400")
                },
                "peer-addr",
            ),
            (
                ServerConfig {
                    tls_san: vec!["*.example.com".into()],
                    ..peer("10.0.0.11:7400")
                },
                "wildcard",
            ),
            (
                ServerConfig {
                    tls_san: vec!["bad name".into()],
                    ..peer("10.0.0.11:7400")
                },
                "tls-san \"bad name\"",
            ),
            (
                ServerConfig {
                    tls_san: (0..=MAX_TLS_SANS)
                        .map(|i| format!("lb-{i}.example"))
                        .collect(),
                    ..peer("10.0.0.11:7400")
                },
                "at most",
            ),
        ] {
            let err = c.validate().expect_err(needle).to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let ok = ServerConfig {
            tls_san: vec!["lb.example.com".into(), "127.0.0.100".into(), "::1".into()],
            ..peer("10.0.0.11:7400")
        };
        ok.validate().expect("valid names");
    }

    /// The fuzz check of the server's TOML config (this crate builds RocksDB, so
    /// it runs on stable, not under cargo-fuzz): what parses validates or says
    /// why not, and survives a TOML round trip; every error names its problem.
    fn server_config_check(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match ServerConfig::from_toml(text) {
            Ok(config) => {
                let shown = toml::to_string(&config).expect("a config serializes");
                let back = ServerConfig::from_toml(&shown).expect("a written config reads back");
                assert_eq!(
                    format!("{back:?}"),
                    format!("{config:?}"),
                    "TOML round trip"
                );
                match config.validate() {
                    Ok(()) => {
                        let bound = config.listen_addrs().expect("a valid config binds");
                        config
                            .advertised(&bound)
                            .expect("a valid config advertises");
                    }
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
            Err(e) => assert!(!e.trim().is_empty()),
        }
    }

    #[test]
    fn fuzz_corpus_server_config() {
        let seeds = vec![
            b"id = 1\nbootstrap = true\napi-addr = \"127.0.0.1:0\"\n".to_vec(),
            b"id = 2\njoin = [\"https://10.0.0.11:7400\"]\ntoken = \"orion.x.y\"\n".to_vec(),
            b"id = 3\napi-addr = \"[::1]:7400\"\ntls-san = [\"lb.example.test\", \"10.0.0.9\"]\n[raft]\nheartbeat-ms = 300\n".to_vec(),
        ];
        orion_api::fuzz::replay("server_config", seeds, 3_000, server_config_check);
    }
}
