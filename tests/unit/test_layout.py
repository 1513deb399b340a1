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

PURE = ["model", "commands", "codec", "fsm", "fsm_semantics", "fsm_workflows", "fit", "placement",
        "queue", "retry", "cron", "dag", "constraints", "validate", "workflow_types"]
# what the pure core may import besides itself: no I/O, clocks, threads, sockets or randomness
ALLOWED = {"__future__", "dataclasses", "enum", "typing", "types", "collections", "collections.abc",
           "json", "hashlib", "heapq", "itertools", "functools", "math", "re", "datetime", "zoneinfo",
           "croniter", "croniter.croniter", "bisect", "operator", "string"}


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


def test_pure_core_imports_only_itself() -> None:
    bad = []
    for mod in PURE:
        tree = ast.parse((SRC / f"{mod}.py").read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("raftsched."):
                    if name.split(".")[1] not in PURE:
                        bad.append(f"{mod} imports {name}")
                elif name not in ALLOWED and name != "raftsched":
                    bad.append(f"{mod} imports {name}")
    assert not bad, bad
