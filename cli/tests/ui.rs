//! The dashboard in a real headless Chromium (WebDriver), against real peers, a
//! real agent and real replicas: live updates without a reload, a replica's
//! restart, scaling from the page, a `kill -9` of the leader with the page and its
//! log tail carrying on, through a follower and through HAProxy; a readonly
//! session that sees no actions and whose forged writes are refused; revocation
//! ending a session. Screenshots of every page visited, light and dark, desktop
//! and phone, land in `<target>/tmp/ui-screenshots/<test>/`.

mod browser;
mod fixture;

use std::time::Duration;

use browser::{profile_processes, Browser};
use fixture::haproxy::{Haproxy, HaproxyOptions};
use fixture::orion;
use fixture::{TestCluster, WAIT};
use serde_json::{json, Value};

/// What a page may take to show a change (a poll is 2 s; a failover a few more).
const SEE: Duration = Duration::from_secs(30);

/// Prints `n 1`, `n 2`, … every 50 ms.
const COUNTER: &str = "kind: Service\nname: counter\nreplicas: 2\ncommand: [sh, -c, 'i=0; while :; do i=$((i+1)); echo \"n $i\"; sleep 0.05; done']\nresources: {cpu: 10m, memory: 8Mi}\n";

fn apply(c: &TestCluster, server: &str, name: &str, text: &str) {
    let file = c.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, text).expect("write spec");
    let (ok, _, err) = orion(
        c,
        server,
        &["apply", "-f", file.to_str().expect("utf-8 path")],
    );
    assert!(ok, "orion apply: {err}");
}

/// Logs in on the page at `base` with `token`, and waits for the overview.
async fn log_in(b: &Browser, base: &str, token: &str) {
    // `/` redirects to `/ui`, which asks for a token.
    b.client.goto(&format!("{base}/")).await.expect("open /");
    b.wait_js(
        "the login form",
        SEE,
        "return location.pathname === '/ui' && !document.getElementById('login').hidden",
    )
    .await
    .expect("login form");
    b.type_into("#login-token", token)
        .await
        .expect("type token");
    b.click("#login-submit").await.expect("submit");
    b.wait_js(
        "the overview after login",
        SEE,
        "return !document.getElementById('nav').hidden && location.hash === '#/overview'",
    )
    .await
    .expect("logged in");
}

/// Marks the loaded document; [`assert_not_reloaded`] proves it is the same one.
async fn mark_document(b: &Browser) {
    b.js(
        "window.__orionTestMark = 'same-document'; return true",
        vec![],
    )
    .await
    .expect("mark");
}

async fn assert_not_reloaded(b: &Browser) {
    let v = b
        .js("return window.__orionTestMark || null", vec![])
        .await
        .expect("read mark");
    assert_eq!(v, json!("same-document"), "the page was reloaded");
}

/// Goes to a page of the app by its hash, without loading anything.
async fn show(b: &Browser, hash: &str) {
    b.js(
        "location.hash = arguments[0]; return true",
        vec![json!(hash)],
    )
    .await
    .expect("navigate");
}

/// The leader the overview's members table marks, as its member id.
const LEADER_IN_MEMBERS: &str =
    "const row = document.querySelector('#members tbody tr [data-state=\"leader\"]'); \
     return row ? Number(row.closest('tr').dataset.key) : null";

/// The leader the header shows on every page, as its member id.
const LEADER_SHOWN: &str = "const e = document.getElementById('hdr-leader'); \
     return e && e.dataset.leader ? Number(e.dataset.leader) : null";

/// Replica rows on the service page with their state and restarts.
const REPLICA_ROWS: &str =
    "return [...document.querySelectorAll('#replicas tbody tr[data-key]')].map(tr => ({ \
     id: tr.dataset.key, state: tr.querySelector('[data-col=state] [data-state]').dataset.state, \
     restarts: Number(tr.querySelector('[data-col=restarts]').textContent), \
     pid: Number(tr.querySelector('[data-col=pid]').textContent) }))";

