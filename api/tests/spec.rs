//! `orion.yaml` parsing end to end: typed results, defaults, and located errors.

use std::collections::BTreeMap;

use orion_api::spec::{
    json_schema, parse_documents, Backoff, Constraint, HealthCheck, Placement, Probe, Resource,
    Resources, RestartMode, RestartPolicy, ServiceSpec, SpecErrors, UpdateStrategy,
};

const EXAMPLE: &str = r#"kind: Service
name: web
replicas: 3
command: ["python3", "-m", "http.server", "${PORT}"]
env: {GREETING: hello}
ports: [http]                  # a free port per replica, given as PORT / ORION_PORT_HTTP
resources: {cpu: 250m, memory: 64Mi}
health: {http: {port: http, path: /}, interval: 2s, timeout: 1s, failures: 3}
restart: {policy: always, backoff: {initial: 1s, max: 1m}}
placement: {constraints: ["zone == a"]}
"#;

fn parse_ok(text: &str) -> Vec<Resource> {
    parse_documents("orion.yaml", text).unwrap_or_else(|e| panic!("should parse:\n{e}"))
}

fn service(text: &str) -> ServiceSpec {
    match parse_ok(text).as_slice() {
        [Resource::Service(s)] => s.clone(),
        other => panic!("expected one service, got {other:?}"),
    }
}

fn parse_err(text: &str) -> SpecErrors {
    match parse_documents("orion.yaml", text) {
        Ok(r) => panic!("should fail, parsed {r:?}"),
        Err(e) => e,
    }
}

/// The one error's `line:col: field` prefix and its whole text.
fn single_error(text: &str) -> (String, String) {
    let errors = parse_err(text);
    assert_eq!(errors.0.len(), 1, "expected one error, got:\n{errors}");
    let e = &errors.0[0];
    (
        format!("{}:{}: {}", e.line, e.column, e.field),
        e.to_string(),
    )
}

