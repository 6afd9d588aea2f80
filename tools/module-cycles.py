#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

Why a script: `cargo-modules` (`dependencies --acyclic`) checks this too, but it is built on
rust-analyzer's crates, a long build and a new tool pin for a two-core machine; the rule checked here
needs only the paths a module names. For every crate of the workspace it
reads each file under src/, collects the module paths it names (`use crate::a::…`, `crate::a::…` in
code, `super::…`, `self::…`, nested `use` trees included), builds the graph "file module -> module it
names", and reports each strongly connected component of more than one module with one cycle through
it. Inline modules (`mod tests { … }`) belong to their file, and test code counts as any other. A
`mod child;` declaration is no edge; a path into the child is. The crate root (lib.rs/main.rs) is left
out: it declares the modules and re-exports, so every `crate::X` of a root item would look like a cycle.

Known cycles may be listed in an allowlist (tools/module-cycles.allow), one per line:
    <crate>: <module> <module> ...   # why it is still there
A listed cycle passes only while its component is exactly those modules; one that grows fails. A listed
cycle that is gone is reported so its line can be deleted.

Usage: tools/module-cycles.py [--allow FILE] [crate_dir ...]   (default: every workspace member)
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def workspace_members():
    text = (ROOT / "Cargo.toml").read_text()
    block = re.search(r"members\s*=\s*\[(.*?)\]", text, re.S)
    return [ROOT / m for m in re.findall(r'"([^"]+)"', block.group(1))] if block else []


def strip_comments_and_strings(src):
    """Source with comments, string and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    out.append("\n" if src[i] == "\n" else "")
                    i += 1
        elif re.match(r'b?r(#*)"', src[i:i + 20]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', src[i:])
            end = src.find('"' + m.group(1), i + m.end())
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:])
            if m:  # a char literal; otherwise a lifetime
                i += m.end()
                out.append("' '")
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def file_modules(src_dir):
    """{module path tuple: file} for every .rs file of a crate; the root is ()."""
    mods = {}
    for f in src_dir.rglob("*.rs"):
        rel = f.relative_to(src_dir).with_suffix("")
        parts = list(rel.parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts and parts[-1] == "mod":
            parts = parts[:-1]
        elif parts and parts[0] == "bin":
            continue  # separate binaries: crates of their own
        mods[tuple(parts)] = f
    return mods


def expand_use_tree(tree):
    """`a::{b, c::{d, self}}` -> ['a::b', 'a::c::d', 'a::c']."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    depth = 0
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                prefix, inner = tree[:i], tree[i + 1:tree.rfind("}")]
                # split inner at top-level commas
                parts, d, start = [], 0, 0
                for j, cj in enumerate(inner):
                    if cj == "{":
                        d += 1
                    elif cj == "}":
                        d -= 1
                    elif cj == "," and d == 0:
                        parts.append(inner[start:j])
                        start = j + 1
                parts.append(inner[start:])
                result = []
                for p in filter(None, parts):
                    for sub in expand_use_tree(p):
                        result.append(prefix.rstrip(":") if sub == "self" else prefix + sub)
                return result
            depth += 1
    return [re.sub(r"::self$", "", tree)] if tree else []


PATH = re.compile(r"(?<![\w:$])((?:crate|super|self)(?:::(?:super|\w+))*)")


def paths_in(code):
    """(offset, path) for every module path a file names: from `use` trees and from code."""
    found = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        for p in expand_use_tree(m.group(1)):
            found.append((m.start(), p))
    stripped = re.sub(r"\buse\s+[^;]+;", lambda m: " " * len(m.group(0)), code)
    for m in PATH.finditer(stripped):
        if "::" in m.group(1):
            found.append((m.start(), m.group(1)))
    return found


def inline_module_at(code):
    """A function: offset -> the inline module path (within the file) enclosing it."""
    spans = []  # (start, end, name, nesting)
    open_mods = []  # (name, start, brace depth inside it)
    depth = 0
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{|[{}]", code):
        tok = m.group(0)
        if tok != "{" and tok != "}":
            depth += 1
            open_mods.append((m.group(1), m.start(), depth))
        elif tok == "{":
            depth += 1
        else:
            if open_mods and open_mods[-1][2] == depth:
                name, start, _ = open_mods.pop()
                spans.append((start, m.end(), name, len(open_mods)))
            depth -= 1

    def at(offset):
        enclosing = sorted((s for s in spans if s[0] <= offset < s[1]), key=lambda s: s[3])
        return tuple(s[2] for s in enclosing)

    return at


def resolve(path, here, mods):
    """The file module a path names, or None (an external crate, a root item)."""
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = [], parts[1:]
    else:
        base = list(here)
        rest = parts
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                if not base:
                    return None
                base.pop()
            rest = rest[1:]
    full = base + rest
    # The longest prefix that is a file module.
    for k in range(len(full), -1, -1):
        if tuple(full[:k]) in mods:
            return tuple(full[:k])
    return None


def graph_of(src_dir):
    mods = file_modules(src_dir)
    edges = {m: set() for m in mods if m}
    for mod, f in mods.items():
        if not mod:
            continue
        code = strip_comments_and_strings(f.read_text())
        inline = inline_module_at(code)
        for offset, path in paths_in(code):
            here = mod + inline(offset)
            target = resolve(path, here, mods)
            if target and target != mod and target != ():
                edges[mod].add(target)
    return edges


def components(edges):
    """Tarjan's strongly connected components with more than one node."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def a_cycle(comp, edges):
    """One cycle through the component's first module (breadth first: a shortest one)."""
    members = set(comp)
    start = comp[0]
    prev, queue = {start: None}, [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges[v] & members):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def name(mod):
    return "::".join(mod)


def read_allow(path):
    allowed = {}
    if not path or not path.exists():
        return allowed
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        crate, _, mods = body.partition(":")
        if not line.partition("#")[2].strip():
            sys.exit(f"{path}:{lineno}: every allowed cycle needs a comment saying why it is still there")
        allowed[(crate.strip(), frozenset(mods.split()))] = lineno
    return allowed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allow", type=Path, default=ROOT / "tools" / "module-cycles.allow")
    ap.add_argument("crates", nargs="*", type=Path)
    args = ap.parse_args()
    allowed = read_allow(args.allow)
    seen, failed = set(), False
    for crate_dir in args.crates or workspace_members():
        src = crate_dir / "src"
        if not src.is_dir():
            continue
        crate = crate_dir.name
        edges = graph_of(src)
        for comp in components(edges):
            key = (crate, frozenset(name(m) for m in comp))
            cycle = " -> ".join(name(m) for m in a_cycle(comp, edges))
            if key in allowed:
                seen.add(key)
                print(f"allowed   {crate}: {cycle}")
            else:
                failed = True
                print(f"CYCLE     {crate}: {cycle}   (modules: {' '.join(sorted(key[1]))})")
    for key, lineno in sorted(allowed.items(), key=lambda kv: kv[1]):
        if key not in seen:
            print(f"gone      {key[0]}: {' '.join(sorted(key[1]))}   (delete line {lineno} of {args.allow.name})")
    if failed:
        print("module-cycles: a module must not import, through others, the module that imports it", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
