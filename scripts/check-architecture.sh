#!/usr/bin/env bash
# Keeps docs/ARCHITECTURE.md true to the code: its crate table must name every
# workspace member, and each crate's "depends on" must be exactly the workspace crates
# in that crate's [dependencies]. Nothing in the repository may link outside it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
doc="$root/docs/ARCHITECTURE.md"
fail=0
err() { echo "check-architecture: $*" >&2; fail=1; }

members="$(sed -n '/^members/,/]/p' "$root/Cargo.toml" | grep -oE '"[^"]+"' | tr -d '"')"
for dir in $members; do
    toml="$root/$dir/Cargo.toml"
    name="$(grep -m1 -E '^name\s*=' "$toml" | grep -oE '"[^"]+"' | tr -d '"')"
    # The workspace crates in [dependencies] (not dev- or build-).
    actual="$(awk '/^\[/{sec=$0} sec=="[dependencies]" && /^orion-/{split($1,a,"."); print a[1]}' "$toml" \
        | sort | paste -sd, -)"
    row="$(grep -E "^\| \`$dir/\` \| \`$name\` \|" "$doc" || true)"
    if [ -z "$row" ]; then
        err "docs/ARCHITECTURE.md has no row for $dir/ ($name)"
        continue
    fi
    documented="$(echo "$row" | awk -F'|' '{print $4}' | grep -oE 'orion-[a-z]+' | sort | paste -sd, - || true)"
    if [ "$actual" != "$documented" ]; then
        err "$name depends on [${actual:-nothing}] but docs/ARCHITECTURE.md says [${documented:-nothing}]"
    fi
done
# Rows for crates that no longer exist.
while read -r dir; do
    grep -qx "$dir" <<<"$members" || err "docs/ARCHITECTURE.md has a row for $dir/, which is not a workspace member"
done < <(grep -oE '^\| `[a-z-]+/` \| `orion' "$doc" | grep -oE '`[a-z-]+/`' | tr -d '`/')

if links="$(cd "$root" && git grep -nE '\.\./shared/' -- . ':!scripts/check-architecture.sh' 2>/dev/null)"; then
    err "the repository links outside itself:"; echo "$links" >&2
fi
[ "$fail" -eq 0 ] && echo "check-architecture: docs/ARCHITECTURE.md matches the workspace"
exit "$fail"
