"""Every state transition of a download task, each one guarded statement.

This module is the only code that writes ``download_tasks``. The Rust API writes
the same rows with plain SQL (CONTRACT.md §2), so each transition states in its
WHERE clause the status it starts from, and a worker's writes are fenced on the
claim it holds (``worker_id`` and ``attempts``) and on the ``url`` and ``metadata``
it was claimed with: a write that touches no row means the row was cancelled,
retried, taken over or changed meanwhile, and the caller must stop. No write here
ever turns a ``cancelled`` row into anything else, except :meth:`TaskStore.retry`,
which is the user asking for exactly that.

    pending ──claim──▶ downloading ──complete──▶ completed
       ▲                 │  │  │  │ └──fail──▶ failed ──retry──▶ pending
       │                 │  │  │  └──requeue (transient, run_after later)──▶ pending
       │                 │  │  └──release (daemon shutdown)──▶ pending
       │                 │  └──restart (the API changed url or metadata)──▶ pending
       └──reclaim (lease expired or holder dead)─┘
    pending | downloading ──cancel──▶ cancelled ──retry──▶ pending

Each of those transitions also appends an entry to the row's ``history`` (a JSON
array, the last 50 entries) in the same statement: :meth:`TaskStore._history`
builds that one SQL expression, per database. Pending rows are claimed in
:data:`~dlstore.models.CLAIM_ORDER` (priority, then age). The queue-wide pause
switch (``dlstore_queue``) is read with :meth:`TaskStore.is_paused` and written with
:meth:`TaskStore.set_paused`.

Leases are judged by one clock, the database's: ``heartbeat_at`` is written from it
(:meth:`TaskStore._db_now`) and :meth:`TaskStore.reclaim_expired` compares it with
it, so a host whose clock is wrong neither takes over live rows nor leaves dead ones.

Values the API may have stored anywhere are read without failing: the claim keeps
``attempts`` and ``auto_retries`` only if they are counts (:func:`_count`), and a
timestamp that is not one never makes a row wait or hold forever (:func:`_passed`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    LargeBinary,
    Select,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError as SADBAPIError
from sqlalchemy.sql.elements import ColumnElement

from dlstore import db
from dlstore.errors import (
    DatabaseError,
    DlstoreError,
    InvalidTransitionError,
    NotMigratedError,
    TaskNotFoundError,
)
from dlstore.hosts import url_host_sql
from dlstore.models import (
    CLAIM_ORDER,
    DEFAULT_QUEUE,
    HISTORY_EVENTS,
    HISTORY_LIMIT,
    PENDING_WHERE,
    DownloadTask,
    Status,
    dlstore_queue,
    download_tasks,
)
from dlstore.options import merge_metadata, parse_metadata
from dlstore.redact import has_surrogates
from dlstore.timeutil import format_ts, now_ts, utcnow

T = download_tasks.c
Q = dlstore_queue.c
#: A history entry's message is cut to this many characters.
HISTORY_MESSAGE_CHARS = 500
#: The largest ``attempts`` or ``auto_retries`` a claim keeps (so that +1 fits any
#: INTEGER); see :func:`_count`.
MAX_COUNT = 2**31 - 2
#: What a timestamp column must start with to be compared as one (RFC 3339's date).
TIMESTAMP_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}"
URL_CHANGED = "The URL changed while downloading; starting again with the new one"
METADATA_CHANGED = "The task's settings changed while downloading; starting again with them"


@dataclass(frozen=True)
class Claim:
    """What a worker holds: the fence on every write it makes to the row."""

    task_id: str
    worker_id: str
    attempt: int
    #: The ``url`` and ``metadata`` the row was claimed with, exactly as stored: a row
    #: the API changed since no longer matches. None: not fenced on them.
    content: tuple[Any, Any] | None = None


def _count(column):  # type: ignore[no-untyped-def]
    """``column`` as a count a claim can add to: a number from 0 to MAX_COUNT (a
    fraction cut off); anything else the API may have stored there (NULL, negative,
    text, larger) counts as 0."""
    in_range = and_(column >= 0, column <= MAX_COUNT)  # text sorts above numbers in SQLite
    return case((in_range, cast(column, Integer)), else_=0)


def _passed(column, moment: str):  # type: ignore[no-untyped-def]
    """``column`` (a timestamp) is empty, at or before ``moment``, or not a timestamp at
    all: garbage the API wrote there must not make a row wait, or hold it, forever."""
    return or_(column.is_(None), column <= moment, ~column.regexp_match(TIMESTAMP_PATTERN))


@dataclass(frozen=True)
class ProgressUpdate:
    progress: int
    downloaded_segments: int
    total_segments: int | None
    downloaded_bytes: int
    speed_bps: int | None
    eta_seconds: int | None
    current_file: str | None
    message: str | None


@dataclass(frozen=True)
class QueueState:
    """The pause switch: ``since`` is when it last changed (None if never set)."""

    paused: bool
    reason: str | None = None
    since: str | None = None


class TaskStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    # --- plumbing ----------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._errors(), db.write_tx(self.engine) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._errors(), db.read_tx(self.engine) as conn:
            yield conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except SADBAPIError as exc:
            text = str(exc.orig)
            if "no such table" in text or ("relation" in text and "does not exist" in text):
                raise NotMigratedError(
                    f"The database {db.describe(str(self.engine.url))} has no download_tasks "
                    "table: run `dlstore db upgrade`."
                ) from exc
            raise DatabaseError(f"Database error: {db.first_line(exc.orig)}") from exc

    def _guarded(self, claim: Claim):  # type: ignore[no-untyped-def]
        held = and_(
            self._is(T.id, claim.task_id),
            T.status == Status.DOWNLOADING.value,
            T.worker_id == claim.worker_id,
            T.attempts == claim.attempt,
        )
        if claim.content is None:
            return held
        url, metadata = claim.content
        return and_(held, self._is(T.url, url), self._is(T.metadata, metadata, nullable=True))

    # --- reads -------------------------------------------------------------------

    def get(self, task_id: str) -> DownloadTask:
        with self._read() as conn:
            query = select(download_tasks).where(self._is(T.id, task_id))
            row = conn.execute(query).mappings().first()
        if row is None:
            raise TaskNotFoundError(f"No download task has the id {task_id!r}.")
        return DownloadTask.from_row(row)

    def list(self, status: str | None = None, limit: int | None = None) -> list[DownloadTask]:
        query = select(download_tasks).order_by(T.created_at.desc(), T.id.desc())
        if status is not None:
            query = query.where(self._is(T.status, status))
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [DownloadTask.from_row(r) for r in conn.execute(query).mappings()]

    def counts(self) -> dict[str, int]:
        query = select(T.status, func.count()).group_by(T.status)
        with self._read() as conn:
            return {status: count for status, count in conn.execute(query)}

    def ping(self) -> None:
        """Raise a DatabaseError unless the database answers with dlstore's table (health).

        An SQLite file that was removed or renamed counts as gone, although connections
        opened before may still read it.
        """
        database = self.engine.url.database
        on_file = db.is_sqlite(self.engine) and database not in (None, "", ":memory:")
        if on_file and not os.path.exists(str(database)):
            raise DatabaseError(f"The SQLite database {database} is gone.")
        with self._read() as conn:
            conn.execute(select(T.id).limit(0))

    def next_due(self) -> str | None:
        """When the earliest pending row becomes due ('' if one is due now, None if none)."""
        query = select(func.min(func.coalesce(T.run_after, ""))).where(
            T.status == Status.PENDING.value
        )
        with self._read() as conn:
            return conn.execute(query).scalar()

    # --- the pause switch (dlstore_queue) ----------------------------------------------

    def is_paused(self) -> bool:
        """Whether ``dlstore pause`` holds the queue: one primary-key read."""
        with self._read() as conn:
            paused = conn.execute(select(Q.paused).where(Q.name == DEFAULT_QUEUE)).scalar()
        return bool(paused)

    def queue_state(self) -> QueueState:
        with self._read() as conn:
            row = conn.execute(
                select(Q.paused, Q.reason, Q.updated_at).where(Q.name == DEFAULT_QUEUE)
            ).first()
        return QueueState(False) if row is None else QueueState(bool(row[0]), row[1], row[2])

    def set_paused(self, paused: bool, reason: str | None = None) -> QueueState:
        """Pause or resume every daemon on this database; idempotent.

        Setting the state it already has keeps ``since`` (and the reason, unless a new
        one is given). One upsert: the row is made on first use.
        """
        insert = (pg_insert if self._postgres else sqlite_insert)(dlstore_queue)
        statement = insert.values(
            name=DEFAULT_QUEUE, paused=int(paused), reason=reason, updated_at=now_ts()
        )
        new = statement.excluded
        unchanged = Q.paused == new.paused
        statement = statement.on_conflict_do_update(
            index_elements=[Q.name],
            set_={
                "paused": new.paused,
                "reason": case((unchanged, func.coalesce(new.reason, Q.reason)), else_=new.reason),
                "updated_at": case((unchanged, Q.updated_at), else_=new.updated_at),
            },
        ).returning(Q.paused, Q.reason, Q.updated_at)
        with self._write() as conn:
            row = conn.execute(statement).one()
        return QueueState(bool(row[0]), row[1], row[2])

    # --- transitions ---------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        url: str,
        metadata: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        priority: int = 0,
    ) -> DownloadTask:
        """A new ``pending`` row; ``priority`` as :func:`~dlstore.options.check_priority`
        allows (higher is claimed sooner)."""
        now = now_ts()
        values = {
            "id": task_id or str(uuid.uuid4()),
            "name": name,
            "url": url,
            "status": Status.PENDING.value,
            "created_at": now,
            "updated_at": now,
            "metadata": json.dumps(dict(metadata)) if metadata else None,
            "priority": priority,
        }
        with self._write() as conn:
            row = (
                conn.execute(download_tasks.insert().values(**values).returning(*download_tasks.c))
                .mappings()
                .one()
            )
        return DownloadTask.from_row(row)

    def claim(
        self, worker_id: str, *, now: str | None = None, exclude_hosts: Collection[str] = ()
    ) -> tuple[DownloadTask, Claim] | None:
        """Take the first due pending row (highest priority, then oldest) for ``worker_id``;
        None if there is none, or if ``dlstore pause`` holds the queue.

        ``exclude_hosts`` (``max_per_host``): rows whose URL's origin host
        (:func:`~dlstore.hosts.url_host_sql`) is one of these are passed over.

        One statement; the pause switch is read inside it, so no claim starts after
        :meth:`set_paused` has paused the queue. On PostgreSQL the inner SELECT skips
        rows other claimers hold (``FOR UPDATE SKIP LOCKED``); on SQLite the IMMEDIATE
        transaction serialises claimers and the outer ``status = 'pending'`` guard makes
        a stale pick a no-op.
        """
        now = now or now_ts()
        pick = self._claim_pick(now, exclude_hosts)
        statement = (
            update(download_tasks)
            .where(T.id == pick.scalar_subquery(), T.status == Status.PENDING.value)
            .values(
                status=Status.DOWNLOADING.value,
                worker_id=worker_id,
                attempts=_count(T.attempts) + 1,
                auto_retries=_count(T.auto_retries),
                started_at=now,
                completed_at=None,
                heartbeat_at=self._db_now(),
                updated_at=now,
                run_after=None,
                error_message=None,
                speed_bps=None,
                eta_seconds=None,
                message="Starting download",
                history=self._history(
                    "claimed",
                    now,
                    "Starting download",
                    attempt=_count(T.attempts) + 1,
                    worker=worker_id,
                ),
            )
            .returning(*download_tasks.c)
        )
        with self._write() as conn:
            row = conn.execute(statement).mappings().first()
        if row is None:
            return None
        task = DownloadTask.from_row(row)
        return task, Claim(task.id, worker_id, row["attempts"], (row["url"], row["metadata"]))

    def _claim_pick(self, now: str, exclude_hosts: Collection[str]) -> Select[Any]:
        """The claim's inner SELECT: the id of the row to take."""
        pick = (
            select(T.id)
            # A literal predicate, so the partial index idx_download_pending applies.
            .where(
                PENDING_WHERE,
                _passed(T.run_after, now),
                ~exists().where(Q.name == DEFAULT_QUEUE, Q.paused != 0),
            )
            .order_by(*CLAIM_ORDER)  # idx_download_pending's order
            .limit(1)
        )
        if exclude_hosts:
            host = url_host_sql(T.url, self.engine.dialect.name)
            pick = pick.where(host.not_in(sorted(set(exclude_hosts))))
        if self._postgres:
            pick = pick.with_for_update(skip_locked=True)
        return pick

    def report_progress(self, claim: Claim, update_: ProgressUpdate) -> bool:
        """Progress and heartbeat in one write; False means the claim is lost: stop."""
        now = now_ts()
        values: dict[str, Any] = {
            "progress": max(0, min(100, update_.progress)),
            "downloaded_segments": update_.downloaded_segments,
            "downloaded_bytes": update_.downloaded_bytes,
            "speed_bps": update_.speed_bps,
            "eta_seconds": update_.eta_seconds,
            "current_file": update_.current_file,
            "message": update_.message,
            "heartbeat_at": self._db_now(),
            "updated_at": now,
        }
        if update_.total_segments is not None:
            values["total_segments"] = update_.total_segments
        return self._fenced(claim, values)

    def heartbeat(self, claim: Claim, message: str | None = None) -> bool:
        values: dict[str, Any] = {"heartbeat_at": self._db_now(), "updated_at": now_ts()}
        if message is not None:
            values["message"] = message
        return self._fenced(claim, values)

    def complete(
        self,
        claim: Claim,
        *,
        output_path: str,
        learned: Mapping[str, Any],
        downloaded_bytes: int | None = None,
        total_segments: int | None = None,
    ) -> bool:
        """``completed``; ``total_segments`` (when known) also sets ``downloaded_segments``,
        for a download that finished before any progress write recorded it."""
        now = now_ts()
        values: dict[str, Any] = {
            "status": Status.COMPLETED.value,
            "progress": 100,
            "downloaded_segments": func.coalesce(T.total_segments, T.downloaded_segments),
            "output_path": output_path,
            "completed_at": now,
            "updated_at": now,
            "heartbeat_at": None,
            "error_message": None,
            "speed_bps": None,
            "eta_seconds": 0,
            "current_file": None,
            "run_after": None,
            "auto_retries": 0,
            "message": "Download complete",
            "history": self._history("completed", now, f"Saved {output_path}"),
        }
        if downloaded_bytes is not None:
            values["downloaded_bytes"] = downloaded_bytes
        if total_segments is not None:
            values["total_segments"] = values["downloaded_segments"] = total_segments
        return self._finish(claim, values, learned)

    def fail(self, claim: Claim, error_message: str) -> bool:
        """``failed`` for good; the automatic-retry budget starts afresh for a manual retry."""
        now = now_ts()
        return self._fenced(
            claim,
            {
                "status": Status.FAILED.value,
                "error_message": error_message,
                "message": "Download failed",
                "history": self._history("failed", now, error_message),
                "updated_at": now,
                "heartbeat_at": None,
                "speed_bps": None,
                "eta_seconds": None,
                "run_after": None,
                "auto_retries": 0,
            },
        )

    def requeue(self, claim: Claim, error_message: str, *, run_after: str) -> bool:
        """A transient failure: back to ``pending``, due at ``run_after``."""
        now = now_ts()
        message = f"Will retry after {run_after}: {error_message}"
        return self._fenced(
            claim,
            {
                "status": Status.PENDING.value,
                "run_after": run_after,
                "auto_retries": func.coalesce(T.auto_retries, 0) + 1,
                "message": message,
                "history": self._history("requeued", now, message),
                "updated_at": now,
                "heartbeat_at": None,
                "speed_bps": None,
                "eta_seconds": None,
                "worker_id": None,
            },
        )

    def release(self, claim: Claim, message: str = "Daemon stopped; waiting to resume") -> bool:
        """Daemon shutdown: back to ``pending``, progress kept, the attempt not counted."""
        now = now_ts()
        return self._fenced(
            claim,
            {
                "status": Status.PENDING.value,
                # A claim counted the attempt; one that ended by shutdown doesn't count.
                "attempts": func.coalesce(T.attempts, 1) - 1,
                "message": message,
                "history": self._history("released", now, message),
                "updated_at": now,
                "heartbeat_at": None,
                "speed_bps": None,
                "eta_seconds": None,
                "worker_id": None,
            },
        )

    def restart(self, claim: Claim) -> bool:
        """The API changed the row's url or metadata while it downloaded: back to
        ``pending``, to start again with what the row says now.

        Fenced on the claim but not on its content, and only if that content did
        change; the work folder stays, so a download of the same stream resumes.
        """
        if claim.content is None:
            return False
        url, metadata = claim.content
        same_url = self._is(T.url, url)
        changed = ~and_(same_url, self._is(T.metadata, metadata, nullable=True))
        now = now_ts()
        message = case((same_url, METADATA_CHANGED), else_=URL_CHANGED)
        statement = (
            update(download_tasks)
            .where(self._guarded(replace(claim, content=None)), changed)
            .values(
                status=Status.PENDING.value,
                worker_id=None,
                heartbeat_at=None,
                progress=0,
                downloaded_segments=0,
                total_segments=None,
                downloaded_bytes=0,
                speed_bps=None,
                eta_seconds=None,
                current_file=None,
                message=message,
                history=self._history("requeued", now, message),
                updated_at=now,
            )
        )
        with self._write() as conn:
            return conn.execute(statement).rowcount == 1

    def fail_unclaimed(self, task_id: str, error_message: str, *, from_status: str) -> bool:
        """Fail a row dlstore cannot even start (e.g. a status it does not know).

        Guarded on the row still having ``from_status``; never touches cancelled rows.
        """
        if from_status == Status.CANCELLED.value:
            return False
        now = now_ts()
        with self._write() as conn:
            result = conn.execute(
                update(download_tasks)
                .where(self._is(T.id, task_id), self._is(T.status, from_status))
                .values(
                    status=Status.FAILED.value,
                    error_message=error_message,
                    message="Download failed",
                    history=self._history("failed", now, error_message),
                    updated_at=now,
                )
            )
        return result.rowcount == 1

    def cancel(self, task_id: str) -> DownloadTask:
        """The Rust API's cancel, with dlstore's bookkeeping columns (and history entry)."""
        now = now_ts()
        values = {
            "status": Status.CANCELLED.value,
            "message": "Cancelled",
            "history": self._history(
                "cancelled",
                now,
                "Cancelled with dlstore cancel",
                worker=case((T.status == Status.DOWNLOADING.value, T.worker_id)),
            ),
            "updated_at": now,
            "run_after": None,
        }
        return self._user_transition(
            task_id, "cancelled", (Status.PENDING, Status.DOWNLOADING), values
        )

    def retry(self, task_id: str) -> DownloadTask:
        """The Rust API's retry: back to ``pending``; what was fetched is kept for resume."""
        now = now_ts()
        values = {
            "status": Status.PENDING.value,
            "error_message": None,
            "run_after": None,
            "message": "Queued for retry",
            "history": self._history("retried", now, "Queued with dlstore retry", worker=None),
            "updated_at": now,
        }
        return self._user_transition(task_id, "retried", (Status.FAILED, Status.CANCELLED), values)

    def reclaim_expired(self, lease_seconds: float) -> list[str]:
        """Put back to ``pending`` every ``downloading`` row whose heartbeat is older than
        the lease by the database's clock: its daemon died or hung. The old holder's
        writes no longer match."""
        moment = utcnow()
        message = f"Its daemon stopped responding for over {lease_seconds:g} s; waiting to resume"
        statement = (
            update(download_tasks)
            .where(
                T.status == Status.DOWNLOADING.value,
                _passed(T.heartbeat_at, self._db_now(seconds_ago=lease_seconds)),
            )
            .values(
                status=Status.PENDING.value,
                worker_id=None,
                heartbeat_at=None,
                speed_bps=None,
                eta_seconds=None,
                message=message,
                history=self._history("reclaimed", format_ts(moment), message),
                updated_at=format_ts(moment),
            )
            .returning(T.id)
        )
        with self._write() as conn:
            return [r[0] for r in conn.execute(statement)]

    def held_by(self, worker_prefix: str) -> list[DownloadTask]:
        """``downloading`` rows whose worker_id starts with ``worker_prefix`` (e.g. a host)."""
        query = select(download_tasks).where(
            T.status == Status.DOWNLOADING.value,
            T.worker_id.startswith(worker_prefix, autoescape=True),
        )
        with self._read() as conn:
            return [DownloadTask.from_row(r) for r in conn.execute(query).mappings()]

    def reclaim(self, task: DownloadTask, message: str) -> bool:
        """Put back to ``pending`` a row whose holder is known to be dead."""
        if task.worker_id is None or task.attempts is None:
            return False
        now = now_ts()
        return self._fenced(
            Claim(task.id, task.worker_id, task.attempts),
            {
                "status": Status.PENDING.value,
                "worker_id": None,
                "heartbeat_at": None,
                "speed_bps": None,
                "eta_seconds": None,
                "message": message,
                "history": self._history("reclaimed", now, message),
                "updated_at": now,
            },
        )

    def ended_among(self, task_ids: list[str], quiet_seconds: float) -> list[DownloadTask]:
        """The rows of ``task_ids`` that are ``cancelled`` or ``completed`` and that no
        daemon has written for ``quiet_seconds`` (its heartbeat, or else its last write, by
        the database's clock): the orphan sweep's candidates (:mod:`dlstore.sweep`)."""
        quiet = _passed(
            func.coalesce(T.heartbeat_at, T.updated_at), self._db_now(seconds_ago=quiet_seconds)
        )
        ended = [Status.CANCELLED.value, Status.COMPLETED.value]
        found: list[DownloadTask] = []
        for start in range(0, len(task_ids), 500):  # SQLite's limit on bound values
            chunk = task_ids[start : start + 500]
            odd = [self._is(T.id, task_id) for task_id in chunk if has_surrogates(task_id)]
            ids = or_(T.id.in_([i for i in chunk if not has_surrogates(i)]), *odd)
            query = select(download_tasks).where(ids, T.status.in_(ended), quiet)
            with self._read() as conn:
                found += [DownloadTask.from_row(r) for r in conn.execute(query).mappings()]
        return found

    def status_of(self, task_id: str) -> str | None:
        with self._read() as conn:
            return conn.execute(select(T.status).where(self._is(T.id, task_id))).scalar()

    # --- helpers -------------------------------------------------------------------

    def _is(self, column: Any, value: Any, *, nullable: bool = False) -> ColumnElement[bool]:
        """``column = value`` (``IS NOT DISTINCT FROM`` if ``nullable``), ``value`` as read
        from a row or typed by a user: text with undecodable bytes (lone surrogates,
        :mod:`dlstore.db`) is compared byte for byte on SQLite, which no driver can bind
        as text, and matches nothing on PostgreSQL, whose text is always UTF-8."""
        if not isinstance(value, str) or not has_surrogates(value):
            return column.is_not_distinct_from(value) if nullable else column == value
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that stands for no byte (JSON's "\ud800")
            return false()
        if self._postgres:
            return false()
        as_bytes = cast(column, LargeBinary)
        return as_bytes.is_not_distinct_from(raw) if nullable else as_bytes == raw

    def _db_now(self, seconds_ago: float = 0.0) -> ColumnElement[str]:
        """The database's clock ``seconds_ago`` seconds back, as dlstore writes timestamps
        (``2025-01-13T10:00:00.123456Z``): leases are judged by this one clock.

        PostgreSQL: ``now()`` (the transaction's start). SQLite: ``'now'``, the clock of
        the machine whose file it is, to the millisecond."""
        if self._postgres:
            second = literal_column("interval '1 second'")
            moment = func.now() - literal(float(seconds_ago)) * second
            return func.to_char(func.timezone("UTC", moment), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        modifier = f"{-float(seconds_ago):+.6f} seconds"
        return func.strftime("%Y-%m-%dT%H:%M:%f", "now", modifier).concat("000Z")

    def _history(
        self,
        event: str,
        at: str,
        message: str | ColumnElement[Any] | None,
        *,
        attempt: Any = T.attempts,
        worker: Any = T.worker_id,
    ) -> ColumnElement[Any]:
        """``history`` with one entry appended and cut to the last HISTORY_LIMIT: the value
        for the transition's own SET, so entry and transition are one atomic write.

        ``attempt`` and ``worker`` default to the row's columns as they were before the
        statement (SET reads the old row). A ``history`` that is NULL or not a JSON array
        (the API may write anything) is started afresh rather than failing the write.
        """
        assert event in HISTORY_EVENTS, event
        entry = {
            "at": at,
            "event": event,
            "attempt": attempt,
            "worker": worker,
            "message": message[:HISTORY_MESSAGE_CHARS] if isinstance(message, str) else message,
        }
        pairs: list[Any] = []
        for key, value in entry.items():
            pairs += [literal(key, Text), _sql_value(value)]
        if self._postgres:
            return _postgres_appended(pairs)
        return _sqlite_appended(pairs)

    def _fenced(self, claim: Claim, values: Mapping[str, Any]) -> bool:
        with self._write() as conn:
            result = conn.execute(
                update(download_tasks).where(self._guarded(claim)).values(**values)
            )
        return result.rowcount == 1

    def _finish(self, claim: Claim, values: Mapping[str, Any], learned: Mapping[str, Any]) -> bool:
        """A fenced write that also merges ``learned`` into metadata, in one transaction."""
        with self._write() as conn:
            query = select(T.metadata).where(self._guarded(claim))
            if self._postgres:
                query = query.with_for_update()
            found = conn.execute(query).first()
            if found is None:
                return False
            values = dict(values)
            try:
                existing = parse_metadata(found[0])
            except DlstoreError:
                pass  # never overwrite what the caller wrote, even if it is not JSON
            else:
                values["metadata"] = json.dumps(merge_metadata(existing, learned))
            result = conn.execute(
                update(download_tasks).where(self._guarded(claim)).values(**values)
            )
        return result.rowcount == 1

    def _user_transition(
        self,
        task_id: str,
        verb: str,
        from_statuses: tuple[Status, ...],
        values: Mapping[str, Any],
    ) -> DownloadTask:
        """A user's command (cancel, retry): ``values`` written if the row has one of
        ``from_statuses``, else an error naming the row's status."""
        statement = (
            update(download_tasks)
            .where(self._is(T.id, task_id), T.status.in_([s.value for s in from_statuses]))
            .values(**values)
            .returning(*download_tasks.c)
        )
        with self._write() as conn:
            row = conn.execute(statement).mappings().first()
            if row is None:
                status = conn.execute(select(T.status).where(self._is(T.id, task_id))).scalar()
        if row is not None:
            return DownloadTask.from_row(row)
        if status is None:
            raise TaskNotFoundError(f"No download task has the id {task_id!r}.")
        allowed = " or ".join(s.value for s in from_statuses)
        raise InvalidTransitionError(
            f"Task {task_id} is {status}; only {allowed} tasks can be {verb}."
        )


def _sql_value(value: Any) -> Any:
    """A history entry's value as SQL: expressions as they are, Python values typed."""
    if isinstance(value, ColumnElement):
        return value
    if value is None:
        return null()
    return literal(value, Integer if isinstance(value, int) else Text)


def _sqlite_appended(pairs: list[Any]) -> ColumnElement[Any]:
    """SQLite: json_insert at the end, then the last HISTORY_LIMIT elements, in order."""
    is_array = case((func.json_type(T.history) == "array", T.history))
    # json_type raises on text that is not JSON: json_valid first (a CASE keeps the order).
    current = func.coalesce(case((func.json_valid(T.history) == 1, is_array)), "[]")
    appended = func.json_insert(current, "$[#]", func.json_object(*pairs))
    element = func.json_each(appended).table_valued("key", "value", "type").alias("element")
    # json_each gives true/false as 1/0; keep them JSON booleans.
    value = case(
        (element.c.type == "true", func.json("true")),
        (element.c.type == "false", func.json("false")),
        else_=element.c.value,
    )
    kept = element.c.key >= func.json_array_length(current) + 1 - HISTORY_LIMIT
    return select(func.json_group_array(value)).where(kept).scalar_subquery()


def _postgres_appended(pairs: list[Any]) -> ColumnElement[Any]:
    """PostgreSQL: jsonb ``||``, then a jsonpath slice of the last HISTORY_LIMIT, as TEXT.

    ``dlstore_json_array`` (migration 0002) reads the TEXT column as a jsonb array, or
    ``[]`` when it is not one, without raising.
    """
    appended = func.dlstore_json_array(T.history).op("||")(
        func.jsonb_build_array(func.jsonb_build_object(*pairs))
    )
    last = literal_column(f"'$[last - {HISTORY_LIMIT - 1} to last]'")
    return cast(func.jsonb_path_query_array(appended, last), Text)
