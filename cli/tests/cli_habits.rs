//! CLI habits users bring from kubectl, through the real binary against a real
//! cluster: flags before or after the subcommand, `orion version`, `get nodes
//! NAME`, ports in `get replicas -o wide`, member health in `cluster members`, the
//! id of a created token, and durations printed for people.

mod fixture;

use clap::{CommandFactory, Parser};
use fixture::TestCluster;
use orion::args::{Command, Output};
use orion::Cli;

/// Runs the CLI with `args` as given (no `--server` added); (success, stdout, stderr).
fn orion(c: &TestCluster, args: &[&str]) -> (bool, String, String) {
    let out = c.cli().args(args).output().expect("run orion");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn client_flags_parse_before_and_after_the_subcommand_and_after_wins() {
    Cli::command().debug_assert();
    let opts = |argv: &[&str]| {
        let cli = Cli::try_parse_from(argv).expect("parses");
        match cli.command {
            Command::Get { opts, .. } => opts.or_global(&cli.global),
            other => panic!("parsed as {other:?}"),
        }
    };
    let before = opts(&[
        "orion",
        "--server",
        "https://a:1",
        "-o",
        "json",
        "get",
        "services",
    ]);
    assert_eq!(before.server, ["https://a:1"]);
    assert_eq!(before.output, Output::Json);
    let after = opts(&[
        "orion",
        "get",
        "services",
        "--server",
        "https://b:1",
        "-o",
        "yaml",
    ]);
    assert_eq!(after.server, ["https://b:1"]);
    assert_eq!(after.output, Output::Yaml);
    let both = opts(&[
        "orion",
        "--server",
        "https://a:1",
        "--token",
        "t",
        "get",
        "services",
        "--server",
        "https://b:1",
    ]);
    assert_eq!(both.server, ["https://b:1"]);
    assert_eq!(both.token.as_deref(), Some("t"));
    // `server` keeps its own `--token` (a join token) after the subcommand.
    let cli =
        Cli::try_parse_from(["orion", "server", "--id", "1", "--token", "j"]).expect("parses");
    assert!(matches!(cli.command, Command::Server(a) if a.token.as_deref() == Some("j")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_habits_on_a_real_cluster() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let leader = c.wait_for_leader().await;
    let url = c.url(leader);

    // Flags before or after the subcommand give the same answer.
    let (ok, services_before, err) = orion(&c, &["--server", &url, "get", "services"]);
    assert!(ok, "{err}");
    let (ok, services_after, err) = orion(&c, &["get", "services", "--server", &url]);
    assert!(ok, "{err}");
    assert_eq!(services_before, services_after);
    assert!(services_before.starts_with("NAME"), "{services_before}");
    let (ok, json, err) = orion(&c, &["--server", &url, "-o", "json", "cluster", "status"]);
    assert!(ok && json.trim_start().starts_with('{'), "{json}{err}");

    // `orion version`: client and server, and still the client with no server.
    let version = env!("CARGO_PKG_VERSION");
    let (ok, out, err) = orion(&c, &["version", "--server", &url]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("client: orion {version}")), "{out}");
    assert!(
        out.contains(&format!("server: orion {version}, peer {leader}")),
        "{out}"
    );
    let (ok, out, err) = orion(&c, &["version", "--server", "https://127.0.0.1:1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("client: orion {version}")) && out.contains("server: unknown ("),
        "{out}"
    );

    // `get nodes NAME` and `get services NAME`; an unknown name says so.
    c.wait_for("node n1 registered", fixture::WAIT, || async {
        let (ok, out, _) = orion(&c, &["get", "nodes", "n1", "--server", &url]);
        (ok && out.lines().nth(1).is_some_and(|l| l.starts_with("n1 "))).then_some(())
    })
    .await;
    let (ok, _, err) = orion(&c, &["get", "nodes", "nope", "--server", &url]);
    assert!(!ok && err.contains("node \"nope\" does not exist"), "{err}");

    // `get replicas -o wide` shows each replica's ports.
    let web = "kind: Service\nname: web\nreplicas: 2\ncommand: [\"python3\", \"-m\", \"http.server\", \"${PORT}\", \"--bind\", \"127.0.0.1\"]\nports: [http]\nresources: {cpu: 10m, memory: 16Mi}\n";
    let file = c.dir.path().join("web.yaml");
    std::fs::write(&file, web).expect("write web.yaml");
    let (ok, _, err) = orion(
        &c,
        &[
            "apply",
            "-f",
            file.to_str().expect("path"),
            "--server",
            &url,
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = orion(&c, &["get", "services", "web", "--server", &url]);
    assert!(ok && out.contains("web"), "{out}{err}");
    c.wait_for_replicas_running("web", 2).await;
    let wide = c
        .wait_for("ports in `get replicas -o wide`", fixture::WAIT, || async {
            let (ok, out, _) = orion(&c, &["get", "replicas", "-o", "wide", "--server", &url]);
            let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("web-")).collect();
            (ok && out.contains("PORTS")
                && rows.len() == 2
                && rows.iter().all(|r| r.contains("http=")))
            .then_some(out)
        })
        .await;
    eprintln!("{wide}");
    let (ok, out, _) = orion(&c, &["get", "replicas", "web-1", "--server", &url]);
    assert!(
        ok && out.lines().count() == 2 && out.contains("web-1"),
        "{out}"
    );

    // `cluster members`: every follower reachable with a recent contact, through
    // a follower too (it asks the leader); a killed follower becomes unreachable.
    let follower = c.follower().await;
    let members = c
        .wait_for("both followers reachable", fixture::WAIT, || async {
            let (ok, out, _) = orion(&c, &["cluster", "members", "--server", &c.url(follower)]);
            let header = out.lines().next()?.to_owned();
            let yes = out.lines().filter(|l| l.contains(" yes ")).count();
            (ok && header.contains("REACHABLE") && header.contains("LAST CONTACT") && yes == 2)
                .then_some(out)
        })
        .await;
    assert!(members.contains(" leader "), "{members}");
    assert!(members.contains(" ago"), "{members}");
    c.kill9(follower);
    c.wait_for(
        "the killed follower shown unreachable",
        fixture::WAIT,
        || async {
            let (ok, out, _) = orion(&c, &["cluster", "members", "--server", &url]);
            let row = out
                .lines()
                .find(|l| l.starts_with(&format!("{follower} ")))?
                .to_owned();
            (ok && row.contains(" no ")).then_some(())
        },
    )
    .await;
    let (ok, out, _) = orion(&c, &["cluster", "members", "--stale", "--server", &url]);
    assert!(ok && out.contains(" no "), "the leader's own view: {out}");

    // `token create` prints the token on stdout and its id on stderr; `token list`
    // prints lifetimes as people write them.
    let (ok, token, err) = orion(
        &c,
        &[
            "token", "create", "--role", "readonly", "--ttl", "364d", "--server", &url,
        ],
    );
    assert!(ok, "{err}");
    assert!(token.trim().starts_with("orion."), "{token}");
    let id = orion_tls::token::peek(token.trim()).expect("claims").id;
    assert!(
        err.contains(&format!("token id {id} (readonly, expires in 364d)")),
        "{err}"
    );
    let (ok, list, err) = orion(&c, &["token", "list", "--server", &url]);
    assert!(ok, "{err}");
    let row = list
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} in {list}"));
    // Created a moment ago: 364 days less a few seconds, in whole days.
    assert!(row.contains(" 363d ") || row.contains(" 364d "), "{row}");
    assert!(!list.contains("31449"), "no raw seconds: {list}");
    // The killed follower cannot confirm the leader's reads.
    c.assert_no_unexpected_errors(&["timeout while confirming leadership"]);
}
