"""Hostile values in a row: read, checked and fenced without crashing anything.

Every column of ``download_tasks`` is written by the Rust API from strangers' input,
and SQLite stores whatever it is given (text in an INTEGER column, bytes anywhere).
Here, piece by piece: how a row's values are read (``DownloadTask.from_row``), how
its metadata is parsed and checked, what the claim makes of hostile counts and
timestamps, the fence on the URL and metadata a row was claimed with, and the
runner's bookkeeping when a thread dies. Daemon-level tests: test_daemon_hostile.py.
"""

from __future__ import annotations

import json
import logging
import threading
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from dlstore.cli import app
from dlstore.config import Settings
from dlstore.errors import DlstoreError, InvalidInputError, UnsupportedStreamError
from dlstore.models import DownloadTask, read_value
from dlstore.options import (
    MAX_METADATA_CHARS,
    MAX_METADATA_DEPTH,
    check_task_metadata,
    parse_metadata,
    prepare,
)
from dlstore.store import METADATA_CHANGED, URL_CHANGED, ProgressUpdate
from dlstore.testing.rust_api import RustApi
from dlstore.validate import MAX_URL_CHARS, check_url
from dlstore.worker import ProgressReporter, TaskRunner

URL = "https://cdn.example/show/index.m3u8"
PROFILES = {"fast": {}, "stable": {}}
DEEP = 100_000


@pytest.fixture
def api(migrated_url, store):  # `store` first: the schema exists before the API connects
    api = RustApi(migrated_url)
    yield api
    api.close()


def sqlite_only(request, api, statement: str, params: tuple) -> bool:
    """Store a value only SQLite keeps as it is: True on SQLite; on PostgreSQL, check that
    the column's type refuses it or casts it to a whole number, and say False."""
    if "postgres" not in request.node.callspec.id:
        return True
    import psycopg

    try:
        api.execute(statement, params)
    except psycopg.errors.DataError:
        return False
    row = api.execute("SELECT attempts, auto_retries FROM download_tasks").fetchone()
    assert all(v is None or isinstance(v, int) for v in row.values()), row
    return False


def progress() -> ProgressUpdate:
    return ProgressUpdate(50, 1, 2, 100, None, None, "video-000001.seg", "Downloading")


# --------------------------------------------------------------------------- reading a row


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (7, 7),
        (-5, -5),
        (2**63 - 1, 2**63 - 1),
        (3.0, 3),
        (1.5, None),
        (1e30, None),
        (float("nan"), None),
        ("abc", None),
        ("12", None),  # SQLite would have stored a number; text is not one
        (b"\x01", None),
        (None, None),
    ],
)
def test_an_integer_column_reads_as_a_whole_64_bit_number_or_none(value, read):
    assert read_value("attempts", value) == read
    assert read_value("downloaded_bytes", value) == read


@pytest.mark.parametrize(
    ("value", "read"),
    [("Clip", "Clip"), (42, "42"), (1.5, "1.5"), (b"Clip \xff", "Clip \ufffd"), (None, None)],
)
def test_a_text_column_reads_as_text(value, read):
    assert read_value("name", value) == read
    assert read_value("metadata", value) == read


def test_the_id_is_kept_exactly_as_stored():
    assert read_value("id", b"\xff") == b"\xff"


def test_a_row_with_text_in_every_integer_column_reads_and_prints(
    request, migrated_url, api, store
):
    task_id = api.create("Clip", URL)
    statement = (
        "UPDATE download_tasks SET progress = 'x', total_segments = 'x', "
        "downloaded_segments = 'x', attempts = 'x', downloaded_bytes = 'x', speed_bps = 'x', "
        "eta_seconds = 'x', auto_retries = 'x', name = ?, metadata = ? WHERE id = ?"
    )
    params = (b"Clip \xff", b'{"quality": "best"}', task_id)
    if not sqlite_only(request, api, statement, params):
        return
    api.execute(statement, params)
    task = store.get(task_id)
    assert (task.progress, task.attempts, task.downloaded_bytes, task.auto_retries) == (None,) * 4
    assert task.name == "Clip \ufffd" and task.metadata_dict() == {"quality": "best"}
    assert json.dumps(task.to_json())
    assert [t.id for t in store.list()] == [task_id]
    for command in (["status", task_id], ["status", task_id, "--json"], ["list"]):
        result = CliRunner().invoke(app, [*command, "--db", migrated_url])
        assert result.exit_code == 0, result.output
        assert "Clip" in result.stdout


