//! Every config template under `deploy/` parses and validates; an unknown key fails.

use std::path::PathBuf;

use orion_apiserver::ServerConfig;

/// `deploy/server.toml` of the checkout under test. The manifest directory is read when
/// the test runs, not when it was compiled: two checkouts that share a
/// `CARGO_TARGET_DIR` may share this binary, and each must read its own template.
fn template() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.join("../deploy/server.toml")
}

#[test]
fn deploy_peer_template_parses_and_validates() {
    let config = ServerConfig::from_file(&template()).expect("template parses");
    config.validate().expect("template validates");
    assert_eq!(config.id, 1);
}

#[test]
fn a_misspelled_key_in_the_template_is_an_error() {
    let text = std::fs::read_to_string(template()).expect("read template");
    let broken = text.replace("leader-hold-ms", "leader-hold-msec");
    let err = ServerConfig::from_toml(&broken).expect_err("unknown key refused");
    assert!(err.contains("leader-hold-msec"), "{err}");
}
