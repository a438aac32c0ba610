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

/// The API requests (but the watch stream) made before the page marked its first
/// view rendered; `null` until it has.
const FIRST_VIEW_REQUESTS: &str = "const m = performance.getEntriesByName('orion-first-view')[0]; \
     if (!m) return null; \
     return performance.getEntriesByType('resource').filter(e => e.startTime <= m.startTime) \
       .map(e => new URL(e.name).pathname).filter(p => p.startsWith('/v1/') && p !== '/v1/watch')";

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
    // The first view's data is one request: `/v1/overview` (besides the session
    // check, the page's own files and the watch stream it then opens).
    let first = b
        .wait_js("the first view", SEE, FIRST_VIEW_REQUESTS)
        .await
        .expect("first view");
    assert_eq!(
        first,
        json!(["/v1/overview"]),
        "one request for the first view"
    );
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

    // Restart counter-0 from the page, confirmed: a new process, one more restart.
    let before = b
        .wait_js(
            "counter-0 running again",
            SEE,
            &format!(
                "const r = (() => {{ {REPLICA_ROWS} }})().find(x => x.id === 'counter-0'); \
                 return r && r.state === 'running' && r.pid > 0 ? r : null"
            ),
        )
        .await
        .expect("counter-0 running");
    b.click("button[data-restart=\"counter-0\"]")
        .await
        .expect("restart");
    b.wait_js(
        "the confirmation dialog",
        SEE,
        "return document.getElementById('confirm').open",
    )
    .await
    .expect("dialog");
    b.click("#confirm-ok").await.expect("confirm");
    b.wait_js(
        "the result of the restart",
        SEE,
        "return [...document.querySelectorAll('.toast')].some(t => t.textContent.includes('counter-0 restarted'))",
    )
    .await
    .expect("restart result");
    let after = b
        .wait_js(
            "counter-0's restart count to go up by one, under a new pid",
            SEE,
            &format!(
                "const r = (() => {{ {REPLICA_ROWS} }})().find(x => x.id === 'counter-0'); \
                 return r && r.restarts === {} && r.pid > 0 && r.pid !== {} && r.state === 'running' ? r : null",
                before["restarts"].as_u64().unwrap_or(0) + 1,
                before["pid"].as_u64().unwrap_or(0)
            ),
        )
        .await
        .expect("restart count shown");
    let new_pid = i32::try_from(after["pid"].as_i64().unwrap_or(0)).unwrap_or(0);
    assert!(pid_alive(new_pid), "the new process runs: {after}");

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
            "return ['#scale', '#delete-service', '#actions', 'button.danger', 'button[data-restart]', 'button[data-node-action]', '#nav-tokens:not([hidden])'].filter(s => document.querySelector(s))",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_mints_a_token_shown_once_from_the_tokens_page() {
    let c = TestCluster::start(1).await;
    let admin = c.token("admin", 3600).await;
    let b = Browser::start(&c.ca_pem, "tokens")
        .await
        .expect("headless Chromium");
    let profile = b.profile();
    log_in(&b, &c.url(1), &admin).await;
    show(&b, "#/tokens").await;
    b.wait_js(
        "the token form",
        SEE,
        "return !!document.getElementById('token-form')",
    )
    .await
    .expect("form");
    b.js(
        "document.getElementById('token-role').value = 'developer'; \
         document.getElementById('token-ttl').value = '3600'; return true",
        vec![],
    )
    .await
    .expect("choose");
    b.type_into("#token-description", "ci deploys")
        .await
        .expect("description");
    b.shots("tokens-form").await.expect("screenshots");
    b.click("#token-create").await.expect("create");
    let token = b
        .wait_js(
            "the new token",
            SEE,
            "const v = document.getElementById('token-value'); return v && v.value ? v.value : null",
        )
        .await
        .expect("token shown");
    let token = token.as_str().expect("text").to_string();
    let warning = b
        .js(
            "return document.getElementById('token-warning').textContent",
            vec![],
        )
        .await
        .expect("warning");
    assert!(
        warning
            .as_str()
            .unwrap_or_default()
            .contains("not shown again"),
        "{warning}"
    );
    // It is a developer token for an hour, listed with its description, and it works.
    let claims = orion_tls::token::peek(&token).expect("a token");
    b.wait_js(
        "the new token in the list",
        SEE,
        &format!(
            "const tr = document.querySelector('#tokens tbody tr[data-key=\"{}\"]'); \
             return tr && tr.textContent.includes('ci deploys') && tr.textContent.includes('developer')",
            claims.id
        ),
    )
    .await
    .expect("listed");
    let (ok, _, err) = orion(
        &c,
        &c.url(1),
        &["--token", &token, "var", "put", "ui/minted", "yes"],
    );
    assert!(ok, "the minted token writes: {err}");
    b.click("#token-copy").await.expect("copy");
    b.wait_js(
        "the copy button to answer",
        SEE,
        "return document.getElementById('token-copy').textContent !== 'Copy'",
    )
    .await
    .expect("copied");
    b.shots("tokens-created").await.expect("screenshots");
    // Done: the token leaves the page, and nothing shows it again.
    b.click("#token-done").await.expect("done");
    let shown = b
        .js(
            "return document.body.innerHTML.includes(arguments[0])",
            vec![json!(token)],
        )
        .await
        .expect("page");
    assert_eq!(shown, json!(false), "the token is shown once");
    b.quit().await.expect("quit the browser");
    assert!(profile_processes(&profile).is_empty());
    c.assert_no_unexpected_errors(&["timeout while confirming leadership"]);
}

