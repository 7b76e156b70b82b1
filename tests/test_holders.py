"""Who holds a row is unambiguous (#9): worker ids that survive containers, one clock.

A holder is judged dead only when that is certain (same host name, boot id and pid
namespace, and its process gone or another one under its pid); leases are judged by
the database's clock, so a host whose clock is wrong neither steals live rows nor
leaves dead ones. Unit tests on WorkerId, store tests with a skewed Python clock (on
SQLite and PostgreSQL), and a daemon in a pid namespace of its own (`unshare`, as root).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlstore import timeutil
from dlstore.workerid import (
    MAX_PID,
    WorkerId,
    boot_id,
    holder_is_gone,
    pid_alive,
    pid_namespace,
    process_start,
)

from .support.daemon import Harness, downloading_with, wait_until
from .support.db import age_heartbeats

# --------------------------------------------------------------------------- the id


def test_a_new_worker_id_names_host_pid_token_boot_namespace_and_start():
    me = WorkerId.new("here")
    assert me.pid == os.getpid() and len(me.token) == 8
    assert me.boot == boot_id() and len(me.boot or "") == 32
    assert me.pidns == pid_namespace() and me.start == process_start(os.getpid())
    assert str(me) == f"here:{me.pid}:{me.token}@{me.boot}/{me.pidns}/{me.start}"
    assert WorkerId.parse(str(me)) == me and not me.legacy
    assert str(me).startswith(me.host_prefix)


def test_what_cannot_be_read_is_written_as_a_dash():
    partial = WorkerId("here", 7, "ab", boot=None, pidns=4026531836, start=None)
    assert str(partial) == "here:7:ab@-/4026531836/-"
    assert WorkerId.parse(str(partial)) == partial


def test_an_id_as_dlstore_wrote_it_before_still_parses():
    old = WorkerId.parse("vm:4242:9f3c01aa")
    assert old == WorkerId("vm", 4242, "9f3c01aa") and old.legacy


@pytest.mark.parametrize(
    "text",
    [
        "vm:1:ab@",
        "vm:1:ab@x/1/2",
        "vm:1:ab@" + "A" * 32 + "/1/2",  # upper case: not how it is written
        "vm:1:ab@" + "a" * 32 + "/1",
        "vm:1:ab@" + "a" * 32 + "/1/2/3",
        "vm:1:ab@" + "a" * 32 + "/-1/2",
        "vm:1:ab@" + "a" * 32 + "/1/" + "9" * 21,
    ],
)
def test_a_garbled_identity_is_not_ours(text):
    assert WorkerId.parse(text) is None


@given(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.integers(0, MAX_PID),
    st.text("0123456789abcdef", min_size=1, max_size=16),
    st.none() | st.text("0123456789abcdef", min_size=32, max_size=32),
    st.none() | st.integers(0, 2**63),
    st.none() | st.integers(0, 2**63),
)
def test_a_worker_id_with_its_identity_reads_back_as_built(host, pid, token, boot, ns, start):
    built = WorkerId(host, pid, token, boot=boot, pidns=ns, start=start)
    assert WorkerId.parse(str(built)) == built


# --------------------------------------------------------------------------- dead or alive


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_a_holder_of_this_host_boot_and_namespace_whose_process_ended_is_gone():
    me = WorkerId.new("here")
    gone = dead_pid()
    parent = os.getppid()

    def like_me(**changes):  # type: ignore[no-untyped-def]
        return dataclasses.replace(me, token="other", **changes)

    assert holder_is_gone(like_me(pid=gone), me)
    assert holder_is_gone(like_me(), me)  # our pid, an earlier life
    assert holder_is_gone(like_me(pid=parent, start=process_start(parent) + 1), me)  # reused
    assert not holder_is_gone(me, me)
    assert not holder_is_gone(like_me(pid=parent, start=process_start(parent)), me)
    assert not holder_is_gone(like_me(pid=parent, start=None), me)  # alive, start unknown
    # not certain: left to the lease
    assert not holder_is_gone(like_me(pid=gone, pidns=(me.pidns or 0) + 1), me)  # a container
    assert not holder_is_gone(like_me(pid=gone, boot="0" * 32), me)  # another boot or machine
    assert not holder_is_gone(like_me(pid=gone, host="elsewhere"), me)
    assert not holder_is_gone(like_me(pid=gone, pidns=None), me)
    assert not holder_is_gone(like_me(pid=gone, boot=None), me)
    assert not holder_is_gone(WorkerId("here", gone, "x"), me)  # an id of before #9
    assert not holder_is_gone(like_me(pid=gone), dataclasses.replace(me, pidns=None))


# --------------------------------------------------------------------------- one clock


@pytest.fixture
def skew(monkeypatch):
    """``skew(seconds)``: dlstore's Python clock that far off (the database's is not)."""

    def set_skew(seconds: float) -> None:
        real = timeutil.datetime.now

        def skewed():  # type: ignore[no-untyped-def]
            return real(timeutil.timezone.utc) + timedelta(seconds=seconds)

        monkeypatch.setattr(timeutil, "utcnow", skewed)
        monkeypatch.setattr("dlstore.store.utcnow", skewed)

    return set_skew


def test_a_host_clock_ahead_does_not_steal_live_rows(store, skew):
    task = store.create(name="a", url="https://e/1.m3u8")
    _, claim = store.claim("there:1:x")
    skew(3600)  # this daemon's clock is an hour ahead
    assert store.reclaim_expired(30) == []
    assert store.get(task.id).status == "downloading" and store.heartbeat(claim)


def test_heartbeats_from_a_host_clock_behind_still_count(store, skew):
    task = store.create(name="a", url="https://e/1.m3u8")
    skew(-3600)  # the holder's clock is an hour behind
    _, claim = store.claim("there:1:x")
    assert store.heartbeat(claim)
    skew(0)
    assert store.reclaim_expired(30) == []
    assert store.get(task.id).status == "downloading"


def test_a_host_clock_behind_does_not_leave_dead_rows(store, skew):
    task = store.create(name="a", url="https://e/1.m3u8")
    store.claim("there:1:x")
    age_heartbeats(store, 60)  # its holder has been silent for a minute
    skew(-3600)
    assert store.reclaim_expired(30) == [task.id]


def test_heartbeats_are_written_by_the_database_clock(store, skew):
    store.create(name="a", url="https://e/1.m3u8")
    skew(-86400)
    task, claim = store.claim("there:1:x")
    real_now = timeutil.datetime.now(timeutil.timezone.utc)
    assert abs((timeutil.parse_ts(task.heartbeat_at) - real_now).total_seconds()) < 60
    assert task.heartbeat_at.endswith("Z") and len(task.heartbeat_at) == 27
    assert (timeutil.parse_ts(task.started_at) - real_now).total_seconds() < -86000  # Python's


# --------------------------------------------------------------------------- containers


def own_pid_namespace(h: Harness) -> tuple[tuple[str, ...], int]:
    """A prefix that runs a daemon in a pid namespace of its own, and the pid it will
    have there: one that no process has in ours (so only the namespace tells them apart)."""
    tool = shutil.which("unshare")
    if tool is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root for a pid namespace of its own")
    free = next(n for n in range(31000, 60000) if not pid_alive(n + 1) and not pid_alive(n + 2))
    script = h.home / "in-namespace.sh"
    script.write_text(f'echo {free} > /proc/sys/kernel/ns_last_pid\n"$@"\nexit $?\n')
    prefix = (tool, "--pid", "--fork", "--mount-proc", "--kill-child", "sh", str(script))
    return prefix, free + 1


def test_a_daemon_of_another_pid_namespace_and_the_same_host_name_keeps_its_row(harness):
    h = harness
    h.server.latency = 0.3
    task_id = h.api.create("Contained", h.stream(), {"profile": "serial"})
    prefix, inner_pid = own_pid_namespace(h)
    inside = h.start("--lease", "60", "--exit-when-idle", prefix=prefix)
    wait_until(downloading_with(h, task_id, 1), 20, "the contained daemon's first progress")
    holder = WorkerId.parse(h.row(task_id)["worker_id"])
    assert holder is not None and holder.pid in (inner_pid, inner_pid + 1), holder
    assert holder.pidns != pid_namespace() and not pid_alive(holder.pid)  # its pid: none here

    outside = h.start("--lease", "60")  # same host name, our pid namespace
    wait_until(lambda: "started" in outside.text(), 15, "the other daemon to start")
    assert inside.wait(60) == 0, inside.text()
    row = h.row(task_id)
    assert row["status"] == "completed" and row["attempts"] == 1, row
    assert row["worker_id"] == str(holder)
    assert set(h.segment_hits().values()) == {1}
    assert "is gone: back to pending" not in outside.text()
    outside.send(signal.SIGTERM)
    assert outside.wait(15) == 0
