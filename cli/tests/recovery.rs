//! Disaster recovery on real peers: a backup taken through the leader, every peer
//! destroyed, the backup restored into a new one-peer cluster that fresh peers
//! join (same objects, revisions and tokens; the agent reconnects and keeps its
//! processes); and a survivor of a lost majority forced into a new cluster, with
//! the peers it dropped, and a peer removed the ordinary way, refusing to run
//! when started again.

mod fixture;

use std::collections::BTreeMap;
use std::time::Duration;

use fixture::TestCluster;
use orion_api::agent_proto::ReplicaState;
use orion_api::{ApplyRequest, SourceFile, Variable};
use orion_client::{Client, Consistency};
use serde_json::Value;

const WEB: &str = "kind: Service\nname: web\nreplicas: 2\ncommand: [\"python3\", \"-m\", \"http.server\", \"${PORT}\", \"--bind\", \"127.0.0.1\"]\nports: [http]\nresources: {cpu: 100m, memory: 32Mi}\nhealth: {http: {port: http, path: /}, interval: 500ms, timeout: 1s, failures: 3}\n";

fn client(c: &TestCluster, via: u64) -> Client {
    Client::new(&[c.url(via)], &c.ca_pem, Some(c.admin_token.clone()))
        .expect("client")
        .with_timeout(Duration::from_secs(20))
}

/// Replica id → pid of every replica the leader reports healthy, if all are.
async fn healthy(c: &TestCluster, via: u64, n: usize) -> Option<BTreeMap<String, u32>> {
    let list = client(c, via)
        .replicas(Consistency::Linearizable)
        .await
        .ok()?;
    let mut out = BTreeMap::new();
    for item in &list.items {
        let seen = list.observed.get(&item.id())?;
        if seen.state != ReplicaState::Healthy {
            return None;
        }
        out.insert(item.id(), seen.pid?);
    }
    (out.len() == n).then_some(out)
}

/// What must survive a restore of each variable: path, value and revisions.
fn key(vars: &[Variable]) -> Vec<(String, String, u64, u64, u64)> {
    vars.iter()
        .map(|v| {
            (
                v.path.clone(),
                v.value.clone(),
                v.create_revision,
                v.mod_revision,
                v.version,
            )
        })
        .collect()
}

/// Each service's name, spec, generation and create revision.
async fn services(c: &TestCluster, via: u64) -> Vec<Value> {
    let list = client(c, via)
        .services(Consistency::Linearizable)
        .await
        .expect("services");
    list.items
        .iter()
        .map(|s| {
            serde_json::json!({
                "spec": s.spec, "generation": s.generation, "create_revision": s.create_revision
            })
        })
        .collect()
}

