"""Nothing is left behind (#9): after any sequence of kills, the output folder holds
exactly the finished videos and their posters.

The attempt that completes a row removes every earlier attempt's partial output; a row
cancelled (or completed) while no daemon was at it gets its work folder, partial
output and name reservation removed by the next daemon's orphan sweep. `dlstore
daemon` as a subprocess (the daemon harness, tests/support/daemon.py), on SQLite and PostgreSQL;
the sweep's own rules in-process.
"""

from __future__ import annotations

import json
import logging
import signal

import pytest

from dlstore.config import Settings
from dlstore.options import work_dir_for
from dlstore.paths import reserve, temp_path_for
from dlstore.sweep import sweep_orphans, work_folder_owners
from dlstore.workfolder import WorkFolder

from .support.daemon import Harness, downloading_with, wait_until
from .support.db import age_heartbeats

pytestmark = pytest.mark.slow


def everything_in(h: Harness) -> list[str]:
    """Every file under the output root, hidden ones included, relative to it."""
    if not h.videos.exists():
        return []
    return sorted(str(p.relative_to(h.videos)) for p in h.videos.rglob("*") if p.is_file())


def tag_of(h: Harness, task_id: str) -> str:
    return WorkFolder(work_dir_for(h.home / "work", task_id)).part_tag


def test_a_row_cancelled_while_its_daemon_was_dead_is_cleaned_up_by_the_next(harness):
    h = harness
    h.server.latency = 0.4
    task_id = h.api.create("Abandoned", h.stream(), {"profile": "serial", "output_dir": "d"})
    first = h.start("--lease", "60")
    wait_until(downloading_with(h, task_id, 2), 20, "2 segments")
    first.send(signal.SIGKILL)
    first.wait()
    left = everything_in(h)
    assert "d/.Abandoned.reserved" in left and any(n.endswith(".part") for n in left), left
    assert h.work_dir(task_id).is_dir()
    assert h.api.cancel(task_id) == 1
    cancelled = h.row(task_id)

    second = h.start()  # lease 3 s: the row is swept once it has been quiet that long
    wait_until(lambda: not h.work_dir(task_id).exists(), 30, "the sweep")
    assert everything_in(h) == []
    assert h.row(task_id) == cancelled  # the sweep writes no row
    assert f"[task {task_id}] Cancelled while no daemon was at it: removed" in second.text()
    second.send(signal.SIGTERM)
    assert second.wait(15) == 0


def test_the_completing_attempt_removes_every_earlier_attempts_partial_output(harness):
    h = harness
    task_id = h.api.create("Clip", h.stream())
    tag = tag_of(h, task_id)
    (h.videos).mkdir()
    for name in ("Clip.mp4", "Clip (3).mp4", "Clip (3).jpg"):  # earlier attempts, any name
        temp_path_for(h.videos / name, tag).write_bytes(b"half a video")
    temp_path_for(h.videos / "Clip (3).mp4", "0123456789ab").write_bytes(b"another task's")
    h.run()
    assert h.row(task_id)["status"] == "completed"
    assert everything_in(h) == [".Clip (3).mp4.0123456789ab.part", "Clip.jpg", "Clip.mp4"]


def test_a_row_completed_by_a_daemon_killed_before_cleaning_up_is_cleaned_up(harness):
    h = harness
    task_id = h.api.create("Done", h.stream("tiny"))
    h.run()
    assert everything_in(h) == ["Done.jpg", "Done.mp4"]
    # what a daemon killed right after `complete` leaves: its work folder, partial, name
    WorkFolder(work_dir_for(h.home / "work", task_id), owner=task_id).claim()
    temp_path_for(h.videos / "Done.jpg", tag_of(h, task_id)).write_bytes(b"poster, half")
    reserve(h.videos / "Done.mp4", task_id)
    h.api.execute(
        "UPDATE download_tasks SET updated_at = '2000-01-01T00:00:00.000000Z' WHERE id = ?",
        (task_id,),
    )
    h.run()
    assert everything_in(h) == ["Done.jpg", "Done.mp4"]  # the video and poster stay
    assert not h.work_dir(task_id).exists()


# --------------------------------------------------------------------------- the sweep's rules


@pytest.fixture
def world(store, tmp_path):
    settings = Settings(temp_dir=tmp_path / "work", output_dir=tmp_path / "videos")
    settings.output_dir.mkdir()
    return store, settings


def leave_behind(settings: Settings, task_id: str, name: str) -> WorkFolder:
    work = WorkFolder(work_dir_for(settings.temp_dir, task_id), owner=task_id)
    work.claim()
    video = settings.output_dir.resolve() / f"{name}.mp4"
    temp_path_for(video, work.part_tag).write_bytes(b"partial")
    reserve(video, task_id)
    return work


def test_the_sweep_leaves_rows_a_daemon_may_still_be_at_and_rows_that_will_resume(world):
    store, settings = world
    claims = {}

    def row(status: str) -> None:
        store.create(name=status, url="https://e/a.m3u8", task_id=f"t-{status}")
        _, claims[status] = store.claim("elsewhere:1:x")
        leave_behind(settings, f"t-{status}", status)

    for status in ("cancelled", "failed", "pending", "downloading"):
        row(status)
    store.fail(claims["failed"], "gone")
    store.release(claims["pending"])
    age_heartbeats(store, 3600)  # their daemons quiet for an hour …
    store.cancel("t-cancelled")
    row("fresh")  # … but this one's daemon is alive, and will see the cancel itself
    store.cancel("t-fresh")
    swept = sweep_orphans(store, settings, logging.getLogger("test"))
    assert swept == ["t-cancelled"]
    left = sorted(p.name for p in settings.output_dir.iterdir())
    assert not any("cancelled" in name for name in left)
    assert len(left) == 8  # the four others' partials and reservations
    assert sorted(work_folder_owners(settings.temp_dir.resolve())) == [
        "t-downloading",
        "t-failed",
        "t-fresh",
        "t-pending",
    ]


def test_the_sweep_only_removes_what_the_task_owns(world, tmp_path):
    store, settings = world
    task = store.create(name="Mine", url="https://e/a.m3u8", task_id="mine")
    store.cancel(task.id)
    work = leave_behind(settings, task.id, "Mine")
    reserve(settings.output_dir.resolve() / "Other.mp4", "someone-else")
    (settings.output_dir / "Mine (2).mp4").write_bytes(b"a finished video of another row")
    foreign = settings.temp_dir / "not-dlstores"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    planted = settings.temp_dir / "planted"  # a marker naming a task, in the wrong folder
    planted.mkdir()
    (planted / ".dlstore-work").write_text(json.dumps({"format": 1, "task": "mine"}))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE download_tasks SET updated_at = '2000-01-01T00:00:00.000000Z'")
    assert sweep_orphans(store, settings, logging.getLogger("test")) == ["mine"]
    assert not work.root.exists() and (foreign / "keep.txt").exists() and planted.exists()
    assert sorted(p.name for p in settings.output_dir.iterdir()) == [
        ".Other.reserved",
        "Mine (2).mp4",
    ]
