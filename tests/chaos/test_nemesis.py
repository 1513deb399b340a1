"""The partition nemesis in CI: ledger jobs submitted through every node (CLI single jobs
with idempotency keys, CLI batches, gRPC batches retried with the same request id) while
the network is cut: the leader isolated, a follower isolated, a bridge split, one-way loss
from the leader, and a cut node killed and restarted while cut (raftsched.dev.nemesis).
Nothing acknowledged may be lost, nothing may run twice at once or succeed twice, and the
replicas end identical. Node logs and the ledger are kept when it fails."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from raftsched.dev.nemesis import FAULTS, PartitionNemesis
from tests.support.netns import netns_available

why = netns_available()
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(480),
              pytest.mark.skipif(why is not None, reason=why or "")]


def test_partitions_lose_nothing_acknowledged(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="raftsched-nemesis-"))
    seed = int(os.environ.get("RAFTSCHED_CHAOS_SEED", "20261202"))
    ok = False
    try:
        nem = PartitionNemesis(root, seed=seed, duration=65.0, jobs=150)
        report = nem.run(settle=120.0)
        with capsys.disabled():  # the counts belong in the CI log, pass or fail
            text = report.summary() + "\n" + nem.stats.summary()
            print("\nnemesis: " + text.replace("\n", "\nnemesis: "))
        assert {f.kind for f in nem.stats.faults} == set(FAULTS), text
        assert report.acknowledged >= 150, text
        assert not report.lost, text
        assert not report.unfinished, text
        assert not report.succeeded_twice, text
        assert not report.overlaps, text
        assert not report.token_regressions, text
        assert not report.success_without_run, text
        assert report.replicas_identical, text
        assert report.audit_ok, text
        ok = True
    finally:
        if ok and not os.environ.get("RAFTSCHED_KEEP_TEST_DIRS"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"nemesis run kept in {root} (logs/, ledger.txt, data/)")
