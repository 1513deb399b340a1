"""A rolling restart of all 3 nodes under load (issue 15): the documented procedure
(drain, SIGTERM, start, enable, `node wait-ready`), one node at a time, the leader
included, while ~200 short ledger jobs are submitted and run: every acknowledged job
ends, none succeeds twice or overlaps another attempt of itself, the replicas are
identical and every node's journal passes the offline audit."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from raftsched.dev.rolling import RollingRestart

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]


def test_rolling_restart_under_load_loses_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="raftsched-rolling-"))
    try:
        rr = RollingRestart(root, seed=20261203, duration=60.0, jobs=200, drain_deadline="15s")
        report = rr.run(settle=120.0)
        summary = (report.summary() + f"\nrestarted={rr.restarted} leader_restarted={rr.leader_restarted}"
                   + "".join(f"\nfailure: {f}" for f in rr.failures))
        with capsys.disabled():
            print("\nrolling: " + summary.replace("\n", "\nrolling: "))
        assert not rr.failures, summary
        assert rr.restarted == ["n1", "n2", "n3"] and rr.leader_restarted, summary
        assert report.acknowledged >= 200, summary
        assert not report.lost and not report.unfinished, summary
        assert not report.succeeded_twice and not report.overlaps, summary
        assert not report.token_regressions and not report.success_without_run, summary
        assert report.replicas_identical and report.audit_ok, summary
    finally:
        if not os.environ.get("RAFTSCHED_KEEP_TEST_DIRS"):
            shutil.rmtree(root, ignore_errors=True)
