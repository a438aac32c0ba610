//! The API behind a load balancer (HAProxy, TLS passthrough) whose name is no
//! peer's: certificates carry it only with `--tls-san`, and a peer issues its
//! certificate again when it restarts with new names.

mod fixture;

use std::net::SocketAddr;
use std::time::Duration;

use fixture::haproxy::{Haproxy, HaproxyOptions};
use fixture::orion;
use fixture::{TestCluster, WAIT};

/// The load balancer's IP: on loopback, but no peer's.
const LB_IP: &str = "127.0.0.100";
/// A DNS name for it, resolved by the test's client.
const LB_NAME: &str = "orion-lb.test";

/// A client of the load balancer by its DNS name: it trusts the cluster CA, sends
/// the admin token, and resolves `LB_NAME` to the load balancer (an HTTP client
/// setting, so it is built from `orion-client`'s HTTP setup and handed over).
fn client_by_name(c: &TestCluster, lb: SocketAddr) -> orion_client::Client {
    let http = orion_client::http_builder(&c.ca_pem, Some(&c.admin_token))
        .expect("client TLS config")
        .resolve(LB_NAME, lb)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    orion_client::Client::builder(&[format!("https://{LB_NAME}:{}", lb.port())])
        .http(http)
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_through_haproxy_once_peers_carry_its_name() {
    let mut c = TestCluster::start(3).await;
    let lb = Haproxy::start(
        &c.api_addrs(),
        HaproxyOptions {
            listen_ip: LB_IP.parse().expect("ip"),
            ..HaproxyOptions::default()
        },
    )
    .await
    .expect("start HAProxy");
    // The health check (GET /readyz over TLS) passes on every peer.
    lb.wait_for_up(3, WAIT).await.expect("every peer healthy");

    // The peers' certificates name only their own address: a clear refusal.
    let (ok, _, err) = orion(&c, &lb.url(), &["var", "put", "lb/greeting", "hello"]);
    assert!(!ok, "a certificate without the LB's name must be refused");
    assert!(
        err.contains(&format!("certificate not valid for name \"{LB_IP}\""))
            && err.contains("--tls-san"),
        "{err}"
    );

    // Each peer restarts with the names: it issues its certificate again.
    for id in [1, 2, 3] {
        c.stop(id).await;
        c.restart_with(id, &["--tls-san", LB_IP, "--tls-san", LB_NAME]);
        c.wait_for_log(id, "issued this peer's certificate again for its new names")
            .await;
        c.wait_for_voters(&[1, 2, 3]).await;
    }
    lb.wait_for_up(3, WAIT)
        .await
        .expect("every peer healthy again");

    let (ok, out, err) = orion(&c, &lb.url(), &["var", "put", "lb/greeting", "hello"]);
    assert!(ok, "put through the LB: {err}");
    assert!(out.contains("written at revision"), "{out}");
    let (ok, _, err) = orion(&c, &lb.url(), &["get", "services"]);
    assert!(ok, "get services through the LB: {err}");

    // By DNS name too (resolved by the client to HAProxy).
    let by_name = client_by_name(&c, lb.addr());
    let v = by_name
        .variable("lb/greeting", orion_client::Consistency::Linearizable)
        .await;
    let v: orion_api::VariableResponse = match v {
        Ok(v) => v,
        Err(e) => panic!("GET by the LB's DNS name: {e}"),
    };
    assert_eq!(v.variable.value, "hello");

    // Each peer's own address still verifies (the fixture's client dials them).
    for id in [1, 2, 3] {
        assert!(c.status(id).await.is_some(), "peer {id} by its own address");
    }
    c.assert_no_unexpected_errors(&[]);
}
