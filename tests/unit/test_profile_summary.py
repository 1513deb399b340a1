"""dev/profile.py: own time per function from py-spy's collapsed stacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftsched.dev import profile

pytestmark = pytest.mark.timeout(30)

RAW = """\
thread (1): MainThread;main (raftsched/cli/main.py:10);run (asyncio/runners.py:190);select (selectors.py:468) 7
thread (1): MainThread;main (raftsched/cli/main.py:10);run (asyncio/runners.py:190);select (selectors.py:470) 3
thread (2): Tick;_onTick (raftsched/replica/raftsafe.py:200);_rs_sync (raftsched/replica/journal.py:90) 5
thread (2): Tick;_onTick (raftsched/replica/raftsafe.py:201) 5
garbage line without a count
"""


def test_own_time_counts_the_top_frame_per_function_not_per_line(tmp_path: Path) -> None:
    p = tmp_path / "always-singles-n1-leader.txt"
    p.write_text(RAW)
    total, own = profile.own_time(p)
    assert total == 20
    assert own == {"select (selectors.py)": 10, "_rs_sync (raftsched/replica/journal.py)": 5,
                   "_onTick (raftsched/replica/raftsafe.py)": 5}
    lines = profile.summary(p, top=2).splitlines()
    assert lines[0] == "always-singles-n1-leader.txt: 20 samples (non-idle)"
    assert lines[1] == "   50.0%  select (selectors.py)" and len(lines) == 3


def test_an_empty_profile_says_so(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_text("")
    assert profile.summary(p) == "x.txt: no samples"
