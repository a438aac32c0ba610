// Orion dashboard: plain modern JavaScript, no build step, no dependencies.
//
// Data flow: one request for the first view (`GET /v1/overview`: every list at
// one revision, with the leader's reports and members), then the watch stream
// (`/v1/watch`, server-sent events) keeps services, nodes, replica placement and
// variables current; what only the leader holds in memory (agent reports, usage,
// Raft progress per member) is polled every two seconds. A broken stream
// reconnects to the same origin (any peer behind a load balancer) and resumes
// after the last event id it saw; `relist_required` lists again.
// Every write carries the session's CSRF token in `X-Orion-CSRF`.
'use strict';

const POLL_MS = 2000;
const MAX_EVENTS = 500;
const MAX_LOG_LINES = 2000;
const HOUR_MS = 3600 * 1000;

const S = {
  session: null,
  status: null,
  members: null,
  services: new Map(),
  nodes: new Map(),
  replicas: new Map(),
  variables: new Map(),
  observed: {},
  usage: {},
  unplaced: [],
  tokens: [],
  events: [],
  leaderChanges: [],
  lastLeader: undefined,
  cursor: null,
  watch: null,
  watchBackoff: 500,
  pollTimer: null,
  pollFailures: 0,
  liveGen: 0,
  page: null,
  firstView: false,
  // Bumped on every change of the lists; derived indexes are rebuilt once per version.
  version: 0,
};

function changed() { S.version++; }

// ------------------------------------------------------------------ helpers

const $ = (sel, root = document) => root.querySelector(sel);

// h('div', {class: 'x', onclick: f}, child, 'text', ...): an element.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') for (const [p, val] of Object.entries(v)) el.style.setProperty(p, val);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function bytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v >= 10 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}
const cores = (m) => (m === undefined ? '—' : `${(m / 1000).toFixed(m % 1000 ? 2 : 0)} cpu`);
const ago = (ms) => {
  if (ms === undefined || ms === null) return '—';
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
};
const clock = (t) => new Date(t).toLocaleTimeString();
const canWrite = () => S.session && (S.session.role === 'admin' || S.session.role === 'developer');
const isAdmin = () => S.session && S.session.role === 'admin';

// A replica's or node's state, told apart by symbol and word as well as colour.
const STATES = {
  healthy: ['ok', '✔'], running: ['ok', '●'], ready: ['ok', '●'], leader: ['info', '★'],
  starting: ['warn', '◔'], pending: ['warn', '◔'], backoff: ['warn', '↻'], unhealthy: ['bad', '✚'],
  draining: ['warn', '⇣'], cordoned: ['warn', '⊘'], degraded: ['warn', '◑'], stopped: ['warn', '■'], exited: ['bad', '■'],
  failed: ['bad', '✕'], down: ['bad', '▼'], unreachable: ['bad', '▼'], unplaced: ['bad', '⊘'],
  follower: ['ok', '●'], voter: ['ok', '●'], learner: ['warn', '◔'], unknown: ['warn', '?'],
};
function badge(state) {
  const [cls, sym] = STATES[state] || ['warn', '?'];
  return h('span', { class: `state ${cls}`, dataset: { state } }, h('span', { 'aria-hidden': 'true' }, sym), state);
}

function toast(text, bad) {
  const t = h('div', { class: `toast${bad ? ' bad' : ''}` }, text);
  $('#toasts').append(t);
  setTimeout(() => t.remove(), bad ? 9000 : 5000);
}

// The confirmation dialog; resolves to whether the user confirmed.
function confirmAction(title, text, danger) {
  const dlg = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').className = danger ? 'danger' : '';
  dlg.returnValue = '';
  dlg.showModal();
  $('#confirm-cancel').focus();
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
  });
}

// ------------------------------------------------------------------ the API

class ApiFailure extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-Orion-CSRF'] = S.session ? S.session.csrf : 'login';
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = null; } }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    const failure = new ApiFailure(resp.status, err.code || '', err.message || `${resp.status} ${resp.statusText}`);
    if (resp.status === 401 && S.session && path !== '/ui/login') sessionEnded(failure.message);
    throw failure;
  }
  return data;
}

// ------------------------------------------------------------------ session

async function boot() {
  applyTheme(localStorage.getItem('orion-theme') || 'system');
  $('#theme').addEventListener('click', cycleTheme);
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  try {
    S.session = await api('GET', '/ui/session');
  } catch (e) {
    showLogin(e.status === 401 ? '' : e.message);
    return;
  }
  started();
}

function showLogin(message) {
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#page').replaceChildren();
  $('#who').textContent = '';
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  $('#login-token').focus();
}

async function login(ev) {
  ev.preventDefault();
  const input = $('#login-token');
  $('#login-error').textContent = '';
  try {
    S.session = await api('POST', '/ui/login', { token: input.value });
  } catch (e) {
    $('#login-error').textContent = e.message;
    return;
  }
  input.value = '';
  started();
}

async function logout() {
  stopLive();
  logTail.stop();
  current = null;
  try { await api('POST', '/ui/logout'); } catch { /* the cookie is cleared either way */ }
  S.session = null;
  showLogin('You are logged out.');
}

function sessionEnded(message) {
  stopLive();
  logTail.stop();
  current = null;
  S.session = null;
  showLogin(`Your session ended: ${message}`);
}

function started() {
  $('#login').hidden = true;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  $('#nav-tokens').hidden = !isAdmin();
  $('#who').textContent = `${S.session.role}`;
  $('#who').dataset.role = S.session.role;
  document.body.dataset.role = S.session.role;
  loadLeaderChanges();
  if (!location.hash) location.hash = '#/overview';
  route();
  startLive();
}

// ------------------------------------------------------------------ theme

