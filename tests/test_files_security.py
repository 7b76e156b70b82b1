"""Hostile rows against the file system: work folders, output names, posters, partial files.

Each test plants what an attacker (or an unlucky name) would and asserts what must hold:
dlstore never writes into or deletes a folder it did not make (a symbolic link, someone's
data, ``temp_dir`` itself), distinct task ids never share a work folder, two rows of one
name never share an output file, a poster never lands on another's file, and a task's
clean-up removes its own files only. No daemon, no network; the daemon-level versions
are in tests/test_daemon_files.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlstore.config import Settings
from dlstore.errors import (
    CancelledError,
    DownloadError,
    SegmentError,
    TransientDownloadError,
    WorkFolderError,
)
from dlstore.options import DownloadOptions, Job, free_output_path, prepare, work_dir_for
from dlstore.outcome import Outcome, StopReason
from dlstore.paths import reservation_path, reserve, reserved_by
from dlstore.store import Claim
from dlstore.testing.media import encode_source
from dlstore.worker import TaskRunner
from dlstore.workfolder import MARKER_NAME, WorkFolder


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) with its bytes: a before/after."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder of someone's data that dlstore must never touch."""
    folder = tmp_path / "victim"
    (folder / "sub").mkdir(parents=True)
    (folder / "precious.txt").write_bytes(b"do not delete")
    (folder / "sub" / "more.txt").write_bytes(b"nor this")
    return folder


# --------------------------------------------------------------------------- the work folder


def test_a_symlink_work_folder_is_refused_and_its_target_untouched(tmp_path, victim):
    before = tree(victim)
    link = tmp_path / "temp" / "task1"
    link.parent.mkdir()
    link.symlink_to(victim, target_is_directory=True)
    work = WorkFolder(link, owner="task1")
    for step in (work.claim, work.check, work.wipe, work.remove):
        with pytest.raises(WorkFolderError, match="is a symbolic link"):
            step()
    with pytest.raises(WorkFolderError, match="is a symbolic link"):
        work.prepare({"url": "https://a/x.m3u8"})
    assert link.is_symlink() and tree(victim) == before
    assert not (victim / MARKER_NAME).exists() and not (victim / "manifest.json").exists()


def test_a_folder_dlstore_did_not_make_is_never_written_into_or_wiped(tmp_path, victim):
    before = tree(victim)
    work = WorkFolder(victim, owner="task1")
    for step in (work.claim, work.wipe, work.remove):
        with pytest.raises(WorkFolderError, match="not made by dlstore"):
            step()
    with pytest.raises(WorkFolderError, match="Move it away and retry"):
        work.prepare({"url": "https://a/x.m3u8"})
    assert tree(victim) == before
    # the CLI's WorkFolder (no owner) is refused the same way
    with pytest.raises(WorkFolderError, match="not made by dlstore"):
        WorkFolder(victim).prepare({"url": "u"})
    assert tree(victim) == before


def test_temp_dir_itself_is_never_removed(tmp_path, victim):
    temp_dir = tmp_path / "temp"
    temp_dir.mkdir()
    (temp_dir / "other-task-file").write_bytes(b"x")
    for task_id in (".", "..", "", "./", "/"):
        folder = work_dir_for(temp_dir, task_id)
        assert folder.parent == temp_dir.resolve() and folder.name.startswith("task-")
    with pytest.raises(WorkFolderError):
        WorkFolder(temp_dir).remove()
    assert (temp_dir / "other-task-file").read_bytes() == b"x"


def test_a_file_at_the_work_folder_is_refused(tmp_path):
    spot = tmp_path / "task1"
    spot.write_bytes(b"someone's file")
    with pytest.raises(WorkFolderError, match="is a file, not a folder"):
        WorkFolder(spot, owner="task1").claim()
    assert spot.read_bytes() == b"someone's file"