#[test]
fn example_parses_to_the_typed_spec() {
    let spec = service(EXAMPLE);
    let expected = ServiceSpec {
        name: "web".into(),
        replicas: 3,
        command: vec![
            "python3".into(),
            "-m".into(),
            "http.server".into(),
            "${PORT}".into(),
        ],
        args: vec![],
        env: BTreeMap::from([("GREETING".into(), "hello".into())]),
        working_dir: None,
        ports: vec!["http".into()],
        resources: Resources {
            cpu_millis: 250,
            memory_bytes: 64 * 1024 * 1024,
        },
        health: Some(HealthCheck {
            probe: Probe::Http {
                port: "http".into(),
                path: "/".into(),
            },
            interval_ms: 2_000,
            timeout_ms: 1_000,
            failures: 3,
            successes: 1,
            initial_delay_ms: 0,
            startup_grace_ms: orion_api::spec::service::DEFAULT_STARTUP_GRACE_MS,
        }),
        restart: RestartPolicy {
            policy: RestartMode::Always,
            backoff: Backoff {
                initial_ms: 1_000,
                max_ms: 60_000,
            },
        },
        placement: Placement {
            constraints: vec![Constraint::Equals {
                label: "zone".into(),
                value: "a".into(),
            }],
        },
        strategy: UpdateStrategy {
            max_unavailable: 1,
            max_surge: 1,
            ..UpdateStrategy::default()
        },
        hooks: Default::default(),
        env_variables: BTreeMap::new(),
        variable_revisions: BTreeMap::new(),
    };
    assert_eq!(spec, expected);

    // The typed form travels as JSON (API, Raft log) and comes back equal.
    let json =
        serde_json::to_string(&Resource::Service(spec.clone())).unwrap_or_else(|e| panic!("{e}"));
    assert!(json.contains(r#""kind":"Service""#), "{json}");
    let back: Resource = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, Resource::Service(spec));
}

#[test]
fn every_default_applies_to_a_minimal_document() {
    let spec = service("kind: Service\nname: api\ncommand: [./server]\n");
    assert_eq!(spec.replicas, 1);
    assert_eq!(spec.command, vec!["./server".to_owned()]);
    assert!(spec.args.is_empty());
    assert!(spec.env.is_empty());
    assert_eq!(spec.working_dir, None);
    assert!(spec.ports.is_empty());
    assert_eq!(
        spec.resources,
        Resources {
            cpu_millis: 100,
            memory_bytes: 64 << 20
        }
    );
    assert_eq!(spec.health, None);
    assert_eq!(spec.restart, RestartPolicy::default());
    assert_eq!(spec.restart.policy, RestartMode::Always);
    assert_eq!(
        spec.restart.backoff,
        Backoff {
            initial_ms: 1_000,
            max_ms: 60_000
        }
    );
    assert!(spec.placement.constraints.is_empty());
    assert_eq!(
        spec.strategy,
        UpdateStrategy {
            max_unavailable: 1,
            max_surge: 1,
            min_healthy_time_ms: 0,
            healthy_deadline_ms: 300_000,
            auto_rollback: false,
        }
    );
}

#[test]
fn health_defaults_and_other_probes() {
    let spec = service(
        "kind: Service\nname: db\ncommand: [pg]\nports: [sql]\nhealth:\n  tcp: {port: sql}\n",
    );
    let health = spec.health.unwrap_or_else(|| panic!("health missing"));
    assert_eq!(health.probe, Probe::Tcp { port: "sql".into() });
    assert_eq!(
        (
            health.interval_ms,
            health.timeout_ms,
            health.failures,
            health.successes,
            health.initial_delay_ms
        ),
        (10_000, 1_000, 3, 1, 0)
    );
    let spec = service(
        "kind: Service\nname: w\ncommand: [w]\nhealth:\n  exec: {command: [check, --fast]}\n  initial_delay: 1m30s\n",
    );
    let health = spec.health.unwrap_or_else(|| panic!("health missing"));
    assert_eq!(
        health.probe,
        Probe::Exec {
            command: vec!["check".into(), "--fast".into()]
        }
    );
    assert_eq!(health.initial_delay_ms, 90_000);
}

#[test]
fn replicas_must_be_a_non_negative_integer() {
    let (at, text) = single_error("kind: Service\nname: web\ncommand: [x]\nreplicas: -1\n");
    assert_eq!(at, "4:11: replicas", "{text}");
    assert!(
        text.starts_with("orion.yaml:4:11: replicas: expected a non-negative integer"),
        "{text}"
    );

    let (at, text) = single_error("kind: Service\nname: web\nreplicas: three\ncommand: [x]\n");
    assert_eq!(at, "3:11: replicas", "{text}");
    assert!(text.contains("`three`"), "{text}");
}

#[test]
fn unknown_fields_are_errors_at_their_key() {
    let (at, text) = single_error("kind: Service\nname: web\ncommand: [x]\nreplica: 2\n");
    assert_eq!(at, "4:1: replica", "{text}");
    assert!(text.contains("unknown field `replica`"), "{text}");

    let errors = parse_err(
        "kind: Service\nname: web\ncommand: [x]\nports: [http]\nhealth: {htp: {port: http}}\n",
    );
    let text = errors.to_string();
    assert!(
        text.contains("orion.yaml:5:10: health.htp: unknown field `htp`"),
        "{text}"
    );

    let (at, _) = single_error(
        "kind: Service\nname: web\ncommand: [x]\nrestart:\n  backoff:\n    inital: 2s\n",
    );
    assert_eq!(at, "6:5: restart.backoff.inital");
}

#[test]
fn one_bad_document_fails_the_whole_file() {
    let text = "kind: Service\nname: a\ncommand: [a]\n---\nkind: Service\nname: b\ncommand: [b]\nreplicas: many\n---\nkind: Service\nname: c\ncommand: [c]\n";
    let errors = parse_err(text);
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(
        (errors.0[0].line, errors.0[0].field.as_str()),
        (8, "replicas")
    );
}

#[test]
fn every_problem_in_every_document_is_listed() {
    let text = "kind: Service\nname: A\ncommand: []\n---\nkind: Service\nname: b\ncommand: [b]\nresources: {cpu: lots, memory: 12Qi}\n";
    let errors = parse_err(text);
    let found: Vec<(usize, &str)> = errors
        .0
        .iter()
        .map(|e| (e.line, e.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (2, "name"),
            (3, "command"),
            (8, "resources.cpu"),
            (8, "resources.memory")
        ],
        "{errors}"
    );
    assert_eq!(errors.to_string().lines().count(), 4);
}

#[test]
fn semantic_errors_carry_their_location() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "kind: Service\nname: w\ncommand: [w]\nports: [http]\nhealth:\n  http: {port: admin}\n",
            "6:16: health.http.port",
            "not in `ports`",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\nrestart:\n  backoff: {initial: 2m, max: 1m}\n",
            "5:31: restart.backoff.max",
            "longer than max",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\nplacement:\n  constraints: [\"zone == a\", \"zone ~ a\"]\n",
            "5:30: placement.constraints[1]",
            "unexpected `~`",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\nresources: {memory: 12Qi}\n",
            "4:21: resources.memory",
            "unknown unit `Qi`",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\nhealth: {exec: {command: [ok]}, interval: 5x}\n",
            "4:43: health.interval",
            "unknown unit `x`",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\n---\nkind: Service\nname: w\ncommand: [v]\n",
            "6:7: name",
            "duplicate Service name `w` (first defined at line 2)",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\nports: [http, http]\n",
            "4:15: ports[1]",
            "listed twice",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\nenv: {1BAD: x}\n",
            "4:7: env.1BAD",
            "not a valid variable name",
        ),
        (
            "kind: Service\nname: w\ncommand: [\"\"]\n",
            "3:11: command[0]",
            "empty",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\nports: [a]\nhealth: {tcp: {port: a}, exec: {command: [x]}}\n",
            "5:26: health.exec",
            "only one of",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\nrestart: {policy: sometimes}\n",
            "4:19: restart.policy",
            "unknown policy `sometimes`",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\nstrategy: {max_unavailable: 0, max_surge: 0}\n",
            "4:11: strategy",
            "cannot both be 0",
        ),
        (
            "kind: Service\nname: w\ncommand: [w]\nstrategy: {max_surge: 1001}\n",
            "4:23: strategy.max_surge",
            "above the limit of 1000",
        ),
        ("kind: Service\nname: Web_1\ncommand: [w]\n", "2:7: name", "lowercase"),
        ("kind: Service\nname: w\n", "1:1: command", "missing required field"),
        ("kind: Deployment\nname: w\n", "1:7: kind", "unknown kind `Deployment`"),
        ("name: w\ncommand: [w]\n", "1:1: kind", "missing required field"),
    ];
    for (text, at, message) in cases {
        let (found_at, found) = single_error(text);
        assert_eq!(&found_at, at, "for:\n{text}\n{found}");
        assert!(found.contains(message), "for:\n{text}\n{found}");
    }
}

