"""py-spy profiles of the node processes during `scripts/bench --profile DIR`.

`attach` starts `py-spy record --format raw` on a node process (it stops when the
node exits); `own_time` reads such a collapsed-stack file and returns the functions
that were on top of the stack most often (own time), `summary` formats them.
py-spy is not a dependency: `pip install py-spy` into the venv first.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


MISSING = "--profile needs py-spy: pip install py-spy (into the venv: .venv/bin/pip install py-spy)"


def available() -> bool:
    """py-spy is on PATH (check before starting anything to profile)."""
    return shutil.which("py-spy") is not None


def attach(pid: int, out: Path, rate: int = 200, gil: bool = False) -> subprocess.Popen[bytes]:
    """`gil`: sample only the thread holding the GIL: what a node bound by its one GIL
    spends it on (without: every thread, blocked ones included)."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise RuntimeError(MISSING)
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
                             "--nonblocking", "--threads", *(["--gil"] if gil else []), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def own_time(path: Path) -> tuple[int, Counter[str]]:
    """(total samples, samples per function on top of the stack), idle threads excluded."""
    total = 0
    own: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        top = stack.rsplit(";", 1)[-1]
        top = _LINE.sub(")", top)  # one entry per function, not per line
        own[_shorten(top)] += int(n)
        total += int(n)
    return total, own


def _shorten(frame: str) -> str:
    for marker in ("site-packages/", "/src/", "lib/python3"):
        i = frame.find(marker)
        if i >= 0:
            return frame[:frame.index("(") + 1] + frame[i + len(marker):].lstrip("/0123456789.")
    return frame


def summary(path: Path, top: int = 10) -> str:
    total, own = own_time(path)
    if not total:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {total} samples (non-idle)"]
    for fn, n in own.most_common(top):
        lines.append(f"  {100 * n / total:5.1f}%  {fn}")
    return "\n".join(lines)


def shown(paths: list[Path]) -> list[Path]:
    """Of profiles named <phase>-<node>-<leader|follower>.txt: per phase, the leader's
    and one follower's."""
    out: list[Path] = []
    for path in paths:
        phase = path.name.rsplit("-", 2)[0]
        if path.name.endswith("-leader.txt") or not any(
                q.name.startswith(phase) and q.name.endswith("-follower.txt") for q in out):
            out.append(path)
    return out
