//! Disaster recovery around a peer's data directory: `orion snapshot restore`
//! ([`restore`]: a new data directory holding a one-peer cluster seeded from a
//! backup, with this peer's credentials) and `orion server --force-new-cluster`
//! ([`force_new_cluster`] before Raft starts, then [`finish_force_new_cluster`]
//! once this peer leads: the ids of the members it dropped are retired, so when
//! one of them is started again its peers tell it it was removed and it exits).
//! The storage side of both is `orion_raft::recovery`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orion_api::PeerIdentity;
use orion_raft::recovery::{self as raft_recovery, Forced, NewCa};
use orion_raft::{Command, Member, RaftNode};
use orion_tls::{Credentials, Identity};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::security::{self, BootstrapSecrets};

/// In the data directory: what the last `--force-new-cluster` did, and whether
/// the ids it dropped are retired yet.
pub const FORCED_FILE: &str = "forced-new-cluster.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ForcedRecord {
    /// The index and term of the membership entry that made this peer alone.
    index: u64,
    term: u64,
    /// The members dropped, to retire.
    retire: Vec<u64>,
    /// Whether they are retired in the replicated state.
    retired: bool,
}

fn forced_file(data_dir: &Path) -> PathBuf {
    data_dir.join(FORCED_FILE)
}

fn raft_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("raft")
}

fn member_of(me: &PeerIdentity) -> Member {
    Member {
        api_addr: me.api_addr.clone(),
        peer_addr: me.peer_addr.clone(),
        agent_addr: me.agent_addr.clone(),
    }
}

