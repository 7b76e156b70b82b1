"""The ``download_tasks`` table, as the video manager's DDL defines it plus dlstore's columns;
and ``dlstore_queue``, dlstore's own table (the queue-wide pause switch).

The seed columns (id … metadata) match the Rust app's ``CREATE TABLE`` column for
column; every column dlstore adds is nullable or defaulted, so the Rust API's
INSERT of the seed columns alone keeps working. Timestamps are TEXT in RFC 3339
(see :mod:`dlstore.timeutil`); ``metadata`` is TEXT holding a JSON object, ``history``
TEXT holding a JSON array.

:class:`DownloadTask` is also the row as dlstore reads it: :class:`~dlstore.store.TaskStore`
returns instances built with :meth:`DownloadTask.from_row`, which reads every value
the API may have written without failing (:func:`read_value`): SQLite stores text in
an INTEGER column and numbers or bytes in a TEXT one, so an integer column that does
not hold a whole 64-bit number reads as None, and a text column holding bytes or a
number reads as text.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Optional

from sqlalchemy import BigInteger, Column, Index, Integer, Table, Text, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Field, SQLModel

from dlstore.errors import DlstoreError
from dlstore.options import bounded_json, parse_metadata
from dlstore.redact import replace_undecodable
from dlstore.timeutil import parse_ts
from dlstore.validate import check_utf8

TABLE_NAME = "download_tasks"


class Status(str, Enum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class utc_now_text(FunctionElement):  # noqa: N801 - reads like the SQL function it is
    """``now()`` as RFC 3339 UTC text, the column default of ``created_at``."""

    type = Text()
    inherit_cache = True


@compiles(utc_now_text, "sqlite")
def _utc_now_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"


@compiles(utc_now_text, "postgresql")
def _utc_now_postgresql(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return "(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"


@compiles(utc_now_text)
def _utc_now_default(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return "CURRENT_TIMESTAMP"


PENDING_WHERE = text("status = 'pending'")
#: INTEGER on SQLite (64-bit there, and what the contract's DDL says); BIGINT on
#: PostgreSQL, whose INTEGER would overflow at 2 GiB.
BigInt = BigInteger().with_variant(Integer(), "sqlite")


class DownloadTask(SQLModel, table=True):
    """One row of ``download_tasks``; ``meta`` holds the ``metadata`` column's raw text."""

    __tablename__ = TABLE_NAME
    __table_args__ = (
        Index("idx_download_status", "status"),
        Index("idx_download_created", "created_at"),
        # idx_download_pending, in the claim's order, is defined below the class.
    )

    # --- the video manager's columns, exactly as its DDL has them ---
    id: str = Field(sa_column=Column("id", Text, primary_key=True))
    name: str = Field(sa_column=Column("name", Text, nullable=False))
    url: str = Field(sa_column=Column("url", Text, nullable=False))
    status: str = Field(
        default=Status.PENDING.value,
        sa_column=Column("status", Text, nullable=False, server_default=Status.PENDING.value),
    )
    progress: Optional[int] = Field(
        default=0, sa_column=Column("progress", Integer, server_default=text("0"))
    )
    total_segments: Optional[int] = Field(default=None, sa_column=Column("total_segments", Integer))
    downloaded_segments: Optional[int] = Field(
        default=0, sa_column=Column("downloaded_segments", Integer, server_default=text("0"))
    )
    output_path: Optional[str] = Field(default=None, sa_column=Column("output_path", Text))
    created_at: Optional[str] = Field(
        default=None,
        sa_column=Column("created_at", Text, nullable=False, server_default=utc_now_text()),
    )
    started_at: Optional[str] = Field(default=None, sa_column=Column("started_at", Text))
    completed_at: Optional[str] = Field(default=None, sa_column=Column("completed_at", Text))
    error_message: Optional[str] = Field(default=None, sa_column=Column("error_message", Text))
    # ``metadata`` is taken by SQLModel itself, hence the attribute name.
    meta: Optional[str] = Field(default=None, sa_column=Column("metadata", Text))

    # --- dlstore's columns (CONTRACT.md §1), all nullable or defaulted ---
    updated_at: Optional[str] = Field(default=None, sa_column=Column("updated_at", Text))
    attempts: Optional[int] = Field(
        default=0, sa_column=Column("attempts", Integer, server_default=text("0"))
    )
    worker_id: Optional[str] = Field(default=None, sa_column=Column("worker_id", Text))
    heartbeat_at: Optional[str] = Field(default=None, sa_column=Column("heartbeat_at", Text))
    downloaded_bytes: Optional[int] = Field(
        default=0, sa_column=Column("downloaded_bytes", BigInt, server_default=text("0"))
    )
    speed_bps: Optional[int] = Field(default=None, sa_column=Column("speed_bps", BigInt))
    eta_seconds: Optional[int] = Field(default=None, sa_column=Column("eta_seconds", Integer))
    current_file: Optional[str] = Field(default=None, sa_column=Column("current_file", Text))
    message: Optional[str] = Field(default=None, sa_column=Column("message", Text))
    # Extensions beyond the contract's list, same rules (README documents them):
    run_after: Optional[str] = Field(default=None, sa_column=Column("run_after", Text))
    auto_retries: Optional[int] = Field(
        default=0, sa_column=Column("auto_retries", Integer, server_default=text("0"))
    )
    priority: Optional[int] = Field(
        default=0, sa_column=Column("priority", Integer, server_default=text("0"))
    )
    history: Optional[str] = Field(default=None, sa_column=Column("history", Text))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DownloadTask:
        """The task a row mapping (keyed by column name, e.g. from RETURNING) holds,
        each value read by :func:`read_value`."""
        return cls(
            **{
                attribute: read_value(column, row[column])
                for attribute, column in COLUMN_ATTRIBUTES
            }
        )

    def metadata_dict(self) -> dict[str, Any]:
        """The metadata object; raises DlstoreError if it is not a JSON object (or not
        UTF-8 text)."""
        check_utf8("metadata", self.meta)
        return parse_metadata(self.meta)

    def to_json(self) -> dict[str, Any]:
        """The row keyed by column name, ``metadata`` and ``history`` parsed (each left as
        text if it isn't JSON of the right kind), undecodable bytes shown as U+FFFD."""
        out = {column: getattr(self, attribute) for attribute, column in COLUMN_ATTRIBUTES}
        entries = self.history_entries()
        if entries is not None:  # else shown as the text it is (or null)
            out["history"] = entries
        if self.meta is not None:
            with contextlib.suppress(DlstoreError):  # not JSON: shown as the text it is
                out["metadata"] = self.metadata_dict()
        return _printable(out)

    def created(self) -> datetime | None:
        try:
            return parse_ts(self.created_at)
        except ValueError:
            return None

    def history_entries(self) -> list[Any] | None:
        """The ``history`` column parsed, oldest first; None if it is NULL or not a JSON array
        within the bounds of :func:`~dlstore.options.bounded_json`, as ``metadata`` is read
        (the API may write anything; dlstore's next transition starts a fresh one)."""
        if self.history is None:
            return None
        try:
            entries, too_deep = bounded_json(self.history)
        except (TypeError, ValueError):
            return None
        return entries if isinstance(entries, list) and not too_deep else None