#: A column's text with a byte that is not UTF-8, as SQLite keeps it (a TEXT value).
NOT_UTF8 = {
    "url": "url = url || CAST(x'ff' AS TEXT)",
    "name": "name = 'Clip ' || CAST(x'c3' AS TEXT)",
    "metadata": """metadata = '{"note": "' || CAST(x'e2ff' AS TEXT) || '"}'""",
}
NOT_UTF8_BYTE = {"url": "0xFF at byte 36", "name": "0xC3 at byte 6", "metadata": "0xE2 at byte 11"}
#: The commands whose text (not --json) shows the column.
SHOWN_BY = {"url": ("status",), "name": ("status", "list"), "metadata": ()}


@pytest.mark.parametrize("column", NOT_UTF8)
def test_text_that_is_not_utf8_reads_prints_and_fails_its_row_clearly(
    request, tmp_path, migrated_url, api, store, column
):
    task_id = api.create("Clip", URL)
    refused = f"UPDATE download_tasks SET {column} = convert_from('\\x68ff'::bytea, 'UTF8')"
    if not sqlite_only(request, api, refused + " WHERE id = ?", (task_id,)):
        return  # PostgreSQL refuses the bytes at the write
    api.execute(f"UPDATE download_tasks SET {NOT_UTF8[column]} WHERE id = ?", (task_id,))
    good = api.create("Good", URL)
    assert {t.id for t in store.list()} == {task_id, good}

    task, claim = store.claim("here:1:x")  # the oldest: the bad row, read all the same
    assert task.id == task_id
    settings = Settings(temp_dir=tmp_path / "work", output_dir=tmp_path / "videos")
    with pytest.raises(InvalidInputError) as refusal:
        prepare(task, settings)
    assert str(refusal.value) == (
        f"The task's {column} is not valid UTF-8 text (the byte {NOT_UTF8_BYTE[column]} is "
        f"not UTF-8); whatever wrote the row must store it as UTF-8: correct the {column} and "
        "retry the task."
    )
    assert store.fail(claim, str(refusal.value))  # the fence matches the row's bytes
    assert store.get(task_id).status == "failed"
    assert store.claim("here:1:x")[0].id == good  # nothing blocked

    with store.engine.connect() as conn:
        assert len(conn.exec_driver_sql("SELECT * FROM download_status").all()) == 2
    for command in (
        ["status", task_id],
        ["status", task_id, "--json"],
        ["list"],
        ["list", "--json"],
    ):
        result = CliRunner().invoke(app, [*command, "--db", migrated_url])
        assert result.exit_code == 0, result.output
        if "--json" in command:  # JSON escapes it
            assert "\\ufffd" in result.stdout and "\\udc" not in result.stdout, result.stdout
        elif command[0] in SHOWN_BY[column]:
            assert "\ufffd" in result.stdout, result.stdout


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_status_and_an_id_that_are_not_utf8_are_read_and_failed(api, store):
    task_id = api.create("Clip", URL)
    api.execute(
        "UPDATE download_tasks SET id = id || CAST(x'ff' AS TEXT), "
        "status = 'odd' || CAST(x'ff' AS TEXT) WHERE id = ?",
        (task_id,),
    )
    (task,) = store.list()
    assert task.id == task_id + "\udcff" and task.status == "odd\udcff"
    assert store.list(status=task.status) == [task]
    assert store.fail_unclaimed(task.id, "Unknown status", from_status=task.status)
    assert store.get(task.id).status == "failed" and store.status_of(task.id) == "failed"
    assert store.retry(task.id).status == "pending"
    assert store.claim("here:1:x")[0].id == task.id


