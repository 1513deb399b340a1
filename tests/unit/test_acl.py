"""Access control in the state machine: tokens (hashes only), roles, quotas, request ids."""

from __future__ import annotations

from dataclasses import replace

from raftsched.core import acl
from raftsched.core import apply as fsm
from raftsched.core.acl import Perm, Role
from raftsched.core.commands import (
    AclBootstrap,
    CancelJob,
    CreateToken,
    RevokeToken,
    SetQuota,
    SubmitJobs,
)
from raftsched.core.model import JobState
from raftsched.core.state import ClusterState, Code
from tests.unit.fsm_helpers import assign, cluster, finished, rid, spec, started


def _bootstrapped() -> ClusterState:
    st = cluster("n1", cpu=4000)
    assert fsm.apply(st, AclBootstrap(rid(), 1.0, "bootstrap", acl.hash_secret("s" * 40))).ok
    return st


def test_bootstrap_once_and_only_hashes_are_kept() -> None:
    st = _bootstrapped()
    again = fsm.apply(st, AclBootstrap(rid(), 2.0, "bootstrap", acl.hash_secret("t" * 40)))
    assert again.code is Code.PRECONDITION
    tok = acl.lookup(st, "s" * 40)
    assert tok is not None and tok.role is Role.ADMIN and tok.sees("anything")
    assert acl.lookup(st, "t" * 40) is None
    assert "s" * 40 not in str(st.to_dict())  # the secret itself is never in the state


def test_tokens_roles_namespaces_and_revocation() -> None:
    st = _bootstrapped()
    cmd = CreateToken(rid(), 2.0, "alice", acl.hash_secret("a" * 40), "submitter", ("team-a",),
                      by="bootstrap")
    assert fsm.apply(st, cmd).ok
    assert fsm.apply(st, replace(cmd, rid=rid())).code is Code.PRECONDITION  # name taken
    bad = CreateToken(rid(), 2.0, "x", acl.hash_secret("x" * 40), "root", ("a",))
    assert fsm.apply(st, bad).code is Code.INVALID
    alice = acl.lookup(st, "a" * 40)
    assert alice is not None and alice.created_by == "bootstrap"
    assert alice.may(Perm.SUBMIT) and alice.may(Perm.READ) and not alice.may(Perm.OPERATE)
    assert alice.sees("team-a") and not alice.sees("team-b") and alice.default_namespace == "team-a"
    assert not acl.ROLE_PERMS[Role.READER] >= {Perm.SUBMIT}
    assert acl.ROLE_PERMS[Role.OPERATOR] == {Perm.READ, Perm.SUBMIT, Perm.OPERATE}
    assert fsm.apply(st, RevokeToken(rid(), 3.0, "alice")).ok
    assert acl.lookup(st, "a" * 40) is None
    assert fsm.apply(st, RevokeToken(rid(), 3.0, "alice")).code is Code.NOT_FOUND


def test_quota_counts_unfinished_jobs_of_the_namespace() -> None:
    st = _bootstrapped()
    assert fsm.apply(st, SetQuota(rid(), 2.0, "team-a", max_cpu_millis=250, max_pending=2)).ok
    a = replace(spec(cpu=100), namespace="team-a")
    b = replace(spec(cpu=100), namespace="team-b")
    ok = fsm.apply(st, SubmitJobs(rid(), 3.0, (("j1", a), ("j2", a), ("k1", b), ("k2", b)), by="al"))
    assert ok.ok and st.jobs["j1"].submitted_by == "al"
    over = fsm.apply(st, SubmitJobs(rid(), 3.0, (("j3", a),)))
    assert over.code is Code.EXHAUSTED and "team-a" in over.message and "j3" not in st.jobs
    assert fsm.apply(st, SubmitJobs(rid(), 3.0, (("k3", b),))).ok  # other namespaces are free
    # a finished job no longer counts
    assert assign(st, "j1", "n1").ok and started(st, "j1").ok and finished(st, "j1", 0).ok
    assert st.ns_usage["team-a"].cpu_millis == 100 and st.ns_usage["team-a"].pending == 1
    assert fsm.apply(st, SubmitJobs(rid(), 4.0, (("j4", a),))).ok
    assert fsm.apply(st, SubmitJobs(rid(), 4.0, (("j5", a),))).code is Code.EXHAUSTED
    # derived usage is rebuilt from a snapshot, and replicas agree
    copy = ClusterState.from_dict(st.to_dict())
    assert copy.ns_usage == st.ns_usage and copy == st
    assert fsm.apply(st, SetQuota(rid(), 5.0, "team-a")).ok and not acl.acl_of(st).quotas


def test_cancel_records_the_token() -> None:
    st = _bootstrapped()
    assert fsm.apply(st, SubmitJobs(rid(), 2.0, (("j1", spec()),), by="bob")).ok
    assert fsm.apply(st, CancelJob(rid(), 3.0, "j1", by="olga")).ok
    job = st.jobs["j1"]
    assert job.state is JobState.CANCELLED and job.cancelled_by == "olga" and "olga" in job.reason
    assert job.submitted_by == "bob"


def test_a_request_id_reused_for_a_different_request_is_refused() -> None:
    st = cluster("n1")
    first = SubmitJobs("R", 2.0, (("j1", spec()),), fp="fp-a")
    assert fsm.apply(st, first).ok
    assert fsm.apply(st, first).value == ("j1",)  # the same request again: the first result
    other = SubmitJobs("R", 2.5, (("j2", spec()), ("j3", spec())), fp="fp-b")
    res = fsm.apply(st, other)
    assert res.code is Code.INVALID and "request_id" in res.message
    assert "j2" not in st.jobs and st.fingerprints["R"] == "fp-a"
    assert ClusterState.from_dict(st.to_dict()).fingerprints == st.fingerprints
