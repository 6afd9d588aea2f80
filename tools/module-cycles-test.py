#!/usr/bin/env python3
"""Tests of tools/module-cycles.py on small crates written to a temporary directory."""

import importlib.util
import tempfile
import unittest
from pathlib import Path

_spec = importlib.util.spec_from_file_location("module_cycles", Path(__file__).with_name("module-cycles.py"))
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)


def crate(files):
    root = Path(tempfile.mkdtemp())
    for name, text in files.items():
        path = root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "src"


def cycles(files):
    edges = mc.graph_of(crate(files))
    return [[mc.name(m) for m in comp] for comp in mc.components(edges)]


class ModuleCycles(unittest.TestCase):
    def test_nested_use_trees_and_code_paths_make_edges(self):
        edges = mc.graph_of(crate({
            "lib.rs": "pub mod a; pub mod b; pub mod c; pub mod d;",
            "a.rs": "use crate::{b::{self, X}, c::Y as Z};\nfn f() { crate::d::g(); }",
            "b.rs": "", "c.rs": "", "d.rs": "",
        }))
        self.assertEqual(edges[("a",)], {("b",), ("c",), ("d",)})

    def test_a_cycle_through_code_and_super_is_found_with_its_path(self):
        src = crate({
            "lib.rs": "pub mod host; pub mod perf;",
            "host.rs": "use crate::perf;\n",
            "perf/mod.rs": "pub mod flush;\npub use self::flush::run;",
            "perf/flush.rs": "fn f() { super::super::host::root_id(); }",
        })
        edges = mc.graph_of(src)
        comps = mc.components(edges)
        self.assertEqual([[mc.name(m) for m in c] for c in comps], [["host", "perf", "perf::flush"]])
        cycle = [mc.name(m) for m in mc.a_cycle(comps[0], edges)]
        self.assertEqual(cycle[0], cycle[-1])

    def test_comments_strings_test_modules_and_the_root_make_no_edges(self):
        self.assertEqual(cycles({
            "lib.rs": "pub mod a; pub mod b; pub use a::A;",
            "a.rs": '// use crate::b;\nconst S: &str = "crate::b::x";\nuse crate::HashMap;\n'
                    "#[cfg(test)]\nmod tests { use super::*; }\n",
            "b.rs": "use crate::a::A;\nfn f<'a>(x: &'a str) -> char { 'x' }",
        }), [])

    def test_the_allowlist_needs_a_reason(self):
        allow = Path(tempfile.mkdtemp()) / "allow"
        allow.write_text("c: a b   # still here because\n")
        self.assertEqual(mc.read_allow(allow), {("c", frozenset({"a", "b"})): 1})
        allow.write_text("c: a b\n")
        with self.assertRaises(SystemExit):
            mc.read_allow(allow)


if __name__ == "__main__":
    unittest.main()
