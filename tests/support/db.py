"""Database fixtures: real SQLite files and real PostgreSQL schemas.

PostgreSQL tests use the server at ``DLSTORE_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each in a schema of its own
(``search_path`` carried in the URL, so subprocesses see the same schema). Where
no server answers they are skipped, except under ``CI=true``, where that is a
failure: CI must run them for real.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from dlstore import db, migrate
from dlstore.store import TaskStore
from dlstore.timeutil import format_ts, parse_ts

PG_URL = os.environ.get("DLSTORE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

#: The video manager's own DDL (CONTRACT.md §1), as the Rust app runs it.
SEED_DDL = """
CREATE TABLE download_tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    status TEXT NOT NULL,  -- pending, downloading, completed, failed, cancelled
    progress INTEGER DEFAULT 0,
    total_segments INTEGER,
    downloaded_segments INTEGER DEFAULT 0,
    output_path TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    error_message TEXT,
    metadata TEXT  -- JSON
);
CREATE INDEX idx_download_status ON download_tasks(status);
CREATE INDEX idx_download_created ON download_tasks(created_at);
"""

_pg_state: dict[str, object] = {}


def pg_available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    if "error" not in _pg_state:
        try:
            engine = create_engine(db.normalize_url(PG_URL))
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _pg_state["error"] = None
        except Exception as exc:  # noqa: BLE001 - any failure means "not available"
            _pg_state["error"] = f"PostgreSQL at {PG_URL} is not reachable: {exc}"
    return _pg_state["error"]  # type: ignore[return-value]


def require_pg() -> None:
    error = pg_available()
    if error is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{error} (CI=true: PostgreSQL tests must run)")
    pytest.skip(error)


def run_script(url: str, script: str) -> None:
    """Run ``;``-separated DDL/SQL through a plain connection (like another app would)."""
    engine = create_engine(db.normalize_url(url))
    try:
        with engine.begin() as conn:
            for statement in script.split(";"):
                lines = [ln.split("--")[0] for ln in statement.splitlines()]
                body = "\n".join(lines).strip()
                if body:
                    conn.exec_driver_sql(body)
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return str(tmp_path / "manager.sqlite")


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(db.normalize_url(PG_URL))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request) -> str:
    """An empty database of each kind."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return request.getfixturevalue(name)


@pytest.fixture
def migrated_url(db_url) -> str:
    migrate.upgrade(db_url)
    return db_url


@pytest.fixture
def store(migrated_url) -> Iterator[TaskStore]:
    engine = db.make_engine(migrated_url)
    yield TaskStore(engine)
    engine.dispose()


def age_heartbeats(store: TaskStore, seconds: float) -> None:
    """Every ``downloading`` row's heartbeat made ``seconds`` older: as if that long had
    passed without one (leases are judged by the database's clock, which tests cannot move)."""
    with store.engine.begin() as conn:
        rows = conn.execute(
            text("SELECT id, heartbeat_at FROM download_tasks WHERE status = 'downloading'")
        ).all()
        for task_id, heartbeat in rows:
            older = format_ts(parse_ts(heartbeat) - timedelta(seconds=seconds))
            conn.execute(
                text("UPDATE download_tasks SET heartbeat_at = :at WHERE id = :id"),
                {"at": older, "id": task_id},
            )
