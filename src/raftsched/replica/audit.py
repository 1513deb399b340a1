"""Offline audit of a node's replicated log: snapshot + journal replayed through
`core.apply`, every entry checked by `core.invariants.Auditor`.

Reads a copy of the journal (the node may be running), starts from the snapshot
(verified by its checksum) and replays every entry after it — also those past the
stored commit index: apply is deterministic, so the rules must hold for any
sequence a leader appended. Reports the
first violation with its Raft index, or a summary.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pysyncobj import pickle as _pickle
from pysyncobj.journal import FileJournal
from pysyncobj.syncobj import _COMMAND_TYPE

from raftsched.core import codec
from raftsched.core.apply import apply
from raftsched.core.invariants import Auditor
from raftsched.core.state import ClusterState
from raftsched.replica.durable import read_snapshot
from raftsched.replica.membership import carried_command

JOURNAL = "raft.journal"
SNAPSHOT = "raft.snapshot"


@dataclass
class AuditReport:
    data_dir: str
    snapshot_index: int = 0
    first_index: int = 0
    last_index: int = 0
    commit_index: int = 0
    entries: int = 0
    commands: int = 0
    jobs: int = 0
    digest: str = ""
    violation: str = ""
    violation_index: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violation and not self.problems

    def summary(self) -> str:
        head = (f"{self.data_dir}: snapshot at index {self.snapshot_index}, entries "
                f"{self.first_index}..{self.last_index} ({self.entries} entries, {self.commands} "
                f"commands; committed through {self.commit_index} as last stored), {self.jobs} jobs, "
                f"digest {self.digest[:12]}")
        if self.violation:
            return f"{head}\nVIOLATION at index {self.violation_index}: {self.violation}"
        if self.problems:
            return head + "\n" + "\n".join(f"PROBLEM: {p}" for p in self.problems)
        return head + "\nok: every invariant holds"


def _commands(entry_command: bytes) -> list[Any] | None:
    """The raftsched commands of one journal entry (None for pysyncobj's own entries; a
    membership entry's carried command, replica/membership.py)."""
    carried = carried_command(entry_command)
    if carried is not None:
        return codec.decode_entry(carried)
    if entry_command[:1] != bytes([_COMMAND_TYPE.REGULAR]):
        return None
    call = _pickle.loads(entry_command[1:])
    if not isinstance(call, tuple) or len(call) < 2 or not call[1]:
        return None
    return codec.decode_entry(call[1][0])


def audit_data_dir(data_dir: Path) -> AuditReport:
    rep = AuditReport(str(data_dir))
    state = ClusterState()
    snap = data_dir / SNAPSHOT
    if snap.exists():
        data = read_snapshot(str(snap))
        state = ClusterState.from_dict(data[0][1])
        rep.snapshot_index = data[1][1]
    auditor = Auditor(state)
    with tempfile.TemporaryDirectory(prefix="raftsched-audit-") as tmp:
        copy = Path(tmp) / JOURNAL
        if (data_dir / JOURNAL).exists():
            shutil.copyfile(data_dir / JOURNAL, copy)
            meta = data_dir / (JOURNAL + ".meta")
            if meta.exists():
                shutil.copyfile(meta, str(copy) + ".meta")
        journal = FileJournal(str(copy))
        try:
            rep.commit_index = journal.getRaftCommitIndex()
            entries = [journal[i] for i in range(len(journal))]
        finally:
            journal._destroy()
    if entries and entries[0][1] > rep.snapshot_index + 1:
        rep.problems.append(f"log gap: journal starts at {entries[0][1]}, snapshot ends at "
                            f"{rep.snapshot_index}")
    for command, index, _term in entries:
        if index <= rep.snapshot_index:
            continue
        rep.first_index = rep.first_index or index
        rep.last_index = index
        rep.entries += 1
        try:
            cmds = _commands(command)
        except Exception as e:
            rep.problems.append(f"index {index}: undecodable entry ({e})")
            continue
        for cmd in cmds or ():
            state.changes = []
            res = apply(state, cmd)
            why = auditor.check(cmd, res, state.changes)
            if why:
                rep.violation, rep.violation_index = f"{type(cmd).__name__}: {why}", index
                break
        if rep.violation:
            break
        state.applied_index = index
    state.changes = []
    rep.commands = auditor.commands
    rep.jobs = len(state.jobs)
    rep.digest = state.digest()
    missing = auditor.missing()
    if missing and not rep.violation:
        rep.problems.append(f"{len(missing)} acknowledged submissions missing, e.g. {missing[:3]}")
    return rep
