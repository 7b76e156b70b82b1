"""Migrations on a database shared with the Rust app: create, adopt, leave others alone."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from dlstore import db, migrate
from dlstore.models import ADDED_COLUMNS, SEED_COLUMNS, SQLModel

from .support.db import SEED_DDL, run_script

ROOT = Path(__file__).resolve().parents[1]

FOREIGN_DDL = """
CREATE TABLE videos (id TEXT PRIMARY KEY, title TEXT NOT NULL, path TEXT);
CREATE INDEX idx_videos_title ON videos(title);
CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL);
INSERT INTO videos (id, title, path) VALUES ('v1', 'Holiday', '/v/1.mp4');
INSERT INTO _sqlx_migrations (version, description) VALUES (20250113, 'init')
"""
SEED_ROWS = """
INSERT INTO download_tasks (id, name, url, status, progress, total_segments,
    downloaded_segments, output_path, created_at, started_at, completed_at, error_message, metadata)
VALUES ('old-1', 'Done one', 'https://e/1.m3u8', 'completed', 100, 10, 10, '/d/1.mp4',
    '2025-01-13T10:00:00Z', '2025-01-13T10:00:01Z', '2025-01-13T10:05:00Z', NULL,
    '{"quality": "720p"}');
INSERT INTO download_tasks (id, name, url, status, created_at)
VALUES ('old-2', 'Waiting', 'https://e/2.m3u8', 'pending', '2025-01-13T11:00:00+00:00')
"""


def schema_diff(url: str) -> list:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_name": migrate.include_name,
                    "include_object": migrate.include_object,
                    "compare_type": True,
                    "version_table": db.VERSION_TABLE,
                },
            )
            return compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()


def snapshot(url: str, table: str) -> tuple:
    """A table's columns, indexes and rows, as another app would see them."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            columns = [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)]
            indexes = sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(table))
            rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
        return columns, indexes, [tuple(r) for r in rows]
    finally:
        engine.dispose()


