//! A peer's shutdown ends every task it started and closes its storage: a peer
//! runs in-process on a runtime of its own, serving a watch, and is stopped; then
//! its RocksDB opens again at once (a store still open would hold its `LOCK`), the
//! watch has ended, and the runtime has no task left alive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_apiserver::ServerConfig;
use tokio_util::sync::CancellationToken;

/// Polls `done` until it holds, failing after `deadline`.
async fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where the watch's bytes go: only whether any arrived is kept.
struct Seen(Arc<AtomicBool>);

impl std::io::Write for Seen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.store(true, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn api_addr(data_dir: &std::path::Path) -> Option<String> {
    let file = data_dir.join(orion_apiserver::server::LISTEN_FILE);
    let text = std::fs::read_to_string(file).ok()?;
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(&text).ok()?;
    map.get("api").cloned()
}

#[test]
fn a_stopped_peer_leaves_no_task_running_and_closes_its_storage() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("peer-1");
    let config = ServerConfig {
        id: 1,
        data_dir: data_dir.clone(),
        api_addr: "127.0.0.1:0".into(),
        peer_addr: Some("127.0.0.1:0".into()),
        agent_addr: Some("127.0.0.1:0".into()),
        bootstrap: true,
        ..ServerConfig::default()
    };

    runtime.block_on(async {
        let stop = CancellationToken::new();
        let peer = tokio::spawn(orion_apiserver::run(config, stop.clone()));
        // Bootstrapped, led, CA recorded and admin token minted.
        let token_file = orion_apiserver::security::admin_token_file(&data_dir);
        wait_for("the peer bootstraps", Duration::from_secs(60), || {
            token_file.exists() && api_addr(&data_dir).is_some()
        })
        .await;
        let token = std::fs::read_to_string(&token_file).expect("admin token");
        let ca_pem = orion_tls::Credentials::load(&data_dir.join("tls"))
            .expect("credentials")
            .expect("credentials saved")
            .ca_pem;
        let url = format!("https://{}", api_addr(&data_dir).expect("listen file"));
        let client = orion_client::Client::new(&[url], &ca_pem, Some(token)).expect("client");
        // A long-lived answer in flight: shutdown must not wait for it to end by itself.
        let seen = Arc::new(AtomicBool::new(false));
        let watch = {
            let out = Seen(seen.clone());
            tokio::spawn(async move {
                let query = orion_client::WatchQuery::default();
                let _ = client.watch(&query, out).await;
            })
        };
        wait_for("the watch starts", Duration::from_secs(10), || {
            seen.load(Ordering::Relaxed)
        })
        .await;

        let asked = Instant::now();
        stop.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(30), peer)
            .await
            .expect("the peer stops within 30 s")
            .expect("the peer's task did not panic");
        outcome.expect("the peer stops cleanly");
        assert!(
            asked.elapsed() < orion_apiserver::server::DRAIN_DEADLINE,
            "no stage waited out its deadline: stopping took {:?}",
            asked.elapsed()
        );

        // The storage is closed: it opens again at once, with the data in it.
        let store = orion_store::open::<orion_raft::TypeConfig>(
            &data_dir.join("raft"),
            Arc::new(orion_raft::apply::OrionApplier),
        )
        .expect("the store opens again right after the peer stopped");
        let ca = store
            .reader
            .with_view(orion_raft::read::cluster_ca)
            .expect("read the reopened store");
        assert!(ca.is_some(), "the replicated CA survived the restart");
        drop(store);

        // The watch was ended by the peer, not left hanging.
        tokio::time::timeout(Duration::from_secs(5), watch)
            .await
            .expect("the watch stream ended with the peer")
            .expect("the watch task did not panic");
    });

    // Nothing the peer spawned is still alive (the client's connection tasks end
    // once their connections are gone).
    let metrics = runtime.metrics();
    runtime.block_on(wait_for("every task ends", Duration::from_secs(10), || {
        metrics.num_alive_tasks() == 0
    }));
}