function applyTheme(t) {
  if (t === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  $('#theme').title = `Theme: ${t}`;
}
function cycleTheme() {
  const order = ['system', 'light', 'dark'];
  const cur = localStorage.getItem('orion-theme') || 'system';
  const next = order[(order.indexOf(cur) + 1) % order.length];
  localStorage.setItem('orion-theme', next);
  applyTheme(next);
}

// ------------------------------------------------------------------ live data

function setConn(state, text) {
  const c = $('#conn');
  c.dataset.state = state;
  $('#conn-text').textContent = text;
}

// The first view, and every relist: one request, one revision; the watch
// resumes right after it.
async function relist() {
  const o = await api('GET', '/v1/overview');
  applyOverview(o);
  return o.revision + 1;
}

// Replaces the state with an overview (the shape `GET /v1/overview` answers).
function applyOverview(o) {
  S.services = new Map(o.services.map((s) => [s.spec.name, s]));
  S.nodes = new Map(o.nodes.map((n) => [n.name, n]));
  S.usage = o.usage || {};
  S.replicas = new Map(o.replicas.map((r) => [`${r.service}-${r.ordinal}`, r]));
  S.observed = o.observed || {};
  S.unplaced = o.unplaced || [];
  S.variables = new Map(o.variables.map((v) => [v.path, v]));
  S.members = o.members;
  noteLeader(o.members);
  S.status = o.status;
  const local = S.events.filter((e) => e.local);
  S.events = o.events.map(watchEventRow).concat(local).sort(byEventTime).slice(-MAX_EVENTS);
  changed();
}

async function startLive() {
  stopLive();
  const gen = ++S.liveGen;
  setConn('reconnecting', 'connecting…');
  let from;
  try {
    from = await relist();
  } catch (e) {
    if (!S.session || gen !== S.liveGen) return;
    setConn('down', 'no answer; retrying');
    S.pollTimer = setTimeout(startLive, 2000);
    return;
  }
  if (gen !== S.liveGen) return;
  openWatch(String(from));
  render();
  if (!S.firstView) {
    S.firstView = true;
    performance.mark('orion-first-view');
  }
  // The overview had the leader's reports: the next poll is one period away.
  S.pollTimer = setTimeout(() => poll(gen), POLL_MS);
}

function stopLive() {
  S.liveGen++;
  if (S.watch) { S.watch.close(); S.watch = null; }
  if (S.pollTimer) { clearTimeout(S.pollTimer); S.pollTimer = null; }
}

function openWatch(from) {
  if (!S.session) return;
  const es = new EventSource(`/v1/watch?from=${encodeURIComponent(from)}`, { withCredentials: true });
  S.watch = es;
  es.onopen = () => { S.watchBackoff = 500; setConn('live', 'live'); };
  const onChange = (ev) => {
    S.cursor = ev.lastEventId || S.cursor;
    applyChange(JSON.parse(ev.data));
  };
  es.addEventListener('put', onChange);
  es.addEventListener('delete', onChange);
  es.addEventListener('error', (ev) => {
    // Either the server's `error` event (data: an API error) or a broken connection.
    if (ev.data) {
      es.close();
      let code = '';
      try { code = JSON.parse(ev.data).error.code; } catch { code = ''; }
      if (code === 'relist_required') { startLive(); return; }
    }
    if (es.readyState === EventSource.CLOSED || ev.data) {
      // The browser gave up (an error status): resume by hand after the last cursor.
      setConn('reconnecting', 'reconnecting…');
      const delay = S.watchBackoff;
      S.watchBackoff = Math.min(S.watchBackoff * 2, 8000);
      setTimeout(() => {
        if (S.watch === es) openWatch(S.cursor || from);
      }, delay);
    } else {
      setConn('reconnecting', 'reconnecting…');
    }
  });
}

const MAPS = { Service: 'services', Node: 'nodes', Replica: 'replicas', Variable: 'variables' };

function applyChange(ev) {
  const map = S[MAPS[ev.resource]];
  if (map) {
    if (ev.kind === 'delete') map.delete(ev.key);
    else map.set(ev.key, ev.object);
    changed();
  }
  S.events.push(watchEventRow(ev));
  if (S.events.length > MAX_EVENTS) S.events.splice(0, S.events.length - MAX_EVENTS);
  scheduleRender();
}

function watchEventRow(ev) {
  return {
    cursor: `${ev.revision}.${ev.seq || 0}`,
    revision: ev.revision,
    seq: ev.seq || 0,
    at: null,
    kind: ev.kind,
    resource: ev.resource,
    key: ev.key,
    text: describe(ev),
  };
}
function byEventTime(a, b) {
  return (a.revision - b.revision) || (a.seq - b.seq);
}

function describe(ev) {
  const o = ev.object || {};
  if (ev.resource === 'Replica') return ev.kind === 'put' ? `placed on ${o.node} (generation ${o.generation})` : `removed from ${o.node}`;
  if (ev.resource === 'Service') return ev.kind === 'put' ? `${o.spec ? o.spec.replicas : '?'} replicas, generation ${o.generation}` : 'deleted';
  if (ev.resource === 'Node') return ev.kind === 'put' ? `${o.status}${o.draining ? ', draining' : ''}` : 'deleted';
  if (ev.resource === 'Variable') return ev.kind === 'put' ? `version ${o.version}${o.secret ? ' (secret)' : ''}` : 'deleted';
  return ev.kind;
}

// Polled: what the leader holds in memory, and the control plane itself.
async function poll(gen) {
  if (!S.session || gen !== S.liveGen) return;
  const results = await Promise.allSettled([
    api('GET', '/v1/cluster/members'),
    api('GET', '/v1/cluster/status'),
    api('GET', '/v1/replicas'),
    api('GET', '/v1/nodes'),
    isAdmin() && S.page === 'tokens' ? api('GET', '/v1/tokens') : Promise.resolve(null),
  ]);
  if (gen !== S.liveGen) return;
  const [members, status, replicas, nodes, tokens] = results.map((r) => (r.status === 'fulfilled' ? r.value : undefined));
  if (members) { S.members = members; noteLeader(members); }
  if (status) S.status = status;
  if (replicas) {
    S.observed = replicas.observed || {};
    S.unplaced = replicas.unplaced || [];
    const listed = new Set();
    for (const r of replicas.items) {
      const id = `${r.service}-${r.ordinal}`;
      listed.add(id);
      S.replicas.set(id, r);
    }
    // Gone by this list's revision (a newer one from the watch stays).
    for (const [id, r] of S.replicas) {
      if (!listed.has(id) && (r.create_revision || 0) <= replicas.revision) S.replicas.delete(id);
    }
  }
  if (nodes) S.usage = nodes.usage || {};
  if (tokens) S.tokens = tokens.tokens;
  changed();
  const failed = results.some((r) => r.status === 'rejected');
  S.pollFailures = failed ? S.pollFailures + 1 : 0;
  if (S.watch && S.watch.readyState === EventSource.OPEN) {
    setConn(failed ? 'reconnecting' : 'live', failed ? 'live; leader not answering' : 'live');
  }
  scheduleRender();
  if (S.session && gen === S.liveGen) S.pollTimer = setTimeout(() => poll(gen), POLL_MS);
}

function noteLeader(m) {
  const leader = m.leader === undefined ? null : m.leader;
  if (S.lastLeader !== undefined && leader !== null && leader !== S.lastLeader) {
    const change = { at: Date.now(), from: S.lastLeader, to: leader, term: m.term };
    S.leaderChanges.push(change);
    saveLeaderChanges();
    S.events.push({
      local: true, cursor: '', revision: Infinity, seq: 0, at: change.at, kind: 'leader', resource: 'Cluster',
      key: `member ${leader}`, text: `leader changed: ${change.from === null ? 'none' : `member ${change.from}`} → member ${leader} (term ${m.term})`,
    });
    toast(`New leader: member ${leader} (term ${m.term})`);
  }
  if (leader !== null) S.lastLeader = leader;
}
function loadLeaderChanges() {
  try { S.leaderChanges = JSON.parse(sessionStorage.getItem('orion-leader-changes') || '[]'); } catch { S.leaderChanges = []; }
}
function saveLeaderChanges() {
  S.leaderChanges = S.leaderChanges.filter((c) => Date.now() - c.at < HOUR_MS);
  sessionStorage.setItem('orion-leader-changes', JSON.stringify(S.leaderChanges));
}

// ------------------------------------------------------------------ derived views

function replicaState(id) {
  const rep = S.observed[id];
  if (rep) return rep.state;
  const r = S.replicas.get(id);
  if (r) {
    const n = S.nodes.get(r.node);
    if (n && n.status === 'down') return 'down';
  }
  return 'pending';
}

// Replicas by service and by node, and the rows derived from them: rebuilt once
// per change of the lists (S.version), not once per page or per row.
const derived = { version: -1, byService: new Map(), byNode: new Map(), services: null, nodes: null };
function index() {
  if (derived.version === S.version) return derived;
  derived.version = S.version;
  derived.byService = new Map();
  derived.byNode = new Map();
  for (const r of S.replicas.values()) {
    if (!derived.byService.has(r.service)) derived.byService.set(r.service, []);
    derived.byService.get(r.service).push(r);
    if (!derived.byNode.has(r.node)) derived.byNode.set(r.node, []);
    derived.byNode.get(r.node).push(r);
  }
  derived.services = null;
  derived.nodes = null;
  return derived;
}
const replicasOf = (service) => index().byService.get(service) || [];
const collator = new Intl.Collator(undefined, { numeric: true });

function serviceRows() {
  const d = index();
  if (!d.services) d.services = computeServiceRows();
  return d.services;
}

function computeServiceRows() {
  const rows = [];
  const unplacedBy = new Map();
  for (const u of S.unplaced) unplacedBy.set(u.service, (unplacedBy.get(u.service) || 0) + u.count);
  for (const [name, svc] of S.services) {
    const reps = replicasOf(name);
    let running = 0; let healthy = 0; let restarts = 0; let failed = 0;
    for (const r of reps) {
      const id = `${r.service}-${r.ordinal}`;
      const st = replicaState(id);
      if (st === 'running' || st === 'healthy') running++;
      if (st === 'healthy' || (st === 'running' && !svc.spec.health)) healthy++;
      if (st === 'failed' || st === 'exited' || st === 'down' || st === 'unhealthy') failed++;
      restarts += (S.observed[id] && S.observed[id].restarts) || 0;
    }
    const unplaced = unplacedBy.get(name) || 0;
    let state = 'running';
    if (failed || unplaced) state = running ? 'degraded' : 'failed';
    else if (running < svc.spec.replicas) state = 'pending';
    rows.push({ name, svc, desired: svc.spec.replicas, placed: reps.length, running, healthy, restarts, state, unplaced });
  }
  return rows;
}

function nodeRows() {
  const d = index();
  if (!d.nodes) d.nodes = computeNodeRows(d);
  return d.nodes;
}

function computeNodeRows(d) {
  return [...S.nodes.values()].map((n) => {
    const reps = d.byNode.get(n.name) || [];
    const used = reps.reduce((a, r) => ({ cpu: a.cpu + r.resources.cpu_millis, mem: a.mem + r.resources.memory_bytes }), { cpu: 0, mem: 0 });
    const u = S.usage[n.name];
    const state = n.status === 'down' ? 'down' : n.draining ? 'draining' : n.cordoned ? 'cordoned' : 'ready';
    return { n, name: n.name, reps, used, usage: u, state };
  });
}

// ------------------------------------------------------------------ tables

// A sortable, filterable table whose header and filter stay put while rows change
// (no layout jumps, no lost focus). columns: [{key, label, value(row), cell(row)}].
// Long tables show their first ROWS_SHOWN rows (of the filtered, sorted rows) and
// a button for more: a browser lays out a 1,000-row table far slower than 200.
const ROWS_SHOWN = 200;
function table(id, columns, opts = {}) {
  const filter = h('input', { type: 'search', placeholder: 'Filter…', 'aria-label': `Filter ${opts.label || id}`, id: `${id}-filter` });
  const count = h('span', { class: 'count' });
  const tbody = h('tbody');
  const sort = { key: opts.sortKey || columns[0].key, dir: opts.sortDir || 1 };
  const ths = columns.map((c) => {
    const th = h('th', { scope: 'col', 'aria-sort': 'none', dataset: { key: c.key } },
      h('button', { type: 'button', onclick: () => { sort.dir = sort.key === c.key ? -sort.dir : 1; sort.key = c.key; draw(); } }, c.label));
    return th;
  });
  const el = h('div', { class: 'table', id },
    h('div', { class: 'table-tools' }, filter, count, opts.tools),
    h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ths)), tbody)));
  let rows = [];
  let drawn = new Map();
  let limit = ROWS_SHOWN;
  const moreButton = h('button', { type: 'button', class: 'ghost', dataset: { more: id }, onclick: () => { limit += ROWS_SHOWN; draw(); } }, '');
  const moreRow = h('tr', { class: 'more' }, h('td', { colspan: columns.length }, h('span', { class: 'muted' }), ' ', moreButton));
  filter.addEventListener('input', () => draw());
  function text(row) {
    return columns.map((c) => String(c.value(row) ?? '')).join(' ').toLowerCase();
  }
  function draw() {
    const q = filter.value.trim().toLowerCase();
    const col = columns.find((c) => c.key === sort.key) || columns[0];
    const shown = rows.filter((r) => !q || text(r).includes(q));
    shown.sort((a, b) => {
      const x = col.value(a); const y = col.value(b);
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : collator.compare(String(x ?? ''), String(y ?? ''));
      return c * sort.dir;
    });
    for (const th of ths) th.setAttribute('aria-sort', th.dataset.key === sort.key ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    // A row whose values did not change keeps its element (and any focus or
    // click on it); only changed rows are built again, and the body is touched
    // only when the rows shown or their order changed.
    const next = new Map();
    const trs = shown.slice(0, limit).map((r, i) => {
      const key = opts.rowKey ? opts.rowKey(r) : String(i);
      const sig = JSON.stringify(columns.map((c) => c.value(r)));
      const old = drawn.get(key);
      const tr = old && old.sig === sig ? old.tr : h('tr', { dataset: { key } },
        columns.map((c) => h('td', { class: c.wrap ? 'wrap' : null, dataset: { col: c.key } }, c.cell ? c.cell(r) : c.value(r))));
      next.set(key, { sig, tr });
      return tr;
    });
    drawn = next;
    if (shown.length > limit) {
      moreRow.firstChild.firstChild.textContent = `Showing ${limit} of ${shown.length}.`;
      moreButton.textContent = `Show ${Math.min(ROWS_SHOWN, shown.length - limit)} more`;
      trs.push(moreRow);
    }
    if (!trs.length) trs.push(h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, rows.length ? 'Nothing matches the filter.' : (opts.empty || 'Nothing yet.'))));
    const kids = tbody.children;
    if (kids.length !== trs.length || trs.some((tr, i) => kids[i] !== tr)) tbody.replaceChildren(...trs);
    count.textContent = q ? `${shown.length} of ${rows.length}` : `${rows.length}`;
  }
  return { el, update(r) { rows = r; draw(); } };
}

