"""The Rust API's side of the contract (CONTRACT.md §2): its exact SQL, its 5 s busy timeout.

The statements below are the only copy in the code base: the tests, the demo and
the benchmarks import them (or run them through :class:`RustApi`) to act as the
video manager would: plain SQL on a plain connection, no dlstore code in between.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import make_url

from dlstore import db

CREATE = (
    "INSERT INTO download_tasks (id, name, url, status, created_at, metadata) "
    "VALUES (?, ?, ?, 'pending', ?, ?)"
)
STATUS = "SELECT * FROM download_tasks WHERE id = ?"
#: The status endpoint's other form (CONTRACT.md §2): the seed's response shape, with
#: ``speed`` and ``eta`` already formatted by the view dlstore's migrations own.
STATUS_VIEW = "SELECT * FROM download_status WHERE task_id = ?"
LIST = "SELECT * FROM download_tasks ORDER BY created_at DESC"
CANCEL = (
    "UPDATE download_tasks SET status = 'cancelled' "
    "WHERE id = ? AND status IN ('pending', 'downloading')"
)
RETRY = (
    "UPDATE download_tasks SET status = 'pending', error_message = NULL "
    "WHERE id = ? AND status IN ('failed', 'cancelled')"
)
BUSY_TIMEOUT_S = 5.0


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RustApi:
    """One connection, like one of sqlx's pooled connections, running the API's SQL."""

    def __init__(self, url: str) -> None:
        full = make_url(db.normalize_url(url))
        self.sqlite = full.get_backend_name() == "sqlite"
        if self.sqlite:
            self.conn: Any = sqlite3.connect(
                full.database,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            self.conn.row_factory = sqlite3.Row
        else:
            import psycopg
            from psycopg.rows import dict_row

            conninfo = full.set(drivername="postgresql").render_as_string(hide_password=False)
            self.conn = psycopg.connect(conninfo, autocommit=True, row_factory=dict_row)
            self.conn.execute(f"SET lock_timeout = '{int(BUSY_TIMEOUT_S * 1000)}ms'")

    def _sql(self, statement: str) -> str:
        return statement if self.sqlite else statement.replace("?", "%s")

    def execute(self, statement: str, params: tuple = ()) -> Any:
        return self.conn.execute(self._sql(statement), params)

    def create(
        self, name: str, url: str, metadata: dict | str | None = None, task_id: str | None = None
    ) -> str:
        task_id = task_id or str(uuid.uuid4())
        meta = metadata if isinstance(metadata, str) or metadata is None else json.dumps(metadata)
        self.execute(CREATE, (task_id, name, url, rfc3339_now(), meta))
        return task_id

    def status(self, task_id: str) -> dict | None:
        row = self.execute(STATUS, (task_id,)).fetchone()
        return dict(row) if row is not None else None

    def status_view(self, task_id: str) -> dict | None:
        row = self.execute(STATUS_VIEW, (task_id,)).fetchone()
        return dict(row) if row is not None else None

    def list(self) -> list[dict]:
        return [dict(r) for r in self.execute(LIST).fetchall()]

    def cancel(self, task_id: str) -> int:
        return self.execute(CANCEL, (task_id,)).rowcount

    def retry(self, task_id: str) -> int:
        return self.execute(RETRY, (task_id,)).rowcount

    def close(self) -> None:
        self.conn.close()
