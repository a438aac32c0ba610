//! `orion apply`, `get`, `delete` through the real CLI binary against a real cluster.

mod fixture;

use std::process::Command;

use fixture::TestCluster;

/// Runs the `orion` CLI against `server`; returns (success, stdout, stderr).
fn orion(server: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orion"))
        .args(args)
        .args(["--server", server])
        .output()
        .expect("run orion");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

    let (ok, out, err) = orion(&follower, &["apply", "-f", path]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "service/web created");
    let (ok, out, _) = orion(&follower, &["apply", "-f", path]);
    assert!(ok && out.trim() == "service/web unchanged", "{out}");
    std::fs::write(&file, WEB.replace("replicas: 3", "replicas: 5")).expect("write spec");
    let (ok, out, _) = orion(
        &follower,
        &["apply", "-f", dir.path().to_str().expect("dir")],
    );
    assert!(ok && out.trim() == "service/web configured", "{out}");

    let (ok, out, err) = orion(&c.url(1), &["get", "services", "-o", "json"]);
    assert!(ok, "{err}");
    let list: orion_api::ServiceList = serde_json::from_str(&out).expect("service list JSON");
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        (list.items[0].spec.replicas, list.items[0].generation),
        (5, 2)
    );

    let (ok, out, err) = orion(&follower, &["delete", "service", "web"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("service/web deleted"), "{out}");
    let (ok, _, err) = orion(&follower, &["get", "service", "web"]);
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
    let (ok, _, err) = orion(&c.url(2), &["apply", "-f", path]);
    assert!(!ok, "apply of a bad file must fail");
    assert!(
        err.contains(&format!("{path}:9:")) && err.contains("replicas"),
        "{err}"
    );
    assert!(err.contains("bogus"), "unknown field reported: {err}");
    let (ok, out, err) = orion(&c.url(3), &["get", "services", "-o", "json"]);
    assert!(ok, "{err}");
    let list: orion_api::ServiceList = serde_json::from_str(&out).expect("service list JSON");
    assert!(list.items.is_empty(), "nothing applied: {out}");
}