#[test]
fn yaml_syntax_errors_have_a_location() {
    let errors = parse_err("kind: Service\nname: [unclosed\n");
    let e = &errors.0[0];
    assert!(e.line >= 2, "{errors}");
    assert!(errors.to_string().starts_with("orion.yaml:"), "{errors}");
    let errors = parse_err("kind: Service\nkind: Service\nname: x\ncommand: [x]\n");
    assert_eq!(errors.0[0].line, 2, "duplicate keys are rejected: {errors}");
}

#[test]
fn empty_files_and_documents_are_fine() {
    assert!(parse_ok("").is_empty());
    assert!(parse_ok("# nothing yet\n").is_empty());
    assert_eq!(
        parse_ok("---\n---\nkind: Service\nname: a\ncommand: [a]\n---\n").len(),
        1
    );
}

#[test]
fn lenient_scalars_for_commands_and_env() {
    let spec = service("kind: Service\nname: s\ncommand: [sleep, 5]\nenv: {N: 3, DEBUG: true}\nresources: {cpu: 0.5, memory: 1024}\n");
    assert_eq!(spec.command, vec!["sleep".to_owned(), "5".to_owned()]);
    assert_eq!(spec.env["N"], "3");
    assert_eq!(spec.env["DEBUG"], "true");
    assert_eq!(
        spec.resources,
        Resources {
            cpu_millis: 500,
            memory_bytes: 1024
        }
    );
    let spec = service("kind: Service\nname: s\ncommand: [x]\nresources: {cpu: 2, memory: 1Gi}\n");
    assert_eq!(
        spec.resources,
        Resources {
            cpu_millis: 2000,
            memory_bytes: 1 << 30
        }
    );
}

