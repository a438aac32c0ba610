#!/usr/bin/env bash
# Installs schemathesis (pinned, from PyPI) into a venv: ORION_VENV, by default
# /var/tmp/orion-venv. `make test` runs it before the tests, and run.sh again (a
# no-op once installed), so the contract test never depends on a hand install.
set -euo pipefail

VERSION=4.32.5
venv="${ORION_VENV:-/var/tmp/orion-venv}"

installed() { [ -x "$venv/bin/st" ] && "$venv/bin/st" --version 2>/dev/null | grep -q "$VERSION"; }

installed && exit 0
# Two tests may install at the same time: one at a time.
exec 9>"$venv.lock"
flock 9
if ! installed; then
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi
