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
* POST /v1/cluster/members gets only bodies the server refuses before it changes
  the membership (id 0, an address that is not host:port): a body that passes
  would add an unreachable learner at a made-up address, which the leader then
  waits up to 300 s to catch up. Invalid bodies are still generated and sent.
* GET /v1/watch gets timeout_seconds=1 unless the case is about that parameter,
  so the event stream ends instead of running until the request times out.
* PUT /v1/nodes/{name}: a valid body names the node of the path (a rule across
  two parameters that OpenAPI cannot state).

A guarded call that is generated anyway is refused in `before_call` with an error,
so a hole in these rules fails the run instead of breaking the cluster quietly.
"""

import os
import re

import schemathesis

PROTECTED_IDS = {i for i in os.environ.get("ORION_PROTECTED_IDS", "").split(",") if i}
PROTECTED_PREFIX = os.environ.get("ORION_PROTECTED_PREFIX", "")
HOST_PORT = re.compile(r"^.+:[0-9]{1,5}$")


def _path(case):
    return case.operation.path


def _method(case):
    return case.operation.method.upper()


def _joins(body):
    """Whether POST /v1/cluster/members would get past validation to the leader."""
    if not isinstance(body, dict):
        return False
    peer_id = body.get("id")
    if not isinstance(peer_id, int) or isinstance(peer_id, bool) or peer_id <= 0:
        return False
    for key in ("api_addr", "peer_addr"):
        addr = body.get(key)
        if not isinstance(addr, str) or not HOST_PORT.match(addr):
            return False
        host, port = addr.rsplit(":", 1)
        if not host or int(port) > 65535:
            return False
    return True


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
        return "adds an unreachable learner"
    return None


@schemathesis.hook
def filter_case(context, case):
    return _dangerous(case) is None


@schemathesis.hook
def map_case(context, case):
    path, method = _path(case), _method(case)
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if method == "GET" and path == "/v1/watch":
        query = dict(case.query or {})
        limit = query.get("timeout_seconds")
        if limit is None or (positive and isinstance(limit, int) and limit > 1):
            query["timeout_seconds"] = 1
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
