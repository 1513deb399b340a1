"""Workflow graphs: validation (unknown/self dependencies, cycles), order, readiness.

Pure: plain mappings `name -> parent names` in, messages and lists out.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_WORKFLOW_JOBS = 1000
MAX_PARENTS = 100

Deps = Mapping[str, Sequence[str]]


def find_cycle(deps: Deps) -> list[str] | None:
    """A cycle as a path [a, b, ..., a] (a depends on b ...), or None. Deterministic."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(deps, white)
    for root in sorted(deps):
        if color[root] != white:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path = [root]
        color[root] = grey
        while stack:
            node, i = stack[-1]
            parents = sorted(deps.get(node, ()))
            if i < len(parents):
                stack[-1] = (node, i + 1)
                p = parents[i]
                if p not in color:
                    continue  # unknown: reported by validate
                if color[p] == grey:
                    return path[path.index(p):] + [p]
                if color[p] == white:
                    color[p] = grey
                    stack.append((p, 0))
                    path.append(p)
            else:
                color[node] = black
                stack.pop()
                path.pop()
    return None


def validate(deps: Deps, max_jobs: int = MAX_WORKFLOW_JOBS) -> str | None:
    """None if `deps` is a valid workflow graph, else a message naming the problem."""
    if not deps:
        return "workflow has no jobs"
    if len(deps) > max_jobs:
        return f"workflow has {len(deps)} jobs; at most {max_jobs} in one workflow"
    for name in sorted(deps):
        if not NAME_RE.match(name):
            return (f"job name {name!r} is invalid: 1-64 characters from letters, digits, "
                    "'_', '.', '-', starting with a letter or digit")
        parents = deps[name]
        if len(parents) > MAX_PARENTS:
            return f"job {name!r} has {len(parents)} dependencies; at most {MAX_PARENTS}"
        if len(set(parents)) != len(parents):
            return f"job {name!r} lists a dependency twice"
        for p in parents:
            if p == name:
                return f"job {name!r} depends on itself: remove {name!r} from its depends_on"
            if p not in deps:
                return (f"job {name!r} depends on {p!r}, which is not a job of this workflow: "
                        "fix depends_on or add the job")
    cycle = find_cycle(deps)
    if cycle:
        return "dependency cycle: " + " -> ".join(cycle) + " (each job depends on the next)"
    return None


def topo_order(deps: Deps) -> list[str]:
    """Parents before children; ties by name. Assumes `validate` passed."""
    indeg = {n: len(ps) for n, ps in deps.items()}
    kids = children(deps)
    ready = sorted(n for n, d in indeg.items() if d == 0)
    out: list[str] = []
    heapq.heapify(ready)
    while ready:
        n = heapq.heappop(ready)
        out.append(n)
        for c in kids.get(n, ()):
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(ready, c)
    return out


def children(deps: Deps) -> dict[str, list[str]]:
    kids: dict[str, list[str]] = {}
    for n in sorted(deps):
        for p in deps[n]:
            kids.setdefault(p, []).append(n)
    return kids


def descendants(start: str, kids: Mapping[str, Sequence[str]]) -> list[str]:
    """Every descendant of `start` (not itself), breadth first, each once."""
    seen = {start}
    out: list[str] = []
    frontier = list(kids.get(start, ()))
    while frontier:
        nxt: list[str] = []
        for c in frontier:
            if c in seen:
                continue
            seen.add(c)
            out.append(c)
            nxt.extend(kids.get(c, ()))
        frontier = nxt
    return out


def ready(parents: Iterable[str], succeeded: Callable[[str], bool]) -> bool:
    """A job may start when every parent succeeded."""
    return all(succeeded(p) for p in parents)
