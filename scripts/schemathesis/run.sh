#!/usr/bin/env bash
# Runs schemathesis (from PyPI, pinned) against a running Orion peer.
#
#   scripts/schemathesis/run.sh URL CA_PEM TOKEN SECONDS REPORT_DIR
#
# Installs schemathesis into a venv (ORION_VENV, /var/tmp/orion-venv by default)
# the first time; the test `cli/tests/api_contract.rs` calls this, so `make test`
# installs what it runs. ORION_PROTECTED_IDS (peer ids and token ids, comma
# separated) and ORION_PROTECTED_PREFIX name what the hooks keep the run from
# destroying; see hooks.py.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="${ORION_VENV:-/var/tmp/orion-venv}"
url="$1"; ca="$2"; token="$3"; seconds="$4"; report="$5"

"$here/install.sh"
mkdir -p "$report"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export SCHEMATHESIS_HOOKS=hooks
export REQUESTS_CA_BUNDLE="$ca"
cd "$report"
# The stateful phase is left out: it chains calls through values it reads from
# answers (member and token ids), which the hooks could not vet in advance.
exec "$venv/bin/st" --config-file "$here/schemathesis.toml" run "$url/v1/openapi.json" \
    --url "$url" \
    --tls-verify "$ca" \
    -H "Authorization: Bearer $token" \
    --checks all \
    --max-time "$seconds" \
    --request-timeout 20 \
    --workers 1 \
    --phases examples,coverage,fuzzing \
    --generation-database none \
    --suppress-health-check filter_too_much \
    --no-color \
    --report junit \
    --report-dir "$report"