def inspected(url: str, look):  # type: ignore[no-untyped-def]
    """``look(inspector)`` on a connection of its own."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return look(inspect(conn))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    return inspected(url, lambda insp: set(insp.get_table_names()))


def test_upgrade_on_empty_database_matches_models(db_url):
    migrate.upgrade(db_url)
    assert schema_diff(db_url) == []
    assert table_names(db_url) == {"download_tasks", "dlstore_queue", db.VERSION_TABLE}
    engine = db.make_engine(db_url)
    assert db.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_upgrade_is_idempotent(db_url):
    migrate.upgrade(db_url)
    before = snapshot(db_url, "download_tasks")
    migrate.upgrade(db_url)
    assert snapshot(db_url, "download_tasks") == before
    assert schema_diff(db_url) == []


def test_contract_indexes_have_contract_names(migrated_url):
    engine = db.make_engine(migrated_url)
    with engine.connect() as conn:
        indexes = {
            i["name"]: i["column_names"] for i in inspect(conn).get_indexes("download_tasks")
        }
    engine.dispose()
    assert indexes["idx_download_status"] == ["status"]
    assert indexes["idx_download_created"] == ["created_at"]
    assert "idx_download_pending" in indexes


def test_adopts_seed_table_keeping_rows_and_leaves_foreign_tables(db_url):
    run_script(db_url, SEED_DDL)
    run_script(db_url, FOREIGN_DDL)
    run_script(db_url, SEED_ROWS)
    seed_rows = snapshot(db_url, "download_tasks")[2]
    videos = snapshot(db_url, "videos")
    sqlx = snapshot(db_url, "_sqlx_migrations")

    migrate.upgrade(db_url)

    columns, _, rows = snapshot(db_url, "download_tasks")
    assert [c[0] for c in columns] == [*SEED_COLUMNS, *ADDED_COLUMNS]
    assert [r[: len(SEED_COLUMNS)] for r in rows] == seed_rows
    by_name = dict(zip([c[0] for c in columns], zip(*rows)))
    assert by_name["attempts"] == (0, 0) and by_name["downloaded_bytes"] == (0, 0)
    assert snapshot(db_url, "videos") == videos
    assert snapshot(db_url, "_sqlx_migrations") == sqlx
    assert schema_diff(db_url) == []
    # The contract's minimal INSERT now works on the adopted table too.
    run_script(
        db_url, "INSERT INTO download_tasks (id, name, url) VALUES ('new', 'n', 'https://e/n')"
    )
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        status, created = conn.execute(
            text("SELECT status, created_at FROM download_tasks WHERE id = 'new'")
        ).one()
    engine.dispose()
    assert status == "pending" and created.endswith("Z")


def test_downgrade_to_base_removes_only_dlstores_objects(db_url):
    run_script(db_url, SEED_DDL)
    run_script(db_url, FOREIGN_DDL)
    run_script(db_url, SEED_ROWS)
    seed = snapshot(db_url, "download_tasks")
    videos = snapshot(db_url, "videos")
    migrate.upgrade(db_url)
    migrate.downgrade(db_url, "base")
    columns, indexes, rows = snapshot(db_url, "download_tasks")
    assert [c[0] for c in columns] == list(SEED_COLUMNS)
    assert rows == seed[2]
    assert {"idx_download_status", "idx_download_created"} <= {i[0] for i in indexes}
    assert "idx_download_pending" not in {i[0] for i in indexes}
    assert snapshot(db_url, "videos") == videos
    engine = db.make_engine(db_url)
    assert db.current_revision(engine) is None
    engine.dispose()
    migrate.upgrade(db_url)  # and back up again
    assert schema_diff(db_url) == []


def test_refuses_to_adopt_a_foreign_table_of_the_same_name(db_url):
    run_script(db_url, "CREATE TABLE download_tasks (id TEXT PRIMARY KEY, whatever TEXT)")
    with pytest.raises(Exception, match="lacks the video manager's columns"):
        migrate.upgrade(db_url)


def test_sqlite_file_is_put_in_wal_mode(sqlite_url):
    migrate.upgrade(sqlite_url)
    with sqlite3.connect(sqlite_url) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_alembic_command_from_repo_root(tmp_path):
    target = tmp_path / "via-alembic.sqlite"
    env = {**os.environ, "DOWNLOADER_DATABASE_URL": str(target)}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert schema_diff(str(target)) == []
    assert "alembic_version" not in table_names(str(target))


def test_wheel_ships_migrations_and_upgrades_from_any_directory(tmp_path):
    """A non-editable install: the wheel alone, run from an unrelated folder."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "w"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "w").glob("dlstore-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "dlstore/_alembic/env.py" in names
        assert any(n.startswith("dlstore/_alembic/versions/0001") for n in names)
        zf.extractall(tmp_path / "site")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys; from dlstore.cli import main; "
        "sys.argv = ['dlstore', 'db', 'upgrade', '--db', 'x.sqlite']; main()"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "(head)" in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import dlstore, sys; print(dlstore.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.startswith(str(tmp_path / "site"))
    assert schema_diff(str(elsewhere / "x.sqlite")) == []


# --- 0002: priority, history, the download_status view, dlstore_queue ------------------


def view_names(url: str) -> set[str]:
    return inspected(url, lambda insp: set(insp.get_view_names()))


def pending_index_columns(url: str) -> list[str]:
    indexes = inspected(url, lambda insp: insp.get_indexes("download_tasks"))
    (pending,) = [i for i in indexes if i["name"] == "idx_download_pending"]
    return pending["column_names"]


def pg_function_exists(url: str) -> bool:
    query = text("SELECT to_regprocedure('dlstore_json_array(text)') IS NOT NULL")
    return inspected(url, lambda insp: bool(insp.bind.execute(query).scalar()))


def test_0002_upgrades_a_0001_database_keeping_rows(db_url):
    migrate.upgrade(db_url, "0001")
    run_script(db_url, SEED_ROWS)
    before = snapshot(db_url, "download_tasks")[2]
    migrate.upgrade(db_url)
    columns, _, rows = snapshot(db_url, "download_tasks")
    names = [c[0] for c in columns]
    assert names[-2:] == ["priority", "history"]
    assert [r[:-2] for r in rows] == before
    assert [r[-2:] for r in rows] == [(0, None), (0, None)]
    assert pending_index_columns(db_url) == ["status", "priority", "created_at", "id"]
    assert view_names(db_url) == {"download_status"}
    assert "dlstore_queue" in table_names(db_url)
    assert schema_diff(db_url) == []


def test_0002_on_an_adopted_seed_table_serves_the_view(db_url):
    run_script(db_url, SEED_DDL)
    run_script(db_url, SEED_ROWS)
    migrate.upgrade(db_url)
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT task_id, status, speed, eta FROM download_status ORDER BY task_id")
        ).all()
        priorities = conn.execute(text("SELECT priority FROM download_tasks")).scalars().all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("old-1", "completed", None, None),
        ("old-2", "pending", None, None),
    ]
    assert priorities == [0, 0]