download_tasks = DownloadTask.__table__  # type: ignore[attr-defined]
#: (attribute, column name) of each column, in the table's order.
COLUMN_ATTRIBUTES = tuple(
    (DownloadTask.__mapper__.get_property_by_column(c).key, c.name)  # type: ignore[attr-defined]
    for c in download_tasks.columns
)

#: Columns read as whole numbers; every other column but ``id`` is read as text.
INTEGER_COLUMNS = frozenset(c.name for c in download_tasks.columns if isinstance(c.type, Integer))
_INT64 = 2**63


def read_value(column: str, value: Any) -> Any:
    """``value`` of ``column`` as dlstore uses it, whatever the API stored there.

    An integer column gives an int, or None for anything that is not a whole number
    within 64 bits (text, a fraction, 1e30). A text column gives text: bytes are
    decoded (undecodable bytes replaced), a number is written out. ``id`` is kept
    exactly as stored, so that writes keyed on it find the row. Text that held bytes
    that are not UTF-8 keeps them as lone surrogates (:func:`dlstore.db.read_text`).
    """
    if value is None or column == "id":
        return value
    if column in INTEGER_COLUMNS:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64:
            return value
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)


def _printable(value: Any) -> Any:
    """``value`` (JSON-like) with its text's undecodable bytes written as U+FFFD."""
    if isinstance(value, str):
        return replace_undecodable(value)
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_printable(item) for item in value]
    return value


