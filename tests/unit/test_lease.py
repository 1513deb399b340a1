"""The node's lease bookkeeping and its watchdog process (real process, real signals)."""

from __future__ import annotations

import subprocess
import time

import pytest

from raftsched.node.lease import Lease


@pytest.mark.timeout(30)
def test_lapses_are_remembered_and_the_watchdog_kills_when_the_lease_runs_out() -> None:
    lease = Lease(0.3)
    job = subprocess.Popen(["sleep", "30"], process_group=0)
    try:
        assert not lease.valid()
        t0 = time.monotonic()
        lease.renew(t0, 5.0, 7)  # granted 5 s, capped at our 0.3 s
        assert lease.valid() and lease.generation == 7
        assert lease.deadline == pytest.approx(t0 + 0.3)
        lease.renew(t0, 0.0, 8)  # no lease granted: nothing changes
        assert lease.generation == 7
        lease.register(job.pid)
        assert job.wait(5) == -9  # the watchdog killed the group when the lease ran out
        gone = time.monotonic()
        assert gone - t0 >= 0.29
        assert lease.lapsed_between(t0, gone)  # out now
        lease.renew(time.monotonic(), 1.0, 7)  # renewed after the lapse: the lapse is kept
        assert lease.valid() and lease.expirations == 1
        assert lease.lapsed_between(t0, gone) and not lease.lapsed_between(t0, t0 + 0.1)
    finally:
        job.kill()
        lease.close()


@pytest.mark.timeout(30)
def test_watchdog_kills_jobs_when_the_node_goes_away() -> None:
    lease = Lease(30.0)
    job = subprocess.Popen(["sleep", "30"], process_group=0)
    try:
        lease.renew(time.monotonic(), 30.0, 1)
        lease.register(job.pid)
        time.sleep(0.2)
        assert job.poll() is None  # a valid lease: the job runs
        lease.close()  # what a dying node does to the pipe
        assert job.wait(5) == -9
    finally:
        job.kill()
