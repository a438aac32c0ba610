//! Bounds and refusals on a real cluster: replicas per service and resources per
//! apply are limited with a clear 400, unplaceable replicas are summarised per
//! service and reason, and a join refused for a taken id issues no certificate and
//! leaves its token usable.

mod fixture;

use std::time::Duration;

use fixture::TestCluster;
use orion_api::security::{JoinCertRequest, TokenList};
use orion_api::{ApplyRequest, ReplicaList, SourceFile};
use orion_client::{Client, ClientError, Consistency, StatusCode};

/// A typed client of peer `via` sending `token`, each call within 20 s.
fn client(c: &TestCluster, via: u64, token: Option<String>) -> Client {
    Client::new(&[c.url(via)], &c.ca_pem, token)
        .expect("client")
        .with_timeout(Duration::from_secs(20))
}

fn admin(c: &TestCluster) -> Client {
    client(c, 1, Some(c.admin_token.clone()))
}

/// An apply of `text` as `orion.yaml`: its status, and its answer or error message.
async fn apply(c: &TestCluster, text: &str) -> (StatusCode, String) {
    let request = ApplyRequest {
        files: vec![SourceFile {
            name: "orion.yaml".into(),
            content: text.to_string(),
        }],
    };
    match admin(c).apply(&request).await {
        Ok(r) => (StatusCode::OK, format!("{r:?}")),
        Err(ClientError::Api { status, error }) => (status, error.message),
        Err(e) => panic!("apply reached no peer: {e}"),
    }
}

fn service(name: &str, replicas: u64) -> String {
    format!("kind: Service\nname: {name}\nreplicas: {replicas}\ncommand: [sleep, '1000']\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_resources_per_apply_are_bounded_and_unplaced_replicas_summarised() {
    let c = TestCluster::start(1).await;

    // A million replicas: refused at validation, naming the value, the limit and
    // where it is written; nothing is stored.
    let (status, body) = apply(&c, &service("huge", 1_000_000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("orion.yaml:3:")
            && body.contains("1000000 is above the limit of 1000 replicas per service"),
        "{body}"
    );

    // 101 services in one apply: refused, naming the count and the limit.
    let many: Vec<String> = (0..101).map(|i| service(&format!("s{i}"), 1)).collect();
    let (status, body) = apply(&c, &many.join("---\n")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("101 resources in one apply is above the limit of 100"),
        "{body}"
    );
    let services = admin(&c)
        .services(Consistency::Linearizable)
        .await
        .expect("list");
    assert!(services.items.is_empty(), "nothing applied");

    // The limits themselves are fine: 1000 replicas, with no node to run them,
    // are one line per service and reason, with a count.
    let (status, body) = apply(
        &c,
        &format!("{}---\n{}", service("big", 1000), service("small", 2)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = c
        .wait_for("both services reported unplaced", fixture::WAIT, || async {
            let list: ReplicaList = admin(&c).replicas(Consistency::Linearizable).await.ok()?;
            (list.unplaced.len() == 2).then_some(list)
        })
        .await;
    let counts: Vec<(String, u32, u32)> = list
        .unplaced
        .iter()
        .map(|u| (u.service.clone(), u.count, u.first_ordinal))
        .collect();
    assert_eq!(
        counts,
        [("big".to_string(), 1000, 0), ("small".to_string(), 2, 0)]
    );
    assert!(list.unplaced[0].reason.contains("0/0 nodes"), "{list:?}");

    let out = c
        .cli()
        .args(["get", "replicas", "--server", &c.url(1)])
        .output()
        .expect("orion get replicas");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("not placed"))
        .collect();
    assert_eq!(
        lines,
        [
            "not placed: 1000 replicas of big (from big-0): 0/0 nodes: no nodes",
            "not placed: 2 replicas of small (from small-0): 0/0 nodes: no nodes",
        ],
        "{stderr}"
    );
    c.assert_no_unexpected_errors(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_refused_for_a_taken_member_id_signs_nothing_and_keeps_the_token() {
    let c = TestCluster::start(1).await;
    let token = c.token("server", 600).await;
    let id = orion_tls::token::peek(&token).expect("claims").id;
    let public = client(&c, 1, None);
    // The status of a join for `name`: the answer's, or 200.
    let join = |name: &str| {
        let (_key, csr) = orion_tls::cert::new_csr().expect("csr");
        let request = JoinCertRequest {
            token: token.clone(),
            csr,
            name: name.to_string(),
            hosts: vec!["127.0.0.1".into()],
        };
        let public = &public;
        async move {
            match public.join_certificate(&request).await {
                Ok(_) => (StatusCode::OK, String::new()),
                Err(ClientError::Api { status, error }) => (status, error.message),
                Err(e) => panic!("join reached no peer: {e}"),
            }
        }
    };

    // Peer id 1 is a member: 409, no certificate, and the token is not spent.
    let (status, message) = join("1").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        message.contains("member id 1 is already in use"),
        "{message}"
    );
    let tokens: TokenList = admin(&c).tokens().await.expect("token list");
    let record = tokens
        .tokens
        .iter()
        .find(|t| t.id == id)
        .expect("the join token's record");
    assert!(!record.used, "a refused join leaves the token unused");

    // The same token still works once, for a free id.
    assert_eq!(join("2").await.0, StatusCode::OK);
    assert_eq!(
        join("3").await.0,
        StatusCode::UNAUTHORIZED,
        "spent by its one use"
    );
    c.assert_no_unexpected_errors(&[]);
}
