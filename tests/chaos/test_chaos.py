"""Chaos in CI: >= 300 ledger jobs while leaders and followers are SIGKILLed and SIGSTOPped."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from raftsched.dev.chaos import Chaos

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]


def test_chaos_nothing_lost_nothing_doubled(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="raftsched-chaos-"))
    seed = int(os.environ.get("RAFTSCHED_CHAOS_SEED", "20261123"))
    try:
        chaos = Chaos(root, seed=seed, duration=60.0, jobs=300, min_leader_kills=3, min_follower_events=3)
        report = chaos.run(settle=120.0)
        with capsys.disabled():  # the counts belong in the CI log, pass or fail
            print("\nchaos: " + report.summary().replace("\n", "\nchaos: "))
        assert report.leader_kills >= 3, report.summary()
        assert report.follower_kills + report.follower_stops >= 3, report.summary()
        assert report.acknowledged >= 300, report.summary()
        assert report.python_succeeded >= 30, report.summary()  # Python tasks took part
        assert not report.lost, report.summary()
        assert not report.unfinished, report.summary()
        assert not report.succeeded_twice, report.summary()
        assert not report.overlaps, report.summary()
        assert not report.token_regressions, report.summary()
        assert not report.success_without_run, report.summary()
        assert report.replicas_identical, report.summary()
        assert report.audit_ok, report.summary()
    finally:
        if not os.environ.get("RAFTSCHED_KEEP_TEST_DIRS"):
            shutil.rmtree(root, ignore_errors=True)
