#!/usr/bin/env python3
"""Keeps the workspace's shape: crates in one-way layers, no import loops between files.

1. Crate layers. Each workspace crate has a layer (LAYERS below, ground first) and
   may depend only on crates of lower layers ([dependencies] and [build-dependencies];
   dev-dependencies are the tests' business).
2. Only orion-store declares RocksDB.
3. HTTP stays up where it belongs, in each crate's own resolved dependency tree
   (`cargo tree -p CRATE`, so features another crate enables do not count):
   - below orion-client (api, tls, store, raft): no reqwest, no axum, no hyper server;
   - below orion-apiserver (also client, agent): no axum, no hyper server; and reqwest
     only through orion-client (nothing but orion-client declares it).
4. No two files of a crate import each other, directly or through others: the
   graph of `use` paths (and inline `crate::`/`super::` paths) between the files of
   each crate's src/ has no cycle. `pub use` only hands a name on: it draws no
   arrow itself, and a name used through it is an import of the file defining it.
   Inline `#[cfg(test)]` modules are left out.

Exit status 1 with every violation listed; 0 with one line of summary.
"""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Ground first. A crate may depend only on crates of a lower layer.
LAYERS = [
    ["orion-api"],
    ["orion-tls"],
    ["orion-store"],
    ["orion-raft"],
    ["orion-client"],
    ["orion-agent"],
    ["orion-apiserver"],
    ["orion-launch"],
    ["orion"],
    ["orion-bench", "orion-jepsen"],
]
BELOW_CLIENT = ["orion-api", "orion-tls", "orion-store", "orion-raft"]
BELOW_APISERVER = BELOW_CLIENT + ["orion-client", "orion-agent"]
ROCKSDB = {"rocksdb", "librocksdb-sys"}

problems = []


def fail(msg):
    problems.append(msg)


def layer_of():
    return {name: i for i, names in enumerate(LAYERS) for name in names}


