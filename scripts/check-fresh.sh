#!/usr/bin/env bash
# Proves that a fresh Debian machine gets everything the build and the tests use from
# `make` itself, not from what this machine happened to have:
#  1. every package in scripts/deps.txt exists in Debian, and its file is here now
#     (run after scripts/deps.sh);
#  2. every program the code starts (Command::new, the test harness's commands, the
#     commands of replicas in tests and examples) is listed in deps.txt or comes from
#     a package Debian marks Essential (always installed);
#  3. `make dev` and `make test` both run the deps step.
# Any gap fails with the name of what is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=scripts/deps-lib.sh
source "$here/deps-lib.sh"
fail=0
err() { echo "check-fresh: $*" >&2; fail=1; }

# 1. The list itself.
listed_cmds=()
while read -r pkg check why; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1 && ! apt-cache show "$pkg" >/dev/null 2>&1; then
        err "deps.txt names package '$pkg', which Debian does not have"
    fi
    if ! present "$check"; then
        err "$check (package $pkg: $why) is missing: scripts/deps.sh did not install it"
    fi
    [[ "$check" == cmd:* ]] && listed_cmds+=("${check#cmd:}")
done < <(entries "$here/deps.txt")

# Names in spawn positions that are deliberately not programs (a test of a missing command).
NOT_PROGRAMS='orion-no-such-command'

# 2. Programs the code starts. The patterns are the ways this workspace spawns
# processes; a new way of spawning must be added here.
mapfile -t programs < <(
    cd "$root"
    {
        # Command::new("prog") and the jepsen harness's in_ns(ns, "prog", ..) and run("prog", ..)
        grep -rhoE --include='*.rs' --exclude-dir=target --exclude-dir=.git \
            'Command::new\("[^"]+"\)|in_ns\([^,()]+, "[a-z0-9_.-]+"' . \
            | grep -oE '"[^"]+"\)?$' | tr -d ')'
        grep -rhoE --include='*.rs' '\brun\("[a-z0-9_.-]+",' jepsen/src | grep -oE '"[^"]+"'
        # orion-launch runs a process under a caller's wrapper: Wrapper::prefix(["prog", ..])
        grep -rhoE --include='*.rs' --exclude-dir=target --exclude-dir=.git \
            '\.prefix\(\[\s*"[a-z0-9_.-]+"' . | grep -oE '"[^"]+"'
        # Command::new(CONST) with `const CONST: &str = "/path/prog"` in the same file.
        grep -rlE --include='*.rs' --exclude-dir=target 'Command::new\([A-Z_]+\)' . | while read -r f; do
            grep -oE 'Command::new\([A-Z_]+\)' "$f" | grep -oE '[A-Z_]+' | sort -u | while read -r c; do
                grep -oE "const $c: &str = \"[^\"]+\"" "$f" | grep -oE '"[^"]+"' | tr -d '"' \
                    | xargs -r -n1 basename || true
            done
        done
        # Replica commands in tests, specs and examples, and what tests exec in a replica:
        # the first word of the command list.
        grep -rhoE --include='*.rs' --include='*.yaml' --include='*.yml' --include='*.json' \
            --exclude-dir=target --exclude-dir=.git --exclude-dir=results \
            '(service\(&|command: |"command": |"--"\]\)\s*\.args\()\[\s*"[a-z0-9_.-]+"' . \
            | grep -oE '"[a-z0-9_.-]+"$'
    } | tr -d '"' | sort -u | grep -vxF "$NOT_PROGRAMS"
)

is_listed() {
    local p="$1" c
    for c in "${listed_cmds[@]}"; do [ "$c" = "$p" ] && return 0; done
    return 1
}

for prog in "${programs[@]}"; do
    is_listed "$prog" && continue
    path="$(command -v "$prog" 2>/dev/null || true)"
    if [ -z "$path" ]; then
        err "the code starts '$prog', which is neither in deps.txt nor on this machine"
        continue
    fi
    real="$(readlink -f "$path")"
    # Debian's merged /usr: dpkg knows /bin/sh where PATH finds /usr/bin/sh.
    pkg=""
    for candidate in "$real" "$path" "${real#/usr}" "${path#/usr}"; do
        pkg="$(dpkg-query -S "$candidate" 2>/dev/null | grep -v '^diversion' | head -1 | cut -d: -f1 || true)"
        [ -n "$pkg" ] && break
    done
    if [ -z "$pkg" ]; then
        err "the code starts '$prog' ($path), which no Debian package installed and deps.txt does not list"
        continue
    fi
    essential="$(dpkg-query -W -f='${Essential}' "$pkg" 2>/dev/null || true)"
    if [ "$essential" != "yes" ]; then
        err "the code starts '$prog' from package $pkg, which is not Essential: add it to scripts/deps.txt"
    fi
done

# 3. Both quick-start targets install first.
for target in dev test; do
    if ! grep -qE "^$target:.*\bdeps\b" "$root/Makefile"; then
        err "make $target does not depend on deps"
    fi
done

if [ "$fail" -ne 0 ]; then
    exit 1
fi
echo "check-fresh: the code starts ${programs[*]}; and every deps.txt entry accounted for"
