//! [C] acceptance: every route by every kind of credential, certificates on every
//! port, join tokens, revocation, NodeRestriction, and `orion dev`'s context.

mod fixture;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fixture::{http_client, TestCluster, WAIT};
use orion_api::agent_proto::{write_frame, AgentMessage, ReplicaReport, ReplicaState, ALPN};
use orion_api::{ApplyRequest, SourceFile};
use orion_client::{Client, Consistency, StatusCode, VariableQuery};
use orion_tls::{Credentials, LiveCert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A typed client of `url` sending `token`, each call within 20 s.
fn client(c: &TestCluster, url: &str, token: Option<&str>) -> Client {
    Client::new(&[url.to_string()], &c.ca_pem, token.map(str::to_string))
        .expect("client")
        .with_timeout(Duration::from_secs(20))
}

/// The status of listing the variables through `client`: 200 or the refusal's.
async fn list_status(client: &Client) -> Option<StatusCode> {
    match client.variables(&VariableQuery::default()).await {
        Ok(_) => Some(StatusCode::OK),
        Err(e) => e.status(),
    }
}

/// The credentials, in the order of the status columns below.
const CREDENTIALS: [&str; 6] = [
    "none",
    "expired",
    "bad-signature",
    "readonly",
    "developer",
    "admin",
];

/// One row per route: method, route pattern, a concrete path, a body, and the exact
/// status for each credential. Bodies of writes are malformed on purpose, so an
/// allowed call is a 400 and nothing changes.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    [u16; 6],
);

