#!/usr/bin/env python3
"""Fails when modules of src/ import each other in a cycle: the crate's top-level modules
(through `crate::x`), and the files of each folder module (through `super::x`). Test modules
(`#[cfg(test)] mod ...`) are left out: tests may reach anywhere.

    scripts/check-module-cycles.py [--print]
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def without_tests(text):
    """The source up to its first #[cfg(test)] module."""
    m = re.search(r"#\[cfg\(test\)\]\s*(pub(\(\w+\))?\s+)?mod\s+\w+\s*\{", text)
    return text if m is None else text[: m.start()]


def module_path(path):
    parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def graphs():
    """Edges per scope: 'crate' for top-level modules, else a folder module's name."""
    edges = {}
    for folder, _, names in os.walk(ROOT):
        if os.path.relpath(folder, ROOT).startswith("bin"):
            continue
        for name in names:
            if not name.endswith(".rs"):
                continue
            parts = module_path(os.path.join(folder, name))
            if parts in ([], ["lib"], ["main"]):
                continue
            text = without_tests(open(os.path.join(folder, name), encoding="utf-8").read())
            me = parts[0]
            targets = set(re.findall(r"crate::(\w+)", text))
            for group in re.findall(r"crate::\{([^}]*)\}", text):
                targets |= {t.split("::")[0].strip() for t in group.split(",") if t.strip()}
            for t in targets - {me, "self", "super"}:
                edges.setdefault("crate", {}).setdefault(me, set()).add(t)
            if len(parts) >= 2:
                scope, me = "/".join(parts[:-1]), parts[-1]
                for t in set(re.findall(r"super::(\w+)", text)) - {me, "self", "super"}:
                    edges.setdefault(scope, {}).setdefault(me, set()).add(t)
    return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
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
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(set(edges) | {t for ts in edges.values() for t in ts}):
        if v not in index:
            visit(v)
    return found


def main():
    failed = False
    for scope, edges in sorted(graphs().items()):
        if "--print" in sys.argv:
            for m in sorted(edges):
                print(f"{scope}: {m} -> {', '.join(sorted(edges[m]))}")
        for comp in cycles(edges):
            failed = True
            print(f"import cycle in {scope}: {' <-> '.join(comp)}", file=sys.stderr)
    if not failed:
        print("no import cycles between modules")
    sys.exit(1 if failed else 0)


main()
