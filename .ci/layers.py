#!/usr/bin/env python3
"""Checks the layering of src/ (DESIGN.md, "Layers") and prints the graph.

usage: .ci/layers.py [SRC_DIR]       (default: src)

Nodes are source files; an edge is a `crate::..`/`super::..` path that
resolves to another file (the longest existing module prefix), or a
`mod child;` declaration. The crate root (lib.rs, with its inline public
`task` module over `task_core`) is a facade and left out. Each file
belongs to a layer (LAYERS below, first match wins); an
edge may only go to the same layer or a lower one. Prints the edges
between modules grouped by layer, then every violation and every import
circle that spans more than one top-level module; exits 1 if there is
any.
"""
import os
import re
import sys

# (layer, path prefix relative to src/, without .rs) -- first match wins.
LAYERS = [
    (0, "loom"), (0, "util/"), (0, "macros"),
    (5, "task/join_set"), (5, "task/builder"),
    (1, "task_core/"), (1, "wait"), (1, "reactor/"), (1, "uring/"),
    (1, "fiber/arch/"), (1, "fiber/stack"), (1, "fiber/overflow"),
    (1, "fiber/context"), (1, "fiber/pool"), (1, "fiber/asan"),
    (2, "time/wheel"), (2, "time/driver"), (2, "driver"),
    (3, "scheduler/"),
    (4, "runtime/"),
    (5, "fiber/"), (5, "time/"), (5, "io/"), (5, "net/"), (5, "sync/"),
    (5, "hyper"), (5, "compat"), (5, "signal"), (5, "tracing"),
]
NAMES = {0: "L0 loom, util", 1: "L1 task core, wait, reactor, fiber core",
         2: "L2 time wheel and driver, driver", 3: "L3 scheduler",
         4: "L4 runtime", 5: "L5 public faces"}

src = sys.argv[1] if len(sys.argv) > 1 else "src"
mods = {}
for root, _, files in os.walk(src):
    for f in files:
        if f.endswith(".rs"):
            rel = os.path.relpath(os.path.join(root, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            mods[tuple(parts)] = rel


def layer(rel):
    path = rel[:-3].replace(os.sep, "/")
    if path.endswith("/mod"):
        path = path[:-4]
    for lvl, prefix in LAYERS:
        if prefix.endswith("/"):
            if (path + "/").startswith(prefix):
                return lvl
        elif path == prefix or path.startswith(prefix + "/"):
            return lvl
    return None


def strip(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def resolve(path):
    for i in range(len(path), 0, -1):
        if tuple(path[:i]) in mods:
            return tuple(path[:i])
    return None


def expand(prefix, body):
    out, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    res = []
    for item in out:
        item = item.strip()
        if not item:
            continue
        m = re.match(r"([\w:]+)::\{(.*)\}$", item, re.S)
        if m:
            res += expand(prefix + m.group(1).split("::"), m.group(2))
        else:
            res.append(prefix + re.split(r"\s+as\s+", item)[0].split("::"))
    return res


edges = {m: set() for m in mods}
uses = {m: set() for m in mods}  # the path edges only (no `mod` declarations)
for m, rel in mods.items():
    text = strip(open(os.path.join(src, rel), errors="replace").read())
    paths = []
    for g in re.finditer(r"\b(crate|super)((?:::\w+)*)::\{", text):
        start = g.end()
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        base = [g.group(1)] + [p for p in g.group(2).split("::") if p]
        paths += expand(base, text[start:i - 1])
    for g in re.finditer(r"\b(crate|super)((?:::\w+)+)", text):
        paths.append([g.group(1)] + [p for p in g.group(2).split("::") if p])
    for p in paths:
        if p[0] == "crate":
            target = list(p[1:])
        else:
            base = list(m)
            while p and p[0] == "super":
                base, p = base[:-1], p[1:]
            target = base + list(p)
        t = resolve(target)  # never the root: it resolves to a non-empty prefix
        if t and t != m:
            edges[m].add(t)
            uses[m].add(t)
    for c in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M):
        child = m + (c,)
        if child in mods:
            edges[m].add(child)
# The root (lib.rs) is a facade: its own edges go. No edge leads to it
# (a path resolves to a non-empty module, a child is never the root).
edges.pop((), None)

problems = []
by_layer = {}
for m in sorted(edges):
    rel = mods[m]
    lm = layer(rel)
    if lm is None:
        problems.append(f"{rel}: no layer assigned (add it to LAYERS in .ci/layers.py)")
        continue
    by_layer.setdefault(lm, []).append(m)
    for t in sorted(edges[m]):
        lt = layer(mods[t])
        if lt is not None and lt > lm:
            problems.append(f"{rel} (L{lm}) uses {mods[t]} (L{lt}): a lower layer calls up")

# Import circles across top-level modules (Tarjan).
index, low, stack, on, comps = {}, {}, [], set(), []
sys.setrecursionlimit(10000)


def visit(v, counter=[0]):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, ()):
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
        comps.append(comp)


for v in edges:
    if v not in index:
        visit(v)
for c in comps:
    if len(c) > 1 and len({x[0] for x in c}) > 1:
        problems.append("import circle: " + ", ".join(sorted(mods[x] for x in c)))

# The graph, one line per file: the modules its paths name (declaring a
# child module is not counted as using it).
for lvl in sorted(by_layer):
    print(f"== {NAMES[lvl]}")
    for m in by_layer[lvl]:
        used = sorted("/".join(t) for t in uses[m])
        name = "/".join(m)
        print(f"  {name:29} uses {', '.join(used) if used else '-'}")
own = [c for c in comps if len(c) > 1]
for c in own:
    print("circle within one top-level module: " + ", ".join(sorted(mods[x] for x in c)))
if problems:
    print()
    for p in problems:
        print("LAYERING: " + p)
    sys.exit(1)
print("layers: ok (no edge calls up, no circle across top-level modules)")