// ------------------------------------------------------------------ pages

const PAGES = {};
let current = null; // { name, arg, update() }

function route() {
  if (!S.session) return;
  const [, name = 'overview', ...rest] = location.hash.replace(/^#/, '').split('/');
  const arg = rest.map(decodeURIComponent).join('/');
  const page = PAGES[name] ? name : 'overview';
  if (current && current.name === page && current.arg === arg) return;
  if (current && current.leave) current.leave();
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  S.page = page;
  const built = PAGES[page](arg);
  current = { name: page, arg, ...built };
  $('#page').replaceChildren(built.el);
  document.title = `${built.title} · Orion`;
  current.update();
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}
function render() {
  if (!S.session) return;
  const hl = $('#hdr-leader');
  const m = S.members;
  if (m && m.leader !== null && m.leader !== undefined) {
    hl.textContent = `leader: member ${m.leader} · term ${m.term}`;
    hl.dataset.leader = String(m.leader);
  } else {
    hl.textContent = 'no leader';
    delete hl.dataset.leader;
  }
  if (current) current.update();
}

function card(label, id) {
  return h('div', { class: 'card', id: `card-${id}` }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, '—'), h('div', { class: 'sub' }, ''));
}
function setCard(id, value, sub) {
  const c = document.getElementById(`card-${id}`);
  if (!c) return;
  c.querySelector('.value').replaceChildren(value instanceof Node ? value : document.createTextNode(String(value)));
  c.querySelector('.sub').textContent = sub || '';
}