/// `n` copies of `template` with `edit` applied to each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_drains_and_uncordons_a_node_from_the_nodes_page() {
    let mut c = TestCluster::start(1).await;
    c.spawn_agent("n1").await;
    c.spawn_agent("n2").await;
    apply(&c, &c.url(1), "counter", COUNTER);
    c.wait_for_replicas_running("counter", 2).await;
    let admin = c.token("admin", 3600).await;
    let b = Browser::start(&c.ca_pem, "drain")
        .await
        .expect("headless Chromium");
    let profile = b.profile();
    log_in(&b, &c.url(1), &admin).await;
    show(&b, "#/nodes").await;
    // Drain whichever node holds a replica.
    let on = |node: &'static str| {
        let c = &c;
        async move {
            c.client(1)
                .replicas(orion_client::Consistency::Linearizable)
                .await
                .map(|l| l.items.iter().filter(|r| r.node == node).count())
                .unwrap_or(0)
        }
    };
    let (from, to) = if on("n1").await > 0 {
        ("n1", "n2")
    } else {
        ("n2", "n1")
    };
    let drain = format!("button[data-node-action=\"drain\"][data-node=\"{from}\"]");
    b.wait_js(
        "the drain button",
        SEE,
        &format!(
            "return !!document.querySelector('{}')",
            drain.replace('\'', "\\'")
        ),
    )
    .await
    .expect("drain button");
    b.click(&drain).await.expect("drain");
    b.wait_js(
        "the confirmation",
        SEE,
        "return document.getElementById('confirm').open",
    )
    .await
    .expect("confirm dialog");
    b.click("#confirm-ok").await.expect("confirm");
    // The page shows the node draining, then empty; the replicas run on the other.
    b.wait_js(
        "the node drained on the page",
        SEE,
        &format!(
            "const tr = document.querySelector('#nodes tbody tr[data-key=\"{from}\"]'); \
             return !!tr && !!tr.querySelector('[data-state=\"draining\"]') && !tr.textContent.includes('counter-')"
        ),
    )
    .await
    .expect("drained");
    c.wait_for("every replica on the other node", SEE, || async {
        (on(to).await == 2).then_some(())
    })
    .await;
    b.shots("nodes-drained").await.expect("screenshots");
    let uncordon = format!("button[data-node-action=\"uncordon\"][data-node=\"{from}\"]");
    b.click(&uncordon).await.expect("uncordon");
    b.click("#confirm-ok").await.expect("confirm");
    b.wait_js(
        "the node ready again",
        SEE,
        &format!(
            "const tr = document.querySelector('#nodes tbody tr[data-key=\"{from}\"]'); \
             return !!tr && !!tr.querySelector('[data-state=\"ready\"]')"
        ),
    )
    .await
    .expect("uncordoned");
    b.quit().await.expect("quit the browser");
    assert!(profile_processes(&profile).is_empty());
    c.assert_no_unexpected_errors(&["timeout while confirming leadership"]);
}

fn copies(template: &Value, n: usize, edit: impl Fn(usize, &mut Value)) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut v = template.clone();
            edit(i, &mut v);
            v
        })
        .collect()
}

