//! `orion apply`, `get`, `delete` through the real CLI binary against a real cluster.

mod fixture;

use std::time::Duration;

use fixture::orion;
use fixture::TestCluster;
use orion_client::{Client, Consistency};

/// A typed client of peer `via`, as the admin, each call within 20 s.
fn client(c: &TestCluster, via: u64) -> Client {
    Client::new(&[c.url(via)], &c.ca_pem, Some(c.admin_token.clone()))
        .expect("client")
        .with_timeout(Duration::from_secs(20))
}

const WEB: &str = "kind: Service\nname: web\nreplicas: 3\ncommand: [\"python3\", \"-m\", \"http.server\", \"${PORT}\"]\nports: [http]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reports_created_unchanged_configured_and_delete_removes() {
    let c = TestCluster::start(3).await;
    let follower = c.url(c.follower().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("orion.yaml");
    std::fs::write(&file, WEB).expect("write spec");
    let path = file.to_str().expect("utf-8 path");

    let (ok, out, err) = orion(&c, &follower, &["apply", "-f", path]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "service/web created");
    let (ok, out, _) = orion(&c, &follower, &["apply", "-f", path]);
    assert!(ok && out.trim() == "service/web unchanged", "{out}");
    std::fs::write(&file, WEB.replace("replicas: 3", "replicas: 5")).expect("write spec");
    let (ok, out, _) = orion(
        &c,
        &follower,
        &["apply", "-f", dir.path().to_str().expect("dir")],
    );
    assert!(ok && out.trim() == "service/web configured", "{out}");

    let (ok, out, err) = orion(&c, &c.url(1), &["get", "services", "-o", "json"]);
    assert!(ok, "{err}");
    let list: orion_api::ServiceList = serde_json::from_str(&out).expect("service list JSON");
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        (list.items[0].spec.replicas, list.items[0].generation),
        (5, 2)
    );

    let (ok, out, err) = orion(&c, &follower, &["delete", "service", "web"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("service/web deleted"), "{out}");
    let (ok, _, err) = orion(&c, &follower, &["get", "service", "web"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_document_applies_nothing_and_names_file_line_column() {
    let c = TestCluster::start(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("orion.yaml");
    let text = format!("{WEB}---\nkind: Service\nname: api\nreplicas: -1\ncommand: [x]\n---\nkind: Service\nname: db\ncommand: [x]\nbogus: 1\n");
    std::fs::write(&file, text).expect("write spec");
    let path = file.to_str().expect("utf-8 path");
    let (ok, _, err) = orion(&c, &c.url(2), &["apply", "-f", path]);
    assert!(!ok, "apply of a bad file must fail");
    assert!(
        err.contains(&format!("{path}:9:")) && err.contains("replicas"),
        "{err}"
    );
    assert!(err.contains("bogus"), "unknown field reported: {err}");
    let (ok, out, err) = orion(&c, &c.url(3), &["get", "services", "-o", "json"]);
    assert!(ok, "{err}");
    let list: orion_api::ServiceList = serde_json::from_str(&out).expect("service list JSON");
    assert!(list.items.is_empty(), "nothing applied: {out}");
}

async fn replicas(c: &TestCluster, via: u64) -> Option<orion_api::ReplicaList> {
    client(c, via)
        .replicas(Consistency::Linearizable)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_places_replicas_across_nodes_and_follows_scale_through_a_failover() {
    let mut c = TestCluster::start(3).await;
    for name in ["node-a", "node-b"] {
        let node = orion_api::NodeObject {
            name: name.to_string(),
            labels: Default::default(),
            capacity: orion_api::spec::Resources {
                cpu_millis: 2000,
                memory_bytes: 1u64 << 30,
            },
            status: Default::default(),
            cordoned: false,
            draining: false,
            drain_deadline_unix_ms: None,
            agent: false,
            mod_revision: 0,
        };
        let r = client(&c, 2).put_node(&node).await;
        assert!(r.is_ok(), "register {name}: {r:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("orion.yaml");
    std::fs::write(&file, WEB).expect("write spec");
    let path = file.to_str().expect("utf-8 path");
    let (ok, _, err) = orion(&c, &c.url(3), &["apply", "-f", path]);
    assert!(ok, "{err}");

    let placed = c
        .wait_for("3 replicas placed", fixture::WAIT, || async {
            let l = replicas(&c, 1).await?;
            (l.items.len() == 3).then_some(l)
        })
        .await;
    let nodes: std::collections::BTreeSet<&str> =
        placed.items.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(nodes.len(), 2, "spread over both nodes: {placed:?}");

    // A new leader's controller takes over without duplicating or moving anything.
    let leader = c.wait_for_leader().await;
    c.kill9(leader);
    let new_leader = c.wait_for_leader().await;
    std::fs::write(&file, WEB.replace("replicas: 3", "replicas: 1")).expect("write spec");
    let (ok, _, err) = orion(&c, &c.url(new_leader), &["apply", "-f", path]);
    assert!(ok, "{err}");
    let after = c
        .wait_for("scale down to 1 replica", fixture::WAIT, || async {
            let l = replicas(&c, new_leader).await?;
            (l.items.len() == 1).then_some(l)
        })
        .await;
    let kept = &after.items[0];
    assert_eq!(kept.ordinal, 0);
    assert!(
        placed
            .items
            .iter()
            .any(|r| r.ordinal == 0 && r.node == kept.node),
        "replica 0 stayed where it was: before {placed:?}, after {after:?}"
    );

    let (ok, _, err) = orion(&c, &c.url(new_leader), &["delete", "service", "web"]);
    assert!(ok, "{err}");
    c.wait_for("no replicas left", fixture::WAIT, || async {
        let l = replicas(&c, new_leader).await?;
        l.items.is_empty().then_some(())
    })
    .await;
}