function membersTable() {
  return table('members', [
    { key: 'id', label: 'Member', value: (m) => m.id },
    { key: 'state', label: 'State', value: (m) => memberState(m), cell: (m) => badge(memberState(m)) },
    { key: 'role', label: 'Role', value: (m) => m.role },
    { key: 'api', label: 'API address', value: (m) => m.api_addr },
    { key: 'matched', label: 'Matched index', value: (m) => m.matched_index ?? '' },
    { key: 'lag', label: 'Lag', value: (m) => m.lag ?? '' },
    { key: 'contact', label: 'Last contact', value: (m) => m.last_contact_ms ?? -1, cell: (m) => (m.is_leader ? '—' : ago(m.last_contact_ms)) },
  ], { label: 'members', rowKey: (m) => String(m.id) });
}
function memberState(m) {
  if (m.is_leader) return 'leader';
  if (m.reachable === false) return 'unreachable';
  return m.role === 'learner' ? 'learner' : 'follower';
}

function eventsTable(id, opts = {}) {
  return table(id, [
    { key: 'revision', label: 'Revision', value: (e) => (e.local ? Number.MAX_SAFE_INTEGER : e.revision * 10000 + e.seq), cell: (e) => (e.local ? clock(e.at) : e.cursor) },
    { key: 'resource', label: 'Kind', value: (e) => e.resource },
    { key: 'kind', label: 'Change', value: (e) => e.kind, cell: (e) => (e.kind === 'leader' ? badge('leader') : e.kind) },
    { key: 'key', label: 'Object', value: (e) => e.key },
    { key: 'text', label: 'What', value: (e) => e.text, wrap: true },
  ], { label: 'events', sortKey: 'revision', sortDir: -1, empty: 'No events yet.', rowKey: (e) => e.cursor || `local-${e.at}`, ...opts });
}

PAGES.overview = () => {
  const members = membersTable();
  const events = eventsTable('recent-events');
  const changes = h('ol', { id: 'leader-changes', class: 'muted' });
  const el = h('div', {},
    h('h1', {}, 'Overview'),
    h('div', { class: 'grid' },
      card('Health', 'health'), card('Leader', 'leader'), card('Term', 'term'), card('Commit index', 'commit'),
      card('Applied here', 'applied'), card('Nodes', 'nodes'), card('Services', 'services'), card('Replicas', 'replicas')),
    h('div', { class: 'panel' }, h('h2', {}, 'Control plane members'), members.el),
    h('div', { class: 'cols' },
      h('div', { class: 'panel' }, h('h2', {}, 'Recent events'), events.el),
      h('div', { class: 'panel' }, h('h2', {}, 'Leader changes in the last hour'), h('p', { class: 'muted' }, 'As this page saw them.'), changes)));
  return {
    el,
    title: 'Overview',
    update() {
      const m = S.members; const st = S.status;
      const leader = m && m.members.find((x) => x.is_leader);
      const unreachable = m ? m.members.filter((x) => x.reachable === false).length : 0;
      const nodes = nodeRows(); const svcs = serviceRows();
      const bad = svcs.filter((s) => s.state === 'failed' || s.state === 'degraded').length + nodes.filter((n) => n.state === 'down').length;
      const health = !m || !leader ? 'down' : unreachable || bad ? 'degraded' : 'healthy';
      setCard('health', badge(health), m ? `${m.members.length} members, ${unreachable} unreachable` : 'no answer from the cluster');
      setCard('leader', leader ? `member ${leader.id}` : 'none', leader ? leader.api_addr : '');
      setCard('term', m ? m.term : '—', st ? `this peer (member ${st.id}) is ${st.state}` : '');
      setCard('commit', m ? m.last_log_index : '—', 'leader\'s last log index');
      setCard('applied', st ? st.last_applied : '—', st ? `member ${st.id}` : '');
      const byState = (rows) => Object.entries(rows.reduce((a, r) => { a[r.state] = (a[r.state] || 0) + 1; return a; }, {})).map(([k, v]) => `${v} ${k}`).join(', ');
      setCard('nodes', nodes.length, byState(nodes));
      setCard('services', svcs.length, byState(svcs));
      const reps = [...S.replicas.keys()].map(replicaState);
      setCard('replicas', reps.length, byState(reps.map((state) => ({ state }))));
      members.update(m ? m.members : []);
      events.update(S.events.slice(-20));
      const recent = S.leaderChanges.filter((c) => Date.now() - c.at < HOUR_MS);
      changes.replaceChildren(...(recent.length ? recent.map((c) => h('li', {}, `${clock(c.at)}: member ${c.from ?? 'none'} → member ${c.to} (term ${c.term})`)) : [h('li', {}, 'None.')]));
    },
  };
};

