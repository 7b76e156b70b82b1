"""The fetch pool: every file of a download fetched in parallel into its work folder.

Each file is streamed to ``<name>.<random>.part``, decrypted on the way,
checked (:mod:`dlstore.segment_checks`), and renamed into place; a file already
in place is not fetched again. Failures are retried with backoff; the first one
that stays stops the other threads and is raised. A body is refused past
``max_segment_bytes`` and aborted when it stalls (:func:`dlstore.http.iter_body`);
a stop (cancel, shutdown, a failure) shuts the sockets being read down at once.

Two events stop a fetch, and they differ in what they let finish:

- ``drain``: start no new file; the files in flight finish (with their retries),
  then :class:`~dlstore.errors.CancelledError` is raised if any file was left out
  (nothing is raised if every file is in place). The daemon's SIGTERM.
- ``cancel``: stop now; the sockets being read are shut down mid-body.

Knows nothing of databases: progress goes out through a callback, cancellation
comes in through an event. Only the calling thread runs the callback.

    fetch_all → _fetch_job (retries) → _attempt (one .part file) → _stream_body (bytes)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import requests

from dlstore.crypto import Decryptor, KeyStore, Passthrough
from dlstore.errors import (
    CancelledError,
    CorruptSegmentError,
    DlstoreError,
    SegmentError,
    TransientDownloadError,
)
from dlstore.http import (
    ActiveResponses,
    Retry,
    check_status,
    expected_length,
    iter_body,
    range_header,
    request_timeout,
    translate_errors,
)
from dlstore.options import DownloadOptions
from dlstore.playlist import ByteRange, InitSection, Key, MediaPlan, Segment, display_name
from dlstore.progress import ProgressTracker
from dlstore.segment_checks import LengthCheck, TsValidator, ts_check_mode
from dlstore.sniff import HEAD_BYTES, check_segment
from dlstore.workfolder import Track, WorkFolder, init_filename, segment_filename

TICK_SECONDS = 0.25  # how often the calling thread wakes to report progress and check cancel
STOP_GRACE_SECONDS = 0.5  # how long to wait for workers after a stop


class NotStartedError(CancelledError):
    """The fetch is draining: this file was not started."""


@dataclass(frozen=True)
class FetchJob:
    """One file to fetch: a segment or an init section of one track."""

    track: str  # "video" or "audio"
    filename: str  # in the work folder
    uri: str
    label: str  # for humans: "segment 12 of 40 (seg-011.ts)"
    display: str  # the remote file's name
    byte_range: ByteRange | None = None
    key: Key | None = None
    iv: bytes | None = None
    ts_check: str = "sniff"  # "require", "sniff" or "none"
    container: str | None = None  # what the file must be: MediaPlan.container (sniff.py)


def jobs_for(track: Track) -> list[FetchJob]:
    """The files to fetch for ``track``: its init sections first, then its segments."""
    name, plan = track.name, track.plan
    total = len(plan.segments)
    inits = [
        _job(name, init_filename(name, n), f"init section {n + 1}", init, plan)
        for n, init in enumerate(plan.init_sections)
    ]
    segments = [
        _job(name, segment_filename(name, i), f"segment {i + 1} of {total} ({seg.name})", seg, plan)
        for i, seg in enumerate(plan.segments)
    ]
    return inits + segments


def _job(
    track: str, filename: str, what: str, part: InitSection | Segment, plan: MediaPlan
) -> FetchJob:
    segment = part if isinstance(part, Segment) else None  # init sections are never encrypted
    return FetchJob(
        track=track,
        filename=filename,
        uri=part.uri,
        label=f"{track} {what}",
        display=display_name(part.uri),
        byte_range=part.byte_range,
        key=segment.key if segment else None,
        iv=segment.iv if segment else None,
        ts_check=ts_check_mode(part.uri, plan.is_fmp4),  # "none" for init sections: fMP4
        container=plan.container,
    )


class Arrivals:
    """Lets another thread wait for files of the work folder to be complete, in any order.

    Fetch threads call :meth:`arrived` after a file is renamed into place; a file
    that exists is complete (files are renamed in only once checked). :meth:`stop`
    wakes every waiter for good: a file still missing then raises ``error``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._error: BaseException | None = None

    def arrived(self, job: FetchJob | None = None) -> None:
        with self._cond:
            self._cond.notify_all()

    def stop(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def wait(self, path: Path) -> None:
        with self._cond:
            while not path.exists():
                if self._error is not None:
                    raise self._error
                self._cond.wait(TICK_SECONDS)


class TokenBucket:
    """A byte budget shared by all threads: ``rate`` bytes a second, bursts up to one second."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(rate)
        self._stamp = clock()

    def take(self, count: int, stop: threading.Event) -> None:
        """Spend ``count`` bytes, sleeping until the budget allows it (or ``stop`` is set)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.rate), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= count
            debt = -self._tokens
        if debt > 0 and stop.wait(debt / self.rate):
            raise CancelledError()


