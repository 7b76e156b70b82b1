"""Hostile rows against the daemon: each fails with a sentence or is normalised, and the
daemon lives on to download the next good row.

Rows are inserted and changed with the Rust API's SQL (dlstore.testing.rust_api), the
daemon runs as a subprocess (or in-process, where a failure is injected with
monkeypatch), media comes from the daemon harness's fixtures (tests/support/daemon.py).
Unit-level pieces of the same story: test_hostile_values.py.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlstore import db
from dlstore.config import Profile, Settings
from dlstore.daemon import Daemon
from dlstore.store import TaskStore
from dlstore.testing.media import decode_check
from dlstore.worker import ProgressReporter, TaskRunner

from .support.daemon import SHORT_SEGMENTS, Harness, Proc, downloading_with, wait_until

pytestmark = pytest.mark.slow


DEEP = 100_000


@dataclass(frozen=True)
class Hostile:
    """One hostile row: what the API inserts, then what it UPDATEs, and the outcome."""

    label: str
    metadata: str | None = None  # the metadata column's raw text
    set_sql: str | None = None  # "column = value" for an UPDATE after the insert
    name: str | None = None  # default: the label
    url: str | None = None  # "{stream}" is the tiny stream, the default
    fails_with: str | None = None  # a part of error_message; None: the row completes
    sqlite_only: bool = False  # PostgreSQL's column types refuse the value


HOSTILE = [
    # metadata text, as the API inserts it
    Hostile("deep array", "[" * DEEP + "]" * DEEP, fails_with="nested more than 32 levels"),
    Hostile("deep object", '{"a":' * DEEP + "1" + "}" * DEEP, fails_with="nested more than"),
    Hostile("profile list", '{"profile": ["fast"]}', fails_with="profile must be a profile's"),
    Hostile("profile object", '{"profile": {"a": 1}}', fails_with="not an object"),
    Hostile("header number", '{"headers": {"Referer": 5}}', fails_with="header Referer must"),
    Hostile("quality number", '{"quality": 720}', fails_with="Unknown quality 720;"),
    Hostile("output_dir list", '{"output_dir": ["a"]}', fails_with="output_dir must be text"),
    Hostile("long integer", '{"x": ' + "9" * 5000 + "}", fails_with="a number of 5000 digits"),
    Hostile("NaN", '{"x": NaN}', fails_with="NaN is not a JSON number"),
    Hostile("2 MB", '{"x": "' + "a" * 2_000_000 + '"}', fails_with="at most 1048576 are"),
    Hostile("metadata number", "42", fails_with="must be a JSON object such as"),
    # name and URL
    Hostile("NUL", name="a\x00b", fails_with="contains U+0000 (nul)", sqlite_only=True),
    Hostile("control characters", name="Red \x1b[31m\nline\ttab", fails_with="contains U+001B"),
    Hostile("URL of 1 MB", url="{stream}?" + "a" * 1_000_000, fails_with="at most 8192 are"),
    Hostile("URL number", url="42", fails_with="Only http:// and https://"),
    # text that is not UTF-8 (SQLite keeps any bytes in TEXT; PostgreSQL refuses them)
    Hostile(
        "URL not UTF-8",
        set_sql="url = url || CAST(x'ff' AS TEXT)",
        fails_with="The task's url is not valid UTF-8 text",
        sqlite_only=True,
    ),
    Hostile(
        "name not UTF-8",
        set_sql="name = 'Bad ' || CAST(x'c3' AS TEXT)",
        fails_with="The task's name is not valid UTF-8 text",
        sqlite_only=True,
    ),
    Hostile(
        "metadata not UTF-8",
        set_sql="""metadata = '{"a": "' || CAST(x'ff' AS TEXT) || '"}'""",
        fails_with="The task's metadata is not valid UTF-8 text",
        sqlite_only=True,
    ),
    Hostile(
        "status not UTF-8",
        set_sql="status = 'pending' || CAST(x'ff' AS TEXT)",
        fails_with="is not one dlstore knows",
        sqlite_only=True,
    ),
    # numbers in the columns the API can write
    Hostile("attempts text", set_sql="attempts = 'abc'", sqlite_only=True),
    Hostile("attempts 2**63-1", set_sql=f"attempts = {2**63 - 1}", sqlite_only=True),
    Hostile("attempts 10**30 text", set_sql=f"attempts = '{10**30}'", sqlite_only=True),
    Hostile("attempts float", set_sql="attempts = 1.5", sqlite_only=True),
    Hostile("attempts max int", set_sql=f"attempts = {2**31 - 1}"),
    Hostile("attempts negative", set_sql="attempts = -5"),
    Hostile("attempts NULL", set_sql="attempts = NULL"),
    Hostile("auto_retries text", set_sql="auto_retries = 'abc'", sqlite_only=True),
    Hostile("auto_retries max int", set_sql=f"auto_retries = {2**31 - 1}"),
    Hostile("auto_retries negative", set_sql="auto_retries = -3"),
    Hostile("progress text", set_sql="progress = 'abc'", sqlite_only=True),
    Hostile("progress 10**30", set_sql=f"progress = {10**30}", sqlite_only=True),
    Hostile("progress negative", set_sql="progress = -1"),
    Hostile(
        "segments text", set_sql="downloaded_segments = 'x', total_segments = 'x'", sqlite_only=True
    ),  # fmt: skip
    Hostile("segments negative", set_sql="downloaded_segments = -1, total_segments = -1"),
    Hostile(
        "bytes text",
        set_sql="downloaded_bytes = 'x', speed_bps = 'x', eta_seconds = 'x'",
        sqlite_only=True,
    ),  # fmt: skip
    Hostile("bytes max", set_sql=f"downloaded_bytes = {2**63 - 1}, speed_bps = -1"),
    Hostile("run_after garbage", set_sql="run_after = 'garbage'"),
    Hostile("created_at garbage", set_sql="created_at = 'not a time'"),
    Hostile("worker_id garbage", set_sql="worker_id = 'not:a:worker:id'"),
    Hostile(
        "orphan, heartbeat garbage",
        set_sql="status = 'downloading', worker_id = 'elsewhere:1:x', attempts = 1, "
        "heartbeat_at = 'garbage'",
    ),
]


def insert(h: Harness, case: Hostile) -> str:
    url = (case.url or "{stream}").format(stream=h.stream("tiny"))
    task_id = h.api.create(case.name or case.label, url, case.metadata)
    if case.set_sql:
        h.api.execute(f"UPDATE download_tasks SET {case.set_sql} WHERE id = ?", (task_id,))
    return task_id


def settled(h: Harness, ids: list[str]) -> bool:
    return all(h.row(i)["status"] in ("completed", "failed") for i in ids)


def test_hostile_rows_fail_with_a_sentence_or_complete_and_the_daemon_goes_on(harness, db_url):
    h = harness
    cases = [c for c in HOSTILE if not (c.sqlite_only and not h.api.sqlite)]
    if h.api.sqlite:  # rows "not UTF-8" are read here as dlstore shows them
        h.api.conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
    ids = {insert(h, case): case for case in cases}
    good = h.api.create("Good", h.stream("tiny"))

    proc = h.start("--max-concurrent", "3")
    wait_until(lambda: settled(h, [*ids, good]), 120, "every row to settle", every=0.2)
    assert proc.popen.poll() is None, proc.text()  # alive

    for task_id, case in ids.items():
        row = h.row(task_id)
        if case.fails_with is None:
            assert row["status"] == "completed", (case.label, row["error_message"])
            assert row["progress"] == 100 and row["downloaded_segments"] == 2, case.label
            assert row["total_segments"] == 2 and row["auto_retries"] == 0, case.label
            assert 1 <= row["attempts"] <= 2, (case.label, row["attempts"])
        else:
            assert row["status"] == "failed", (case.label, row["message"])
            assert case.fails_with in row["error_message"], (case.label, row["error_message"])
            assert len(row["error_message"]) < 400, case.label
    row = h.row(good)
    assert row["status"] == "completed", row
    decoded = decode_check(Path(row["output_path"]))
    assert decoded.errors == () and (decoded.width, decoded.height) == (64, 36)
    names = {p.name for p in h.videos.rglob("*.mp4")}
    assert not any("\x1b" in n or "[31m" in n for n in names)  # a name with ESC is refused

    proc.send(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.text()
    text = proc.text()
    assert "Traceback" not in text and "unexpected error" not in text.lower(), text[-3000:]
    hits = sum(n for p, n in h.server.hits.items() if p.endswith(".ts"))
    completing = sum(1 for case in cases if case.fails_with is None)
    assert hits == 2 * (completing + 1)  # nothing fetched for a failed row, no row twice


# --------------------------------------------------------------------------- changed rows


def downloading(h: Harness, name: str, segments: int) -> tuple[str, Proc]:
    """A row of "short" being downloaded by one thread (~4.8 s), ``segments`` fetched: slow
    enough that a change made now is seen (at the next progress write, ≤ 1 s) mid-download."""
    h.server.latency = 0.6
    task_id = h.api.create(name, h.stream(), {"profile": "serial"})
    proc = h.start("--exit-when-idle")
    wait_until(downloading_with(h, task_id, segments), 15, f"{segments} segment(s)")
    return task_id, proc


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_url_changed_while_downloading_restarts_the_row_with_the_new_url(harness):
    h = harness
    task_id, proc = downloading(h, "Changed", 1)
    h.api.execute("UPDATE download_tasks SET url = ? WHERE id = ?", (h.stream("tiny"), task_id))
    assert proc.wait(30) == 0, proc.text()

    row = h.row(task_id)
    assert row["status"] == "completed" and row["attempts"] == 2, row
    decoded = decode_check(Path(row["output_path"]))
    assert decoded.errors == () and (decoded.width, decoded.height) == (64, 36)  # the new video
    assert [p.name for p in h.videos.rglob("*.mp4")] == ["Changed.mp4"]  # no old video
    assert f"[task {task_id}] Its URL or settings changed while downloading" in proc.text()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_metadata_changed_while_downloading_restarts_and_resumes(harness):
    h = harness
    task_id, proc = downloading(h, "Noted", 2)
    h.api.execute(
        "UPDATE download_tasks SET metadata = ? WHERE id = ?",
        ('{"profile": "serial", "ui_note": "renamed by the user"}', task_id),
    )
    assert proc.wait(30) == 0, proc.text()

    row = h.row(task_id)
    assert row["status"] == "completed" and row["attempts"] == 2, row
    assert '"ui_note": "renamed by the user"' in row["metadata"]
    # resumed: at most the segment in flight when it stopped is fetched again
    assert sum(h.segment_hits().values()) <= SHORT_SEGMENTS + 1, h.segment_hits()
    assert decode_check(Path(row["output_path"])).errors == ()
    assert "Its URL or settings changed while downloading" in proc.text()


# --------------------------------------------------------------------------- dying threads


class Doom(BaseException):
    """Not an Exception: escapes every `except Exception` in the runner."""


def in_process_daemon(h: Harness) -> Daemon:
    """A daemon in this process (so monkeypatch reaches it), like the CONFIG's, idle-exiting."""
    settings = Settings(
        temp_dir=h.home / "work",
        output_dir=h.home / "videos",
        log_file=None,
        poll_interval=0.1,
        lease_seconds=3,
        task_retries=0,
        profiles={**Settings().profiles, "serial": Profile(threads=1, max_retries=1)},
    )
    return Daemon(TaskStore(db.make_engine(h.url)), settings, exit_when_idle=True, host="here")


