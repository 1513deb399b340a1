"""A SIGKILLed node takes its jobs with it, daemons included, and its restart never
runs the old attempt again (one of the suspects of the chaos overlap in issue 16: a
restarted node receiving a start for an attempt whose process from the previous
incarnation survived). Real nodes, real subprocess jobs, real SIGKILL; in the mode
the machine offers (cgroups here) and in the fallback mode (the watchdog's /proc
scan, since the dead node's orphans go to init)."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from raftsched.v1 import jobs_pb2
from tests.integration.test_isolation import daemon_script, marked, sh, wait_daemons, wait_gone
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]


@pytest.mark.parametrize("mode", ["auto", "fallback"])
def test_sigkilled_node_leaves_no_process_and_its_restart_does_not_rerun_the_attempt(mode: str) -> None:
    c = TestCluster(n_nodes=3, cluster_extra=f'\n[isolation]\nmode = "{mode}"\n').start()
    try:
        c.wait_ready()
        client = c.client()
        m = f"killed-node-{uuid.uuid4().hex[:8]}"
        jid = client.submit(sh(daemon_script(f"{m}-$RAFTSCHED_ATTEMPT-x")))
        wait_daemons(c, f"{m}-1-x")
        job = client.get(jid)
        assert job.attempt == 1
        c.kill(job.node_id, signal.SIGKILL)
        # the node's watchdog sees its stdin close and kills the attempt's processes
        wait_gone(c, f"{m}-1-x", timeout=10)
        c.start_node(job.node_id)
        c.wait_ready()
        c2 = c.client()
        c.wait_until(lambda: c2.get(jid).attempt >= 2 and c2.get(jid).state == jobs_pb2.RUNNING, 40,
                     "the job running again as a new attempt")
        again = c2.get(jid)
        wait_daemons(c, f"{m}-{again.attempt}-x")
        lost = [a for a in again.attempts if a.attempt == 1]
        assert lost and lost[0].outcome == "LOST", again.attempts
        # attempt 1 never comes back, on the restarted node or elsewhere
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert not marked(f"{m}-1-x"), "attempt 1 runs again after its node was killed"
            time.sleep(0.1)
        c2.cancel(jid)
        c.wait_terminal([jid], timeout=30, client=c2)
        wait_gone(c, m)
    finally:
        c.close()
