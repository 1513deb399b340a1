"""One Raft entry holds at most MAX_ENTRY_BYTES: batches are split, and a single
command that would not fit is refused before anything reaches the log."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pysyncobj import FAIL_REASON

from raftsched.core.commands import CancelJob, PurgeDead
from raftsched.core.state import ok
from raftsched.replica import proposer as prop


class FakeLog:
    def __init__(self) -> None:
        self.entries: list[bytes] = []

    def apply_entry(self, blob: bytes, callback: Any) -> None:
        self.entries.append(blob)
        callback([ok()] * len(json.loads(blob)), FAIL_REASON.SUCCESS)


def test_oversized_command_refused_and_batches_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prop, "MAX_ENTRY_BYTES", 10_000)

    async def run() -> None:
        log = FakeLog()
        p = prop.Proposer(lambda: True, log, asyncio.get_running_loop())
        p.start()
        with pytest.raises(prop.TooLarge, match="split it"):
            await p.propose(PurgeDead("r0", 1.0, tuple(f"job-{i:06d}" for i in range(2000))))
        assert log.entries == []  # nothing proposed
        cmds = [CancelJob(f"r{i}", 1.0, "x" * 900) for i in range(40)]
        results = await asyncio.gather(*(p.propose(c) for c in cmds))
        assert all(r.ok for r in results)
        assert len(log.entries) >= 4 and all(len(b) <= 10_000 for b in log.entries)
        await p.stop()

    asyncio.run(run())


def test_propose_all_shares_one_entry_in_order() -> None:
    """A node's STARTED and FINISHED reports of one batch: one entry, one commit round."""

    async def run() -> None:
        log = FakeLog()
        p = prop.Proposer(lambda: True, log, asyncio.get_running_loop())
        p.start()
        results = await p.propose_all([CancelJob("a", 1.0, "j1"), CancelJob("b", 1.0, "j2")])
        assert [r.ok for r in results] == [True, True]
        assert len(log.entries) == 1
        assert [c[1]["rid"] for c in json.loads(log.entries[0])] == ["a", "b"]
        await p.stop()

    asyncio.run(run())


class SilentLog(FakeLog):
    """Takes entries and never calls back (a leader that died mid-flight), or fails them."""

    def __init__(self, reason: Any = None) -> None:
        super().__init__()
        self.reason = reason

    def apply_entry(self, blob: bytes, callback: Any) -> None:
        self.entries.append(blob)
        if self.reason is not None:
            callback(None, self.reason)


def test_no_commit_in_time_is_outcome_unknown_and_the_entry_stays_proposed() -> None:
    async def run() -> None:
        log = SilentLog()
        p = prop.Proposer(lambda: True, log, asyncio.get_running_loop())
        p.start()
        with pytest.raises(prop.OutcomeUnknown, match="no commit within"):
            await p.propose_all([CancelJob("a", 1.0, "j1"), CancelJob("b", 1.0, "j2")], timeout=0.2)
        assert len(log.entries) == 1  # proposed once, not withdrawn by the caller's timeout
        await p.stop()

    asyncio.run(run())


def test_lost_leadership_fails_every_command_of_the_entry() -> None:
    async def run() -> None:
        log = SilentLog(FAIL_REASON.NOT_LEADER)
        p = prop.Proposer(lambda: True, log, asyncio.get_running_loop())
        p.start()
        with pytest.raises(prop.NotLeader, match="leadership lost"):
            await p.propose_all([CancelJob("a", 1.0, "j1"), CancelJob("b", 1.0, "j2")])
        await p.stop()

    asyncio.run(run())


def test_a_caller_going_away_leaves_its_commands_proposed() -> None:
    """A submission whose caller is cancelled (client gone) still commits: its futures
    are not cancelled with the caller, and nothing is proposed twice; no commands: done."""

    async def run() -> None:
        log = FakeLog()
        p = prop.Proposer(lambda: True, log, asyncio.get_running_loop())
        caller = asyncio.create_task(p.propose_all([CancelJob("a", 1.0, "j1")]))
        await asyncio.sleep(0)  # queued, not yet proposed (the drain task is not started)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        p.start()
        for _ in range(100):
            if log.entries:
                break
            await asyncio.sleep(0.01)
        assert [c[1]["rid"] for c in json.loads(log.entries[0])] == ["a"]
        assert await p.propose_all([]) == []
        await p.stop()

    asyncio.run(run())
