"""Repository rules: generated code is current; the pure core imports only itself."""

from __future__ import annotations

import ast
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "raftsched"

# what the pure core may import besides itself: no I/O, clocks, threads, sockets or randomness
ALLOWED = {"__future__", "dataclasses", "enum", "typing", "types", "collections", "collections.abc",
           "json", "hashlib", "heapq", "itertools", "functools", "math", "re", "datetime", "zoneinfo",
           "croniter", "croniter.croniter", "bisect", "operator", "string"}
FOLDERS = ["core", "replica", "node", "rpc", "client", "cli", "dev"]


def _modules() -> dict[str, Path]:
    """Every project module (generated protobuf code aside): dotted name -> file."""
    out = {}
    for f in SRC.rglob("*.py"):
        if "v1" in f.relative_to(SRC).parts:
            continue
        name = ".".join(f.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        out[name] = f
    return out


def _imports(f: Path, top_level_only: bool = False) -> set[str]:
    """Absolute module names a file imports (`from a import b` counts a.b when that is a module)."""
    tree = ast.parse(f.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    mods = _modules()
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods)
    return out


def test_generated_protobuf_code_is_current(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    (out / "raftsched" / "v1").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
                    f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}",
                    *sorted(str(p) for p in (ROOT / "proto" / "raftsched" / "v1").glob("*.proto"))],
                   check=True)
    fresh = sorted(p.name for p in (out / "raftsched" / "v1").iterdir())
    stale = [name for name in fresh
             if not filecmp.cmp(out / "raftsched" / "v1" / name, SRC / "v1" / name, shallow=False)]
    assert not stale, f"regenerate with scripts/gen_proto: {stale} differ from proto/"
    shutil.rmtree(out)


def test_every_module_lives_in_a_folder() -> None:
    loose = sorted(f.name for f in SRC.glob("*.py")
                   if f.stem not in {"__init__", "__main__", "config", "logs", "ports"})
    assert not loose, f"modules outside core/ replica/ node/ rpc/ client/ cli/ dev/: {loose}"
    assert sorted(d.name for d in SRC.iterdir() if d.is_dir() and (d / "__init__.py").exists()) == \
        sorted([*FOLDERS, "v1"])


def test_pure_core_imports_only_itself() -> None:
    bad = []
    core = [(n, f) for n, f in _modules().items() if n.startswith("raftsched.core.")]
    assert len(core) >= 15, [n for n, _ in core]
    for mod, f in core:
        for name in _imports(f):
            if name.startswith("raftsched"):
                if name != "raftsched.core" and not name.startswith("raftsched.core."):
                    bad.append(f"{mod} imports {name}")
            elif name not in ALLOWED:
                bad.append(f"{mod} imports {name}")
    assert not bad, bad


def test_only_the_replica_layer_imports_pysyncobj() -> None:
    bad = [f"{mod} imports {name}" for mod, f in _modules().items() if not mod.startswith("raftsched.replica.")
           for name in _imports(f) if name.split(".")[0] == "pysyncobj"]
    assert not bad, bad


def test_nothing_running_imports_dev() -> None:
    """dev/ (launcher, demo, chaos) is never part of a running node or its servicers."""
    bad = [f"{mod} imports {name}" for mod, f in _modules().items()
           if mod.split(".")[1:2] and mod.split(".")[1] in {"core", "replica", "node", "rpc", "client"}
           for name in _imports(f) if name.startswith("raftsched.dev")]
    assert not bad, bad


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles (each as a path that returns to its start), by depth-first search."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_find_cycles_finds_a_loop() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    """Module-level imports only (an import inside a function does not run at import time,
    but it still counts: a lazy import that closes a loop is a loop hidden, not removed)."""
    mods = _modules()
    graph = {m: {d for d in _imports(f) if d in mods and d != m} for m, f in mods.items()}
    # a package's __init__ is imported with every module in it: not an edge of its own
    graph = {m: {d for d in ds if not m.startswith(d + ".")} for m, ds in graph.items()}
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