fn write_record(data_dir: &Path, record: &ForcedRecord) -> Result<()> {
    let body = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    let path = forced_file(data_dir);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// `--force-new-cluster`, before Raft starts: rewrites this peer's membership to
/// itself alone (`orion_raft::recovery::force_new_cluster`). Given again after
/// other peers joined the new cluster it refuses, rather than drop them too.
pub async fn force_new_cluster(config: &ServerConfig, me: &PeerIdentity) -> Result<()> {
    let record = forced_file(&config.data_dir);
    let again = record.exists().then(|| {
        format!(
            "this peer already forced a new cluster (see {}) and other peers have joined it \
             since; start it without --force-new-cluster (delete that file to force once more)",
            record.display()
        )
    });
    let forced = raft_recovery::force_new_cluster(
        &raft_dir(&config.data_dir),
        config.id,
        member_of(me),
        again.as_deref(),
    )
    .await
    .map_err(|e| Error::Config(format!("--force-new-cluster: {e}")))?;
    match forced {
        Forced::AlreadyAlone => {
            info!("--force-new-cluster: this peer is already the only member; nothing to do");
        }
        Forced::Rewritten {
            removed,
            term,
            index,
        } => {
            write_record(
                &config.data_dir,
                &ForcedRecord {
                    index,
                    term,
                    retire: removed.clone(),
                    retired: false,
                },
            )?;
            warn!(
                id = config.id,
                ?removed,
                term,
                index,
                "--force-new-cluster: this peer is now a one-peer cluster with its own data; \
                 writes the old majority acknowledged that never reached it are lost. \
                 The removed members' ids will be retired: never start them again with their \
                 data; add fresh peers with new ids, and remove --force-new-cluster from this \
                 peer's command line"
            );
        }
    }
    Ok(())
}

/// On the leader: retires the ids a `--force-new-cluster` dropped, retrying
/// through this term until done.
pub async fn finish_force_new_cluster(node: RaftNode, data_dir: PathBuf, term: CancellationToken) {
    let path = forced_file(&data_dir);
    loop {
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        let Ok(mut record) = serde_json::from_slice::<ForcedRecord>(&bytes) else {
            warn!(path = %path.display(), "unreadable record of a forced new cluster");
            return;
        };
        if record.retired {
            return;
        }
        let mut done = true;
        for id in &record.retire {
            if let Err(e) = node.propose(Command::RetireMember { id: *id }).await {
                warn!(id, cause = %e, "could not retire a member dropped by --force-new-cluster yet");
                done = false;
                break;
            }
        }
        if done {
            record.retired = true;
            match write_record(&data_dir, &record) {
                Ok(()) => {
                    info!(ids = ?record.retire, "retired the members dropped by --force-new-cluster");
                    return;
                }
                Err(e) => warn!(cause = %e, "could not record the retired members"),
            }
        }
        tokio::select! {
            () = term.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// What [`restore`] made.
#[derive(Debug)]
pub struct RestoreReport {
    pub data_dir: PathBuf,
    pub revision: u64,
    pub term: u64,
    pub pairs: u64,
    /// Whether a new CA and token key were made: the first start then writes a
    /// new admin token to `admin_token_file`.
    pub new_ca: bool,
    pub admin_token_file: PathBuf,
}

/// `orion snapshot restore FILE`: a new data directory `config.data_dir` (absent
/// or empty) holding a one-peer cluster (`config.id` at the addresses `config`
/// gives) whose state is the backup's, and this peer's certificate issued by the
/// backup's CA (or, with `new_ca`, a new one). Built in a staging folder beside it
/// and moved into place, so a failure leaves nothing behind.
pub fn restore(file: &Path, config: &ServerConfig, new_ca: bool) -> Result<RestoreReport> {
    config.validate()?;
    if config.bootstrap || !config.join.is_empty() {
        return Err(Error::Config(
            "restore makes a new cluster of its own: drop --bootstrap and --join".into(),
        ));
    }
    let dir = &config.data_dir;
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Config(format!(
            "{} is not a directory: restore writes a new data directory",
            dir.display()
        )));
    }
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(Error::Config(format!(
                "{} is not empty: restore writes a new data directory; give an empty or new one",
                dir.display()
            )));
        }
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let made = build(file, config, new_ca, &staging);
    let report = match made {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let moved = (|| -> std::io::Result<()> {
        if dir.exists() {
            std::fs::remove_dir(dir)?;
        }
        std::fs::rename(&staging, dir)?;
        std::fs::File::open(parent)?.sync_all()
    })();
    if let Err(e) = moved {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(Error::Config(format!(
            "cannot move the restored data into {}: {e}",
            dir.display()
        )));
    }
    Ok(RestoreReport {
        data_dir: dir.clone(),
        admin_token_file: security::admin_token_file(dir),
        ..report
    })
}

fn build(
    file: &Path,
    config: &ServerConfig,
    new_ca: bool,
    staging: &Path,
) -> Result<RestoreReport> {
    let bound = config.listen_addrs()?;
    let advertised = config.advertised(&bound)?;
    let member = Member {
        api_addr: advertised.api,
        peer_addr: advertised.peer,
        agent_addr: advertised.agent,
    };
    let tls_err = |e: orion_tls::TlsError| Error::Config(format!("TLS: {e}"));
    let fresh = if new_ca {
        let (cert_pem, key_pem) = orion_tls::cert::generate_ca().map_err(tls_err)?;
        Some(NewCa {
            cert_pem,
            key_pem,
            token_key: orion_tls::token::new_key(),
        })
    } else {
        None
    };
    std::fs::create_dir_all(staging)?;
    let restored = raft_recovery::restore(
        file,
        &raft_dir(staging),
        config.id,
        member.clone(),
        fresh.as_ref(),
    )
    .map_err(|e| Error::Config(format!("{}: {e}", file.display())))?;
    let (ca_pem, ca_key_pem) = match (&fresh, &restored.ca) {
        (Some(n), _) => (n.cert_pem.clone(), n.key_pem.clone()),
        (None, Some(kept)) => (kept.cert_pem.clone(), kept.key_pem.clone()),
        (None, None) => {
            return Err(Error::Config(format!(
                "{} holds no cluster CA (taken before the cluster finished bootstrapping); \
                 restore it with --new-ca",
                file.display()
            )))
        }
    };
    let hosts = security::cert_hosts(
        &[&member.api_addr, &member.peer_addr, &member.agent_addr],
        &config.tls_san,
    );
    let (cert_pem, key_pem) = orion_tls::cert::issue(
        &ca_key_pem,
        &Identity::server(config.id),
        &hosts,
        Duration::from_secs(config.cert_lifetime_secs),
    )
    .map_err(tls_err)?;
    Credentials {
        ca_pem,
        cert_pem,
        key_pem,
    }
    .save(&security::tls_dir(staging))
    .map_err(tls_err)?;
    if let Some(n) = &fresh {
        // As at bootstrap: the first term led mints an admin token (the CA is
        // already in the state, so only the token is left to do).
        let secrets = BootstrapSecrets {
            ca_key_pem: n.key_pem.clone(),
            token_key: n.token_key.clone(),
        };
        let json = serde_json::to_vec(&secrets).map_err(std::io::Error::other)?;
        orion_tls::files::write_private(&security::bootstrap_file(staging), &json)
            .map_err(tls_err)?;
    }
    Ok(RestoreReport {
        data_dir: staging.to_path_buf(),
        revision: restored.info.revision(),
        term: restored.info.term(),
        pairs: restored.pairs,
        new_ca,
        admin_token_file: PathBuf::new(),
    })
}
