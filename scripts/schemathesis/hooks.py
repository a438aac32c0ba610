"""Schemathesis hooks for the Orion contract run (scripts/schemathesis/run.sh).

The run holds an admin token, so generated input reaches destructive calls. These
hooks keep the cluster under test alive while every operation is still exercised:

* DELETE /v1/cluster/members/{id} never names a real peer (ORION_PROTECTED_IDS):
  any other id is exercised (404 unknown member, 400 not a number).
* DELETE /v1/tokens/{id} never names an existing token (the admin token the run
  uses among them): ids are random secrets, and the run could otherwise learn one
  from GET /v1/tokens.
* PUT and DELETE never touch variables under ORION_PROTECTED_PREFIX: the values the
  test wrote and checks afterwards.
* POST /v1/cluster/members: a valid body would add an unreachable learner at a
  made-up address, which the leader then waits up to 300 s to catch up. Valid
  cases are sent as a real member joining again with its own addresses
  (ORION_MEMBERS), which the server accepts at once (200), so the success path
  is exercised; invalid bodies are generated and sent as they are, except those
  that would pass validation anyway.
* GET /v1/watch gets timeout_seconds=1 unless the case is about that parameter,
  so the event stream ends instead of running until the request times out.
* Rules across two parameters, which OpenAPI cannot state, hold in valid cases:
  PUT /v1/nodes/{name} names the node of the path in its body, and the logs'
  stdout_offset and stderr_offset come together.

A guarded call that is generated anyway is refused in `before_call` with an error,
so a hole in these rules fails the run instead of breaking the cluster quietly.
"""

import json
import os

import schemathesis

PROTECTED_IDS = {i for i in os.environ.get("ORION_PROTECTED_IDS", "").split(",") if i}
PROTECTED_PREFIX = os.environ.get("ORION_PROTECTED_PREFIX", "")
MEMBERS = json.loads(os.environ.get("ORION_MEMBERS", "[]"))


def _path(case):
    return case.operation.path


def _method(case):
    return case.operation.method.upper()


def _addr_ok(addr):
    """The server's rule: `host:port`, host not empty, port a u16 (Rust's parse)."""
    if not isinstance(addr, str) or ":" not in addr:
        return False
    host, port = addr.rsplit(":", 1)
    digits = port[1:] if port.startswith("+") else port
    return bool(host) and digits.isascii() and digits.isdigit() and int(digits) <= 65535


def _joins(body):
    """Whether POST /v1/cluster/members would get past validation to the leader.

    Mirrors the server: the id is a positive whole number (the server reads 29.0
    as 29), and both addresses pass `_addr_ok`."""
    if not isinstance(body, dict):
        return False
    peer_id = body.get("id")
    if isinstance(peer_id, bool) or not isinstance(peer_id, (int, float)):
        return False
    if peer_id != int(peer_id) or peer_id <= 0:
        return False
    return all(_addr_ok(body.get(key)) for key in ("api_addr", "peer_addr"))


def _dangerous(case):
    """Why this case must not be sent, or None."""
    path, method = _path(case), _method(case)
    params = case.path_parameters or {}
    if method == "DELETE" and path == "/v1/cluster/members/{id}":
        if str(params.get("id", "")).lstrip("0") in {i.lstrip("0") for i in PROTECTED_IDS}:
            return "removes a peer of the cluster under test"
    if method == "DELETE" and path == "/v1/tokens/{id}":
        if str(params.get("id", "")) in PROTECTED_IDS:
            return "revokes a token of the test"
    if method in ("PUT", "DELETE") and path == "/v1/variables/{path}" and PROTECTED_PREFIX:
        if str(params.get("path", "")).startswith(PROTECTED_PREFIX):
            return "changes a variable the test checks afterwards"
    if method == "POST" and path == "/v1/cluster/members" and _joins(case.body):
        known = [m for m in MEMBERS if m.get("id") == int(case.body.get("id"))]
        same = known and all(case.body.get(k) == known[0].get(k) for k in ("api_addr", "peer_addr"))
        if not same:
            return "adds an unreachable learner"
    return None


def _positive(case):
    return case.meta is not None and case.meta.generation.mode.is_positive


@schemathesis.hook
def filter_case(context, case):
    if _positive(case) and _method(case) == "POST" and _path(case) == "/v1/cluster/members":
        return True  # map_case makes it a real member joining again
    return _dangerous(case) is None


@schemathesis.hook
def map_case(context, case):
    path, method = _path(case), _method(case)
    positive = _positive(case)
    if method == "POST" and path == "/v1/cluster/members" and positive and MEMBERS:
        if isinstance(case.body, dict) and _joins(case.body):
            member = MEMBERS[abs(hash(str(case.body.get("id")))) % len(MEMBERS)]
            case.body = dict(member)
    if method == "GET" and path == "/v1/watch":
        query = dict(case.query or {})
        limit = query.get("timeout_seconds")
        if limit is None or (positive and isinstance(limit, int) and limit > 1):
            query["timeout_seconds"] = 1
            case.query = query
    if method == "GET" and path == "/v1/replicas/{id}/logs" and positive:
        query = dict(case.query or {})
        offsets = [k for k in ("stdout_offset", "stderr_offset") if k in query]
        if len(offsets) == 1:
            query["stderr_offset" if offsets[0] == "stdout_offset" else "stdout_offset"] = 0
            case.query = query
    if method == "PUT" and path == "/v1/nodes/{name}" and positive:
        if isinstance(case.body, dict) and case.path_parameters:
            case.body["name"] = case.path_parameters.get("name")
    return case


@schemathesis.hook
def before_call(context, case, kwargs):
    why = _dangerous(case)
    if why is not None:
        raise RuntimeError(f"refusing to send {_method(case)} {_path(case)}: it {why}")