def never_settles(runner: TaskRunner) -> None:
    """A runner that returns without writing anything."""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("death", "says"),
    [(Doom("out of nowhere"), "Doom"), (SystemExit(3), "SystemExit"),
     (None, "no outcome was recorded")],
)  # fmt: skip
def test_a_worker_thread_that_dies_fails_its_row_and_the_daemon_goes_on(
    harness, monkeypatch, caplog, death, says
):
    h = harness
    original = TaskRunner._run

    def dying(runner: TaskRunner) -> None:
        if runner.task.name != "Doomed":
            return original(runner)
        if death is None:
            return never_settles(runner)
        raise death

    monkeypatch.setattr(TaskRunner, "_run", dying)
    doomed = h.api.create("Doomed", h.stream("tiny00"))
    good = h.api.create("Good", h.stream("tiny01"))
    with caplog.at_level(logging.INFO, logger="dlstore"):
        in_process_daemon(h).run()

    row = h.row(doomed)
    assert row["status"] == "failed", row
    assert row["error_message"] == (
        f"dlstore's worker for this task stopped unexpectedly ({says}); retry it, and report "
        "it if it happens again."
    )
    assert h.row(good)["status"] == "completed"
    assert f"[task {doomed}] The worker stopped unexpectedly" in caplog.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_progress_reporter_that_dies_fails_its_row_and_the_daemon_goes_on(harness, monkeypatch):
    h = harness
    h.server.latency = 0.3  # long enough for the reporter's first write
    original = ProgressReporter._write

    def broken(reporter: ProgressReporter) -> bool:
        if reporter._claim.task_id == doomed:
            raise RuntimeError("a bug in the reporter")
        return original(reporter)

    monkeypatch.setattr(ProgressReporter, "_write", broken)
    doomed = h.api.create("Doomed", h.stream(), {"profile": "serial"})
    good = h.api.create("Good", h.stream("tiny"))
    in_process_daemon(h).run()

    row = h.row(doomed)
    assert row["status"] == "failed", row
    assert "(RuntimeError)" in row["error_message"]
    assert "a bug in the reporter" not in row["error_message"]  # only the type: text may echo peers
    assert sum(h.segment_hits().values()) < SHORT_SEGMENTS  # it stopped downloading
    assert h.row(good)["status"] == "completed"
