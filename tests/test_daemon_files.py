"""Hostile rows against the daemon's files: `dlstore daemon` as a subprocess on SQLite.

Rows come in through the Rust API's SQL, media from the local HLS server, as in
the daemon harness (tests/support/daemon.py). Each test plants what a hostile or
unlucky row meets: a symbolic link or someone's folder where its work folder goes, a
second row of the same name, a poster already there. The unit-level versions are in
tests/test_files_security.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlstore.testing.media import decode_check

from .support.daemon import Harness, downloading_with, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def files_in(folder: Path) -> list[str]:
    """Every name in ``folder``, hidden ones (reservations, partial files) included."""
    return sorted(p.name for p in folder.iterdir())


def holder_of(h: Harness, stem: str) -> str | None:
    """The task holding the output name ``stem`` (from its reservation file), if any."""
    try:
        return json.loads((h.videos / f".{stem}.reserved").read_text())["task"]
    except FileNotFoundError:
        return None


def both_downloading(h: Harness, ids: list[str]):
    return lambda: all(downloading_with(h, i, 1)() for i in ids)


def test_two_rows_of_one_name_at_once_get_two_files_and_two_posters(harness):
    h = harness
    h.server.latency = 0.2  # one thread: ~2 s each, so the two run side by side
    ids = [h.api.create("Twin", h.stream(), {"profile": "serial"}) for _ in range(2)]
    proc = h.start("--exit-when-idle")
    wait_until(both_downloading(h, ids), 15, "both rows downloading at once")
    assert proc.wait(60) == 0, proc.text()

    rows = [h.row(i) for i in ids]
    assert [r["status"] for r in rows] == ["completed", "completed"], rows
    outputs = sorted(Path(r["output_path"]) for r in rows)
    assert [p.name for p in outputs] == ["Twin (2).mp4", "Twin.mp4"]
    for row in rows:
        video = Path(row["output_path"])
        assert decode_check(video).errors == ()
        poster = Path(json.loads(row["metadata"])["poster"])
        assert poster == video.with_suffix(".jpg")  # Twin (2).jpg for Twin (2).mp4
        assert poster.read_bytes()[:3] == b"\xff\xd8\xff"
    # no partial file, no reservation outlives its task; the work folders are gone
    assert files_in(h.videos) == ["Twin (2).jpg", "Twin (2).mp4", "Twin.jpg", "Twin.mp4"]
    assert not any(h.work_dir(i).exists() for i in ids)


def test_cancelling_one_of_two_rows_of_one_name_removes_only_its_own_files(harness):
    h = harness
    h.videos.mkdir()
    (h.videos / "Twin (3).mp4").write_bytes(b"there before")
    (h.videos / ".Twin.mp4.cli00.part").write_bytes(b"a `dlstore download` of the same name")
    h.server.latency = 0.3
    ids = [h.api.create("Twin", h.stream(), {"profile": "serial"}) for _ in range(2)]
    proc = h.start("--exit-when-idle")
    wait_until(both_downloading(h, ids), 15, "both rows downloading at once")
    first = holder_of(h, "Twin")  # the one with the plain name goes
    (other,) = set(ids) - {first}
    assert holder_of(h, "Twin (2)") == other
    assert h.api.cancel(first) == 1
    assert proc.wait(60) == 0, proc.text()

    assert h.row(first)["status"] == "cancelled" and not h.work_dir(first).exists()
    row = h.row(other)
    assert row["status"] == "completed", row
    assert Path(row["output_path"]).name == "Twin (2).mp4"
    assert decode_check(Path(row["output_path"])).errors == ()
    assert files_in(h.videos) == [
        ".Twin.mp4.cli00.part", "Twin (2).jpg", "Twin (2).mp4", "Twin (3).mp4",
    ]  # fmt: skip
    assert (h.videos / "Twin (3).mp4").read_bytes() == b"there before"


def test_a_poster_already_there_is_never_overwritten(harness):
    h = harness
    h.videos.mkdir()
    (h.videos / "Cover.jpg").write_bytes(b"someone's picture")
    task_id = h.api.create("Cover", h.stream("tiny"))
    h.run()
    row = h.row(task_id)
    assert row["status"] == "completed", row
    video = Path(row["output_path"])
    assert video.name == "Cover (2).mp4"  # the name is taken while its poster's is
    assert json.loads(row["metadata"])["poster"] == str(video.with_suffix(".jpg"))
    assert (h.videos / "Cover.jpg").read_bytes() == b"someone's picture"
    assert files_in(h.videos) == ["Cover (2).jpg", "Cover (2).mp4", "Cover.jpg"]


def test_a_work_folder_that_is_a_link_or_not_dlstores_fails_the_row_untouched(harness, tmp_path):
    h = harness
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_bytes(b"do not delete")
    (h.home / "work").mkdir()
    (h.home / "work" / "linked").symlink_to(victim, target_is_directory=True)
    (h.home / "work" / "someones").mkdir()
    (h.home / "work" / "someones" / "notes.txt").write_bytes(b"mine")
    linked = h.api.create("Linked", h.stream(), task_id="linked")
    someones = h.api.create("Someones", h.stream(), task_id="someones")
    good = h.api.create("Good", h.stream("tiny"))  # the newest: claimed after the bad ones

    proc = h.run()
    row = h.row(linked)
    assert row["status"] == "failed", row
    assert "is a symbolic link; dlstore never follows one there" in row["error_message"]
    row = h.row(someones)
    assert row["status"] == "failed", row
    assert "was not made by dlstore" in row["error_message"]
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert (victim / "precious.txt").read_bytes() == b"do not delete"
    assert files_in(h.home / "work" / "someones") == ["notes.txt"]
    assert sum(h.segment_hits().values()) == 0  # refused before anything was fetched
    assert h.row(good)["status"] == "completed"  # and the daemon went on
    assert files_in(h.videos) == ["Good.jpg", "Good.mp4"]  # no name held by a failed row
    assert f"[task {linked}]" in proc.text()
