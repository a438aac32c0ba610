//! The variable controller: a service whose env references a variable with
//! `restart_on_change` rolls when that variable changes.
//!
//! Each service spec records, per such variable, the `mod_revision` it was made
//! from (`ServiceSpec::variable_revisions`, written by apply). A round reads every
//! service and the variables they roll on from one view; for each service whose
//! current spec records an older revision than the store holds, it proposes
//! [`Command::RefreshVariables`]. Apply makes the same spec with the newer
//! revisions the next generation, and the rollout controller rolls it under the
//! service's `strategy` like any change (`max_unavailable`, health,
//! `min_healthy_time`, rollback). Everything it decides from is replicated: a new
//! leader sees the same difference and proposes the same command, and apply ignores
//! it once the generation moved on, so a leader change neither loses nor doubles a
//! roll.
//!
//! A deleted variable rolls nothing (running replicas keep their value; a replica
//! started later waits for the variable), and writing it again does.

use std::collections::BTreeMap;

use orion_api::ServiceObject;
use orion_raft::{read, Command, LeaderError, RaftNode};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The services whose current spec is older than a variable it rolls on, with the
/// paths that changed. `revisions` holds the `mod_revision` of each existing
/// variable by path (absent: it does not exist). Pure.
pub fn stale(
    services: &[ServiceObject],
    revisions: &BTreeMap<String, u64>,
) -> Vec<(String, u64, Vec<String>)> {
    services
        .iter()
        .filter_map(|s| {
            let changed: Vec<String> = s
                .spec
                .restart_on_change_paths()
                .into_iter()
                .filter(|path| {
                    let recorded = s.spec.variable_revisions.get(*path).copied().unwrap_or(0);
                    revisions.get(*path).is_some_and(|now| *now > recorded)
                })
                .map(str::to_owned)
                .collect();
            (!changed.is_empty()).then(|| (s.spec.name.clone(), s.generation, changed))
        })
        .collect()
}

/// Runs until `token` is cancelled or this peer stops leading.
pub async fn run(node: RaftNode, token: CancellationToken) {
    let mut metrics = node.raft.metrics();
    // The last proposal per service, so one that applied but is not read yet is
    // not proposed again each round (apply would ignore it anyway).
    let mut proposed: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let state = node.reader.with_view(|v| {
            let services = read::services(v)?;
            let mut revisions = BTreeMap::new();
            for s in &services {
                for path in s.spec.restart_on_change_paths() {
                    if revisions.contains_key(path) {
                        continue;
                    }
                    if let Some(variable) = read::variable(v, path)? {
                        revisions.insert(path.to_owned(), variable.mod_revision);
                    }
                }
            }
            Ok::<_, read::ReadError>((services, revisions))
        });
        match state {
            Ok((services, revisions)) => {
                proposed.retain(|name, _| services.iter().any(|s| &s.spec.name == name));
                for (service, generation, changed) in stale(&services, &revisions) {
                    if proposed.get(&service) == Some(&generation) {
                        continue;
                    }
                    info!(%service, generation, variables = ?changed, "referenced variables changed; rolling the service");
                    let cmd = Command::RefreshVariables {
                        service: service.clone(),
                        generation,
                    };
                    match node.propose(cmd).await {
                        Ok(_) => {
                            proposed.insert(service, generation);
                        }
                        Err(LeaderError::NotLeader { .. } | LeaderError::Fatal(_)) => {
                            info!("variable controller stops: no longer the leader");
                            return;
                        }
                        Err(e) => {
                            warn!(%service, cause = %e, "cannot roll the service for its variables; retrying");
                            break;
                        }
                    }
                }
            }
            Err(e) => warn!(cause = %e, "variable controller cannot read state; retrying"),
        }
        tokio::select! {
            () = token.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orion_api::spec::VariableRef;

    fn service(name: &str, restart: bool, recorded: Option<u64>) -> ServiceObject {
        let mut spec = orion_api::spec::ServiceSpec {
            name: name.into(),
            replicas: 1,
            command: vec!["srv".into()],
            args: vec![],
            env: BTreeMap::new(),
            working_dir: None,
            ports: vec![],
            resources: Default::default(),
            health: None,
            restart: Default::default(),
            placement: Default::default(),
            strategy: Default::default(),
            hooks: Default::default(),
            env_variables: BTreeMap::from([(
                "DB".into(),
                VariableRef {
                    variable: "prod/db".into(),
                    restart_on_change: restart,
                },
            )]),
            variable_revisions: BTreeMap::new(),
        };
        if let Some(r) = recorded {
            spec.variable_revisions.insert("prod/db".into(), r);
        }
        ServiceObject {
            spec,
            create_revision: 1,
            mod_revision: 1,
            generation: 3,
            history: vec![],
            rollout: Default::default(),
            hooks: Default::default(),
        }
    }

    #[test]
    fn only_a_newer_revision_of_a_restart_on_change_variable_rolls() {
        let now = BTreeMap::from([("prod/db".to_owned(), 9)]);
        let rolls = stale(&[service("a", true, Some(5))], &now);
        assert_eq!(rolls, vec![("a".into(), 3, vec!["prod/db".into()])]);
        assert!(stale(&[service("a", true, Some(9))], &now).is_empty());
        assert!(stale(&[service("a", false, None)], &now).is_empty());
        // Deleted: nothing rolls.
        assert!(stale(&[service("a", true, Some(9))], &BTreeMap::new()).is_empty());
        // Created after the service (recorded 0).
        assert_eq!(stale(&[service("a", true, Some(0))], &now).len(), 1);
    }
}