/// Renders a 1,000-service, 200-node, 3,000-replica state in the page (injected
/// through WebDriver in the shape `GET /v1/overview` answers, built from a real
/// answer) and prints how long each page took: a benchmark, not a timed test
/// (BENCHMARKS.md has the figures and how to rerun it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_benchmark_1000_services_200_nodes() {
    const SERVICES: usize = 1000;
    const NODES: usize = 200;
    const PER_SERVICE: usize = 3;
    let mut c = TestCluster::start(1).await;
    c.spawn_agent("n1").await;
    apply(&c, &c.url(1), "counter", COUNTER);
    c.wait_for_replicas_running("counter", 2).await;
    let real = serde_json::to_value(c.client(1).overview().await.expect("overview")).expect("json");
    let service = real["services"][0].clone();
    let node = real["nodes"][0].clone();
    let replica = real["replicas"][0].clone();
    let report = real["observed"]["counter-0"].clone();
    let usage = real["usage"]["n1"].clone();
    assert!(!report.is_null() && !usage.is_null(), "{real}");
    let node_name = |j: usize| format!("node-{j:03}");
    let mut state = real.clone();
    state["services"] = json!(copies(&service, SERVICES, |i, v| {
        v["spec"]["name"] = json!(format!("svc-{i:04}"));
        v["spec"]["replicas"] = json!(PER_SERVICE);
    }));
    state["nodes"] = json!(copies(&node, NODES, |j, v| {
        v["name"] = json!(node_name(j));
    }));
    let replicas = copies(&replica, SERVICES * PER_SERVICE, |k, v| {
        v["service"] = json!(format!("svc-{:04}", k / PER_SERVICE));
        v["ordinal"] = json!(k % PER_SERVICE);
        v["node"] = json!(node_name(k % NODES));
    });
    let mut observed = serde_json::Map::new();
    for r in &replicas {
        let id = format!("{}-{}", r["service"].as_str().unwrap_or(""), r["ordinal"]);
        let mut rep = report.clone();
        rep["id"] = json!(id);
        observed.insert(id, rep);
    }
    state["replicas"] = json!(replicas);
    state["observed"] = Value::Object(observed);
    state["usage"] = Value::Object((0..NODES).map(|j| (node_name(j), usage.clone())).collect());
    state["unplaced"] = json!([]);
    let text = state.to_string();

    let admin = c.token("admin", 3600).await;
    let b = Browser::start(&c.ca_pem, "render-benchmark")
        .await
        .expect("headless Chromium");
    let profile = b.profile();
    log_in(&b, &c.url(1), &admin).await;
    let figures = b
        .client
        .execute_async(
            "const [text, done] = arguments; \
             const frame = () => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0))); \
             (async () => { \
               stopLive(); \
               const out = { bytes: text.length }; \
               let t = performance.now(); \
               applyOverview(JSON.parse(text)); \
               location.hash = '#/overview'; current = null; route(); render(); \
               out.overview_script_ms = performance.now() - t; \
               await frame(); \
               out.overview_ms = performance.now() - t; \
               for (const [name, hash] of [['nodes_ms', '#/nodes'], ['services_ms', '#/services'], ['service_page_ms', '#/services/svc-0500']]) { \
                 t = performance.now(); location.hash = hash; route(); out[name.replace('_ms', '_script_ms')] = performance.now() - t; await frame(); out[name] = performance.now() - t; \
               } \
               location.hash = '#/nodes'; route(); await frame(); \
               t = performance.now(); \
               const r = S.replicas.get('svc-0007-1'); \
               applyChange({ kind: 'put', resource: 'Replica', key: 'svc-0007-1', revision: 1e9, seq: 0, object: { ...r, node: 'node-199' } }); \
               renderQueued = false; render(); \
               out.nodes_one_event_script_ms = performance.now() - t; \
               await frame(); \
               out.nodes_one_event_ms = performance.now() - t; \
               done(out); \
             })().catch(e => done({ error: String(e) }));",
            vec![json!(text)],
        )
        .await
        .expect("benchmark");
    println!(
        "render benchmark ({SERVICES} services, {NODES} nodes, {} replicas): {figures}",
        SERVICES * PER_SERVICE
    );
    assert!(figures.get("error").is_none(), "{figures}");
    std::fs::write(
        b.screenshot_dir().join("render-benchmark.json"),
        figures.to_string(),
    )
    .expect("write figures");
    // What was rendered is the whole state (checked, not timed).
    let counts = b
        .js(
            "return { nodes: document.querySelectorAll('#topology [data-node]').length, \
             replicas: document.querySelectorAll('#topology [data-replica]').length, \
             rows: document.querySelectorAll('#nodes tbody tr[data-key]').length }",
            vec![],
        )
        .await
        .expect("counts");
    assert_eq!(
        counts,
        json!({ "nodes": NODES, "replicas": SERVICES * PER_SERVICE, "rows": NODES })
    );
    b.shots("bench-nodes").await.expect("screenshots");
    show(&b, "#/services").await;
    let rows = b
        .wait_js(
            "the services table",
            SEE,
            "const n = document.querySelectorAll('#services tbody tr[data-key]').length; \
             return n ? [n, document.querySelector('#services .count').textContent] : null",
        )
        .await
        .expect("services");
    // The first 200 rows, and a button for the rest.
    assert_eq!(rows, json!([200, SERVICES.to_string()]));
    b.click("button[data-more=services]").await.expect("more");
    b.wait_js(
        "400 service rows",
        SEE,
        "return document.querySelectorAll('#services tbody tr[data-key]').length === 400",
    )
    .await
    .expect("more rows");
    b.shots("bench-services").await.expect("screenshots");
    show(&b, "#/overview").await;
    b.wait_js(
        "the overview",
        SEE,
        "return document.querySelector('#card-services .value').textContent === '1000'",
    )
    .await
    .expect("overview");
    b.shots("bench-overview").await.expect("screenshots");
    b.quit().await.expect("quit the browser");
    assert!(profile_processes(&profile).is_empty());
    c.assert_no_unexpected_errors(&["timeout while confirming leadership"]);
}