def test_dlstore_makes_the_folder_with_a_marker_naming_the_task(tmp_path):
    work = WorkFolder(tmp_path / "temp" / "t1", owner="t1")
    assert work.prepare({"url": "https://a/x.m3u8"}) is False
    marker = json.loads((work.root / MARKER_NAME).read_text())
    assert marker == {"format": 1, "task": "t1"}
    work.path("video-000000.seg").write_bytes(b"seg")
    assert WorkFolder(work.root, owner="t1").prepare({"url": "https://a/x.m3u8"}) is True
    # another download in the same folder: its files go, the marker stays
    assert WorkFolder(work.root, owner="t1").prepare({"url": "https://b/y.m3u8"}) is False
    assert sorted(p.name for p in work.root.iterdir()) == [MARKER_NAME, "manifest.json"]
    WorkFolder(work.root, owner="t1").remove()
    assert not work.root.exists()


def test_an_empty_folder_is_adopted(tmp_path):
    (tmp_path / "w").mkdir()
    WorkFolder(tmp_path / "w", owner="t1").claim()
    assert json.loads((tmp_path / "w" / MARKER_NAME).read_text())["task"] == "t1"


def test_a_folder_of_a_dlstore_from_before_markers_is_adopted_and_resumed(tmp_path):
    legacy = tmp_path / "t1"
    legacy.mkdir()
    (legacy / "manifest.json").write_text(json.dumps({"version": 1, "url": "u"}))
    (legacy / "video-000000.seg").write_bytes(b"fetched before the upgrade")
    assert WorkFolder(legacy, owner="t1").prepare({"url": "u"}) is True
    assert (legacy / "video-000000.seg").exists()
    assert json.loads((legacy / MARKER_NAME).read_text())["task"] == "t1"


def test_a_marker_of_another_task_is_refused(tmp_path):
    WorkFolder(tmp_path / "w", owner="first").prepare({"url": "u"})
    (tmp_path / "w" / "video-000000.seg").write_bytes(b"first's")
    other = WorkFolder(tmp_path / "w", owner="second")
    for step in (other.claim, other.wipe, other.remove):
        with pytest.raises(WorkFolderError, match="belongs to another task"):
            step()
    assert (tmp_path / "w" / "video-000000.seg").read_bytes() == b"first's"


def test_a_marker_that_is_a_link_to_a_forged_one_does_not_count(tmp_path, victim):
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({"format": 1, "task": "t1"}))
    (victim / MARKER_NAME).symlink_to(forged)
    before = tree(victim)
    with pytest.raises(WorkFolderError, match="not made by dlstore"):
        WorkFolder(victim, owner="t1").wipe()
    assert tree(victim) == before


def test_wiping_removes_a_link_inside_the_folder_not_what_it_points_to(tmp_path, victim):
    before = tree(victim)
    work = WorkFolder(tmp_path / "w", owner="t1")
    work.prepare({"url": "u"})
    (work.root / "video-000000.seg").symlink_to(victim, target_is_directory=True)
    work.wipe()
    assert not (work.root / "video-000000.seg").exists()
    work.path("x.seg").symlink_to(victim / "precious.txt")
    work.remove()
    assert not work.root.exists() and tree(victim) == before


# --------------------------------------------------------------------------- distinct ids


def test_a_plain_id_equal_to_another_ids_hashed_name_gets_a_folder_of_its_own(tmp_path):
    hashed = work_dir_for(tmp_path, "../x").name
    assert hashed.startswith("task-")
    assert work_dir_for(tmp_path, hashed) != work_dir_for(tmp_path, "../x")
    digest = hashlib.sha256(b"y").hexdigest()[:16]
    assert work_dir_for(tmp_path, f"batch-{digest}").name.startswith("task-")


def test_ids_that_differ_in_case_only_never_share_a_folder_on_any_file_system(tmp_path):
    names = {work_dir_for(tmp_path, i).name.lower() for i in ("A", "a", "Clip-1", "clip-1")}
    assert len(names) == 4


