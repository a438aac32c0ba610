//! The agent picks the ports of its replicas (the scheduler does not): one per
//! name in the service's `ports`, from [`DYNAMIC_PORTS`], kept in
//! `<data-dir>/ports.json` so a restarted agent gives an adopted replica the same
//! ports (and so does not restart it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use orion_api::agent_proto::DesiredReplica;
use tracing::warn;

use crate::error::{io_at, Error, Result};
use crate::replica::ReplicaSpec;

/// Named ports per replica, allocated once and kept on disk, so an agent restart
/// gives an adopted replica the same ports (and so does not restart it).
pub(crate) struct PortBook {
    path: PathBuf,
    ports: BTreeMap<String, BTreeMap<String, u16>>,
}

impl PortBook {
    pub fn load(path: PathBuf) -> Self {
        let ports = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(path = %path.display(), cause = %e, "unreadable port allocations; allocating anew");
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                warn!(path = %path.display(), cause = %e, "cannot read port allocations; allocating anew");
                BTreeMap::new()
            }
        };
        PortBook { path, ports }
    }

    pub fn specs(&mut self, desired: Vec<DesiredReplica>) -> Vec<ReplicaSpec> {
        self.ports
            .retain(|id, _| desired.iter().any(|d| &d.id == id));
        let mut booked: std::collections::BTreeSet<u16> = self
            .ports
            .values()
            .flat_map(|b| b.values().copied())
            .collect();
        let specs = desired
            .into_iter()
            .map(|d| {
                let book = self.ports.entry(d.id.clone()).or_default();
                book.retain(|name, _| d.service.ports.contains(name));
                for name in &d.service.ports {
                    if !book.contains_key(name) {
                        if let Some(p) = free_port(&booked) {
                            booked.insert(p);
                            book.insert(name.clone(), p);
                        }
                    }
                }
                ReplicaSpec {
                    id: d.id,
                    ports: book.clone(),
                    service: d.service,
                    generation: d.generation,
                    variables: d.variables,
                }
            })
            .collect();
        if let Err(e) = self.save() {
            warn!(cause = %e, "cannot save port allocations; an agent restart may give replicas new ports");
        }
        specs
    }

    /// Writes the allocations atomically (temporary file, then rename).
    fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec(&self.ports).map_err(|source| Error::Json {
            path: self.path.clone(),
            source,
        })?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(io_at(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_at(&self.path))
    }
}

/// Ports handed to replicas come from this range, as Nomad's dynamic ports do. It is
/// below Linux's ephemeral range (32768 and up), so the OS never gives one of these to
/// an outgoing connection or a bind to port 0 between our check and the child's bind.
const DYNAMIC_PORTS: std::ops::Range<u16> = 20000..32000;

/// A port from [`DYNAMIC_PORTS`] that is not booked and that nothing listens on now,
/// starting at a random place so agents on one machine rarely race for the same one.
fn free_port(booked: &std::collections::BTreeSet<u16>) -> Option<u16> {
    use std::hash::{BuildHasher, Hasher};
    let span = DYNAMIC_PORTS.end - DYNAMIC_PORTS.start;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let start = u16::try_from(h.finish() % u64::from(span)).unwrap_or(0);
    (0..span)
        .map(|i| DYNAMIC_PORTS.start + (start + i) % span)
        .filter(|p| !booked.contains(p))
        .find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
}