@pytest.mark.parametrize("garbage", ["9999-12-31T23:59:59-23:59", "2025-13-45T10:00:00Z", "x"])
def test_a_timestamp_that_is_no_moment_reads_as_unknown(garbage):
    assert DownloadTask(id="t", name="n", url=URL, created_at=garbage).created() is None


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * DEEP + "]" * DEEP, f"nested more than {MAX_METADATA_DEPTH} levels deep"),
        ('{"a":' * DEEP + "1" + "}" * DEEP, "nested more than"),
        ('{"a":' * (MAX_METADATA_DEPTH + 1) + "1" + "}" * (MAX_METADATA_DEPTH + 1), "nested"),
        ('{"x": ' + "9" * 5000 + "}", "a number of 5000 digits is too long"),
        ('{"x": NaN}', "NaN is not a JSON number"),
        ('{"x": -Infinity}', "-Infinity is not a JSON number"),
        ('{"x": "' + "a" * MAX_METADATA_CHARS + '"}', f"at most {MAX_METADATA_CHARS} are"),
        ("{quality: 720p", "not valid JSON (Expecting property name"),
        ("42", "must be a JSON object such as"),
        ("null", "not null"),
        ("[1, 2]", "not a list"),
    ],
)
def test_hostile_metadata_text_is_refused_with_a_sentence(text, says):
    with pytest.raises(DlstoreError, match="^The task's metadata ") as caught:
        parse_metadata(text)
    assert says in str(caught.value)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"output_dir": "\\ud800"}', 'the value of "output_dir"'),
        ('{"headers": {"X-A": "a\\udfffb"}}', 'the value of "headers" › "X-A"'),
        ('{"subtitles": ["en", "\\udc80"]}', 'the value of "subtitles" › [1]'),
        ('{"\\ud83d": 1}', 'the key "\ufffd"'),
    ],
)
def test_a_lone_surrogate_escape_in_metadata_is_refused_naming_where(text, where):
    """JSON's "\\ud800" parses to a lone surrogate, which no file name, header or
    database driver takes: it fails the row before it reaches one (it gave an
    UnicodeEncodeError, "an unexpected error", when it reached the output folder)."""
    with pytest.raises(DlstoreError, match="^The task's metadata holds a lone surrogate") as e:
        parse_metadata(text)
    assert f"in {where}," in str(e.value), str(e.value)
    assert "correct the metadata and retry the task" in str(e.value)
    assert parse_metadata('{"name": "\\ud83c\\udfac"}') == {"name": "\U0001f3ac"}  # a pair


def test_a_row_whose_output_dir_is_a_lone_surrogate_fails_with_a_sentence(tmp_path, api, store):
    task_id = api.create("Clip", URL, metadata='{"output_dir": "\\ud800"}')
    task, _ = store.claim("here:1:x")
    assert task.id == task_id
    settings = Settings(temp_dir=tmp_path / "work", output_dir=tmp_path / "videos")
    with pytest.raises(DlstoreError, match='lone surrogate escape .* "output_dir"'):
        prepare(task, settings)