fn rows(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn running_count(v: &Value) -> usize {
    rows(v)
        .iter()
        .filter(|r| matches!(r["state"].as_str(), Some("running" | "healthy")))
        .count()
}

/// Issues a write from the page's own origin, with the session cookie, without
/// (or with) the page's CSRF header: what a forged request could do at most.
async fn forged_scale(b: &Browser, with_csrf: bool) -> (u64, String) {
    let v = b
        .client
        .execute_async(
            "const [withCsrf, done] = arguments; \
             const headers = { 'Content-Type': 'application/json' }; \
             if (withCsrf) headers['X-Orion-CSRF'] = S.session.csrf; \
             fetch('/v1/services/counter/scale', { method: 'POST', headers, body: JSON.stringify({ replicas: 7 }) }) \
               .then(async r => done([r.status, await r.text()])).catch(e => done([0, String(e)]));",
            vec![json!(with_csrf)],
        )
        .await
        .expect("forged fetch");
    (
        v[0].as_u64().unwrap_or(0),
        v[1].as_str().unwrap_or_default().to_string(),
    )
}

/// Log lines shown in the tail, and the highest counter value among them.
const LOG_STATE: &str =
    "const lines = document.getElementById('log-lines').textContent.split('\\n').filter(Boolean); \
     const ns = lines.map(l => Number((l.match(/^n (\\d+)$/) || [])[1] || 0)); \
     return { count: lines.length, max: Math.max(0, ...ns) }";

fn pid_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_follower_the_page_follows_applies_restarts_scaling_and_a_leader_kill() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let follower = c.follower().await;
    let base = c.url(follower);
    let developer = c.token("developer", 3600).await;
    let b = Browser::start(&c.ca_pem, "follower")
        .await
        .expect("headless Chromium");
    let profile = b.profile();

    log_in(&b, &base, &developer).await;
    mark_document(&b).await;
    // The members and the leader, as the leader reports them.
    let leader = c.wait_for_leader().await;
    b.wait_js(
        "three members",
        SEE,
        "return document.querySelectorAll('#members tbody tr[data-key]').length === 3",
    )
    .await
    .expect("members");
    let shown = b
        .wait_js("the leader", SEE, LEADER_IN_MEMBERS)
        .await
        .expect("leader");
    assert_eq!(shown, json!(leader), "the page shows the leader");
    assert_eq!(
        b.js(LEADER_SHOWN, vec![]).await.expect("header"),
        json!(leader)
    );

    // Apply from the CLI: the replicas appear and turn running, no reload.
    show(&b, "#/services/counter").await;
    apply(&c, &c.url(leader), "counter", COUNTER);
    let reps = b
        .wait_js(
            "two running replicas",
            SEE,
            &format!(
                "const r = (() => {{ {REPLICA_ROWS} }})(); \
                 return r.filter(x => x.state === 'running' || x.state === 'healthy').length === 2 ? r : null"
            ),
        )
        .await
        .expect("replicas running");
    assert_eq!(running_count(&reps), 2, "{reps}");
    assert_not_reloaded(&b).await;
    b.shots("service").await.expect("screenshots");

    // Kill a replica's process: its restart count goes up on the page.
    let victim = rows(&reps)
        .into_iter()
        .find(|r| r["id"] == "counter-0")
        .expect("counter-0 shown");
    let pid = i32::try_from(victim["pid"].as_i64().expect("pid shown")).expect("pid");
    assert!(
        pid > 0 && pid_alive(pid),
        "counter-0's pid {pid} is running"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the replica");
    b.wait_js(
        "counter-0's restart count to go up",
        SEE,
        "const tr = document.querySelector('#replicas tbody tr[data-key=\"counter-0\"]'); \
         return tr && Number(tr.querySelector('[data-col=restarts]').textContent) >= 1",
    )
    .await
    .expect("restart shown");

    // The log tail of a replica follows.
    b.click("button[data-logs=\"counter-1\"]")
        .await
        .expect("tail");
    let before = b
        .wait_js(
            "log lines",
            SEE,
            &format!("const s = (() => {{ {LOG_STATE} }})(); return s.count >= 5 ? s : null"),
        )
        .await
        .expect("log lines");

    // Scale from the page, confirmed in the dialog: three processes on the machine.
    b.type_into("#scale-replicas", "3").await.expect("type 3");
    b.click("#scale").await.expect("scale");
    b.wait_js(
        "the confirmation dialog",
        SEE,
        "return document.getElementById('confirm').open",
    )
    .await
    .expect("dialog");
    b.click("#confirm-ok").await.expect("confirm");
    b.wait_js(
        "the result of scaling",
        SEE,
        "return [...document.querySelectorAll('.toast')].some(t => t.textContent.includes('scaled to 3'))",
    )
    .await
    .expect("scale result");
    b.wait_js(
        "three running replicas",
        SEE,
        "return [...document.querySelectorAll('#replicas tbody tr[data-key]')].filter(tr => ['running','healthy'].includes(tr.querySelector('[data-col=state] [data-state]').dataset.state)).length === 3",
    )
    .await
    .expect("three replicas");
    let pids = b.js(REPLICA_ROWS, vec![]).await.expect("rows");
    let alive = rows(&pids)
        .iter()
        .filter_map(|r| r["pid"].as_i64())
        .filter_map(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0 && pid_alive(*p))
        .count();
    assert_eq!(
        alive, 3,
        "three replica processes run on the machine: {pids}"
    );

    // A forged write from this developer session without the CSRF header: refused.
    let (status, body) = forged_scale(&b, false).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");

    // kill -9 the leader: the new leader shows, the page and the log tail go on.
    let at_kill = b.js(LOG_STATE, vec![]).await.expect("log state");
    c.kill9(leader);
    let new_leader = b
        .wait_js(
            "a new leader on the page",
            Duration::from_secs(60),
            &format!(
                "const l = (() => {{ {LEADER_SHOWN} }})(); return l && l !== {leader} ? l : null"
            ),
        )
        .await
        .expect("new leader shown");
    assert_eq!(new_leader, json!(c.wait_for_leader().await));
    b.wait_js(
        "the leader change as an event",
        SEE,
        "return S.events.some(e => e.kind === 'leader')",
    )
    .await
    .expect("leader change event");
    assert!(before["count"].as_u64().unwrap_or(0) >= 5, "{before}");
    let max_before = at_kill["max"].as_u64().unwrap_or(0);
    let after = b
        .wait_js(
            "the log tail to keep following after the failover",
            Duration::from_secs(60),
            &format!(
                "const s = (() => {{ {LOG_STATE} }})(); \
                 return s.max > {max_before} + 40 && document.getElementById('log-status').textContent.startsWith('following') ? s : null"
            ),
        )
        .await
        .expect("log tail continues");
    // No counter value is shown twice: the tail resumed after its cursor.
    let dups = b
        .js(
            "const lines = document.getElementById('log-lines').textContent.split('\\n').filter(Boolean); \
             return lines.length - new Set(lines).size",
            vec![],
        )
        .await
        .expect("dups");
    assert_eq!(dups, json!(0), "no line twice in the tail: {after}");

    // Still live after the failover: a change made now shows up without a reload.
    let survivor = c.running()[0];
    c.must_put(survivor, "ui/after-failover", "yes").await;
    show(&b, "#/variables").await;
    b.wait_js(
        "a variable written after the failover",
        SEE,
        "return !!document.querySelector('#variables tbody tr[data-key=\"ui/after-failover\"]')",
    )
    .await
    .expect("variable shown");
    assert_not_reloaded(&b).await;
    b.shots("variables").await.expect("screenshots");
    for (page, name) in [
        ("#/overview", "overview"),
        ("#/nodes", "nodes"),
        ("#/services", "services"),
        ("#/events", "events"),
    ] {
        show(&b, page).await;
        b.wait_js(
            "the page",
            SEE,
            "return document.querySelector('#page h1') !== null",
        )
        .await
        .expect("page shown");
        b.shots(name).await.expect("screenshots");
    }
    // The topology draws counter's replicas inside n1.
    show(&b, "#/nodes").await;
    b.wait_js(
        "three replicas in n1's topology box",
        SEE,
        "return document.querySelectorAll('#topology [data-node=\"n1\"] [data-replica]').length === 3",
    )
    .await
    .expect("topology");

    // Log out: the login form again, and the cookie no longer works.
    b.click("#logout").await.expect("log out");
    b.wait_js(
        "the login form after logging out",
        SEE,
        "return !document.getElementById('login').hidden",
    )
    .await
    .expect("logged out");
    let session = b
        .client
        .execute_async(
            "const done = arguments[0]; fetch('/ui/session').then(r => done(r.status))",
            vec![],
        )
        .await
        .expect("session after logout");
    assert_eq!(session, json!(401));

    b.quit().await.expect("quit the browser");
    assert!(
        profile_processes(&profile).is_empty(),
        "no browser process is left behind"
    );
    // openraft logs a linearizable read that lost its leader (or a slow peer, on a
    // loaded machine) at ERROR; the other cluster tests allow it too.
    c.assert_no_unexpected_errors(&["timeout while confirming leadership"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_haproxy_a_readonly_session_sees_no_actions_and_revocation_ends_it() {
    let c = TestCluster::start(3).await;
    let lb = Haproxy::start(&c.api_addrs(), HaproxyOptions::default())
        .await
        .expect("start HAProxy");
    lb.wait_for_up(3, WAIT).await.expect("every peer healthy");
    apply(&c, &c.url(1), "counter", COUNTER);
    let readonly = c.token("readonly", 3600).await;
    let b = Browser::start(&c.ca_pem, "haproxy-readonly")
        .await
        .expect("headless Chromium");
    let profile = b.profile();

    log_in(&b, &lb.url(), &readonly).await;
    let leader = c.wait_for_leader().await;
    let shown = b
        .wait_js("the leader", SEE, LEADER_IN_MEMBERS)
        .await
        .expect("leader");
    assert_eq!(shown, json!(leader));
    show(&b, "#/services/counter").await;
    b.wait_js(
        "the service page",
        SEE,
        "return document.getElementById('spec') && document.getElementById('spec').textContent.includes('counter')",
    )
    .await
    .expect("service page");
    // No action buttons for a readonly session, anywhere.
    let buttons = b
        .js(
            "return ['#scale', '#delete-service', '#actions', 'button.danger', '#nav-tokens:not([hidden])'].filter(s => document.querySelector(s))",
            vec![],
        )
        .await
        .expect("buttons");
    assert_eq!(buttons, json!([]), "a readonly session sees no actions");
    b.shots("service-readonly").await.expect("screenshots");

    // The server refuses its writes anyway: without the CSRF header, and with it.
    let (status, body) = forged_scale(&b, false).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, body) = forged_scale(&b, true).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("readonly"), "{body}");

    // Revoking the token ends the session on whichever peer the LB picks.
    let id = orion_tls::token::peek(&readonly).expect("claims").id;
    let (ok, _, err) = orion(&c, &c.url(1), &["token", "revoke", &id]);
    assert!(ok, "revoke: {err}");
    b.wait_js(
        "the login form after revocation",
        SEE,
        "return !document.getElementById('login').hidden && document.getElementById('login-error').textContent.includes('revoked')",
    )
    .await
    .expect("session ended");
    b.shots("login").await.expect("screenshots");

    b.quit().await.expect("quit the browser");
    assert!(
        profile_processes(&profile).is_empty(),
        "no browser process is left behind"
    );
    // openraft logs a linearizable read that lost its leader (or a slow peer, on a
    // loaded machine) at ERROR; the other cluster tests allow it too.
    c.assert_no_unexpected_errors(&["timeout while confirming leadership"]);
}
