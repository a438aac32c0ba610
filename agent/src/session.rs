//! The agent's link to the control plane: find the cluster, verify it, follow
//! redirects to the leader, and keep one QUIC session to it.
//!
//! The first start trades a join token for an agent certificate naming this node;
//! later starts load it from `<data-dir>/tls` (`credentials.rs`). Gateways are
//! found through any peer's API and reached with mutual TLS 1.3: the agent accepts
//! only server certificates of its cluster, and the gateway only agent certificates.
//! A follower redirects to the leader; on any loss the agent reconnects with
//! exponential backoff and jitter (`retry.rs`). Its processes keep running
//! while it is disconnected: the supervisor only changes what it runs when a new
//! desired set arrives.
//!
//! Imports point one way: this file → `link` → `streams`, `ports`, `usage` →
//! `supervisor`; and this file → `credentials` → `retry`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orion_api::spec::Resources;
use orion_api::AgentBootstrap;
use tokio_util::sync::CancellationToken;

use crate::credentials;
use crate::error::SessionError;
use crate::link::{self, Hello, Local, Outcome};
use crate::metrics::AgentMetrics;
use crate::ports::PortBook;
use crate::retry::{self, Faults};
use crate::supervisor::Supervisor;

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

/// Runs the agent until `shutdown`, keeping `metrics` current. Processes are left running at shutdown; a
/// restarted agent adopts them again.
pub async fn run(
    config: AgentConfig,
    metrics: Arc<AgentMetrics>,
    shutdown: CancellationToken,
) -> Result<(), SessionError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| SessionError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let supervisor = Arc::new(Supervisor::new(
        config.data_dir.join("supervisor"),
        shutdown.child_token(),
    ));
    metrics.watch(supervisor.clone());
    let local = Local {
        supervisor: supervisor.clone(),
        metrics,
    };
    let mut ports = PortBook::load(config.data_dir.join("ports.json"));
    let tls_dir = config.data_dir.join("tls");
    let creds = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        c = credentials::load_or_join(&tls_dir, &config.servers, &config.name, config.token.as_deref()) => c?,
    };
    let live = creds
        .live_for(&orion_tls::Identity::agent(&config.name))
        .map_err(|source| SessionError::WrongIdentity {
            dir: tls_dir.clone(),
            source,
        })?;
    let renewal = tokio::spawn(credentials::renew_loop(
        tls_dir,
        config.servers.clone(),
        creds.ca_pem.clone(),
        live.clone(),
        shutdown.clone(),
    ));
    let api = orion_client::Client::builder(&config.servers)
        .ca(&creds.ca_pem)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(SessionError::Http)?;
    let client = link::client_config(&creds.ca_pem, live.clone())?;
    let hello = Hello {
        name: config.name.clone(),
        labels: config.labels.clone(),
        capacity: config.capacity,
    };
    let mut delays = retry::delays();
    let mut faults = Faults::default();
    let mut target: Option<String> = None;
    while !shutdown.is_cancelled() {
        let Some(boot) = bootstrap(&api, &mut faults).await else {
            retry::pause(&mut delays, &shutdown).await;
            continue;
        };
        let addrs: Vec<String> = target.take().into_iter().chain(boot.agent_addrs).collect();
        for addr in addrs {
            let outcome = link::connect_once(
                &hello,
                &client,
                &addr,
                &local,
                &mut ports,
                &shutdown,
                &mut faults,
            )
            .await;
            match outcome {
                Outcome::Redirect(Some(leader)) => {
                    target = Some(leader);
                    break;
                }
                Outcome::Redirect(None) | Outcome::Failed => continue,
                Outcome::SessionEnded => {
                    delays = retry::delays();
                    break;
                }
            }
        }
        if target.is_none() {
            retry::pause(&mut delays, &shutdown).await;
        }
    }
    renewal.abort();
    supervisor.detach();
    Ok(())
}

/// The cluster's CA and gateway addresses, from the first peer that answers.
async fn bootstrap(api: &orion_client::Client, faults: &mut Faults) -> Option<AgentBootstrap> {
    match api.bootstrap().await {
        Ok(b) => Some(b),
        Err(e) => {
            faults.report(
                "cannot get the cluster bootstrap",
                &api.urls().join(", "),
                &e,
            );
            None
        }
    }
}
