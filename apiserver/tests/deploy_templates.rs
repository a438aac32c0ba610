//! Every config template under `deploy/` parses and validates; an unknown key fails.

use orion_apiserver::ServerConfig;

#[test]
fn deploy_peer_template_parses_and_validates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/peer.toml");
    let config = ServerConfig::from_file(std::path::Path::new(path)).expect("template parses");
    config.validate().expect("template validates");
    assert_eq!(config.id, 1);
}

#[test]
fn a_misspelled_key_in_the_template_is_an_error() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/peer.toml");
    let text = std::fs::read_to_string(path).expect("read template");
    let broken = text.replace("leader-hold-ms", "leader-hold-msec");
    let err = ServerConfig::from_toml(&broken).expect_err("unknown key refused");
    assert!(err.contains("leader-hold-msec"), "{err}");
}