#[test]
fn json_schema_mentions_every_field() {
    let schema = json_schema();
    let text = serde_json::to_string(&schema).unwrap_or_else(|e| panic!("{e}"));
    let reparsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reparsed, schema);
    for field in [
        "kind",
        "name",
        "replicas",
        "command",
        "args",
        "env",
        "working_dir",
        "ports",
        "resources",
        "cpu",
        "memory",
        "health",
        "http",
        "tcp",
        "exec",
        "port",
        "path",
        "interval",
        "timeout",
        "failures",
        "successes",
        "initial_delay",
        "restart",
        "policy",
        "backoff",
        "initial",
        "max",
        "placement",
        "constraints",
        "strategy",
        "max_unavailable",
        "max_surge",
    ] {
        assert!(
            text.contains(&format!("\"{field}\"")),
            "schema lacks {field}"
        );
    }
    assert!(text.contains(r#""additionalProperties":false"#));
}

#[test]
fn expand_command_uses_the_given_env() {
    let spec = service(
        "kind: Service\nname: s\ncommand: [srv, --port, \"${PORT}\"]\nargs: [\"--tag=$${X}\"]\n",
    );
    let env = BTreeMap::from([("PORT".to_owned(), "8080".to_owned())]);
    assert_eq!(
        spec.expand_command(&env),
        Ok(vec![
            "srv".into(),
            "--port".into(),
            "8080".into(),
            "--tag=${X}".into()
        ])
    );
    let err = spec
        .expand_command(&BTreeMap::new())
        .expect_err("PORT is unknown");
    assert!(err.contains("`PORT`"), "{err}");
}

#[test]
fn env_takes_values_from_variables() {
    let spec = service(
        "kind: Service\nname: s\ncommand: [srv]\nenv:\n  PLAIN: x\n  DB_URL: {variable: prod/db_url}\n  TOKEN: {variable: prod/token, restart_on_change: true}\n",
    );
    assert_eq!(spec.env, BTreeMap::from([("PLAIN".into(), "x".into())]));
    assert_eq!(
        spec.env_variables,
        BTreeMap::from([
            (
                "DB_URL".into(),
                orion_api::spec::VariableRef {
                    variable: "prod/db_url".into(),
                    restart_on_change: false,
                }
            ),
            (
                "TOKEN".into(),
                orion_api::spec::VariableRef {
                    variable: "prod/token".into(),
                    restart_on_change: true,
                }
            ),
        ])
    );
    assert_eq!(
        spec.restart_on_change_paths()
            .into_iter()
            .collect::<Vec<_>>(),
        ["prod/token"]
    );
    // The stored form round-trips; a spec without references serializes as before.
    let json = serde_json::to_string(&spec).unwrap_or_else(|e| panic!("{e}"));
    let back: ServiceSpec = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, spec);
    let plain = service("kind: Service\nname: s\ncommand: [srv]\n");
    let json = serde_json::to_string(&plain).unwrap_or_else(|e| panic!("{e}"));
    assert!(!json.contains("env_variables"), "{json}");
}

#[test]
fn variable_references_are_checked() {
    let (at, text) = single_error(
        "kind: Service\nname: s\ncommand: [srv]\nenv:\n  A: {variable: \"bad//path\"}\n",
    );
    assert!(at.starts_with("5:"), "{at}: {text}");
    assert!(
        text.contains("env.A.variable") && text.contains("empty segment"),
        "{text}"
    );
    let errors =
        parse_err("kind: Service\nname: s\ncommand: [srv]\nenv:\n  A: {path: x}\n").to_string();
    assert!(
        errors.contains("unknown field `path`") && errors.contains("env.A.variable: missing"),
        "{errors}"
    );
    let (_, text) = single_error(
        "kind: Service\nname: s\ncommand: [srv]\nenv:\n  A: {variable: x, restart_on_change: yes please}\n",
    );
    assert!(text.contains("env.A.restart_on_change"), "{text}");
    let many: String = (0..=orion_api::spec::MAX_ENV_VARIABLES)
        .map(|i| format!("  V{i}: {{variable: v/{i}}}\n"))
        .collect();
    let (_, text) = single_error(&format!(
        "kind: Service\nname: s\ncommand: [srv]\nenv:\n{many}"
    ));
    assert!(
        text.contains(&format!("more than {}", orion_api::spec::MAX_ENV_VARIABLES)),
        "{text}"
    );
}

#[test]
fn a_variable_backed_env_is_refused_in_the_command_line() {
    let (_, text) = single_error(
        "kind: Service\nname: s\ncommand: [srv, \"--db=${DB_URL}\"]\nenv:\n  DB_URL: {variable: prod/db_url}\n",
    );
    assert!(
        text.contains("command[1]") && text.contains("prod/db_url") && text.contains("ps"),
        "{text}"
    );
    let (_, text) = single_error(
        "kind: Service\nname: s\ncommand: [srv]\nargs: [\"${T}\"]\nenv:\n  T: {variable: t}\n",
    );
    assert!(text.contains("args[0]"), "{text}");
    let (_, text) = single_error(
        "kind: Service\nname: s\ncommand: [srv]\nenv:\n  T: {variable: t}\nhealth:\n  exec: {command: [check, \"${T}\"]}\n",
    );
    assert!(text.contains("health.exec.command[1]"), "{text}");
    // Escaped, it is a literal and fine; a plain env entry may still be expanded.
    service(
        "kind: Service\nname: s\ncommand: [srv, \"$${T}\", \"${P}\"]\nenv:\n  T: {variable: t}\n  P: x\n",
    );
}
