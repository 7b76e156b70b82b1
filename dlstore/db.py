"""Engines for the shared database: SQLite (embedded default) or PostgreSQL.

SQLite is shared with the Rust API, whose connections wait at most 5 s on a
lock. So every dlstore connection: WAL journal (readers never block the writer),
``synchronous=NORMAL``, a busy timeout of its own, and write transactions that
begin ``IMMEDIATE`` (take the write lock up front, wait for it in the busy
handler, never fail half-way with "database is locked") and stay short.

SQLite keeps whatever bytes a writer put in a TEXT column, UTF-8 or not. dlstore
reads them with ``errors="surrogateescape"`` (:func:`read_text`): a row with bytes
that are not UTF-8 still reads, each such byte a lone surrogate that the checks
refuse (:func:`~dlstore.validate.check_utf8`), printing replaces
(:func:`~dlstore.redact.replace_undecodable`) and the store compares byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.exc import DBAPIError as SADBAPIError

from dlstore.errors import DatabaseError, NotMigratedError
from dlstore.models import TABLE_NAME

SQLITE_BUSY_TIMEOUT_S = 10.0
#: Alembic's version table, under a name of its own so it never meets the Rust app's.
VERSION_TABLE = "dlstore_alembic_version"


def normalize_url(url: str | os.PathLike[str]) -> str:
    """An SQLAlchemy URL from ``url``; a plain path means an SQLite file.

    ``postgresql://`` without a driver means psycopg 3 (the one dlstore installs).
    """
    raw = os.fspath(url).strip()
    if not raw:
        raise DatabaseError("The database URL is empty.")
    if "://" not in raw:
        return "sqlite:///" + str(Path(raw).expanduser().resolve())
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise DatabaseError(f"{raw!r} is not a valid database URL: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def describe(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def make_engine(url: str | os.PathLike[str], *, pool_size: int = 5) -> Engine:
    full = normalize_url(url)
    try:
        parsed = make_url(full)
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(full)
        return create_engine(full, pool_pre_ping=True, pool_size=pool_size, max_overflow=10)
    except (NoSuchModuleError, ImportError) as exc:
        raise DatabaseError(
            f"No driver for {describe(full)}: {exc}. For PostgreSQL install dlstore[postgres]."
        ) from exc
    except ArgumentError as exc:
        raise DatabaseError(f"{describe(full)} is not a usable database URL: {exc}") from exc


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        folder = Path(database).parent
        if not folder.is_dir():
            raise DatabaseError(
                f"Cannot open the SQLite database {database}: folder {folder} does not exist."
            )
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event below decide how transactions begin.
        dbapi_conn.isolation_level = None
        dbapi_conn.text_factory = read_text
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        immediate = conn.get_execution_options().get("dlstore_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def read_text(raw: bytes) -> str:
    """SQLite TEXT as str: bytes that are not UTF-8 become lone surrogates, not an error."""
    return raw.decode("utf-8", "surrogateescape")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A short write transaction: ``BEGIN IMMEDIATE`` on SQLite, plain on PostgreSQL."""
    with engine.connect() as conn:
        conn.execution_options(dlstore_write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


def enable_wal(engine: Engine) -> None:
    """Put an SQLite file in WAL mode (it persists in the file); a no-op elsewhere."""
    if not is_sqlite(engine) or engine.url.database in (None, "", ":memory:"):
        return
    raw = engine.raw_connection()  # outside any transaction, as the pragma needs
    try:
        cursor = raw.cursor()
        mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        cursor.close()
    finally:
        raw.close()
    if str(mode).lower() != "wal":
        raise DatabaseError(f"Could not switch {engine.url.database} to WAL mode (got {mode}).")


def check_connection(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SADBAPIError as exc:
        raise DatabaseError(
            f"Cannot connect to the database {describe(str(engine.url))}: {first_line(exc.orig)}"
        ) from exc


def current_revision(engine: Engine) -> str | None:
    """dlstore's migration revision in this database, or None if never migrated."""
    check_connection(engine)
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def ensure_migrated(engine: Engine, head: str) -> None:
    """Raise NotMigratedError unless the database is at migration ``head``."""
    where = describe(str(engine.url))
    database = engine.url.database
    if is_sqlite(engine) and database not in (None, "", ":memory:") and not Path(database).exists():
        # Checked before connecting, which would leave an empty file behind.
        raise NotMigratedError(
            f"The SQLite database {database} does not exist yet: run `dlstore db upgrade` "
            "to create it."
        )
    revision = current_revision(engine)
    with engine.connect() as conn:
        has_table = inspect(conn).has_table(TABLE_NAME)
    if revision is None or not has_table:
        raise NotMigratedError(
            f"The database {where} has no dlstore schema yet: run `dlstore db upgrade`."
        )
    if revision != head:
        raise NotMigratedError(
            f"The database {where} is at dlstore schema {revision}, this dlstore expects "
            f"{head}: run `dlstore db upgrade` (or upgrade dlstore if the database is newer)."
        )


def first_line(error: object) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
