"""Issue 12, scaled down: heavy requests cost no election, no node-down and no restart
of running jobs. A 3-node cluster with little CPU per node, one long job running on
each node; meanwhile two 1,000-job `raftsched submit --count` batches (staged in
bounded parts), parallel `raftsched nodes`, `raftsched list --all --json`, 60 watch
streams and 4 parallel NextFireTimes(count=1000) callers.

Event counts are asserted, never timings (`scripts/bench --scenario load` prints those).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raftsched.dev import loadbench

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def test_heavy_requests_cost_no_election_node_down_or_restart(tmp_path: Path) -> None:
    p = loadbench.Params(jobs=2000, batch=1000, nodes_calls=2, watches=60, unfiltered_every=10,
                         cron_calls=4, cron_seconds=3.0)
    old = os.environ.get("PYTHONPATH")
    f = loadbench.run(tmp_path, p)
    assert os.environ.get("PYTHONPATH") == old
    print(loadbench.report(f))
    assert f.submitted == 2000 and not f.errors, f.errors
    assert f.watches_open == 60 and f.cron_calls_done >= 4
    assert (f.elections, f.node_down, f.long_job_restarts) == (0, 0, 0), loadbench.report(f)
