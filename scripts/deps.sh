#!/usr/bin/env bash
# Installs what scripts/deps.txt lists and this machine lacks, then checks that every
# listed file is really there. Debian only; needs root (or sudo) to install.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/deps-lib.sh
source "$here/deps-lib.sh"

missing=()
while read -r pkg check _why; do
    present "$check" || missing+=("$pkg")
done < <(entries "$here/deps.txt")

if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "installing ${missing[*]}"
    sudo_if_needed apt-get update -qq
    DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

failed=0
while read -r pkg check why; do
    if ! present "$check"; then
        echo "error: $check is still missing after installing $pkg ($why)" >&2
        failed=1
    fi
done < <(entries "$here/deps.txt")
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
exit "$failed"