PAGES.nodes = () => {
  const t = table('nodes', [
    { key: 'name', label: 'Node', value: (r) => r.name },
    { key: 'state', label: 'Status', value: (r) => r.state, cell: (r) => badge(r.state) },
    { key: 'labels', label: 'Labels', value: (r) => Object.entries(r.n.labels).map(([k, v]) => `${k}=${v}`).join(' '), cell: (r) => Object.entries(r.n.labels).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`)), wrap: true },
    { key: 'cpu', label: 'CPU reserved', value: (r) => r.used.cpu / Math.max(1, r.n.capacity.cpu_millis), cell: (r) => usageCell(r.used.cpu, r.n.capacity.cpu_millis, cores) },
    { key: 'mem', label: 'Memory reserved', value: (r) => r.used.mem / Math.max(1, r.n.capacity.memory_bytes), cell: (r) => usageCell(r.used.mem, r.n.capacity.memory_bytes, bytes) },
    { key: 'load', label: 'Load (live)', value: (r) => (r.usage ? r.usage.load_milli : -1), cell: (r) => (r.usage ? (r.usage.load_milli / 1000).toFixed(2) : '—') },
    { key: 'memused', label: 'Memory in use (live)', value: (r) => (r.usage ? r.usage.memory_total_bytes - r.usage.memory_available_bytes : -1), cell: (r) => (r.usage ? `${bytes(r.usage.memory_total_bytes - r.usage.memory_available_bytes)} of ${bytes(r.usage.memory_total_bytes)}` : '—') },
    { key: 'replicas', label: 'Replicas', value: (r) => r.reps.length, cell: (r) => (r.reps.length ? r.reps.map((x) => h('a', { class: 'tag', href: `#/services/${encodeURIComponent(x.service)}` }, `${x.service}-${x.ordinal}`)) : '—'), wrap: true },
    { key: 'agent', label: 'Heartbeat', value: (r) => (r.n.agent ? (r.usage ? 'live' : 'none') : 'manual'), cell: (r) => (r.n.agent ? (r.usage ? 'agent connected' : 'no heartbeat') : 'registered by hand') },
  ].concat(isAdmin() ? [
    { key: 'actions', label: 'Actions', value: (r) => r.state, cell: nodeActions },
  ] : []), { label: 'nodes', rowKey: (r) => r.name });
  const topo = h('div', { class: 'topology', id: 'topology' });
  let boxesDrawn = new Map();
  const el = h('div', {}, h('h1', {}, 'Nodes'), h('div', { class: 'panel' }, t.el),
    h('div', { class: 'panel' }, h('h2', {}, 'Topology'), h('p', { class: 'muted' }, 'Each node\'s memory, with its replicas packed inside by what they reserve; the hatched part is free.'), topo));
  return {
    el,
    title: 'Nodes',
    update() {
      const rows = nodeRows();
      t.update(rows);
      // A node box is drawn again only when what it shows changed.
      const next = new Map();
      const boxes = [...rows].sort((a, b) => collator.compare(a.name, b.name)).map((r) => {
        const sig = JSON.stringify([r.state, r.n.capacity, r.used, r.reps.map((x) => [x.service, x.ordinal, x.resources, replicaState(`${x.service}-${x.ordinal}`)])]);
        const old = boxesDrawn.get(r.name);
        const el = old && old.sig === sig ? old.el : topologyNode(r);
        next.set(r.name, { sig, el });
        return el;
      });
      boxesDrawn = next;
      if (!rows.length) boxes.push(h('p', { class: 'muted' }, 'No nodes yet: start an agent with `orion agent`.'));
      const kids = topo.children;
      if (kids.length !== boxes.length || boxes.some((b, i) => kids[i] !== b)) topo.replaceChildren(...boxes);
    },
  };
};

// Admin actions on a node: drain or cordon a schedulable one, uncordon one that
// is cordoned or draining (which ends the drain).
function nodeActions(r) {
  const button = (action, label) => h('button', { type: 'button', class: 'ghost', dataset: { nodeAction: action, node: r.name }, onclick: () => nodeAction(r.name, action) }, label);
  if (r.n.cordoned || r.n.draining) return button('uncordon', 'Uncordon');
  return h('span', {}, button('drain', 'Drain'), button('cordon', 'Cordon'));
}

const NODE_ACTIONS = {
  drain: ['Drain', 'Its replicas move to other nodes, never more of a service at once than its max_unavailable; the rest move after an hour. The node then stays cordoned.', 'drained: its replicas are moving'],
  cordon: ['Cordon', 'It takes no new replicas; those it runs stay.', 'cordoned'],
  uncordon: ['Uncordon', 'It takes replicas again; a drain in progress stops.', 'uncordoned'],
};

async function nodeAction(name, action) {
  const [verb, text, done] = NODE_ACTIONS[action];
  if (!await confirmAction(`${verb} ${name}?`, text, action === 'drain')) return;
  try {
    await api('POST', `/v1/nodes/${encodeURIComponent(name)}/${action}`, {});
    toast(`${name} ${done}.`);
  } catch (e) { toast(e.message, true); }
}

function usageCell(used, cap, fmt) {
  const pct = cap ? Math.min(100, (100 * used) / cap) : 0;
  return h('div', {}, h('div', { class: 'bar', role: 'img', 'aria-label': `${pct.toFixed(0)}% reserved` }, h('span', { style: { width: `${pct}%` } })), h('span', { class: 'muted' }, `${fmt(used)} of ${fmt(cap)}`));
}

function topologyNode(r) {
  const cap = Math.max(1, r.n.capacity.memory_bytes);
  const cpuCap = Math.max(1, r.n.capacity.cpu_millis);
  const blocks = [...r.reps].sort((a, b) => b.resources.memory_bytes - a.resources.memory_bytes).map((x) => {
    const id = `${x.service}-${x.ordinal}`;
    const st = replicaState(id);
    const [cls] = STATES[st] || ['warn'];
    return h('a', {
      href: `#/services/${encodeURIComponent(x.service)}`,
      class: cls === 'ok' ? '' : cls,
      title: `${id}: ${st}, ${bytes(x.resources.memory_bytes)}, ${cores(x.resources.cpu_millis)}`,
      style: { width: `${(100 * x.resources.memory_bytes) / cap}%` },
      dataset: { replica: id },
    }, id);
  });
  return h('div', { class: `tnode${r.state === 'down' ? ' down' : ''}`, dataset: { node: r.name } },
    h('header', {}, h('strong', {}, r.name), badge(r.state)),
    h('div', { class: 'dim' }, `memory ${bytes(r.used.mem)} / ${bytes(cap)}`),
    h('div', { class: 'pack', role: 'img', 'aria-label': `${r.reps.length} replicas using ${bytes(r.used.mem)} of ${bytes(cap)}` }, blocks),
    h('div', { class: 'dim' }, `cpu ${cores(r.used.cpu)} / ${cores(cpuCap)}`),
    h('div', { class: 'bar' }, h('span', { style: { width: `${Math.min(100, (100 * r.used.cpu) / cpuCap)}%` } })),
    h('div', { class: 'free' }, `free: ${bytes(Math.max(0, cap - r.used.mem))}, ${cores(Math.max(0, cpuCap - r.used.cpu))}`));
}

PAGES.services = () => {
  const t = table('services', [
    { key: 'name', label: 'Service', value: (r) => r.name, cell: (r) => h('a', { href: `#/services/${encodeURIComponent(r.name)}` }, r.name) },
    { key: 'state', label: 'State', value: (r) => r.state, cell: (r) => badge(r.state) },
    { key: 'desired', label: 'Desired', value: (r) => r.desired },
    { key: 'running', label: 'Running', value: (r) => r.running },
    { key: 'healthy', label: 'Healthy', value: (r) => r.healthy },
    { key: 'restarts', label: 'Restarts', value: (r) => r.restarts },
    { key: 'generation', label: 'Generation', value: (r) => r.svc.generation },
    { key: 'unplaced', label: 'Unplaced', value: (r) => r.unplaced },
  ], { label: 'services', rowKey: (r) => r.name, empty: 'No services: `orion apply -f service.yaml`.' });
  const el = h('div', {}, h('h1', {}, 'Services'), h('div', { class: 'panel' }, t.el));
  return { el, title: 'Services', update() { t.update(serviceRows()); } };
};

PAGES.services_detail = null;

function servicePage(name) {
  const replicas = table('replicas', [
    { key: 'id', label: 'Replica', value: (r) => r.id },
    { key: 'state', label: 'State', value: (r) => r.state, cell: (r) => badge(r.state) },
    { key: 'node', label: 'Node', value: (r) => r.node },
    { key: 'restarts', label: 'Restarts', value: (r) => r.restarts },
    { key: 'ports', label: 'Ports', value: (r) => Object.entries(r.ports).map(([k, v]) => `${k}=${v}`).join(' ') },
    { key: 'pid', label: 'PID', value: (r) => r.pid ?? '' },
    { key: 'generation', label: 'Generation', value: (r) => r.generation },
    { key: 'reason', label: 'Reason', value: (r) => r.reason || '', wrap: true },
    { key: 'logs', label: 'Logs', value: (r) => r.id, cell: (r) => (canWrite() ? h('button', { type: 'button', class: 'ghost', dataset: { logs: r.id }, onclick: () => logTail.open(r.id) }, 'Tail') : '—') },
  ].concat(canWrite() ? [
    { key: 'restart', label: 'Restart', value: (r) => r.id, cell: (r) => h('button', { type: 'button', class: 'ghost', dataset: { restart: r.id }, onclick: () => restartReplica(r.id) }, 'Restart') },
  ] : []), { label: 'replicas', rowKey: (r) => r.id });
  const events = eventsTable('service-events');
  const spec = h('pre', { class: 'spec', id: 'spec' });
  const revisions = h('p', { class: 'muted', id: 'revisions' });
  const scaleInput = h('input', { type: 'number', min: '0', max: '1000', id: 'scale-replicas', 'aria-label': 'Replicas' });
  const actions = h('div', { class: 'row', id: 'actions', hidden: !canWrite() },
    h('label', { for: 'scale-replicas' }, 'Replicas'), scaleInput,
    h('button', { type: 'button', id: 'scale', onclick: () => scale(name, scaleInput) }, 'Scale'),
    h('button', { type: 'button', class: 'danger', id: 'delete-service', onclick: () => deleteService(name) }, 'Delete service'));
  const logPanel = logTail.panel();
  const el = h('div', {},
    h('p', {}, h('a', { href: '#/services' }, '← Services')),
    h('h1', {}, 'Service ', h('span', { class: 'mono' }, name), ' ', h('span', { id: 'service-state' })),
    h('div', { class: 'panel' }, revisions, canWrite() ? actions : null),
    h('div', { class: 'panel' }, h('h2', {}, 'Replicas'), replicas.el),
    h('div', { class: 'panel' }, h('h2', {}, 'Log tail'), logPanel),
    h('div', { class: 'cols' },
      h('div', { class: 'panel' }, h('h2', {}, 'Spec'), spec),
      h('div', { class: 'panel' }, h('h2', {}, 'Events'), events.el)));
  let specShown = '';
  return {
    el,
    title: name,
    leave() { logTail.stop(); },
    update() {
      const svc = S.services.get(name);
      const row = serviceRows().find((r) => r.name === name);
      $('#service-state').replaceChildren(svc ? badge(row.state) : badge('unknown'));
      if (!svc) {
        revisions.textContent = 'This service does not exist (any more).';
        return;
      }
      revisions.textContent = `${row.desired} desired, ${row.running} running, ${row.healthy} healthy, ${row.restarts} restarts · generation ${svc.generation} · created at revision ${svc.create_revision}, changed at revision ${svc.mod_revision}`;
      if (document.activeElement !== scaleInput && scaleInput.dataset.generation !== String(svc.generation)) {
        scaleInput.value = svc.spec.replicas;
        scaleInput.dataset.generation = String(svc.generation);
      }
      const text = JSON.stringify(svc.spec, null, 2);
      if (text !== specShown) { spec.textContent = text; specShown = text; }
      const reps = replicasOf(name).map((r) => {
        const id = `${r.service}-${r.ordinal}`;
        const o = S.observed[id] || {};
        return { id, node: r.node, state: replicaState(id), restarts: o.restarts || 0, ports: o.ports || {}, pid: o.pid, generation: r.generation, reason: o.reason };
      });
      replicas.update(reps);
      events.update(S.events.filter((e) => e.key === name || (e.resource === 'Replica' && e.key.startsWith(`${name}-`) && /^\d+$/.test(e.key.slice(name.length + 1)))));
      logTail.offer(reps.map((r) => r.id));
    },
  };
}

async function scale(name, input) {
  const n = Number(input.value);
  if (!Number.isInteger(n) || n < 0 || n > 1000) { toast('Replicas must be a whole number from 0 to 1000.', true); return; }
  if (!await confirmAction(`Scale ${name}?`, `Set ${name} to ${n} replicas.`)) return;
  try {
    const r = await api('POST', `/v1/services/${encodeURIComponent(name)}/scale`, { replicas: n });
    toast(`${name} scaled to ${n} replicas (revision ${r.revision}).`);
  } catch (e) {
    toast(`Scaling ${name} failed: ${e.message}`, true);
  }
}

async function restartReplica(id) {
  if (!await confirmAction(`Restart ${id}?`, `The process of ${id} is stopped (SIGTERM, then SIGKILL after the agent's grace) and started again, whatever its restart policy.`)) return;
  try {
    const r = await api('POST', `/v1/replicas/${encodeURIComponent(id)}/restart`, {});
    toast(`${id} restarted on ${r.node}: pid ${r.pid ?? '—'}, ${r.restarts} restarts.`);
  } catch (e) {
    toast(`Restarting ${id} failed: ${e.message}`, true);
  }
}

async function deleteService(name) {
  if (!await confirmAction(`Delete ${name}?`, `Every replica of ${name} will be stopped and the service removed.`, true)) return;
  try {
    const r = await api('DELETE', `/v1/services/${encodeURIComponent(name)}`);
    toast(`${name} deleted (revision ${r.revision}).`);
    location.hash = '#/services';
  } catch (e) {
    toast(`Deleting ${name} failed: ${e.message}`, true);
  }
}

// The log tail of one replica: a streamed fetch of `?follow=true&records=true`,
// resumed after the last offsets seen when it breaks (a leader change, say).
const logTail = {
  replica: null,
  ctrl: null,
  cursor: null,
  lines: 0,
  gen: 0,
  el: null,
  select: null,
  statusEl: null,
  panel() {
    this.select = h('select', { id: 'log-replica', 'aria-label': 'Replica', onchange: () => this.open(this.select.value) }, h('option', { value: '' }, 'choose a replica'));
    this.statusEl = h('span', { class: 'muted', id: 'log-status', role: 'status' }, canWrite() ? '' : 'Logs need a developer or admin token.');
    this.el = h('pre', { class: 'logs', id: 'log-lines', tabindex: '0', 'aria-label': 'Log lines' });
    return h('div', {}, h('div', { class: 'row' }, this.select, this.statusEl), this.el);
  },
  offer(ids) {
    if (!this.select) return;
    const have = [...this.select.options].map((o) => o.value).filter(Boolean);
    if (have.join() === ids.join()) return;
    const keep = this.select.value;
    this.select.replaceChildren(h('option', { value: '' }, 'choose a replica'), ...ids.map((id) => h('option', { value: id }, id)));
    this.select.value = ids.includes(keep) ? keep : '';
  },
  open(id) {
    this.stop();
    if (!id || !canWrite()) return;
    this.replica = id;
    this.cursor = null;
    this.lines = 0;
    this.el.replaceChildren();
    if (this.select) this.select.value = id;
    this.run(++this.gen);
  },
  stop() {
    this.gen++;
    if (this.ctrl) this.ctrl.abort();
    this.ctrl = null;
  },
  status(t) { if (this.statusEl) this.statusEl.textContent = t; },
  async run(gen) {
    let backoff = 500;
    while (gen === this.gen && S.session) {
      const q = this.cursor ? `follow=true&records=true&stdout_offset=${this.cursor.stdout}&stderr_offset=${this.cursor.stderr}` : 'follow=true&records=true&tail=100';
      this.ctrl = new AbortController();
      try {
        const resp = await fetch(`/v1/replicas/${encodeURIComponent(this.replica)}/logs?${q}`, { credentials: 'same-origin', signal: this.ctrl.signal });
        if (!resp.ok) {
          let msg = `${resp.status}`;
          try { msg = (await resp.json()).error.message; } catch { /* not JSON */ }
          if (resp.status === 401) { sessionEnded(msg); return; }
          throw new Error(msg);
        }
        this.status(`following ${this.replica}`);
        backoff = 500;
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line.trim()) this.record(JSON.parse(line));
          }
        }
        throw new Error('the stream ended');
      } catch (e) {
        if (gen !== this.gen) return;
        this.status(`reconnecting (${e.message})…`);
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  },
  record(rec) {
    this.cursor = this.cursor || { stdout: 0, stderr: 0 };
    this.cursor[rec.stream] = rec.offset;
    if (rec.kind === 'mark') return;
    const atBottom = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - 4;
    this.el.append(h('span', { class: rec.kind === 'notice' ? 'notice' : rec.stream }, `${rec.text}\n`));
    this.lines++;
    while (this.lines > MAX_LOG_LINES && this.el.firstChild) { this.el.firstChild.remove(); this.lines--; }
    if (atBottom) this.el.scrollTop = this.el.scrollHeight;
  },
};

PAGES.variables = () => {
  const t = table('variables', [
    { key: 'path', label: 'Path', value: (v) => v.path },
    { key: 'value', label: 'Value', value: (v) => (v.secret ? '' : v.value), cell: (v) => (v.secret ? h('span', { class: 'muted' }, '•••• secret (hidden)') : h('span', { class: 'mono' }, v.value.length > 120 ? `${v.value.slice(0, 120)}…` : v.value)), wrap: true },
    { key: 'version', label: 'Version', value: (v) => v.version },
    { key: 'mod', label: 'Changed at revision', value: (v) => v.mod_revision },
  ], { label: 'variables', rowKey: (v) => v.path, empty: 'No variables.' });
  const el = h('div', {}, h('h1', {}, 'Variables'), h('div', { class: 'panel' }, t.el));
  return { el, title: 'Variables', update() { t.update([...S.variables.values()]); } };
};

PAGES.events = () => {
  const kinds = h('select', { id: 'events-kind', 'aria-label': 'Kind of object' },
    ['all kinds', 'Service', 'Replica', 'Node', 'Variable', 'Cluster'].map((k) => h('option', { value: k === 'all kinds' ? '' : k }, k)));
  let paused = false;
  const pause = h('button', { type: 'button', class: 'ghost', id: 'events-pause', onclick: () => { paused = !paused; pause.textContent = paused ? 'Resume' : 'Pause'; if (!paused) draw(); } }, 'Pause');
  const t = eventsTable('events', { tools: [kinds, pause] });
  const draw = () => t.update(S.events.filter((e) => !kinds.value || e.resource === kinds.value));
  kinds.addEventListener('change', draw);
  const el = h('div', {}, h('h1', {}, 'Events'), h('p', { class: 'muted' }, 'Every change as the watch stream delivers it, and the leader changes this page saw.'), h('div', { class: 'panel' }, t.el));
  return { el, title: 'Events', update() { if (!paused) draw(); } };
};