def check_crates():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    layers = layer_of()
    members = {p["name"]: p for p in meta["packages"]}
    for name in members:
        if name not in layers:
            fail(f"crate {name} has no layer in scripts/check-layers.py (LAYERS)")
    for name, pkg in members.items():
        for dep in pkg["dependencies"]:
            kind = dep.get("kind")  # None = normal, "build", "dev"
            if dep["name"] in ROCKSDB and name != "orion-store":
                fail(f"{name} declares {dep['name']}: only orion-store may link RocksDB")
            if kind == "dev":
                continue
            if dep["name"] == "reqwest" and name in BELOW_APISERVER and name != "orion-client":
                fail(f"{name} declares reqwest: REST calls go through orion-client")
            if dep["name"] in members and name in layers and dep["name"] in layers:
                if layers[dep["name"]] >= layers[name]:
                    fail(
                        f"{name} (layer {layers[name]}) depends on {dep['name']} "
                        f"(layer {layers[dep['name']]}): dependencies must point down"
                    )
    for name in BELOW_APISERVER:
        if name not in members:
            continue
        tree = subprocess.run(
            ["cargo", "tree", "-p", name, "-e", "normal,build",
             "--prefix", "none", "-f", "{p} [{f}]"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout.splitlines()
        crates = {}
        for line in tree:
            m = re.match(r"(\S+) v\S+.*\[(.*)\]", line)
            if m:
                crates.setdefault(m.group(1), set()).update(
                    f for f in m.group(2).split(",") if f
                )
        if "axum" in crates:
            fail(f"{name} links axum (an HTTP server framework); only orion-apiserver may")
        if "server" in crates.get("hyper", set()):
            fail(f"{name} links hyper's server; only orion-apiserver may")
        if name in BELOW_CLIENT and "reqwest" in crates:
            fail(f"{name} links reqwest; HTTP clients start at orion-client")


# ---- file imports -------------------------------------------------------------

USE_RE = re.compile(r"\buse\s+([^;]+);", re.S)
INLINE_RE = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")
MOD_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)
PUB_USE_RE = re.compile(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", re.S)


def lex(text):
    """The code alone: comments, strings and char literals become spaces."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif c == "r" and re.match(r'r#*"', text[i:i + 260]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(?:\\[^']{1,10}|[^'\\])'", text[i:i + 14]):
            i += re.match(r"'(?:\\[^']{1,10}|[^'\\])'", text[i:i + 14]).end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip(text):
    """Drops comments, strings, and inline `#[cfg(test)] mod x { ... }` blocks (their
    `super::` is the file itself), so only the file's own code counts."""
    text = lex(text)
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text)
        if not m:
            return text
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        text = text[: m.start()] + text[i:]


def expand(tree):
    """`a::{b, c::{d, e as f}, self}` -> [[a,b], [a,c,d], [a,c,e], [a]]."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, s):
        # split s at top-level commas
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:i])
                start = i + 1
        parts.append(s[start:])
        for part in parts:
            if not part:
                continue
            if "{" in part:
                head, rest = part.split("{", 1)
                rest = rest[: rest.rindex("}")]
                segs = [x for x in head.split("::") if x]
                walk(prefix + segs, rest)
            else:
                segs = [x for x in part.split("::") if x]
                if segs and segs[-1] == "self":
                    segs = segs[:-1]
                if segs and segs[-1] == "*":
                    segs = segs[:-1]
                out.append(prefix + segs)

    walk([], tree)
    return out


def modules_of(src):
    """Module path (tuple) -> file, for every .rs file under src/."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                key = ()
            elif rel[-1] == "mod":
                key = tuple(rel[:-1])
            else:
                key = tuple(rel)
            if key == () and rel == ["main"] and () in mods:
                continue  # a crate with lib.rs and main.rs: main is the binary's root
            mods[key] = path
    return mods


def check_files(crate_dir):
    src = os.path.join(crate_dir, "src")
    if not os.path.isdir(src):
        return
    mods = modules_of(src)
    texts = {}
    for key, path in mods.items():
        with open(path, encoding="utf-8") as fh:
            texts[key] = strip(fh.read())
    # name re-exported by a module -> the path it names
    reexports = {}
    for key, text in texts.items():
        for m in PUB_USE_RE.finditer(text):
            for segs in expand(m.group(1)):
                full = absolute(key, segs, texts[key])
                if full and segs:
                    reexports[(key, segs[-1])] = full

    def resolve(full, depth=0):
        """The file a path names: the longest module prefix, through re-exports."""
        for n in range(len(full), -1, -1):
            prefix = tuple(full[:n])
            if prefix in mods:
                rest = full[n:]
                if rest and (prefix, rest[0]) in reexports and depth < 8:
                    target = reexports[(prefix, rest[0])]
                    if list(target[: n + 1]) != list(full[: n + 1]):
                        return resolve(list(target) + rest[1:], depth + 1)
                return prefix
        return None

    edges = {}
    for key, text in texts.items():
        paths = []
        for m in USE_RE.finditer(text):
            # `pub use` hands a name on (a module's face); it is not an import.
            if re.search(r"\bpub(?:\([^)]*\))?\s+$", text[max(0, m.start() - 20) : m.start()]):
                continue
            paths.extend(expand(m.group(1)))
        for m in INLINE_RE.finditer(USE_RE.sub(" ", text)):
            paths.append(m.group(1).split("::"))
        for segs in paths:
            full = absolute(key, segs, text)
            if full is None:
                continue
            target = resolve(full)
            if target is None or target == key:
                continue
            edges.setdefault(key, {}).setdefault(target, set()).add(segs[-1] if segs else "")
    for scc in sccs(list(mods), edges):
        if len(scc) < 2:
            continue
        files = sorted(os.path.relpath(mods[k], ROOT) for k in scc)
        lines = [f"files import each other in a loop: {', '.join(files)}"]
        for a in sorted(scc):
            for b, names in sorted(edges.get(a, {}).items()):
                if b in scc:
                    lines.append(
                        f"    {os.path.relpath(mods[a], ROOT)} -> {os.path.relpath(mods[b], ROOT)}: "
                        + ", ".join(sorted(n for n in names if n))
                    )
        fail("\n".join(lines))


def absolute(key, segs, text):
    """The absolute module path of `segs` used in module `key`, or None if external."""
    if not segs:
        return None
    head = segs[0]
    if head == "crate":
        return list(segs[1:])
    if head == "self":
        return list(key) + list(segs[1:])
    if head == "super":
        base = list(key)
        rest = list(segs)
        while rest and rest[0] == "super":
            if not base:
                return None
            base.pop()
            rest.pop(0)
        return base + rest
    # 2018 paths relative to this module: a child declared here with `mod x;`.
    if head in MOD_RE.findall(text):
        return list(key) + list(segs)
    return None


def sccs(nodes, edges):
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    return out


def main():
    check_crates()
    with open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8") as fh:
        members = re.findall(r'"([^"]+)"', re.search(r"members\s*=\s*\[(.*?)\]", fh.read(), re.S).group(1))
    for member in members:
        check_files(os.path.join(ROOT, member))
    if problems:
        for p in problems:
            print(f"check-layers: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"check-layers: {len(members)} crates in one-way layers, no import loops between files")


if __name__ == "__main__":
    main()
