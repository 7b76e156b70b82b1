"""Placed is placed (#9): a video in place but not yet recorded in its row is never
downloaded again, nor written a second time as ``name (2).mp4``.

The crash between placing and completing is made by the database: a trigger refuses
the row's change to ``completed`` (as a lost connection would), so the daemon runs
its production code throughout. Then the next daemon finds the work folder's record
of the placed file and completes the row: one file, zero requests to the server.
Unit tests check what counts as "the file an earlier attempt placed".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from dlstore.config import Settings
from dlstore.options import prepare, work_dir_for
from dlstore.paths import reservation_path, reserve
from dlstore.testing.media import decode_check
from dlstore.workfolder import PLACED_NAME, PlacedFile, WorkFolder, fingerprint

from .support.daemon import SHORT_SEGMENTS, Harness

pytestmark = pytest.mark.slow


SQLITE_TRIGGER = """
CREATE TRIGGER lose_the_completion BEFORE UPDATE OF status ON download_tasks
WHEN NEW.status = 'completed'
BEGIN SELECT RAISE(ABORT, 'the connection to the database was lost'); END
"""
PG_FUNCTION = """
CREATE FUNCTION lose_the_completion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the connection to the database was lost'; END $$
"""
PG_TRIGGER = """
CREATE TRIGGER lose_the_completion BEFORE UPDATE ON download_tasks FOR EACH ROW
WHEN (NEW.status = 'completed') EXECUTE FUNCTION lose_the_completion()
"""


def refuse_completions(h: Harness) -> None:
    if h.api.sqlite:
        h.api.execute(SQLITE_TRIGGER)
    else:
        h.api.execute(PG_FUNCTION)
        h.api.execute(PG_TRIGGER)


def allow_completions(h: Harness) -> None:
    suffix = "" if h.api.sqlite else " ON download_tasks"
    h.api.execute(f"DROP TRIGGER lose_the_completion{suffix}")


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_file_placed_but_not_recorded_is_recorded_by_the_next_attempt(harness):
    h = harness
    task_id = h.api.create("Placed", h.stream())
    refuse_completions(h)
    first = h.run()
    assert "Could not record the outcome" in first.text()
    row = h.row(task_id)
    assert row["status"] == "downloading" and row["output_path"] is None, row
    assert names_in(h.videos) == [".Placed.reserved", "Placed.jpg", "Placed.mp4"]
    assert names_in(h.work_dir(task_id)) == [".dlstore-work", PLACED_NAME]  # segments gone
    requests = sum(h.server.hits.values())

    allow_completions(h)
    second = h.run("--lease", "60")  # the holder is gone: taken over at once
    row = h.row(task_id)
    assert row["status"] == "completed" and row["attempts"] == 2, row
    video = h.videos / "Placed.mp4"
    assert Path(row["output_path"]) == video.resolve()
    assert names_in(h.videos) == ["Placed.jpg", "Placed.mp4"]  # one file, nothing left over
    assert not h.work_dir(task_id).exists()
    assert sum(h.server.hits.values()) == requests  # nothing fetched again, not even a playlist
    assert "placed by an earlier attempt" in second.text()
    metadata = json.loads(row["metadata"])
    assert metadata["size_bytes"] == video.stat().st_size and metadata["width"] == 96
    assert metadata["poster"] == str(video.with_suffix(".jpg").resolve())
    assert row["total_segments"] == row["downloaded_segments"] == SHORT_SEGMENTS
    assert decode_check(video).errors == ()


# --------------------------------------------------------------------------- what counts


URL = "http://127.0.0.1:9/x.m3u8"


def task(task_id: str = "t1", name: str = "Clip", url: str = URL) -> SimpleNamespace:
    return SimpleNamespace(id=task_id, name=name, url=url, metadata_dict=lambda: {})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(temp_dir=tmp_path / "temp", output_dir=tmp_path / "videos")


def place_earlier(settings: Settings, video: Path, *, url: str = URL, task_id: str = "t1"):
    """What an attempt that placed ``video`` and then died leaves behind."""
    work = WorkFolder(work_dir_for(settings.temp_dir, task_id), owner=task_id)
    work.claim()
    video.parent.mkdir(parents=True, exist_ok=True)
    video.write_bytes(os.urandom(3 * 1024 * 1024))
    work.record_placed(PlacedFile.of(video, video, url, {"segments": 3}))
    reserve(video, task_id)
    return work


def test_the_placed_file_is_the_job(settings):
    video = (settings.output_dir / "Clip.mp4").resolve()
    place_earlier(settings, video)
    job = prepare(task(), settings)  # type: ignore[arg-type]
    assert job.placed is not None and job.output_path == video
    assert job.placed.checksum == fingerprint(video) and job.placed.size == 3 * 1024 * 1024


def test_a_placed_file_whose_reservation_went_is_reserved_again(settings):
    video = (settings.output_dir / "Clip (2).mp4").resolve()
    place_earlier(settings, video)
    reservation_path(video).unlink()
    job = prepare(task(), settings)  # type: ignore[arg-type]
    assert job.placed is not None and job.output_path == video
    assert reservation_path(video).exists()


@pytest.mark.parametrize("change", ["rewritten", "truncated", "deleted", "url", "elsewhere"])
def test_anything_but_the_same_file_at_one_of_the_tasks_names_is_downloaded_again(
    settings, tmp_path, change
):
    name = "Other.mp4" if change == "elsewhere" else "Clip.mp4"
    video = (settings.output_dir / name).resolve()
    place_earlier(settings, video, url="http://127.0.0.1:9/y.m3u8" if change == "url" else URL)
    if change == "rewritten":  # same size, another middle would pass: change an end
        with open(video, "r+b") as out:
            out.seek(-1, os.SEEK_END)
            out.write(b"\0" if out.read(1) != b"\0" else b"\1")
    elif change == "truncated":
        os.truncate(video, 1024)
    elif change == "deleted":
        video.unlink()
    job = prepare(task(), settings)  # type: ignore[arg-type]
    assert job.placed is None
    assert job.output_path != video or change == "deleted"


def test_a_record_of_another_task_is_not_taken(settings):
    video = (settings.output_dir / "Clip.mp4").resolve()
    place_earlier(settings, video)
    reservation_path(video).unlink()
    reserve(video, "someone-else")
    assert prepare(task(), settings).placed is None  # type: ignore[arg-type]


def test_a_garbled_record_is_ignored(settings):
    video = (settings.output_dir / "Clip.mp4").resolve()
    work = place_earlier(settings, video)
    for garbage in ("[]", "{}", '{"format": 1, "path": "relative.mp4"}', "not json"):
        work.path(PLACED_NAME).write_text(garbage)
        assert work.placed(URL) is None


def test_the_fingerprint_sees_size_and_both_ends(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"a" * (5 * 1024 * 1024))
    before = fingerprint(big)
    with open(big, "r+b") as out:
        out.seek(-10, os.SEEK_END)
        out.write(b"b")
    assert fingerprint(big) != before
    small = tmp_path / "small"
    small.write_bytes(b"x")
    assert fingerprint(small).startswith("sha256:") and fingerprint(small) != fingerprint(big)