@dataclass
class FetchContext:
    """What every fetch thread of one :func:`fetch_all` shares."""

    session: requests.Session
    options: DownloadOptions
    work: WorkFolder
    keys: KeyStore
    tracker: ProgressTracker
    stop: threading.Event
    bucket: TokenBucket | None
    active: ActiveResponses
    on_file: Callable[[FetchJob], None] | None = None
    drain: threading.Event | None = None  # set: start no new file (see the module's doc)


# --------------------------------------------------------------------------- the pool


def fetch_all(
    jobs: Iterable[FetchJob],
    *,
    session: requests.Session,
    options: DownloadOptions,
    work: WorkFolder,
    keys: KeyStore,
    tracker: ProgressTracker,
    report: Callable[[], None],
    cancel: threading.Event | None = None,
    on_file: Callable[[FetchJob], None] | None = None,
    drain: threading.Event | None = None,
) -> None:
    """Fetch every job not already in ``work``; ``report()`` is called about 4 times a second.

    ``on_file(job)`` is called (in a fetch thread) as soon as a job's file is in place.
    Raises the first failure (after stopping the other threads), or CancelledError
    (``cancel`` set, or ``drain`` set and some files left out).
    """
    ctx = FetchContext(
        session=session,
        options=options,
        work=work,
        keys=keys,
        tracker=tracker,
        stop=threading.Event(),
        bucket=TokenBucket(options.rate_limit_bps) if options.rate_limit_bps else None,
        active=ActiveResponses(),
        on_file=on_file,
        drain=drain,
    )
    pending = _not_in_place(jobs, work, tracker)
    if not pending:
        return
    if cancel is not None and cancel.is_set():
        raise CancelledError()
    _run_pool(ctx, pending, report, cancel)


def _not_in_place(
    jobs: Iterable[FetchJob], work: WorkFolder, tracker: ProgressTracker
) -> list[FetchJob]:
    """The jobs whose file is not in ``work`` yet; the others count as done."""
    pending = []
    for job in jobs:
        size = work.finished_size(job.filename)
        if size is None:
            pending.append(job)
        else:
            tracker.already_done(size)
    return pending


def _run_pool(
    ctx: FetchContext,
    pending: list[FetchJob],
    report: Callable[[], None],
    cancel: threading.Event | None,
) -> None:
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(ctx.options.threads, len(pending))),
        thread_name_prefix="dlstore-fetch",
    )
    futures: list[Future[None]] = [pool.submit(_fetch_job, ctx, job) for job in pending]
    try:
        error = _wait_all(futures, report, cancel)
    except BaseException as exc:  # KeyboardInterrupt in the calling thread
        error = exc
    if error is None:
        pool.shutdown(wait=True)
        return
    ctx.stop.set()
    pool.shutdown(wait=False, cancel_futures=True)
    ctx.active.abort_all()
    # cancelled futures never count as done for wait(): leave them out
    wait([f for f in futures if not f.cancelled()], timeout=STOP_GRACE_SECONDS)
    raise error