#[rustfmt::skip]
const TABLE: &[Row] = &[
    ("GET", "/healthz", "/healthz", None, [200, 200, 200, 200, 200, 200]),
    ("GET", "/v1/openapi.json", "/v1/openapi.json", None, [200, 200, 200, 200, 200, 200]),
    ("GET", "/readyz", "/readyz", None, [200, 200, 200, 200, 200, 200]),
    ("GET", "/metrics", "/metrics", None, [401, 401, 401, 200, 200, 200]),
    ("GET", "/v1/variables", "/v1/variables", None, [401, 401, 401, 200, 200, 200]),
    ("GET", "/v1/variables/{*path}", "/v1/variables/missing", None, [401, 401, 401, 404, 404, 404]),
    ("PUT", "/v1/variables/{*path}", "/v1/variables/x", Some("{"), [401, 401, 401, 403, 400, 400]),
    ("DELETE", "/v1/variables/{*path}", "/v1/variables/missing", None, [401, 401, 401, 403, 404, 404]),
    ("POST", "/v1/apply", "/v1/apply", Some("{"), [401, 401, 401, 403, 400, 400]),
    ("GET", "/v1/services", "/v1/services", None, [401, 401, 401, 200, 200, 200]),
    ("GET", "/v1/services/{name}", "/v1/services/missing", None, [401, 401, 401, 404, 404, 404]),
    ("DELETE", "/v1/services/{name}", "/v1/services/missing", None, [401, 401, 401, 403, 404, 404]),
    ("POST", "/v1/services/{name}/rollout/undo", "/v1/services/missing/rollout/undo", Some("{"), [401, 401, 401, 403, 400, 400]),
    ("POST", "/v1/services/{name}/rollout/pause", "/v1/services/missing/rollout/pause", None, [401, 401, 401, 403, 404, 404]),
    ("POST", "/v1/services/{name}/rollout/resume", "/v1/services/missing/rollout/resume", None, [401, 401, 401, 403, 404, 404]),
    ("GET", "/v1/nodes", "/v1/nodes", None, [401, 401, 401, 200, 200, 200]),
    ("PUT", "/v1/nodes/{name}", "/v1/nodes/n9", Some("{"), [401, 401, 401, 403, 403, 400]),
    ("DELETE", "/v1/nodes/{name}", "/v1/nodes/missing", None, [401, 401, 401, 403, 403, 404]),
    ("POST", "/v1/nodes/{name}/cordon", "/v1/nodes/missing/cordon", None, [401, 401, 401, 403, 403, 404]),
    ("POST", "/v1/nodes/{name}/uncordon", "/v1/nodes/missing/uncordon", None, [401, 401, 401, 403, 403, 404]),
    ("POST", "/v1/nodes/{name}/drain", "/v1/nodes/missing/drain", Some("{"), [401, 401, 401, 403, 403, 400]),
    ("GET", "/v1/replicas", "/v1/replicas", None, [401, 401, 401, 200, 200, 200]),
    ("GET", "/v1/replicas/{id}/logs", "/v1/replicas/none-0/logs", None, [401, 401, 401, 403, 404, 404]),
    ("POST", "/v1/replicas/{id}/exec", "/v1/replicas/none-0/exec", Some("{"), [401, 401, 401, 403, 400, 400]),
    ("POST", "/v1/replicas/{id}/restart", "/v1/replicas/none-0/restart", None, [401, 401, 401, 403, 404, 404]),
    ("GET", "/v1/watch", "/v1/watch", None, [401, 401, 401, 200, 200, 200]),
    ("GET", "/v1/events", "/v1/events", None, [401, 401, 401, 200, 200, 200]),
    ("GET", "/v1/overview", "/v1/overview", None, [401, 401, 401, 200, 200, 200]),
    ("GET", "/v1/cluster/members", "/v1/cluster/members", None, [401, 401, 401, 200, 200, 200]),
    ("POST", "/v1/cluster/members", "/v1/cluster/members", Some("{"), [401, 401, 401, 403, 403, 400]),
    ("DELETE", "/v1/cluster/members/{id}", "/v1/cluster/members/99", None, [401, 401, 401, 403, 403, 404]),
    ("POST", "/v1/cluster/transfer-leader", "/v1/cluster/transfer-leader", Some("{"), [401, 401, 401, 403, 403, 400]),
    ("GET", "/v1/cluster/status", "/v1/cluster/status", None, [401, 401, 401, 200, 200, 200]),
    ("GET", "/v1/cluster/self", "/v1/cluster/self", None, [401, 401, 401, 200, 200, 200]),
    ("GET", "/v1/cluster/snapshot", "/v1/cluster/snapshot", None, [401, 401, 401, 403, 403, 200]),
    ("GET", "/v1/cluster/ca", "/v1/cluster/ca", None, [200, 200, 200, 200, 200, 200]),
    ("POST", "/v1/join", "/v1/join", Some("{"), [400, 400, 400, 400, 400, 400]),
    ("POST", "/v1/certificates/renew", "/v1/certificates/renew", Some("{"), [401, 401, 401, 403, 403, 403]),
    ("GET", "/v1/tokens", "/v1/tokens", None, [401, 401, 401, 403, 403, 200]),
    ("POST", "/v1/tokens", "/v1/tokens", Some("{"), [401, 401, 401, 403, 403, 400]),
    ("DELETE", "/v1/tokens/{id}", "/v1/tokens/missing", None, [401, 401, 401, 403, 403, 404]),
    ("GET", "/", "/", None, [200, 200, 200, 200, 200, 200]),
    ("GET", "/ui", "/ui", None, [200, 200, 200, 200, 200, 200]),
    ("GET", "/ui/assets/{file}", "/ui/assets/app.js", None, [200, 200, 200, 200, 200, 200]),
    ("POST", "/ui/login", "/ui/login", Some("{"), [400, 400, 400, 400, 400, 400]),
    ("POST", "/ui/logout", "/ui/logout", Some("{"), [204, 204, 204, 204, 204, 204]),
    ("GET", "/ui/session", "/ui/session", None, [401, 401, 401, 200, 200, 200]),
    ("POST", "/v1/services/{name}/scale", "/v1/services/missing/scale", Some("{"), [401, 401, 401, 403, 400, 400]),
    ("GET", "/v1/jobs", "/v1/jobs", None, [401, 401, 401, 200, 200, 200]),
    ("GET", "/v1/jobs/{name}", "/v1/jobs/missing", None, [401, 401, 401, 404, 404, 404]),
    ("DELETE", "/v1/jobs/{name}", "/v1/jobs/missing", None, [401, 401, 401, 403, 404, 404]),
    ("POST", "/v1/jobs/{name}/run", "/v1/jobs/missing/run", None, [401, 401, 401, 403, 404, 404]),
    ("POST", "/v1/internal/leader", "/v1/internal/leader", Some("{"), [401, 401, 401, 403, 403, 403]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_by_every_credential_gets_its_exact_status() {
    // The table must cover exactly the server's routes: a new route fails here
    // until its row is added.
    let served: BTreeSet<(String, String)> = orion_apiserver::server::route_table()
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let tested: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(m, p, ..)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        served.difference(&tested).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes without a row in TABLE"
    );
    assert_eq!(
        tested.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "rows in TABLE for routes the server does not have"
    );

    let c = TestCluster::start(1).await;
    let expired = c.token("developer", 1).await;
    let exp = orion_tls::token::peek(&expired).expect("claims").exp;
    let readonly = c.token("readonly", 600).await;
    let developer = c.token("developer", 600).await;
    // Admin's claims with another token's signature.
    let (admin_body, _) = c.admin_token.rsplit_once('.').expect("signature");
    let (_, other_sig) = developer.rsplit_once('.').expect("signature");
    let bad_signature = format!("{admin_body}.{other_sig}");
    c.wait_for("the short token to expire", WAIT, || async {
        (orion_tls::token::now() >= exp).then_some(())
    })
    .await;
    // Raw HTTP on purpose: every route, with hand-written (malformed) bodies, by
    // bad credentials (expired, forged signature) too.
    let clients: Vec<reqwest::Client> = [
        None,
        Some(expired.as_str()),
        Some(bad_signature.as_str()),
        Some(readonly.as_str()),
        Some(developer.as_str()),
        Some(c.admin_token.as_str()),
    ]
    .iter()
    .map(|t| http_client(&c.ca_pem, *t))
    .collect();

    let base = c.url(1);
    let mut wrong = Vec::new();
    for (method, _, path, body, want) in TABLE {
        for (k, client) in clients.iter().enumerate() {
            let mut req = client.request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{base}{path}"),
            );
            if let Some(b) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            let got = req.send().await.expect("send").status().as_u16();
            if got != want[k] {
                wrong.push(format!(
                    "{method} {path} as {}: got {got}, want {}",
                    CREDENTIALS[k], want[k]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    c.assert_no_unexpected_errors(&[]);
}

/// Whether a TLS server at `addr` takes us as a client: the handshake completes
/// and it answers an HTTP/2 preface with bytes (a refused client certificate shows
/// up as an alert or a closed connection instead).
async fn tcp_tls_accepted(addr: &str, config: rustls::ClientConfig) -> bool {
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let Ok(Ok(mut tls)) =
        tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await
    else {
        return false;
    };
    if tls
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

/// Whether the agent gateway at `addr` completes a QUIC handshake with us.
async fn quic_accepted(addr: &str, mut config: rustls::ClientConfig) -> bool {
    config.alpn_protocols = vec![ALPN.to_vec()];
    let Ok(crypto) = quinn::crypto::rustls::QuicClientConfig::try_from(config) else {
        return false;
    };
    let Ok(mut endpoint) = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")) else {
        return false;
    };
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let Ok(connecting) = endpoint.connect(addr.parse().expect("addr"), "127.0.0.1") else {
        return false;
    };
    let accepted = match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(Ok(conn)) => {
            // TLS 1.3: a refused client certificate closes the connection just after.
            match conn.open_bi().await {
                Ok((mut send, mut recv)) => {
                    let _ = send.write_all(b"\x00\x00\x00\x02{}").await;
                    let mut b = [0u8; 1];
                    let r = tokio::time::timeout(Duration::from_secs(3), recv.read(&mut b)).await;
                    !matches!(
                        r,
                        Ok(Err(quinn::ReadError::ConnectionLost(
                            quinn::ConnectionError::TransportError(_)
                                | quinn::ConnectionError::ConnectionClosed(_)
                        )))
                    )
                }
                Err(_) => false,
            }
        }
        _ => false,
    };
    endpoint.close(0u32.into(), b"done");
    accepted
}

fn creds_config(c: &Credentials, trust: &str) -> rustls::ClientConfig {
    let live = LiveCert::new(&c.cert_pem, &c.key_pem).expect("cert");
    orion_tls::config::client_config(trust, Some(live)).expect("config")
}

fn peer_creds(c: &TestCluster, id: u64) -> Credentials {
    Credentials::load(&c.dir.path().join(format!("peer-{id}/tls")))
        .expect("load")
        .expect("present")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_checked_on_every_port_and_junk_is_refused() {
    let c = TestCluster::start(1).await;
    let other = TestCluster::start(1).await;
    let p = &c.peers[&1];
    let api = format!("127.0.0.1:{}", p.api_port);
    let peer = format!("127.0.0.1:{}", p.peer_port);
    let gateway = format!("127.0.0.1:{}", p.agent_port);
    let urls = vec![c.url(1)];

    let server = peer_creds(&c, 1);
    let agent = orion_client::join::exchange(&urls, &c.token("agent", 600).await, "rogue", &[])
        .await
        .expect("agent certificate");
    let foreign = peer_creds(&other, 1);
    let no_cert = orion_tls::config::client_config(&c.ca_pem, None).expect("config");

    // The peer port: only this cluster's server certificates.
    assert!(
        tcp_tls_accepted(&peer, creds_config(&server, &c.ca_pem)).await,
        "a peer is accepted"
    );
    assert!(
        !tcp_tls_accepted(&peer, creds_config(&agent, &c.ca_pem)).await,
        "agent cert on the raft port"
    );
    assert!(
        !tcp_tls_accepted(&peer, creds_config(&foreign, &c.ca_pem)).await,
        "foreign CA on the raft port"
    );
    assert!(
        !tcp_tls_accepted(&peer, no_cert.clone()).await,
        "no cert on the raft port"
    );

    // The agent gateway: only this cluster's agent certificates.
    assert!(
        quic_accepted(&gateway, creds_config(&agent, &c.ca_pem)).await,
        "an agent is accepted"
    );
    assert!(
        !quic_accepted(&gateway, creds_config(&server, &c.ca_pem)).await,
        "server cert on the gateway"
    );
    assert!(
        !quic_accepted(&gateway, creds_config(&foreign, &c.ca_pem)).await,
        "foreign CA on the gateway"
    );
    assert!(
        !quic_accepted(&gateway, no_cert.clone()).await,
        "no cert on the gateway"
    );

    // The API: a certificate is optional, but a foreign one is refused; without
    // one, a call needs a token.
    assert!(
        !tcp_tls_accepted(&api, creds_config(&foreign, &c.ca_pem)).await,
        "foreign CA on the API"
    );
    let anonymous = client(&c, &c.url(1), None);
    assert_eq!(
        list_status(&anonymous).await,
        Some(StatusCode::UNAUTHORIZED)
    );

    // Plain HTTP and garbage on every TCP port, garbage on the UDP port (raw on
    // purpose: hostile input).
    let plain = reqwest::Client::new();
    for addr in [&api, &peer] {
        let sent = plain
            .get(format!("http://{addr}/v1/variables"))
            .send()
            .await;
        assert!(sent.is_err(), "plain HTTP to {addr}: {sent:?}");
    }
    for addr in [&api, &peer] {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = s
            .write_all(b"\x16\x03\x01\x00\x05hello garbage\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    }
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.send_to(b"garbage garbage garbage", &gateway)
        .expect("send");

    // Still serving on every port.
    let admin = client(&c, &c.url(1), Some(&c.admin_token));
    assert_eq!(list_status(&admin).await, Some(StatusCode::OK));
    assert!(tcp_tls_accepted(&peer, creds_config(&server, &c.ca_pem)).await);
    assert!(quic_accepted(&gateway, creds_config(&agent, &c.ca_pem)).await);
    c.assert_no_unexpected_errors(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tokens_are_single_use_and_expire_and_revocation_takes_effect() {
    let c = TestCluster::start(3).await;
    let urls: Vec<String> = (1..=3).map(|id| c.url(id)).collect();

    let once = c.token("agent", 600).await;
    orion_client::join::exchange(&urls, &once, "n1", &[])
        .await
        .expect("first use");
    let again = orion_client::join::exchange(&urls, &once, "n2", &[]).await;
    match again {
        Err(orion_client::ClientError::Refused(m)) => assert!(m.contains("already used"), "{m}"),
        other => panic!("a reused join token must be refused: {other:?}"),
    }

    let short = c.token("server", 1).await;
    let exp = orion_tls::token::peek(&short).expect("claims").exp;
    c.wait_for("the join token to expire", WAIT, || async {
        (orion_tls::token::now() >= exp).then_some(())
    })
    .await;
    match orion_client::join::exchange(&urls, &short, "9", &["127.0.0.1".into()]).await {
        Err(orion_client::ClientError::Refused(m)) => assert!(m.contains("expired"), "{m}"),
        other => panic!("an expired join token must be refused: {other:?}"),
    }

    // A token of another cluster names another CA: not even the CA is trusted.
    let other = TestCluster::start(1).await;
    let foreign = other.token("agent", 600).await;
    match orion_client::join::exchange(&urls, &foreign, "n3", &[]).await {
        Err(orion_client::ClientError::Refused(m)) => assert!(m.contains("fingerprint"), "{m}"),
        other => panic!("a foreign token must be refused: {other:?}"),
    }

    // Revocation: a working developer token stops working on every peer.
    let dev = c.token("developer", 600).await;
    let id = orion_tls::token::peek(&dev).expect("claims").id;
    for u in &urls {
        let dev_client = client(&c, u, Some(&dev));
        assert_eq!(list_status(&dev_client).await, Some(StatusCode::OK), "{u}");
    }
    let revoked = client(&c, &c.url(2), Some(&c.admin_token))
        .revoke_token(&id)
        .await;
    assert!(revoked.is_ok(), "revoke: {revoked:?}");
    for u in &urls {
        c.wait_for(
            &format!("{u} to refuse the revoked token"),
            Duration::from_secs(5),
            || async {
                let status = list_status(&client(&c, u, Some(&dev))).await?;
                (status == StatusCode::UNAUTHORIZED).then_some(())
            },
        )
        .await;
    }
    c.assert_no_unexpected_errors(&[]);
}

/// Opens an agent session with `creds` and says hello as `node`.
async fn rogue_session(
    gateway: &str,
    creds: &Credentials,
    ca: &str,
    node: &str,
) -> (
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
) {
    let mut config = creds_config(creds, ca);
    config.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).expect("quic");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("ep");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = endpoint
        .connect(gateway.parse().expect("addr"), "127.0.0.1")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, recv) = conn.open_bi().await.expect("stream");
    let hello = AgentMessage::Hello {
        node: node.into(),
        labels: Default::default(),
        capacity: orion_api::spec::Resources {
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
        },
    };
    write_frame(&mut send, &hello).await.expect("hello");
    (endpoint, conn, send, recv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_may_speak_only_for_its_own_node() {
    let mut c = TestCluster::start(1).await;
    c.spawn_agent("n1").await;
    let admin = client(&c, &c.url(1), Some(&c.admin_token));
    let request = ApplyRequest {
        files: vec![SourceFile {
            name: "web.yaml".into(),
            content: "kind: Service\nname: web\nreplicas: 1\ncommand: [\"sleep\", \"600\"]\n"
                .into(),
        }],
    };
    let r = admin.apply(&request).await;
    assert!(r.is_ok(), "{r:?}");
    c.wait_for_replicas_running("web", 1).await;

    let gateway = format!("127.0.0.1:{}", c.peers[&1].agent_port);
    let n2 = orion_client::join::exchange(&[c.url(1)], &c.token("agent", 600).await, "n2", &[])
        .await
        .expect("n2 certificate");

    // n2's certificate saying hello as n1: refused and logged.
    let (ep, conn, _send, _recv) = rogue_session(&gateway, &n2, &c.ca_pem, "n1").await;
    let closed = tokio::time::timeout(WAIT, conn.closed()).await;
    assert!(
        closed.is_ok(),
        "the gateway closes the impostor's connection"
    );
    ep.close(0u32.into(), b"");
    c.wait_for_log(1, "refused an agent posing as another node")
        .await;

    // As itself, n2 is welcome, but a report about n1's replica is refused and logged.
    let (ep, _conn, mut send, _recv) = rogue_session(&gateway, &n2, &c.ca_pem, "n2").await;
    let lie = AgentMessage::Status {
        replicas: vec![ReplicaReport {
            id: "web-0".into(),
            pid: Some(1),
            state: ReplicaState::Failed,
            restarts: 99,
            reason: Some("forged".into()),
            ports: Default::default(),
            generation: 1,
            exit_code: None,
        }],
    };
    write_frame(&mut send, &lie).await.expect("status");
    c.wait_for_log(1, "refused a status report for another node's replica")
        .await;
    ep.close(0u32.into(), b"");
    let replicas = admin
        .replicas(Consistency::Linearizable)
        .await
        .expect("replicas");
    let replicas = serde_json::to_string(&replicas).expect("json");
    assert!(
        !replicas.contains("forged"),
        "the forged report changed nothing: {replicas}"
    );

    // A frame that breaks the protocol (a length over the limit) ends the session,
    // and the gateway says why and whose it was.
    let (ep, conn, mut send, _recv) = rogue_session(&gateway, &n2, &c.ca_pem, "n2").await;
    send.write_all(&u32::MAX.to_be_bytes())
        .await
        .expect("garbage");
    let closed = tokio::time::timeout(WAIT, conn.closed()).await;
    assert!(
        closed.is_ok(),
        "the gateway closes a session with a bad frame"
    );
    ep.close(0u32.into(), b"");
    c.wait_for_log(1, "closing the session of an agent that sent a bad frame")
        .await;
    c.wait_for_log(1, "over the 16777216-byte limit").await;
}

/// `orion dev` in its own process group; on drop it gets SIGTERM, then the group
/// gets SIGKILL, so nothing outlives a failed test.
struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(i32::MAX));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// A base port with the 3 API, 3 peer and 3 UDP ports `orion dev` needs all free,
/// below the ephemeral range.
fn dev_base_port() -> u16 {
    let seed = u16::try_from(std::process::id() % 5000).unwrap_or(0);
    (0..5000u16)
        .map(|i| 21000 + (seed + i * 7) % 5000)
        .find(|base| {
            (0..3).all(|k| {
                std::net::TcpListener::bind(("127.0.0.1", base + k)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", base + 100 + k)).is_ok()
                    && std::net::UdpSocket::bind(("127.0.0.1", base + 200 + k)).is_ok()
            })
        })
        .expect("free ports for orion dev")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orion_dev_sets_up_the_cli_and_a_missing_token_says_how_to_log_in() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("config.yaml");
    let port = dev_base_port();
    let log = std::fs::File::create(tmp.path().join("dev.out")).expect("log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_orion"))
        .args(["dev", "--port", &port.to_string(), "--dir"])
        .arg(tmp.path().join("dev"))
        .env("ORION_CONFIG", &config)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("orion dev");
    let _dev = Dev(child);
    let orion = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_orion"))
            .args(args)
            .env("ORION_CONFIG", &config)
            .env_remove("ORION_TOKEN")
            .env_remove("ORION_SERVER")
            .env_remove("ORION_CA_FILE")
            .output()
            .expect("orion")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let nodes = loop {
        let out = orion(&["get", "nodes"]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(" ready ") {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "orion get nodes never worked: {out:?}\n{}",
            std::fs::read_to_string(tmp.path().join("dev.out")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(nodes.contains("NAME"), "{nodes}");

    // Without the token, the same command fails and says how to log in.
    let text = std::fs::read_to_string(&config).expect("config");
    let without: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("token:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, without).expect("write config");
    let out = orion(&["get", "nodes"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401") && err.contains("orion context add"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_renewed_in_place_before_they_expire() {
    let mut c = TestCluster::start_with(3, "cert-lifetime-secs = 10\n").await;
    c.spawn_agent("n1").await;
    let first = peer_creds(&c, 2).cert_pem;
    let expires = orion_tls::cert::not_after(&first).expect("not after");
    for id in 1..=3 {
        c.wait_for_log(id, "renewed this peer's certificate").await;
    }
    let agent_log = c.dir.path().join("agent-n1.log");
    c.wait_for("the agent to renew its certificate", WAIT, || async {
        std::fs::read_to_string(&agent_log)
            .ok()
            .filter(|t| t.contains("renewed the agent certificate"))
            .map(|_| ())
    })
    .await;
    assert_ne!(
        peer_creds(&c, 2).cert_pem,
        first,
        "the new certificate is on disk"
    );
    // Past the first certificates' expiry, with no restart: Raft, the API and the
    // agent's session all work on renewed certificates.
    c.wait_for("the first certificates to expire", WAIT, || async {
        (std::time::SystemTime::now() > expires).then_some(())
    })
    .await;
    let leader = c.wait_for_leader().await;
    c.kill9(leader);
    c.wait_for_leader().await;
    let via = c.running()[0];
    c.must_put(via, "after/expiry", "ok").await;
    let nodes = client(&c, &c.url(via), Some(&c.admin_token));
    c.wait_for("n1's heartbeats at the new leader", WAIT, || async {
        let list = nodes.nodes(Consistency::Linearizable).await.ok()?;
        list.usage.contains_key("n1").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_stay_out_of_events_logs_and_readonly_reads() {
    // Raw HTTP on purpose: the secret must be nowhere in the bytes of an answer,
    // including fields a typed client would not decode.
    let c = TestCluster::start(1).await;
    let dev = http_client(&c.ca_pem, Some(&c.token("developer", 600).await));
    let ro = http_client(&c.ca_pem, Some(&c.token("readonly", 600).await));
    let secret = "hunter2-s3cr3t-value";
    let url = format!("{}/v1/variables/db/password", c.url(1));
    let r = dev
        .put(&url)
        .json(&serde_json::json!({"value": secret, "secret": true}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    assert!(
        !r.text().await.expect("body").contains(secret),
        "not echoed back"
    );

    let mine: serde_json::Value = dev
        .get(&url)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(mine["variable"]["value"], secret, "a developer reads it");
    // The dashboard's overview masks them exactly as the variables list does.
    let overview: serde_json::Value = dev
        .get(format!("{}/v1/overview", c.url(1)))
        .send()
        .await
        .expect("overview")
        .json()
        .await
        .expect("json");
    assert_eq!(overview["variables"][0]["value"], secret, "{overview}");
    for u in [
        url.clone(),
        format!("{}/v1/variables?prefix=db/", c.url(1)),
        format!("{}/v1/overview", c.url(1)),
    ] {
        let text = ro
            .get(&u)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert!(
            !text.contains(secret) && text.contains("\"redacted\":true"),
            "{text}"
        );
    }
    let events = c
        .http
        .get(format!("{}/v1/events", c.url(1)))
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("body");
    assert!(
        events.contains("db/password") && !events.contains(secret),
        "{events}"
    );
    let r = dev.delete(&url).send().await.expect("delete");
    assert!(!r.text().await.expect("body").contains(secret));
    let log = std::fs::read_to_string(c.log_path(1)).expect("log");
    assert!(!log.contains(secret));
}
