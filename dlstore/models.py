"""The ``download_tasks`` table, as the video manager's DDL defines it plus dlstore's columns.

The seed columns (id … metadata) match the Rust app's ``CREATE TABLE`` column for
column; every column dlstore adds is nullable or defaulted, so the Rust API's
INSERT of the seed columns alone keeps working. Timestamps are TEXT in RFC 3339
(see :mod:`dlstore.timeutil`); ``metadata`` is TEXT holding a JSON object.

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

from sqlalchemy import BigInteger, Column, Index, Integer, Text, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Field, SQLModel

from dlstore.errors import DlstoreError
from dlstore.options import parse_metadata
from dlstore.timeutil import parse_ts

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
        # What the claim query scans: pending rows, oldest first.
        Index(
            "idx_download_pending",
            "created_at",
            "id",
            sqlite_where=PENDING_WHERE,
            postgresql_where=PENDING_WHERE,
        ),
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
        """The metadata object; raises DlstoreError if it is not a JSON object."""
        return parse_metadata(self.meta)

    def to_json(self) -> dict[str, Any]:
        """The row keyed by column name, ``metadata`` parsed (left as text if it isn't JSON)."""
        out = {column: getattr(self, attribute) for attribute, column in COLUMN_ATTRIBUTES}
        if self.meta is None:
            return out
        with contextlib.suppress(DlstoreError):  # not JSON: shown as the text it is
            out["metadata"] = self.metadata_dict()
        return out

    def created(self) -> datetime | None:
        try:
            return parse_ts(self.created_at)
        except ValueError:
            return None


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
    exactly as stored, so that writes keyed on it find the row.
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


#: The columns the Rust app's DDL creates, in its order.
SEED_COLUMNS = (
    "id", "name", "url", "status", "progress", "total_segments", "downloaded_segments",
    "output_path", "created_at", "started_at", "completed_at", "error_message", "metadata",
)  # fmt: skip
#: The columns dlstore adds to it, in the order the migrations add them.
ADDED_COLUMNS = tuple(c.name for c in download_tasks.columns if c.name not in SEED_COLUMNS)