def _wait_all(
    futures: list[Future[None]], report: Callable[[], None], cancel: threading.Event | None
) -> BaseException | None:
    """Wait for every future, reporting each tick; the first failure or a cancel ends it.

    A file left out by a drain (:class:`NotStartedError`) is not a failure: the others
    in flight are waited for, then the drain is the error."""
    waiting = set(futures)
    drained: BaseException | None = None
    while waiting:
        done, waiting = wait(waiting, timeout=TICK_SECONDS, return_when=FIRST_COMPLETED)
        for future in done:
            exc = future.exception()
            if isinstance(exc, NotStartedError):
                drained = exc
            elif exc is not None:
                return exc
        if cancel is not None and cancel.is_set():
            return CancelledError()
        if waiting:  # after the last file, the caller reports what comes next
            report()
    return drained


# --------------------------------------------------------------------------- one file


def _fetch_job(ctx: FetchContext, job: FetchJob) -> None:
    if ctx.stop.is_set():
        raise CancelledError()
    if ctx.drain is not None and ctx.drain.is_set():
        raise NotStartedError()
    retry = Retry.from_options(ctx.options, ctx.stop)
    try:
        decrypt_key = None
        if job.key is not None:
            decrypt_key = ctx.keys.get(job.key.uri)
        retry.run(lambda attempt: _attempt(ctx, job, decrypt_key))
    except CancelledError:
        ctx.tracker.abandoned(job)
        raise
    except CorruptSegmentError as exc:
        ctx.tracker.abandoned(job)
        raise SegmentError(
            f"The {job.label} is corrupt after {retry.attempts} attempts: {exc}"
        ) from exc
    except TransientDownloadError as exc:
        ctx.tracker.abandoned(job)
        raise TransientDownloadError(
            f"The {job.label} could not be downloaded after {retry.attempts} attempts: {exc} "
            "The segments fetched so far are kept; trying again later resumes."
        ) from exc
    except SegmentError:
        ctx.tracker.abandoned(job)
        raise
    except DlstoreError as exc:
        ctx.tracker.abandoned(job)
        raise SegmentError(f"The {job.label} could not be downloaded: {exc}") from exc


def _attempt(ctx: FetchContext, job: FetchJob, key: bytes | None) -> None:
    if ctx.stop.is_set():
        raise CancelledError()
    ctx.tracker.started(job, job.display)
    what = f"the {job.label}"
    fd, tmp_name = tempfile.mkstemp(dir=ctx.work.root, prefix=job.filename + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, translate_errors(what):
            response = ctx.session.get(
                job.uri,
                headers=range_header(job.byte_range),
                stream=True,
                timeout=request_timeout(ctx.options),
            )
            with ctx.active.reading(response), response:
                size = _stream_body(ctx, job, key, response, out, what)
        if ctx.stop.is_set():
            raise CancelledError()
        with open(tmp, "rb") as written:  # is it what the playlist says? (sniff.py)
            check_segment(written.read(HEAD_BYTES), job.container, job.label, size)
        os.replace(tmp, ctx.work.path(job.filename))
        ctx.tracker.finished(job, size)
    except BaseException:
        ctx.tracker.attempt_failed(job)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if ctx.on_file is not None:
        ctx.on_file(job)


def _stream_body(
    ctx: FetchContext,
    job: FetchJob,
    key: bytes | None,
    response: requests.Response,
    out,
    what: str,
) -> int:
    """Write the response's body, cut to the range, decrypted and checked; the bytes written."""
    check_status(response, what)
    length = LengthCheck(
        job.byte_range,
        response.status_code,
        expected_length(response),
        what,
        max_bytes=ctx.options.max_segment_bytes,
    )
    decryptor = Decryptor(key, job.iv or b"\0" * 16, job.display) if key else Passthrough()
    validator = TsValidator(job.ts_check, job.label, encrypted=job.key is not None)
    written = 0
    for chunk in iter_body(response, what, ctx.options, ctx.options.chunk_size):
        if ctx.stop.is_set():
            raise CancelledError()
        ctx.tracker.received(job, len(chunk))
        if ctx.bucket is not None:
            ctx.bucket.take(len(chunk), ctx.stop)
        data = decryptor.update(length.cut(chunk))
        validator.check(data)
        out.write(data)
        written += len(data)
        if length.full:
            break
    length.finish()
    tail = decryptor.finalize()
    validator.check(tail)
    out.write(tail)
    written += len(tail)
    validator.finish(written)
    return written