def test_metadata_as_deep_as_allowed_is_accepted():
    depth = MAX_METADATA_DEPTH - 1
    assert parse_metadata('{"a":' * depth + "1" + "}" * depth)


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ({"profile": ["fast"]}, "profile must be a profile's name, not a list."),
        ({"profile": {"fast": 1}}, "profile must be a profile's name, not an object."),
        ({"profile": 5}, "profile must be a profile's name, not a number."),
        ({"profile": "x" * 10_000}, "Unknown profile 'xxxx"),
        ({"quality": 720}, "Unknown quality 720;"),
        ({"quality": ["720p"]}, "Unknown quality ['720p'];"),
        ({"format": {"mp4": 1}}, "Unknown format {'mp4': 1};"),
        ({"output_dir": ["a"]}, "output_dir must be text, not a list."),
        ({"headers": {"Referer": 5}}, "The value of header Referer must be text"),
        ({"headers": ["Referer"]}, "headers must be an object"),
    ],
)
def test_hostile_caller_keys_are_refused_naming_the_key(metadata, says):
    with pytest.raises(InvalidInputError) as caught:
        check_task_metadata(metadata, PROFILES)
    assert says in str(caught.value)
    assert len(str(caught.value)) < 200  # a 10,000-character value is not echoed whole


def test_a_profile_that_is_not_text_is_refused_without_a_profile_list_too():
    with pytest.raises(InvalidInputError, match="not a list"):
        check_task_metadata({"profile": ["fast"]})


def test_a_url_of_a_megabyte_is_refused_before_anything_else():
    with pytest.raises(UnsupportedStreamError, match=f"at most {MAX_URL_CHARS} are accepted"):
        check_url(URL + "?" + "a" * 1_000_000)
    assert check_url(URL + "?" + "a" * (MAX_URL_CHARS - len(URL) - 1))


# --------------------------------------------------------------------------- the claim

#: (column, SQL value, SQLite only): counts a claim must not trust.
HOSTILE_COUNTS = [
    ("attempts", "'abc'", True),
    ("attempts", str(2**63 - 1), True),
    ("attempts", "'" + "9" * 30 + "'", True),  # 10**30 as text: SQLite stores a REAL
    ("attempts", "1.5", True),
    ("attempts", str(2**31 - 1), False),  # INTEGER's largest on PostgreSQL: +1 overflows
    ("attempts", "-5", False),
    ("attempts", "NULL", False),
    ("auto_retries", "'abc'", True),
    ("auto_retries", str(2**63 - 1), True),
    ("auto_retries", str(2**31 - 1), False),
    ("auto_retries", "-3", False),
]


@pytest.mark.parametrize(("column", "value", "sqlite"), HOSTILE_COUNTS)
def test_a_claim_normalises_counts_and_its_writes_stay_fenced(
    request, api, store, column, value, sqlite
):
    task_id = api.create("Clip", URL)
    statement = f"UPDATE download_tasks SET {column} = {value} WHERE id = ?"
    if sqlite and not sqlite_only(request, api, statement, (task_id,)):
        return
    api.execute(statement, (task_id,))
    task, claim = store.claim("here:1:x")
    assert claim.attempt == task.attempts
    if column == "attempts":
        assert task.attempts == (2 if value == "1.5" else 1)  # a fraction is cut off
    else:
        assert (task.attempts, task.auto_retries) == (1, 0)
    assert store.report_progress(claim, progress())
    assert store.requeue(claim, "HTTP 503", run_after="2000-01-01T00:00:00Z")
    task, claim = store.claim("here:1:x")
    assert task.auto_retries == 1 and store.fail(claim, "done")


@pytest.mark.parametrize("garbage", ["garbage", "zzzz-99-99", "not 2025-01-01"])
def test_a_run_after_that_is_not_a_timestamp_does_not_hold_a_row_back(api, store, garbage):
    task_id = api.create("Clip", URL)
    api.execute("UPDATE download_tasks SET run_after = ? WHERE id = ?", (garbage, task_id))
    assert store.claim("here:1:x")[0].id == task_id


def test_a_run_after_in_the_future_still_holds_a_row_back(api, store):
    task_id = api.create("Clip", URL)
    api.execute(
        "UPDATE download_tasks SET run_after = '9999-12-31T00:00:00Z' WHERE id = ?", (task_id,)
    )
    assert store.claim("here:1:x") is None


