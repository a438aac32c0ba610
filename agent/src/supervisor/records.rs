//! What survives an agent restart: one record per live replica process,
//! `root/replicas/<id>.json`.
//!
//! # Re-adoption
//! Replica processes are not killed when the agent stops or crashes: each runs in
//! its own process group and writes its logs straight to files (see the `logs` module),
//! so it does not depend on the agent being alive. When a new `Supervisor`
//! starts on the same root it reads these records and, for each one:
//! - if `/proc/<pid>` exists, is not a zombie, and its start time (field 22 of
//!   `/proc/<pid>/stat`, clock ticks since boot) equals the recorded one, the process
//!   is the same one (not a reused pid) and is **adopted**: the supervisor tracks it
//!   again with its recorded spec, health checks and restart policy, so the agent
//!   neither orphans it nor starts a duplicate;
//! - otherwise the record is stale and is removed.
//!
//! An adopted process is not the new agent's child (it was re-parented to init or
//! a subreaper), so it cannot be `wait()`ed: the supervisor polls `/proc/<pid>/stat`
//! instead and learns *that* it exited, not its exit status. Such an exit is reported
//! as `Exited { code: None, signal: None }` and treated as a failure by `on-failure`.
//! Stopping it works as for a child: signals go to its process group.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_at, Error, Result};
use crate::replica::ReplicaSpec;
use crate::supervisor::process::is_same_process;

/// The record of one replica process, written when it starts and removed when it
/// is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub pid: u32,
    /// Always `pid` today (each replica leads its own group); recorded so stopping
    /// an adopted replica does not depend on that.
    pub pgid: u32,
    /// `/proc/<pid>/stat` start time: tells this process from a later one with the same pid.
    pub start_time: u64,
    /// [`spec_hash`] of `spec`, for a quick look at which spec a process runs.
    pub spec_hash: u64,
    /// Milliseconds since the Unix epoch, when the agent started it.
    pub started_at_unix_ms: u64,
    pub restarts: u32,
    /// The full spec, so an adopted replica is health-checked and restarted as before.
    pub spec: ReplicaSpec,
}

/// `root/replicas`.
pub fn records_dir(root: &Path) -> PathBuf {
    root.join("replicas")
}

fn record_path(root: &Path, id: &str) -> PathBuf {
    records_dir(root).join(format!("{id}.json"))
}

/// Writes the record atomically (temporary file, then rename), readable by the
/// agent's user only: it holds the values of the replica's variable-backed env,
/// secrets included.
pub fn save(root: &Path, record: &ReplicaRecord) -> Result<()> {
    let dir = records_dir(root);
    fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    let path = record_path(root, &record.spec.id);
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(record).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    write_private(&tmp, &bytes).map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))
}

/// `bytes` into a new file of mode 0600 (an old one is replaced).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Removes the record; a missing one is fine.
pub fn remove(root: &Path, id: &str) -> Result<()> {
    let path = record_path(root, id);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at(path)(e)),
        _ => Ok(()),
    }
}

/// Every record under `root` whose process is still the recorded one; removes the
/// rest (stale or unreadable records are logged and dropped).
pub fn load_live(root: &Path) -> Vec<ReplicaRecord> {
    let dir = records_dir(root);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), cause = %e, "cannot read replica records");
            return Vec::new();
        }
    };
    let mut live = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        let record = fs::read(&path).map_err(io_at(&path)).and_then(|b| {
            serde_json::from_slice::<ReplicaRecord>(&b).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })
        });
        match record {
            Ok(r) if is_same_process(r.pid, r.start_time) => live.push(r),
            Ok(r) => {
                tracing::info!(replica = %r.spec.id, pid = r.pid, "replica process is gone; dropping its record");
                let _ = fs::remove_file(&path);
            }
            Err(e) => {
                tracing::warn!(cause = %e, "unreadable replica record; removing it");
                let _ = fs::remove_file(&path);
            }
        }
    }
    live.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
    live
}

/// A stable FNV-1a hash of the spec's JSON form (maps are ordered, so it is
/// deterministic and does not change between Rust releases, unlike `DefaultHasher`).
pub fn spec_hash(spec: &ReplicaSpec) -> std::result::Result<u64, serde_json::Error> {
    let bytes = serde_json::to_vec(spec)?;
    Ok(bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }))
}
