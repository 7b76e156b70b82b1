"""The chaos soak (#9): three daemons on one database, one SIGKILLed every few seconds and
restarted for 45 s, twenty rows coming in (small streams, some slow), three cancelled by
the API mid-way. Every promise is checked by :mod:`dlstore.testing.chaos` (each row
completed exactly once, one file each, cancelled rows stay cancelled, nothing left in
the output or work folders, bytes fetched twice within what was in flight at the
kills); this test asserts that none broke and prints the figures.

On SQLite the daemons share this host; on PostgreSQL each has a host name of its own
(a UTS namespace, ``unshare --uts``, as root), as on several hosts.
"""

from __future__ import annotations

import os
import shutil

import pytest

from dlstore.testing.chaos import Soak, SoakPlan

pytestmark = pytest.mark.slow

SOAK_SECONDS = 45.0


def own_hosts_possible() -> bool:
    return shutil.which("unshare") is not None and os.geteuid() == 0


def test_chaos_soak(db_url, tmp_path, capsys):
    several_hosts = not db_url.endswith(".sqlite")
    if several_hosts and not own_hosts_possible():
        reason = "a host name per daemon needs unshare and root"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the soak must run on PostgreSQL too)")
        pytest.skip(reason)
    plan = SoakPlan(seconds=SOAK_SECONDS, hosts=several_hosts)
    report = Soak(tmp_path / "soak", db_url, plan).run()
    figures = "\n".join(f"  {name}: {value}" for name, value in report.figures().items())
    with capsys.disabled():
        print(f"\nchaos soak on {'PostgreSQL, 3 hosts' if several_hosts else 'SQLite'}:\n{figures}")
    assert report.problems == [], figures
    assert len(report.kills) >= SOAK_SECONDS / max(plan.kill_every) - 1, figures
    assert report.cancelled >= 1 and report.completions == plan.rows - report.cancelled, figures
    assert report.recovery and max(report.recovery) < 15, figures  # well within a restart