def test_a_heartbeat_that_is_not_a_timestamp_does_not_hold_a_row_forever(api, store):
    task_id = api.create("Clip", URL)
    api.execute(
        "UPDATE download_tasks SET status = 'downloading', worker_id = 'elsewhere:1:x', "
        "attempts = 1, heartbeat_at = 'garbage' WHERE id = ?",
        (task_id,),
    )
    assert store.reclaim_expired(3600) == [task_id]


# --------------------------------------------------------------------------- the URL fence


def test_a_url_changed_by_the_api_fences_out_the_claim_and_restarts_the_row(api, store):
    task_id = api.create("Clip", URL, {"quality": "best"})
    _, claim = store.claim("here:1:x")
    assert store.report_progress(claim, progress())
    assert not store.restart(claim)  # nothing changed: nothing to restart

    api.execute("UPDATE download_tasks SET url = ? WHERE id = ?", (URL + "?v=2", task_id))
    assert not store.report_progress(claim, progress())
    assert not store.heartbeat(claim)
    assert not store.complete(claim, output_path="/v/Clip.mp4", learned={})
    assert not store.fail(claim, "x") and not store.release(claim)
    assert store.restart(claim)
    row = api.status(task_id)
    assert row["status"] == "pending" and row["message"] == URL_CHANGED
    assert row["worker_id"] is None and row["progress"] == 0 and row["attempts"] == 1
    assert not store.restart(claim)  # once

    task, claim = store.claim("here:1:x")
    assert task.url == URL + "?v=2" and task.attempts == 2
    assert store.complete(claim, output_path="/v/Clip.mp4", learned={"duration": 2.0})


def test_metadata_changed_by_the_api_restarts_the_row_too(api, store):
    task_id = api.create("Clip", URL)  # NULL metadata: fenced as NULL
    _, claim = store.claim("here:1:x")
    api.execute("UPDATE download_tasks SET metadata = ? WHERE id = ?", ('{"a": 1}', task_id))
    assert not store.heartbeat(claim)
    assert store.restart(claim)
    assert api.status(task_id)["message"] == METADATA_CHANGED


def test_a_cancelled_row_is_never_restarted(api, store):
    task_id = api.create("Clip", URL)
    _, claim = store.claim("here:1:x")
    api.execute("UPDATE download_tasks SET url = ? WHERE id = ?", (URL + "?v=2", task_id))
    assert api.cancel(task_id) == 1
    assert not store.restart(claim)
    assert api.status(task_id)["status"] == "cancelled"


# --------------------------------------------------------------------------- dying threads


class Doom(BaseException):
    """Not an Exception: escapes every `except Exception`."""


def test_a_progress_reporter_that_hits_a_bug_says_so_and_stops():
    class BrokenStore:
        def heartbeat(self, claim, message=None):
            raise RuntimeError("a bug")

    broken: list[BaseException] = []
    done = threading.Event()
    log = logging.LoggerAdapter(logging.getLogger("test"), {})
    reporter = ProgressReporter(
        BrokenStore(),  # type: ignore[arg-type]
        SimpleNamespace(task_id="t1"),  # type: ignore[arg-type]
        on_lost=lambda: None,
        on_broken=lambda exc: (broken.append(exc), done.set()),
        log=log,
        interval=0.01,
    )
    reporter.start()
    assert done.wait(5)
    reporter.stop()
    assert [type(e) for e in broken] == [RuntimeError]


@pytest.mark.parametrize("error", [Doom("boom"), SystemExit(3), KeyboardInterrupt()])
def test_a_runner_that_dies_is_not_settled(error):
    task = DownloadTask(id="t1", name="Clip", url=URL)
    runner = TaskRunner(
        None,  # type: ignore[arg-type]
        SimpleNamespace(task_retries=1, task_retry_delay=1, temp_dir="/t", output_dir="/o"),  # type: ignore[arg-type]
        task,
        None,  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
    )

    def dying() -> None:
        raise error

    runner._run = dying  # type: ignore[method-assign]
    with pytest.raises(type(error)):
        runner.run()
    assert not runner.settled
