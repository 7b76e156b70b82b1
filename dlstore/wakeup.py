"""Where the daemon's loop waits: until its poll interval ends, something in the process
wakes it (a runner ending, a signal), or the database says a row may be waiting.

    Wakeup.set()                  any thread, or a signal handler: the wait returns
    Wakeup.wait(seconds, watch)   returns True when it saw the database change
    Wakeup.mark() / seen(mark)    around a look at the table that found nothing: what was
                                  committed before mark() has been seen (SQLite), so the
                                  daemon's own earlier writes do not wake it again

    SQLite       PRAGMA data_version on a connection of its own, every WATCH_INTERVAL_SECONDS.
                 It changes when another connection commits: the API's INSERT, `dlstore
                 pause`, and this daemon's own writes too (they go through other
                 connections), which is why the loop watches only while it has a free slot.
                 A write that changed nothing (an empty claim) leaves it alone.
    PostgreSQL   LISTEN dlstore_tasks on a psycopg connection of its own (migration 0003's
                 triggers NOTIFY when a row becomes pending or the pause switch changes);
                 select() waits on its socket and on a pipe that set() writes to.
    otherwise    the wait alone: polling at poll_interval.

Polling stays the fallback everywhere: a wait never outlasts ``seconds``. A watcher that
fails (the database went away) is closed and opened again at a later wait; meanwhile
the loop polls. Right after (re)connecting, wait reports a change, since one may have
been missed. Only the loop's thread calls :meth:`Wakeup.wait` and :meth:`Wakeup.close`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sqlite3
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Engine

from dlstore import db

#: How often the SQLite watcher reads data_version while the loop waits.
WATCH_INTERVAL_SECONDS = 0.05
#: libpq's CONNECTION_OK (psycopg.pq.ConnStatus.OK).
CONNECTION_OK = 0
#: The channel migration 0003's triggers notify.
CHANNEL = "dlstore_tasks"
#: libpq keepalives, so that a listening connection whose server vanished is noticed.
PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "connect_timeout": 10,
}

log = logging.getLogger(__name__)


class Wakeup:
    """Plain polling: waits on an event, sees no database changes."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._failing = False

    def set(self) -> None:
        self._event.set()

    def wait(self, seconds: float, *, watch: bool = True) -> bool:
        """Wait at most ``seconds``; True if a change in the database ended the wait."""
        self._event.wait(max(0.0, seconds))
        self._event.clear()
        return False

    def mark(self) -> Any:
        """The database's state now, for :meth:`seen` (None: nothing to mark)."""
        return None

    def seen(self, mark: Any) -> None:
        """Changes up to ``mark`` need no wake-up: a look at the table began after it."""

    def close(self) -> None:
        """Let go of the watcher's connection (a later wait opens it again)."""

    def _failed(self, what: str, exc: BaseException) -> None:
        """A watcher failed: close it, and say so once until it works again."""
        self.close()
        if not self._failing:
            log.warning("%s (polling instead): %s", what, db.first_line(exc))
        self._failing = True

    def _working(self) -> None:
        if self._failing:
            log.info("Watching the database for new rows again")
        self._failing = False


def for_engine(engine: Engine) -> Wakeup:
    """The right watcher for ``engine``'s database; nothing connects until the first wait."""
    database = engine.url.database
    if db.is_sqlite(engine) and database not in (None, "", ":memory:"):
        return SqliteWakeup(str(database))
    if engine.dialect.name == "postgresql":
        return PostgresWakeup(engine)
    return Wakeup()


class SqliteWakeup(Wakeup):
    """Polls ``PRAGMA data_version``: one read of the WAL index, no table, no transaction."""

    def __init__(self, path: str, interval: float = WATCH_INTERVAL_SECONDS) -> None:
        super().__init__()
        self._path = path
        self._interval = interval
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None

    def wait(self, seconds: float, *, watch: bool = True) -> bool:
        deadline = time.monotonic() + max(0.0, seconds)
        while watch:
            changed = self._changed()
            if changed is None:  # no watcher now: poll
                break
            if changed:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._event.wait(min(self._interval, remaining)):
                self._event.clear()
                return False
        return super().wait(deadline - time.monotonic())

    def mark(self) -> Any:
        if self._conn is None:
            return None
        try:
            return self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None  # the next wait finds out and says so

    def seen(self, mark: Any) -> None:
        if mark is not None and self._conn is not None:
            self._version = mark

    def _changed(self) -> bool | None:
        """Whether data_version moved since the last look; None if it cannot be read."""
        try:
            if self._conn is None:
                # mode=rw: never create a database that is not there.
                self._conn = sqlite3.connect(f"file:{self._path}?mode=rw", uri=True)
                self._version = None
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            self._failed(f"Cannot watch {self._path} for changes", exc)
            return None
        self._working()
        changed = version != self._version
        self._version = version
        return changed

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


class PostgresWakeup(Wakeup):
    """LISTENs on :data:`CHANNEL`; ignores notifications about other schemas' tables."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self._conn: Any = None  # a psycopg.Connection, in autocommit
        self._schema: str | None = None
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        # Closed with the object, never earlier: a runner thread may still call set().
        weakref.finalize(self, _close_fds, self._read_fd, self._write_fd)

    def set(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is pending anyway
            os.write(self._write_fd, b"\0")

    def wait(self, seconds: float, *, watch: bool = True) -> bool:
        if watch and self._conn is None and self._listen():
            return True  # a notification may have gone by while not listening
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            fds = [self._read_fd] + ([self._conn.fileno()] if self._conn is not None else [])
            ready, _, _ = select.select(fds, [], [], max(0.0, deadline - time.monotonic()))
            if self._read_fd in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._read_fd, 4096)
                return False
            if not ready:
                return False  # the time is up
            # Notifications are read even when not watched, so that none pile up.
            if self._notified() and watch:
                return True

    def _listen(self) -> bool:
        """Open the listening connection; True if it is open now."""
        dialect = self._engine.dialect
        args, kwargs = dialect.create_connect_args(self._engine.url)
        try:
            conn = dialect.connect(*args, **{**kwargs, **PG_KEEPALIVES})
            conn.autocommit = True
            conn.execute(f"LISTEN {CHANNEL}")
            self._schema = conn.execute("SELECT current_schema()").fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - psycopg's errors: poll instead
            self._failed("Cannot LISTEN for new rows", exc)
            return False
        self._conn = conn
        self._working()
        return True

    def _notified(self) -> bool:
        """Read what arrived; True if a notification concerns this schema's tables."""
        pgconn = self._conn.pgconn
        try:
            pgconn.consume_input()
            if pgconn.status != CONNECTION_OK:
                raise ConnectionError("the connection to the server was lost")
        except Exception as exc:  # noqa: BLE001 - the connection broke
            self._failed("Stopped listening for new rows", exc)
            return False
        relevant = False
        while (note := pgconn.notifies()) is not None:
            schema = note.extra.decode("utf-8", "replace").rpartition(".")[0]
            relevant = relevant or schema in ("", self._schema)
        return relevant

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
