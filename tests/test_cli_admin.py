"""The admin commands as a user runs them: output, --json shape, every error."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dlstore.cli import app
from dlstore.store import TaskStore
from dlstore.testing.rust_api import RustApi

runner = CliRunner()


def run(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def test_every_command_has_help():
    for command in (
        ["db", "upgrade"],
        ["db", "current"],
        ["add"],
        ["list"],
        ["status"],
        ["retry"],
        ["cancel"],
    ):
        assert "Usage" in run(*command, "--help").stdout


def test_db_upgrade_and_current(db_url):
    assert "none (not migrated" in run("db", "current", "--db", db_url).stdout
    out = run("db", "upgrade", "--db", db_url).stdout
    assert "at schema 0003 (head)" in out
    assert run("db", "upgrade", "--db", db_url).stdout == out  # idempotent
    assert run("db", "current", "--db", db_url).stdout.strip() == "0003 (head)"


def test_default_database_is_embedded_sqlite_in_working_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOWNLOADER_DATABASE_URL", raising=False)
    run("db", "upgrade")
    assert (tmp_path / "data" / "dlstore.sqlite").is_file()
    task_id = run("add", "https://e/a.m3u8", "--name", "A").stdout.strip()
    assert task_id in run("list").stdout


def test_database_url_from_environment_and_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env_db, cfg_db = tmp_path / "env.sqlite", tmp_path / "cfg.sqlite"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "downloader.yaml").write_text(f"downloader:\n  database_url: {cfg_db}\n")
    run("db", "upgrade")
    assert cfg_db.is_file() and not env_db.exists()
    monkeypatch.setenv("DOWNLOADER_DATABASE_URL", str(env_db))
    run("db", "upgrade")
    assert env_db.is_file()


def test_add_list_status_cancel_retry(migrated_url):
    db = ["--db", migrated_url]
    task_id = run(
        "add",
        "https://e/a.m3u8",
        "--name",
        "Holiday",
        "--quality",
        "720p",
        "--output-dir",
        "trips/2025",
        "--header",
        "Referer: https://e/",
        "--format",
        "ts",
        "--profile",
        "fast",
        *db,
    ).stdout.strip()
    listing = run("list", *db).stdout
    assert listing.splitlines()[0].split() == [
        "ID",
        "STATUS",
        "PROGRESS",
        "CREATED",
        "(UTC)",
        "NAME",
    ]
    assert task_id in listing and "pending" in listing and "Holiday" in listing

    status = json.loads(run("status", task_id, "--json", *db).stdout)
    assert status["metadata"] == {
        "quality": "720p",
        "output_dir": "trips/2025",
        "headers": {"Referer": "https://e/"},
        "format": "ts",
        "profile": "fast",
    }
    for key in (
        "progress",
        "total_segments",
        "downloaded_segments",
        "downloaded_bytes",
        "speed_bps",
        "eta_seconds",
        "current_file",
        "message",
        "error_message",
        "status",
        "created_at",
        "started_at",
        "completed_at",
        "output_path",
    ):
        assert key in status
    human = run("status", task_id, *db).stdout
    assert "status" in human and "pending" in human and "0%" in human

    assert run("cancel", task_id, *db).stdout.strip() == f"{task_id}: cancelled"
    assert run("retry", task_id, *db).stdout.strip() == f"{task_id}: pending"
    rows = json.loads(run("list", "--json", *db).stdout)
    assert [r["id"] for r in rows] == [task_id]
    assert json.loads(run("list", "--status", "completed", "--json", *db).stdout) == []
    assert "No completed tasks." in run("list", "--status", "completed", *db).stdout


def test_status_shows_live_progress_fields(store: TaskStore, migrated_url):
    from dlstore.store import ProgressUpdate

    task = store.create(name="n", url="https://e/a.m3u8")
    _, claim = store.claim("host:1:x")
    store.report_progress(
        claim,
        ProgressUpdate(
            45, 9, 20, 3 * 1024 * 1024, 1024 * 1024, 11, "seg-009.ts", "Downloading segments"
        ),
    )
    out = run("status", task.id, "--db", migrated_url).stdout
    for text in ("45% (9/20)", "3.1 MB", "1.0 MB/s", "11s", "seg-009.ts", "Downloading segments"):
        assert text in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "nope"], "No download task has the id 'nope'"),
        (["retry", "nope"], "No download task"),
        (["cancel", "nope"], "No download task"),
        (["add", "file:///etc/passwd", "--name", "x"], "Only http:// and https://"),
        (["add", "not a url", "--name", "x"], "Only http:// and https://"),
        (["add", "https://e/a.m3u8", "--name", "x", "--quality", "super"], "Unknown quality"),
        (["add", "https://e/a.m3u8", "--name", "x", "--header", "NoColon"], "Name: value"),
        (["add", "https://e/a.m3u8", "--name", "x", "--profile", "turbo"], "Unknown profile"),
        (["add", "https://e/a.m3u8", "--name", "x", "--output-dir", "../up"], "output"),
        (["list", "--status", "weird"], "Unknown status"),
    ],
)
def test_errors_are_one_line_and_non_zero(migrated_url, args, message):
    result = run(*args, "--db", migrated_url, code=1)
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("dlstore: error: ")


def test_retry_of_completed_and_cancel_of_failed_are_refused(store: TaskStore, migrated_url):
    done = store.create(name="a", url="https://e/a.m3u8")
    _, claim = store.claim("w")
    store.complete(claim, output_path="/o.mp4", learned={})
    failed = store.create(name="b", url="https://e/b.m3u8")
    _, claim = store.claim("w")
    store.fail(claim, "boom")
    assert "is completed" in run("retry", done.id, "--db", migrated_url, code=1).stderr
    assert "is failed" in run("cancel", failed.id, "--db", migrated_url, code=1).stderr


def test_missing_sqlite_file_is_not_created_by_a_read(tmp_path):
    missing = tmp_path / "typo.sqlite"
    result = run("list", "--db", str(missing), code=1)
    assert "does not exist yet: run `dlstore db upgrade`" in result.stderr
    assert not missing.exists()


def test_never_migrated_database_says_to_upgrade(db_url):
    for args in (["list"], ["status", "x"], ["add", "https://e/a.m3u8", "--name", "a"]):
        result = run(*args, "--db", db_url, code=1)
        assert "run `dlstore db upgrade`" in result.stderr


def test_unreachable_or_invalid_database(tmp_path):
    bad = [
        (str(tmp_path / "missing" / "x.sqlite"), "does not exist"),
        ("postgresql://postgres@127.0.0.1:1/none", "Cannot connect"),
        ("mysql+nosuchdriver://x/y", "No driver"),
        ("sqlite:///" + str(tmp_path), "Cannot connect"),
    ]
    for url, message in bad:
        result = run("list", "--db", url, code=1)
        assert message in result.stderr, (url, result.stderr)


def test_rows_written_by_the_api_show_in_the_cli(migrated_url):
    api = RustApi(migrated_url)
    task_id = api.create("From the web UI", "https://e/x.m3u8", {"quality": "best"})
    api.close()
    status = json.loads(run("status", task_id, "--json", "--db", migrated_url).stdout)
    assert status["name"] == "From the web UI" and status["metadata"] == {"quality": "best"}


def test_an_error_quoting_a_hostile_status_reaches_the_terminal_escaped(store, migrated_url):
    task = store.create(name="a", url="https://e/a.m3u8")
    api = RustApi(migrated_url)
    try:
        api.execute(
            "UPDATE download_tasks SET status = ? WHERE id = ?", ("x\x1b[2J\u202ey", task.id)
        )
    finally:
        api.close()
    stderr = run("retry", task.id, "--db", migrated_url, code=1).stderr
    assert "\x1b" not in stderr and "\u202e" not in stderr
    assert "\\x1b[2J" in stderr and "\\u202e" in stderr  # shown, as escapes