PAGES.tokens = () => {
  if (!isAdmin()) return { el: h('p', {}, 'Tokens are for admins.'), title: 'Tokens', update() {} };
  const t = table('tokens', [
    { key: 'id', label: 'Token id', value: (k) => k.id, cell: (k) => h('span', { class: 'mono' }, k.id) },
    { key: 'role', label: 'Role', value: (k) => k.role },
    { key: 'state', label: 'State', value: (k) => tokenState(k), cell: (k) => badge(tokenState(k)) },
    { key: 'description', label: 'Description', value: (k) => k.description, wrap: true },
    { key: 'expires', label: 'Expires', value: (k) => k.expires_at, cell: (k) => new Date(k.expires_at * 1000).toLocaleString() },
    { key: 'revoke', label: 'Revoke', value: (k) => k.id, cell: (k) => (tokenState(k) === 'running' && k.id !== S.session.token_id ? h('button', { type: 'button', class: 'danger', onclick: () => revoke(k) }, 'Revoke') : '—') },
  ], { label: 'tokens', rowKey: (k) => k.id });
  const el = h('div', {}, h('h1', {}, 'Tokens'), tokenForm(), h('div', { class: 'panel' }, t.el));
  api('GET', '/v1/tokens').then((r) => { S.tokens = r.tokens; scheduleRender(); }).catch((e) => toast(e.message, true));
  return { el, title: 'Tokens', update() { t.update(S.tokens); } };
};
// The admin's form to mint a token; the new token is shown once, with a copy button.
function tokenForm() {
  const role = h('select', { id: 'token-role', 'aria-label': 'Role' }, ['readonly', 'developer', 'admin'].map((r) => h('option', { value: r }, r)));
  const ttl = h('select', { id: 'token-ttl', 'aria-label': 'Lifetime' },
    [['1 hour', 3600], ['1 day', 86400], ['7 days', 7 * 86400], ['30 days', 30 * 86400], ['1 year', 365 * 86400]]
      .map(([label, secs]) => h('option', { value: String(secs), selected: secs === 86400 }, label)));
  const description = h('input', { type: 'text', id: 'token-description', maxlength: '200', placeholder: 'What it is for', 'aria-label': 'Description' });
  const result = h('div', { id: 'token-created', role: 'status', hidden: true });
  const form = h('form', { class: 'row', id: 'token-form' },
    h('label', { for: 'token-role' }, 'Role'), role,
    h('label', { for: 'token-ttl' }, 'Lifetime'), ttl,
    h('label', { for: 'token-description' }, 'Description'), description,
    h('button', { type: 'submit', id: 'token-create' }, 'Create token'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('POST', '/v1/tokens', { role: role.value, ttl_seconds: Number(ttl.value), description: description.value });
      const value = h('input', { type: 'text', id: 'token-value', class: 'mono', readonly: true, value: r.token, 'aria-label': 'The new token' });
      const copy = h('button', { type: 'button', id: 'token-copy', class: 'ghost' }, 'Copy');
      copy.addEventListener('click', async () => {
        value.select();
        try { await navigator.clipboard.writeText(r.token); copy.textContent = 'Copied'; } catch { copy.textContent = 'Select and copy by hand'; }
      });
      result.replaceChildren(
        h('p', {}, h('strong', {}, `New ${r.record.role} token ${r.record.id}`), ` — expires ${new Date(r.record.expires_at * 1000).toLocaleString()}.`),
        h('p', { class: 'warning', id: 'token-warning' }, '⚠ Copy it now: it is not shown again. Orion keeps only its record.'),
        h('div', { class: 'row' }, value, copy),
        h('button', { type: 'button', class: 'ghost', id: 'token-done', onclick: () => { result.hidden = true; result.replaceChildren(); } }, 'Done'));
      result.hidden = false;
      description.value = '';
      value.focus();
      value.select();
      const list = await api('GET', '/v1/tokens');
      S.tokens = list.tokens;
      scheduleRender();
    } catch (e) {
      toast(`Creating a token failed: ${e.message}`, true);
    }
  });
  return h('div', { class: 'panel' }, h('h2', {}, 'New token'), form, result);
}

function tokenState(k) {
  if (k.revoked) return 'stopped';
  if (k.expires_at * 1000 < Date.now()) return 'exited';
  return 'running';
}
async function revoke(k) {
  if (!await confirmAction('Revoke token?', `Token ${k.id} (${k.role}) stops working on every peer, and its browser sessions end.`, true)) return;
  try {
    await api('DELETE', `/v1/tokens/${encodeURIComponent(k.id)}`);
    toast(`Token ${k.id} revoked.`);
    const r = await api('GET', '/v1/tokens');
    S.tokens = r.tokens;
    scheduleRender();
  } catch (e) {
    toast(`Revoking failed: ${e.message}`, true);
  }
}

// `#/services/NAME` is the service page.
const listServices = PAGES.services;
PAGES.services = (arg) => (arg ? servicePage(arg) : listServices());
delete PAGES.services_detail;

document.addEventListener('DOMContentLoaded', boot);