#: The columns the Rust app's DDL creates, in its order.
SEED_COLUMNS = (
    "id", "name", "url", "status", "progress", "total_segments", "downloaded_segments",
    "output_path", "created_at", "started_at", "completed_at", "error_message", "metadata",
)  # fmt: skip
#: The columns dlstore adds to it, in the order the migrations add them.
ADDED_COLUMNS = tuple(c.name for c in download_tasks.columns if c.name not in SEED_COLUMNS)


# --- priority, history, the status view and the pause switch (issue #11) -------------------


class desc_nulls_last(UnaryExpression):  # noqa: N801 - reads like the SQL it renders
    """``column DESC`` with NULLs after every value, on both databases.

    SQLite sorts NULL below every value (so DESC puts it last) and refuses ``NULLS
    LAST`` in ``CREATE INDEX``; PostgreSQL's DESC puts NULLs first unless told. Used
    by the pending index and the claim's ORDER BY alike, so the two always match.
    """

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column, modifier=operators.desc_op, wraps_column_expression=False)


@compiles(desc_nulls_last)
def _desc_nulls_last(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"{compiler.process(element.element, **kw)} DESC NULLS LAST"


@compiles(desc_nulls_last, "sqlite")
def _desc_nulls_last_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"{compiler.process(element.element, **kw)} DESC"


#: The order pending rows are claimed in: highest priority first (a NULL one after every
#: number), then oldest. The pending index below follows it column for column.
CLAIM_ORDER = (
    desc_nulls_last(download_tasks.c.priority),
    download_tasks.c.created_at,
    download_tasks.c.id,
)
# What the claim scans: pending rows in CLAIM_ORDER. ``status`` leads although the index
# holds pending rows only: without statistics SQLite's planner otherwise prefers the
# equality on idx_download_status and sorts; with it, both databases read this index
# in order and stop at the first due row.
Index(
    "idx_download_pending",
    download_tasks.c.status,
    *CLAIM_ORDER,
    sqlite_where=PENDING_WHERE,
    postgresql_where=PENDING_WHERE,
)

#: Entries kept in ``history``: the last this many.
HISTORY_LIMIT = 50
#: What a ``history`` entry's ``event`` may be.
HISTORY_EVENTS = (
    "claimed", "requeued", "released", "reclaimed", "failed", "completed", "cancelled", "retried",
)  # fmt: skip

QUEUE_TABLE_NAME = "dlstore_queue"
#: The queue every daemon on a database serves (one row of ``dlstore_queue``, made on demand).
DEFAULT_QUEUE = "default"
#: dlstore's own table: queue-wide switches. ``paused`` is 0 or 1; no row means not paused.
dlstore_queue = Table(
    QUEUE_TABLE_NAME,
    SQLModel.metadata,
    Column("name", Text, primary_key=True),
    Column("paused", Integer, nullable=False, server_default=text("0")),
    Column("reason", Text),
    Column("updated_at", Text),
)
#: The tables dlstore's migrations own (the filters in dlstore.migrate hide all others).
DLSTORE_TABLES = (TABLE_NAME, QUEUE_TABLE_NAME)
