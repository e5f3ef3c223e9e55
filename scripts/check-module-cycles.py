#!/usr/bin/env python3
"""Fails when modules of one crate (or of one module directory) depend on each other in a
cycle. A module depends on a sibling when its non-test code names it through `crate::` (files
beside lib.rs/main.rs) or `super::` (files beside a mod.rs). Run from the repository root, or
give the root as the argument."""
import glob
import os
import re
import sys


def siblings(directory):
    found = {}
    for f in glob.glob(os.path.join(directory, "*.rs")):
        name = os.path.basename(f)[:-3]
        if name not in ("lib", "main", "mod"):
            found[name] = f
    for d in glob.glob(os.path.join(directory, "*")):
        if os.path.isfile(os.path.join(d, "mod.rs")):
            found[os.path.basename(d)] = os.path.join(d, "mod.rs")
    return found


def dependencies(directory, prefix):
    mods = siblings(directory)
    graph = {}
    for name, path in mods.items():
        code = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
        graph[name] = {
            other
            for other in mods
            if other != name
            and (re.search(rf"\b{prefix}::{other}\b", code) or re.search(rf"use {prefix}::\{{[^}}]*\b{other}\b", code))
        }
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    bad = []
    for src in sorted(glob.glob(os.path.join(root, "crates/*/src"))):
        for directory in [src] + sorted(os.path.dirname(m) for m in glob.glob(os.path.join(src, "**/mod.rs"), recursive=True)):
            prefix = "crate" if directory == src else "super"
            for component in cycles(dependencies(directory, prefix)):
                bad.append(f"{os.path.relpath(directory, root)}: {' <-> '.join(component)}")
    for line in bad:
        print(f"module cycle in {line}", file=sys.stderr)
    if bad:
        sys.exit(1)
    print("no module cycles")


if __name__ == "__main__":
    main()