def test_an_id_with_a_newline_is_hashed(tmp_path):
    assert work_dir_for(tmp_path, "abc\n").name.startswith("task-")
    assert work_dir_for(tmp_path, "abc") == tmp_path.resolve() / "abc"


@given(
    st.lists(st.text(alphabet="aAbB09.-_/ \nt", max_size=8), min_size=2, max_size=6, unique=True)
)
def test_distinct_ids_always_get_distinct_folder_names(ids):
    names = [work_dir_for(Path("/srv/temp"), i).name for i in ids]
    assert len({n.lower() for n in names}) == len(ids)
    assert all(n not in ("", ".", "..") and "/" not in n and "\n" not in n for n in names)


def test_a_hash_collision_is_refused_not_shared(tmp_path):
    # Two ids that landed in one folder (forced here: a collision of 128 bits of SHA-256)
    folder = tmp_path / "task-0123"
    WorkFolder(folder, owner="id one").prepare({"url": "u"})
    with pytest.raises(WorkFolderError, match="belongs to another task"):
        WorkFolder(folder, owner="id two").prepare({"url": "u"})


# --------------------------------------------------------------------------- output names


def test_two_tasks_racing_for_one_name_get_distinct_files(tmp_path):
    chosen: dict[str, Path] = {}
    barrier = threading.Barrier(8)

    def pick(owner: str) -> None:
        barrier.wait()
        chosen[owner] = free_output_path(tmp_path, "d", "Clip", "mp4", owner=owner)

    threads = [threading.Thread(target=pick, args=(f"t{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = sorted(p.name for p in chosen.values())
    assert names == sorted(["Clip.mp4"] + [f"Clip ({n}).mp4" for n in range(2, 9)])
    assert all(reserved_by(path) == owner for owner, path in chosen.items())


def test_a_task_gets_the_same_name_on_every_attempt(tmp_path):
    first = free_output_path(tmp_path, None, "Clip", "mp4", owner="b")
    assert first.name == "Clip.mp4"
    second = free_output_path(tmp_path, None, "Clip", "mp4", owner="a")
    assert second.name == "Clip (2).mp4"
    os.unlink(reservation_path(first))  # b's row ended: Clip.mp4 is free again
    assert free_output_path(tmp_path, None, "Clip", "mp4", owner="a") == second  # stable
    assert free_output_path(tmp_path, None, "Clip", "mp4", owner="c").name == "Clip.mp4"


def test_a_name_is_taken_by_a_poster_or_any_reservation(tmp_path):
    (tmp_path / "Clip.jpg").write_bytes(b"someone's picture")
    assert free_output_path(tmp_path, None, "Clip", "mp4", owner="a").name == "Clip (2).mp4"
    # another format of the same name: the poster would be shared, so another stem
    assert free_output_path(tmp_path, None, "Clip", "ts", owner="b").name == "Clip (3).ts"
    reservation_path(tmp_path / "Clip (4).mp4").write_bytes(b"garbage, not dlstore's")
    assert free_output_path(tmp_path, None, "Clip", "mp4", owner="c").name == "Clip (5).mp4"
    assert free_output_path(tmp_path, None, "Clip", "mp4").name == "Clip (6).mp4"  # only looks


def test_a_reservation_whose_file_is_there_already_is_given_up(tmp_path):
    clip = tmp_path / "Clip.mp4"
    assert reserve(clip, "a")
    clip.write_bytes(b"placed, then the daemon died before recording it")
    assert free_output_path(tmp_path, None, "Clip", "mp4", owner="a").name == "Clip (2).mp4"
    assert not reservation_path(clip).exists()
    assert clip.read_bytes().startswith(b"placed")


def test_a_record_nested_past_the_json_parsers_recursion_is_not_dlstores(tmp_path):
    """A reservation or a marker of ``[[[…]]]`` (under MAX_RECORD_BYTES) is garbage like
    any other: the name is taken, the folder refused; never a RecursionError."""
    deep = b"[" * 100_000 + b"]" * 100_000
    reservation_path(tmp_path / "Clip.mp4").write_bytes(deep)
    assert reserved_by(tmp_path / "Clip.mp4") is None
    assert free_output_path(tmp_path, None, "Clip", "mp4", owner="a").name == "Clip (2).mp4"
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / MARKER_NAME).write_bytes(deep)
    with pytest.raises(WorkFolderError, match="not made by dlstore"):
        WorkFolder(tmp_path / "w", owner="a").claim()
    assert (tmp_path / "w" / MARKER_NAME).read_bytes() == deep


def test_reservations_never_follow_a_link(tmp_path, victim):
    (tmp_path / ".Clip.reserved").symlink_to(victim / "precious.txt")
    assert free_output_path(tmp_path, None, "Clip", "mp4", owner="a").name == "Clip (2).mp4"
    assert (victim / "precious.txt").read_bytes() == b"do not delete"


def test_every_name_taken_is_a_clear_failure(tmp_path):
    for n in range(1, 101):
        reserve(tmp_path / ("Clip.mp4" if n == 1 else f"Clip ({n}).mp4"), f"other{n}")
    with pytest.raises(DownloadError, match="numbered copies of it are taken already"):
        free_output_path(tmp_path, None, "Clip", "mp4", owner="a")


# --------------------------------------------------------------------------- the runner's files


class FakeStore:
    """A store whose writes touch a row unless ``status`` says it was cancelled."""

    def __init__(self, status: str = "downloading") -> None:
        self.status = status

    def _write(self, *args, **kwargs) -> bool:
        return self.status == "downloading"

    fail = requeue = release = complete = _write

    def restart(self, claim: Claim) -> bool:
        return False  # the row's url and metadata are as claimed

    def status_of(self, task_id: str) -> str | None:
        return self.status


def settings_in(tmp_path: Path) -> Settings:
    return Settings(temp_dir=tmp_path / "temp", output_dir=tmp_path / "videos")


def prepared_runner(tmp_path: Path, task_id: str, store: FakeStore) -> TaskRunner:
    task = SimpleNamespace(
        id=task_id, name="Clip", url="http://127.0.0.1:9/x.m3u8", auto_retries=0,
        metadata_dict=lambda: {},
    )  # fmt: skip
    runner = TaskRunner(
        store, settings_in(tmp_path), task, Claim(task_id, "here:1:x", 1),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
    )  # fmt: skip
    runner.job = prepare(task, runner.settings)  # type: ignore[arg-type]
    return runner


def test_a_cancel_removes_only_the_tasks_own_files(tmp_path):
    store = FakeStore()
    ours = prepared_runner(tmp_path, "ours", store)
    theirs = prepared_runner(tmp_path, "theirs", FakeStore())
    assert (ours.job.output_path.name, theirs.job.output_path.name) == ("Clip.mp4", "Clip (2).mp4")
    videos = ours.job.output_path.parent
    (videos / "Clip (2).mp4").write_bytes(b"their finished video")
    (videos / "Clip (2).jpg").write_bytes(b"their poster")
    (videos / "Clip (3).mp4").write_bytes(b"there before")
    our_part = WorkFolder(ours.job.work_dir).temp_file_for(ours.job.output_path)
    our_part.write_bytes(b"half a remux")
    their_part = WorkFolder(theirs.job.work_dir).temp_file_for(theirs.job.output_path)
    their_part.write_bytes(b"their half")
    their_part.with_name(".Clip.mp4.somebody.part").write_bytes(b"a CLI download's")
    store.status = "cancelled"
    ours._settle(Outcome.raised(CancelledError(), StopReason.CANCELLED))

    assert not ours.job.work_dir.exists() and theirs.job.work_dir.is_dir()
    assert sorted(p.name for p in videos.iterdir()) == sorted([
        "Clip (2).mp4", "Clip (2).jpg", "Clip (3).mp4", ".Clip (2).reserved", their_part.name,
        ".Clip.mp4.somebody.part",
    ])  # fmt: skip


def test_a_cancel_with_a_planted_work_folder_link_deletes_nothing_through_it(tmp_path, victim):
    before = tree(victim)
    store = FakeStore()
    runner = prepared_runner(tmp_path, "t1", store)
    os.rename(runner.job.work_dir, tmp_path / "moved")
    runner.job.work_dir.symlink_to(victim, target_is_directory=True)
    store.status = "cancelled"
    runner._settle(Outcome.raised(CancelledError(), StopReason.CANCELLED))
    assert tree(victim) == before and runner.job.work_dir.is_symlink()
    assert not reservation_path(runner.job.output_path).exists()


def test_a_failure_for_good_releases_the_name_and_a_requeue_keeps_it(tmp_path):
    runner = prepared_runner(tmp_path, "t1", FakeStore())
    reservation = reservation_path(runner.job.output_path)
    part = WorkFolder(runner.job.work_dir).temp_file_for(runner.job.output_path)
    part.write_bytes(b"left by a crashed attempt")
    runner._settle(Outcome.raised(TransientDownloadError("HTTP 503 for now")))
    assert reservation.exists() and part.exists()
    runner._settle(Outcome.raised(SegmentError("seg-005.ts: HTTP 404")))
    assert not reservation.exists() and not part.exists()
    assert runner.job.work_dir.is_dir()  # kept for a retry


def test_a_refused_work_folder_fails_the_row_before_a_name_is_reserved(tmp_path, victim):
    settings = settings_in(tmp_path)
    (tmp_path / "temp").mkdir()
    (tmp_path / "temp" / "t1").symlink_to(victim, target_is_directory=True)
    task = SimpleNamespace(id="t1", name="Clip", url="http://h/x.m3u8", metadata_dict=dict)
    with pytest.raises(WorkFolderError, match="symbolic link"):
        prepare(task, settings)  # type: ignore[arg-type]
    videos = tmp_path / "videos"
    assert not videos.exists() or list(videos.iterdir()) == []


@pytest.fixture(scope="module")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_source(tmp_path_factory.mktemp("v") / "src.mp4", duration=1, width=64, height=36)


def test_a_poster_never_overwrites_a_file_that_is_not_its_own(tmp_path, small_video):
    runner = prepared_runner(tmp_path, "t1", FakeStore())
    video = runner.job.output_path
    video.write_bytes(small_video.read_bytes())
    poster = video.with_suffix(".jpg")
    poster.write_bytes(b"someone else's picture, there first")
    assert runner._poster(runner.job, video) is None
    assert poster.read_bytes() == b"someone else's picture, there first"
    assert [p.name for p in video.parent.iterdir() if p.name.endswith(".part")] == []


def test_the_poster_is_named_after_its_video(tmp_path, small_video):
    runner = prepared_runner(tmp_path, "second", FakeStore())
    video = runner.job.output_path.with_name("Clip (2).mp4")
    video.write_bytes(small_video.read_bytes())
    assert runner._poster(runner.job, video) == video.with_name("Clip (2).jpg")
    assert video.with_name("Clip (2).jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_a_job_without_a_reservation_is_not_released_by_accident(tmp_path):
    # `download`/`batch` jobs reserve nothing: a runner never touches another's reservation
    output = tmp_path / "videos" / "Clip.mp4"
    output.parent.mkdir(parents=True)
    assert reserve(output, "someone")
    runner = prepared_runner(tmp_path, "t1", FakeStore())
    runner.job = Job("http://h/x.m3u8", output, tmp_path / "w", DownloadOptions())
    runner._release_output()
    assert reserved_by(output) == "someone"
