//! Each scenario runs briefly against freshly started Orion and etcd clusters: its
//! output has one ratio line per figure with both systems' values, and its JSON
//! report parses. Nothing here asserts anything about speed.

use std::path::PathBuf;
use std::process::Command;

/// The `orion` binary of this target directory (`<target>/<profile>/orion`, next to
/// `deps/` holding this test). Built here when missing, e.g. under
/// `cargo nextest run -p orion-bench`, which does not build other packages' binaries.
fn orion_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from <target>/<profile>/deps")
        .to_path_buf();
    let orion = profile_dir.join("orion");
    if orion.is_file() {
        return orion;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = profile_dir.parent().expect("<target>/<profile>");
    // Read when the test runs: a binary shared by two checkouts builds its own.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../Cargo.toml");
    let status = Command::new(cargo)
        .args(["build", "-p", "orion", "--bin", "orion", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target)
        .status();
    assert!(
        status.is_ok_and(|s| s.success()) && orion.is_file(),
        "no orion binary at {} and building it failed: run `cargo build --bin orion` first",
        orion.display()
    );
    orion
}

/// Runs `orion-bench <args>` with its reports in a temp dir; returns stdout and the
/// parsed JSON report.
fn bench(args: &[&str]) -> (String, serde_json::Value) {
    let out = tempfile::tempdir().expect("temp dir");
    let o = Command::new(env!("CARGO_BIN_EXE_orion-bench"))
        .args(args)
        .arg("--orion-bin")
        .arg(orion_bin())
        .arg("--out-dir")
        .arg(out.path())
        .output()
        .expect("run orion-bench");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "orion-bench {args:?} failed:\n{stdout}\n{stderr}"
    );
    let json: Vec<PathBuf> = std::fs::read_dir(out.path())
        .expect("out dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(json.len(), 1, "one JSON report in {:?}", out.path());
    let md = json[0].with_extension("md");
    assert!(
        md.is_file(),
        "a markdown table beside {}",
        json[0].display()
    );
    let text = std::fs::read_to_string(&json[0]).expect("read JSON");
    let report: serde_json::Value = serde_json::from_str(&text).expect("the JSON report parses");
    (stdout, report)
}

/// Every figure has a ratio line naming both values, and the same in the JSON.
fn check(stdout: &str, report: &serde_json::Value, prefixes: &[&str]) {
    let figures = report["figures"].as_array().expect("figures");
    assert!(!figures.is_empty(), "no figures in {report}");
    for f in figures {
        let name = f["name"].as_str().expect("figure name");
        assert!(
            f["orion"].is_number() && f["etcd"].is_number() && f["ratio"].is_number(),
            "figure {f}"
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{stdout}"));
        assert!(
            line.contains(" orion=") && line.contains(" etcd=") && line.contains(" ratio="),
            "{line}"
        );
    }
    for p in prefixes {
        assert!(
            figures
                .iter()
                .any(|f| f["name"].as_str().is_some_and(|n| n.starts_with(p))),
            "no {p} figure"
        );
    }
    assert!(
        report["machine"]["cores"].as_u64().is_some_and(|c| c > 0),
        "machine described: {}",
        report["machine"]
    );
    assert!(report["machine"]["kernel"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
}

// One test runs the three scenarios one after another, so no two of its clusters
// compete for this machine at once.
#[test]
fn every_scenario_runs_against_fresh_clusters() {
    let (out, report) = bench(&["write", "--clients", "4", "--duration", "2s"]);
    check(&out, &report, &["write.leader.", "write.spread."]);

    let (out, report) = bench(&["read", "--clients", "4", "--duration", "1s", "--keys", "10"]);
    check(
        &out,
        &report,
        &[
            "read.linearizable.leader.",
            "read.linearizable.follower.",
            "read.stale.leader.",
            "read.stale.follower.",
        ],
    );

    let (out, report) = bench(&[
        "failover",
        "--trials",
        "1",
        "--clients",
        "4",
        "--settle",
        "1s",
    ]);
    check(&out, &report, &["failover.window_"]);
}

/// Orion-alone figures: a value, no etcd, and a ratio line that says so.
fn check_alone(stdout: &str, report: &serde_json::Value, prefixes: &[&str]) {
    let figures = report["figures"].as_array().expect("figures");
    for p in prefixes {
        let f = figures
            .iter()
            .find(|f| f["name"].as_str().is_some_and(|n| n.starts_with(p)))
            .unwrap_or_else(|| panic!("no {p} figure in {report}"));
        let name = f["name"].as_str().expect("figure name");
        assert!(
            f["orion"].as_f64().is_some_and(f64::is_finite),
            "figure {f}"
        );
        assert!(f["etcd"].is_null(), "figure {f}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{stdout}"));
        assert!(line.contains(" etcd=- "), "{line}");
    }
}

// The control-plane scenarios, small, one after another for the same reason.
#[test]
fn the_control_plane_scenarios_run_with_real_agents() {
    let (out, report) = bench(&[
        "schedule",
        "--services",
        "50",
        "--replicas",
        "2",
        "--nodes",
        "10",
        "--trials",
        "1",
        "--large",
        "5",
    ]);
    check_alone(
        &out,
        &report,
        &[
            "schedule.alone.placements_per_s_",
            "schedule.apply_to_running_ms_1_",
            "schedule.apply_to_running_ms_5_",
        ],
    );

    let (out, report) = bench(&["reschedule", "--replicas", "5"]);
    check_alone(&out, &report, &["reschedule.window_ms_5_"]);

    let (out, report) = bench(&["footprint", "--services", "150", "--settle", "0s"]);
    check_alone(
        &out,
        &report,
        &[
            "footprint.peer_idle_rss_mib",
            "footprint.agent_idle_rss_mib",
            "footprint.leader_rss_mib_with_150_services",
        ],
    );
}

// `fan-in`, small: 50 simulated agents (real joins, QUIC and mTLS) for a few seconds.
#[test]
fn fan_in_runs_with_simulated_agents() {
    let (out, report) = bench(&["fan-in", "--agents", "20,50", "--duration", "2s"]);
    check_alone(
        &out,
        &report,
        &[
            "fan_in.20.leader_cpu_pct",
            "fan_in.50.leader_cpu_pct",
            "fan_in.50.leader_rss_mib",
            "fan_in.50.heartbeat_rtt_p50_ms",
            "fan_in.50.heartbeat_rtt_p99_ms",
            "fan_in.50.heartbeats_per_s",
            "fan_in.max_agents_p99_under_100ms",
        ],
    );
    let notes = report["notes"].to_string();
    assert!(notes.contains("50 nodes ready at the end"), "{notes}");
}

#[test]
fn a_missing_etcd_fails_at_once_and_says_how_to_install_it() {
    let o = Command::new(env!("CARGO_BIN_EXE_orion-bench"))
        .args([
            "write",
            "--duration",
            "1s",
            "--etcd-bin",
            "/nonexistent/etcd",
            "--orion-bin",
        ])
        .arg(orion_bin())
        .output()
        .expect("run orion-bench");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("etcd-server") && stderr.contains("make deps"),
        "{stderr}"
    );
}

#[test]
fn etcd_is_installed() {
    let runs = Command::new("etcd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        runs,
        "etcd is not installed: run `make deps` (Debian's etcd-server, listed in scripts/deps.txt)"
    );
}