def test_downgrade_to_0001_removes_0002_and_restores_the_old_index(db_url):
    run_script(db_url, FOREIGN_DDL)
    migrate.upgrade(db_url, "0001")
    run_script(db_url, SEED_ROWS)
    at_0001 = snapshot(db_url, "download_tasks")
    migrate.upgrade(db_url)
    run_script(db_url, "UPDATE download_tasks SET priority = 3, history = '[]'")
    run_script(db_url, "INSERT INTO dlstore_queue (name, paused) VALUES ('default', 1)")
    migrate.downgrade(db_url, "0001")

    assert snapshot(db_url, "download_tasks") == at_0001  # columns, indexes and rows
    assert pending_index_columns(db_url) == ["created_at", "id"]
    assert view_names(db_url) == set()
    assert table_names(db_url) == {"download_tasks", "videos", "_sqlx_migrations", db.VERSION_TABLE}
    if db_url.startswith("postgresql"):
        assert not pg_function_exists(db_url)
    engine = db.make_engine(db_url)
    assert db.current_revision(engine) == "0001"
    engine.dispose()
    migrate.upgrade(db_url)  # and up again
    assert schema_diff(db_url) == []
    assert view_names(db_url) == {"download_status"}
    if db_url.startswith("postgresql"):
        assert pg_function_exists(db_url)


def test_the_filters_know_dlstores_tables_and_hide_the_view():
    assert migrate.include_name("download_tasks", "table", {})
    assert migrate.include_name("dlstore_queue", "table", {})
    assert migrate.include_name("idx_x", "index", {"table_name": "dlstore_queue"})
    assert not migrate.include_name("download_status", "table", {})
    assert not migrate.include_name("videos", "table", {})
    assert not migrate.include_name("idx_videos_title", "index", {"table_name": "videos"})


def test_upgrade_leaves_a_foreign_view_alone(db_url):
    run_script(db_url, FOREIGN_DDL)
    run_script(db_url, "CREATE VIEW video_titles AS SELECT title FROM videos")
    migrate.upgrade(db_url)
    assert view_names(db_url) == {"download_status", "video_titles"}
    migrate.downgrade(db_url, "base")
    assert view_names(db_url) == {"video_titles"}


# --- 0003: NOTIFY triggers (PostgreSQL only) ---------------------------------------------


def notify_objects(url: str) -> tuple[int, bool]:
    """PostgreSQL: dlstore's NOTIFY triggers in this schema, and whether their function exists."""
    triggers = text(
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE c.relnamespace = current_schema()::regnamespace "
        "AND t.tgname IN ('dlstore_tasks_notify', 'dlstore_queue_notify')"
    )
    function = text("SELECT to_regprocedure('dlstore_notify()') IS NOT NULL")
    return inspected(
        url,
        lambda insp: (insp.bind.execute(triggers).scalar(), insp.bind.execute(function).scalar()),
    )


def test_0003_adds_the_notify_triggers_on_postgres_only_and_keeps_rows(db_url):
    postgres = db_url.startswith("postgresql")
    migrate.upgrade(db_url, "0002")
    run_script(db_url, SEED_ROWS)
    at_0002 = snapshot(db_url, "download_tasks")
    migrate.upgrade(db_url)
    assert snapshot(db_url, "download_tasks") == at_0002
    assert schema_diff(db_url) == []
    if postgres:
        assert notify_objects(db_url) == (2, True)
    migrate.downgrade(db_url, "0002")
    assert snapshot(db_url, "download_tasks") == at_0002
    if postgres:
        assert notify_objects(db_url) == (0, False)
    migrate.upgrade(db_url)  # and up again
    assert schema_diff(db_url) == []
    if postgres:
        assert notify_objects(db_url) == (2, True)