/// Runs the CLI with `args` (no `--server`); returns (success, stdout, stderr).
fn cli(c: &TestCluster, args: &[String]) -> (bool, String, String) {
    let out = c.cli().args(args).output().expect("run orion");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_after_every_peer_is_gone_has_the_same_objects_revisions_tokens_and_processes(
) {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let request = ApplyRequest {
        files: vec![SourceFile {
            name: "orion.yaml".into(),
            content: WEB.into(),
        }],
    };
    client(&c, 1).apply(&request).await.expect("apply");
    let leader = c.wait_for_leader().await;
    let mut last = 0;
    for i in 0..20 {
        last = c
            .must_put(leader, &format!("app/k{i:02}"), &format!("v{i}"))
            .await;
    }
    c.must_put(leader, "app/k00", "rewritten").await;
    let developer = c.token("developer", 3600).await;
    let pids = c
        .wait_for("2 healthy replicas", Duration::from_secs(60), || async {
            healthy(&c, leader, 2).await
        })
        .await;

    // Through a follower, which relays to the leader.
    let follower = c.follower().await;
    let file = c.dir.path().join("backup.snap");
    let file_arg = file.display().to_string();
    let (ok, out, err) = fixture::orion(&c, &c.url(follower), &["snapshot", "save", &file_arg]);
    assert!(ok, "snapshot save: {out} {err}");
    assert!(out.contains("revision") && out.contains("crc32c"), "{out}");
    assert!(
        !file.with_extension("snap.tmp").exists(),
        "the temp file is gone"
    );
    let (ok, out, err) = cli(
        &c,
        &[
            "snapshot".into(),
            "status".into(),
            file_arg.clone(),
            "-o".into(),
            "json".into(),
        ],
    );
    assert!(ok, "snapshot status: {out} {err}");
    let status: Value = serde_json::from_str(&out).expect("status json");
    let revision = status["revision"].as_u64().expect("revision");
    assert!(revision >= last, "taken after the last acknowledged write");

    let vars = c.all_variables(follower).await;
    let svcs = services(&c, follower).await;
    assert_eq!(vars.len(), 20);

    // A damaged copy is refused, naming the problem, and writes nothing.
    let mut bytes = std::fs::read(&file).expect("read backup");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let damaged = c.dir.path().join("damaged.snap");
    std::fs::write(&damaged, &bytes).expect("write damaged");
    let scratch = c.dir.path().join("scratch");
    let (ok, _, err) = cli(
        &c,
        &[
            "snapshot".into(),
            "restore".into(),
            damaged.display().to_string(),
            "--id".into(),
            "1".into(),
            "--data-dir".into(),
            scratch.display().to_string(),
            "--api-addr".into(),
            "127.0.0.1:0".into(),
        ],
    );
    assert!(!ok && err.contains("checksum mismatch"), "{err}");
    assert!(!scratch.exists(), "a refused restore leaves nothing");

    // With --new-ca the backup's CA and token key are replaced (and the first
    // start mints a new admin token, as a bootstrap does).
    let fresh_ca = c.dir.path().join("fresh-ca");
    let (ok, out, err) = cli(
        &c,
        &[
            "snapshot".into(),
            "restore".into(),
            file_arg.clone(),
            "--new-ca".into(),
            "--data-dir".into(),
            fresh_ca.display().to_string(),
            "--api-addr".into(),
            "127.0.0.1:0".into(),
        ],
    );
    assert!(ok, "restore --new-ca: {out} {err}");
    assert!(
        out.contains("every old token and certificate stops working"),
        "{out}"
    );
    let new_ca = std::fs::read_to_string(fresh_ca.join("tls/ca.crt")).expect("new CA");
    assert_ne!(new_ca, c.ca_pem, "a new CA");
    assert!(fresh_ca.join("tls/bootstrap.json").exists());

    // Every peer is gone for good; the agent and its processes stay.
    for id in [1, 2, 3] {
        c.destroy(id);
    }
    // Restored where peer 1 was, so the agent finds it at an address it knows.
    let mut args = vec!["snapshot".into(), "restore".into(), file_arg.clone()];
    args.extend(c.slot_flags(1));
    let (ok, out, err) = cli(&c, &args);
    assert!(ok, "snapshot restore: {out} {err}");
    assert!(out.contains(&format!("revision {revision}")), "{out}");
    let (ok, _, err) = cli(&c, &args);
    assert!(!ok && err.contains("not empty"), "a second restore: {err}");
    c.restart(1);
    c.wait_for(
        "peer 1 to lead the restored cluster",
        fixture::WAIT,
        || async {
            c.status(1)
                .await
                .filter(|s| s.leader == Some(1))
                .map(|_| ())
        },
    )
    .await;
    // Fresh peers join with tokens the old admin token mints.
    c.spawn_new(4).await;
    c.spawn_new(5).await;
    let members = c.wait_for_voters(&[1, 4, 5]).await;
    assert_eq!(members.members.len(), 3);

    for via in [1, 4, 5] {
        assert_eq!(
            key(&c.all_variables(via).await),
            key(&vars),
            "the variables through peer {via}"
        );
        assert_eq!(services(&c, via).await, svcs, "the services through {via}");
    }
    // Revisions carry on after the backup's.
    assert!(c.must_put(4, "app/after", "x").await > revision);
    // The developer token minted before the backup still works.
    let dev = Client::new(&[c.url(5)], &c.ca_pem, Some(developer)).expect("client");
    dev.variable("app/k01", Consistency::Linearizable)
        .await
        .expect("an old developer token reads through a fresh peer");

    // The agent reconnects and adopts its processes: the same pids, healthy.
    let leader = c.wait_for_leader().await;
    let after = c
        .wait_for(
            "the agent to report its replicas to the new cluster",
            Duration::from_secs(60),
            || async { healthy(&c, leader, 2).await },
        )
        .await;
    assert_eq!(after, pids, "the same processes, adopted, not restarted");
    c.assert_no_unexpected_errors(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_forced_into_a_new_cluster_keeps_its_data_and_dropped_or_removed_peers_refuse_to_run(
) {
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader().await;
    let survivor = c.follower().await;
    let lost: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != survivor).collect();
    let mut acknowledged = BTreeMap::new();
    for i in 0..20 {
        let path = format!("acked/k{i:02}");
        let revision = c.must_put(leader, &path, &format!("v{i}")).await;
        acknowledged.insert(path, revision);
    }
    let last = acknowledged.values().copied().max().unwrap_or(0);
    c.wait_for(
        "the survivor to apply every write",
        fixture::WAIT,
        || async {
            c.status(survivor)
                .await
                .filter(|s| s.last_applied >= last)
                .map(|_| ())
        },
    )
    .await;

    // The majority is lost for good.
    for id in &lost {
        c.kill9(*id);
    }
    c.kill9(survivor);
    c.restart_with(survivor, &["--force-new-cluster"]);
    c.wait_for_log(survivor, "forced a new cluster").await;
    c.wait_for("the survivor to lead alone", fixture::WAIT, || async {
        c.status(survivor)
            .await
            .filter(|s| s.leader == Some(survivor) && s.voters == [survivor])
            .map(|_| ())
    })
    .await;
    let after = c.must_put(survivor, "after/force", "1").await;
    assert!(after > last);
    c.spawn_new(4).await;
    c.spawn_new(5).await;
    c.wait_for_voters(&[survivor, 4, 5]).await;
    let vars: BTreeMap<String, u64> = c
        .all_variables(4)
        .await
        .into_iter()
        .map(|v| (v.path, v.mod_revision))
        .collect();
    for (path, revision) in &acknowledged {
        assert_eq!(vars.get(path), Some(revision), "{path} survived");
    }

    // Given again once peers joined, the flag is refused rather than drop them.
    c.stop(survivor).await;
    c.restart_with(survivor, &["--force-new-cluster"]);
    c.wait_for(
        "the refused second force to exit",
        fixture::WAIT,
        || async { c.exit_status(survivor) },
    )
    .await;
    c.wait_for_log(survivor, "already forced a new cluster")
        .await;
    c.kill9(survivor);
    c.restart(survivor);
    c.wait_for_voters(&[survivor, 4, 5]).await;

    // The dropped peers, started again with their data, are told and exit.
    for id in &lost {
        c.restart(*id);
    }
    for id in &lost {
        let status = c
            .wait_for(
                &format!("dropped peer {id} to exit"),
                fixture::WAIT,
                || async { c.exit_status(*id) },
            )
            .await;
        // 78 (EX_CONFIG): the systemd unit does not restart it in a loop.
        assert_eq!(status.code(), Some(78), "peer {id} exits with 78: {status}");
        c.wait_for_log(*id, "was removed from this cluster").await;
        // Reaped, so the launcher no longer counts it as a peer that should run.
        c.kill9(*id);
    }

    // A peer removed the ordinary way refuses to run again too.
    let (ok, out, err) = fixture::orion(&c, &c.url(4), &["cluster", "remove", "5"]);
    assert!(ok, "cluster remove: {out} {err}");
    // Left running it may be told at once and exit by itself; stop it either way.
    c.kill9(5);
    c.wait_for_voters(&[survivor, 4]).await;
    c.restart(5);
    let status = c
        .wait_for("removed peer 5 to exit", fixture::WAIT, || async {
            c.exit_status(5)
        })
        .await;
    assert!(!status.success(), "peer 5 exits non-zero: {status}");
    c.wait_for_log(5, "was removed from").await;
    c.kill9(5);
    assert!(c.must_put(4, "after/remove", "1").await > after);
    c.assert_no_unexpected_errors(&["was removed from", "--force-new-cluster:"]);
}
