//! Rolling upgrades ([G] #12 part 7) on real processes: every peer restarted in
//! turn under a steady write load (the leader hands over first) loses no
//! acknowledged write, and a data directory of a newer format is refused by name.

mod fixture;

use std::time::Duration;

use fixture::load::WriteLoad;
use fixture::{TestCluster, WAIT};
use orion_apiserver::data_format;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_writes_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3).await;
    c.wait_for_leader().await;
    let load = WriteLoad::start(c.failover_client(), Duration::from_millis(2));
    for id in [1, 2, 3] {
        let leader = c.wait_for_leader().await;
        if id == leader {
            let t = c
                .client(leader)
                .transfer_leader(None)
                .await
                .expect("transfer away from the peer to restart");
            println!(
                "{:?}: peer {id} handed leadership to {} in {} ms",
                load.elapsed(),
                t.leader,
                t.took_ms
            );
        }
        let acked = load.acked();
        println!("{:?}: SIGTERM to peer {id}", load.elapsed());
        c.stop(id).await;
        let leader = c.wait_for_leader().await;
        let at_restart = c
            .status(leader)
            .await
            .expect("leader status")
            .last_log_index;
        c.restart(id);
        c.wait_applied(id, at_restart).await;
        // Writes went on meanwhile.
        c.wait_for("writes after the restart", WAIT, || async {
            (load.acked() > acked + 10).then_some(())
        })
        .await;
        println!(
            "{:?}: peer {id} restarted and caught up to {at_restart}",
            load.elapsed()
        );
    }
    let report = load.stop().await;
    println!(
        "rolling restart: {} writes acknowledged, {} failed, longest pause between two \
         acknowledgements {} ms",
        report.acked.len(),
        report.failed.len(),
        report.longest_pause.as_millis()
    );
    println!(
        "pauses over 200 ms (start, length): {:?}",
        report.long_pauses
    );
    assert!(
        report.failed.is_empty(),
        "writes failed during the rolling restart: {:?}",
        report.failed
    );
    // Every acknowledged write is there, read through every peer.
    report.assert_everywhere(&c).await;
    // Each data directory carries the current format.
    for id in c.running() {
        assert_eq!(
            data_format::read(&c.data_dir(id)).expect("format"),
            Some(data_format::CURRENT)
        );
    }
    c.assert_no_unexpected_errors(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_data_directory_is_refused_with_both_versions() {
    let mut c = TestCluster::start(1).await;
    c.must_put(1, "app/kept", "yes").await;
    c.stop(1).await;
    let marker = c.data_dir(1).join(data_format::FORMAT_FILE);
    let newer = data_format::CURRENT + 1;
    std::fs::write(&marker, format!("{newer}\n")).expect("write marker");
    c.restart(1);
    let says = format!(
        "is format {newer}, but this orion ({}) reads formats 1 to {}; run a newer orion on it",
        env!("CARGO_PKG_VERSION"),
        data_format::CURRENT
    );
    c.wait_for_log(1, &says).await;
    let status = c
        .wait_for("the peer to exit", WAIT, || async { c.exit_status(1) })
        .await;
    // 78 (EX_CONFIG): the systemd unit does not restart it in a loop.
    assert_eq!(status.code(), Some(78), "{status}");
    c.kill9(1);
    // Nothing was touched: the marker is as written, and with it back at the
    // current format the peer opens its data as before.
    assert_eq!(
        std::fs::read_to_string(&marker).expect("ok"),
        format!("{newer}\n")
    );
    std::fs::write(&marker, format!("{}\n", data_format::CURRENT)).expect("ok");
    c.restart(1);
    c.wait_for_leader().await;
    assert_eq!(
        c.get(1, "app/kept").await.map(|v| v.value).as_deref(),
        Some("yes")
    );
}
