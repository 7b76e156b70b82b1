"""The ``download_tasks`` table, as the video manager's DDL defines it plus dlstore's columns.

The seed columns (id … metadata) match the Rust app's ``CREATE TABLE`` column for
column; every column dlstore adds is nullable or defaulted, so the Rust API's
INSERT of the seed columns alone keeps working. Timestamps are TEXT in RFC 3339
(see :mod:`dlstore.timeutil`); ``metadata`` is TEXT holding a JSON object.
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

from sqlalchemy import BigInteger, Column, Index, Integer, Text, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Field, SQLModel

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


download_tasks = DownloadTask.__table__  # type: ignore[attr-defined]

#: The columns the Rust app's DDL creates, in its order.
SEED_COLUMNS = (
    "id", "name", "url", "status", "progress", "total_segments", "downloaded_segments",
    "output_path", "created_at", "started_at", "completed_at", "error_message", "metadata",
)  # fmt: skip
#: The columns dlstore adds to it, in the order the migrations add them.
ADDED_COLUMNS = tuple(c.name for c in download_tasks.columns if c.name not in SEED_COLUMNS)
