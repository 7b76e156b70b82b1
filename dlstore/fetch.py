"""The fetch pool: every file of a download fetched in parallel into its work folder.

Each file is streamed to ``<name>.partial`` (:class:`~dlstore.workfolder.PartialFile`:
cut to the byte range, decrypted on the way, flushed chunk by chunk), checked
(:mod:`dlstore.segment_checks`) and renamed into place; a file already in place is
not fetched again. Nothing that came is fetched twice: an attempt cut short (a
broken connection, a stall, cancel, a killed process) leaves its bytes, and the
next attempt asks only for the rest (``Range``, ``If-Range``), continuing them when
the server answers 206 from where they end with the same validator
(:class:`~dlstore.segment_checks.Source`); any other answer starts that file over.
An AES-128 file keeps its whole decrypted blocks, and the rest is decrypted from
the last one's ciphertext (:func:`~dlstore.crypto.last_cipher_block`).

Failures are retried with backoff. A file that still fails does not stop the
others: every other file is fetched, then one error names the missing ones
(transient if any of them failed for a reason that may pass). What would fail
every file alike stops them all at once: cancel, a full or unwritable disk, an AES
key that could not be had. A body is refused past ``max_segment_bytes`` and aborted
when it stalls (:func:`dlstore.http.iter_body`); a stop shuts the sockets being read
down at once.

Two events stop a fetch, and they differ in what they let finish:

- ``drain``: start no new file; the files in flight finish (with their retries),
  then :class:`~dlstore.errors.CancelledError` is raised if any file was left out
  (nothing is raised if every file is in place). The daemon's SIGTERM.
- ``cancel``: stop now; the sockets being read are shut down mid-body.

Knows nothing of databases: progress goes out through a callback, cancellation
comes in through an event. Only the calling thread runs the callback.

    fetch_all → _fetch_job (retries) → _attempt (one .partial file) → _fetch_rest
        (_request; _stream_body: bytes) → _place (checks, rename)
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from dlstore.crypto import AES_BLOCK, Decryptor, KeyStore, last_cipher_block
from dlstore.errors import (
    CancelledError,
    CorruptSegmentError,
    DiskFullError,
    DlstoreError,
    DownloadError,
    NotWritableError,
    SegmentError,
    TransientDownloadError,
    WorkFolderError,
)
from dlstore.http import (
    ActiveResponses,
    Retry,
    check_status,
    expected_length,
    get_stream,
    iter_body,
    range_header,
    status_text,
    translate_errors,
)
from dlstore.options import DownloadOptions
from dlstore.playlist import ByteRange, InitSection, Key, Segment, display_name
from dlstore.progress import ProgressTracker
from dlstore.segment_checks import LengthCheck, Source, TsValidator, ts_check_mode
from dlstore.sniff import HEAD_BYTES, check_segment
from dlstore.workfolder import PartialFile, Track, WorkFolder, init_filename, segment_filename

TICK_SECONDS = 0.25  # how often the calling thread wakes to report progress and check cancel
STOP_GRACE_SECONDS = 0.5  # how long to wait for workers after a stop
READ_BLOCK = 1 << 20  # bytes read at a time from a partial file, to check or decrypt it
MISSING_NAMED = 3  # how many missing files the error names
#: Errors that stop every fetch at once: the other files would meet them too.
_STOPS_ALL = (CancelledError, DiskFullError, NotWritableError, WorkFolderError)
#: Errors that make the kept bytes of a file worthless (others keep them for the next try).
_SPOILS_PARTIAL = (CorruptSegmentError, SegmentError)


class NotStartedError(CancelledError):
    """The fetch is draining: this file was not started."""


@dataclass(frozen=True)
class FetchJob:
    """One file to fetch: a segment or an init section of one track."""

    track: str  # the Track's name: "video", "audio", "subtitles-1", …
    filename: str  # in the work folder
    uri: str
    label: str  # for humans: "segment 12 of 40 (seg-011.ts)"
    display: str  # the remote file's name
    byte_range: ByteRange | None = None
    key: Key | None = None
    iv: bytes | None = None
    ts_check: str = "sniff"  # "require", "sniff" or "none"
    container: str | None = None  # what the file must be: MediaPlan.container (sniff.py)
    is_segment: bool = True  # a media segment (init sections are not counted as segments)


def jobs_for(track: Track) -> list[FetchJob]:
    """The files to fetch for ``track``: its init sections first, then its segments."""
    name, plan = track.name, track.plan
    total = len(plan.segments)
    shape = _Shape.of(track)  # once: the plan's properties scan every segment
    inits = [
        _job(track, init_filename(name, n), f"init section {n + 1}", init, shape)
        for n, init in enumerate(plan.init_sections)
    ]
    segments = []
    for i, segment in enumerate(plan.segments):
        shown = display_name(segment.uri)  # once: it parses the URI
        what = f"segment {i + 1} of {total} ({shown})"
        segments.append(_job(track, segment_filename(name, i), what, segment, shape, shown))
    return inits + segments


@dataclass(frozen=True)
class _Shape:
    """What every file of one track shares."""

    fmp4: bool
    container: str | None
    forced: bool  # the track's files are read as a non-TS container whatever their names

    @classmethod
    def of(cls, track: Track) -> _Shape:
        plan = track.plan
        forced = track.container is not None and track.container != "mpegts"
        return cls(plan.is_fmp4, track.container or plan.container, forced)


def _job(
    track: Track,
    filename: str,
    what: str,
    part: InitSection | Segment,
    shape: _Shape,
    shown: str | None = None,
) -> FetchJob:
    # An init section is encrypted when an EXT-X-KEY comes before its EXT-X-MAP (its own IV).
    return FetchJob(
        track=track.name,
        filename=filename,
        uri=part.uri,
        label=f"{track.name} {what}",
        display=shown if shown is not None else display_name(part.uri),
        byte_range=part.byte_range,
        key=part.key,
        iv=part.iv,
        # "none" for init sections (fMP4) and for files forced to a non-TS container
        ts_check="none" if shape.forced else ts_check_mode(part.uri, shape.fmp4),
        container=shape.container,
        is_segment=isinstance(part, Segment),
    )


@dataclass(frozen=True)
class Missing:
    """A file that could not be fetched (its retries spent), and why in a few words."""

    job: FetchJob
    error: DlstoreError
    reason: str  # "HTTP 404 Not Found", "after 5 attempts: HTTP 503 Service Unavailable"

    @property
    def transient(self) -> bool:
        """Trying again later may bring it (a file still corrupt after its retries: no)."""
        return self.error.transient and not isinstance(self.error, CorruptSegmentError)


class Arrivals:
    """Lets another thread wait for files of the work folder to be complete, in any order.

    Fetch threads call :meth:`arrived` after a file is renamed into place; a file
    that exists is complete (files are renamed in only once checked). Only the
    arrival of the file being waited for wakes the waiter. :meth:`stop` wakes every
    waiter for good: a file still missing then raises ``error``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._awaited: str | None = None  # the name of the file being waited for

    def arrived(self, job: FetchJob | None = None) -> None:
        # Read without the lock: a waiter names its file before it looks for it, and the
        # file is in place before this runs, so a waiter this misses finds the file.
        if job is not None and job.filename != self._awaited:
            return
        with self._cond:
            self._cond.notify_all()

    def stop(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def wait(self, path: Path) -> None:
        if path.exists():
            return
        with self._cond:
            self._awaited = path.name
            try:
                while not path.exists():
                    if self._error is not None:
                        raise self._error
                    self._cond.wait(TICK_SECONDS)
            finally:
                self._awaited = None


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
    answers: dict[FetchJob, int] = field(default_factory=dict)  # the last status per file
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
    Raises CancelledError (``cancel`` set, or ``drain`` set and some files left out),
    or what stops every fetch at once (after stopping the other threads), or, once
    every other file is in place, one error naming the files that could not be
    fetched (:func:`missing_error`).
    """
    jobs = list(jobs)
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
    missing = _run_pool(ctx, pending, report, cancel)
    if missing:
        raise missing_error(missing, jobs)


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
            tracker.already_done(size, counted=job.is_segment)
    return pending


def _run_pool(
    ctx: FetchContext,
    pending: list[FetchJob],
    report: Callable[[], None],
    cancel: threading.Event | None,
) -> list[Missing]:
    """Run every job; the files that could not be fetched, in the jobs' order."""
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(ctx.options.threads, len(pending))),
        thread_name_prefix="dlstore-fetch",
    )
    futures: list[Future[Missing | None]] = [pool.submit(_fetch_job, ctx, job) for job in pending]
    try:
        error = _wait_all(futures, report, cancel)
    except BaseException as exc:  # KeyboardInterrupt in the calling thread
        error = exc
    if error is None:
        pool.shutdown(wait=True)
        return [missing for f in futures if (missing := f.result()) is not None]
    ctx.stop.set()
    pool.shutdown(wait=False, cancel_futures=True)
    ctx.active.abort_all()
    # cancelled futures never count as done for wait(): leave them out
    wait([f for f in futures if not f.cancelled()], timeout=STOP_GRACE_SECONDS)
    raise error


def _wait_all(
    futures: list[Future[Missing | None]],
    report: Callable[[], None],
    cancel: threading.Event | None,
) -> BaseException | None:
    """Wait for every future, reporting after each batch of outcomes and each tick; the
    first error raised (what stops every fetch) or a cancel ends it.

    Outcomes come through the futures' done-callbacks, in the order they end. A file
    left out by a drain (:class:`NotStartedError`) is not a failure: the others in
    flight are waited for, then the drain is the error."""
    outcomes: queue.SimpleQueue[Future[Missing | None]] = queue.SimpleQueue()
    for future in futures:
        future.add_done_callback(outcomes.put)
    left = len(futures)
    drained: BaseException | None = None
    while left:
        for future in _next_outcomes(outcomes):
            left -= 1
            exc = future.exception()
            if isinstance(exc, NotStartedError):
                drained = exc
            elif exc is not None:
                return exc
        if cancel is not None and cancel.is_set():
            return CancelledError()
        if left:  # after the last file, the caller reports what comes next
            report()
    return drained


def _next_outcomes(outcomes: queue.SimpleQueue[Future[Missing | None]]) -> list[Future]:
    """The futures that ended: at least one, unless TICK_SECONDS pass first."""
    try:
        ended = [outcomes.get(timeout=TICK_SECONDS)]
    except queue.Empty:
        return []
    with contextlib.suppress(queue.Empty):
        while True:
            ended.append(outcomes.get_nowait())
    return ended


def missing_error(missing: list[Missing], jobs: list[FetchJob]) -> DownloadError:
    """One error for the files that could not be fetched: how many, the first few by label
    and why. Transient if any of them may come later, else a SegmentError (of their class,
    if they share one)."""
    segments = all(m.job.is_segment for m in missing)
    total = sum(job.is_segment for job in jobs) if segments else len(jobs)
    named = ", ".join(f"{m.job.label} ({m.reason})" for m in missing[:MISSING_NAMED])
    if len(missing) > MISSING_NAMED:
        named += f", and {len(missing) - MISSING_NAMED} more"
    kind = ("segment" if total == 1 else "segments") if segments else "files"
    others = "the others are kept, and " if len(missing) < total else ""
    message = (
        f"{len(missing)} of {total} {kind} could not be downloaded: {named}; "
        f"{others}a retry fetches only these."
    )
    kinds = {type(m.error) for m in missing}
    if any(m.transient for m in missing):
        error: DownloadError = TransientDownloadError(message)
    elif len(kinds) == 1 and issubclass(*kinds, SegmentError):
        error = kinds.pop()(message)  # all too large, say: a SegmentTooLargeError
    else:
        error = SegmentError(message)
    error.__cause__ = missing[0].error
    return error


def _reason(error: DlstoreError, job: FetchJob, status: int | None, tried: int) -> str:
    """Why ``job`` failed, in a few words: the HTTP status the server refused it with, or
    the error's sentence without the file's name; and after how many attempts."""
    if status is not None and not 200 <= status < 300:
        detail = status_text(status)
    else:
        detail = str(error).replace(f"the {job.label}", "it").replace(f"The {job.label}", "It")
        detail = detail[:1].lower() + detail[1:].rstrip(".")
    if isinstance(error, CorruptSegmentError):
        return f"corrupt after {_attempts(tried)}: {detail}"
    if error.transient:
        return f"after {_attempts(tried)}: {detail}"
    return detail


def _attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


def _without_query(uri: str) -> str:
    """``uri`` without its query string and fragment: what a partial file records."""
    return urlsplit(uri)._replace(query="", fragment="").geturl()


# --------------------------------------------------------------------------- one file


def _fetch_job(ctx: FetchContext, job: FetchJob) -> Missing | None:
    """Fetch one file, with retries; a Missing if it could not be had (the others go on).

    Raises what stops every fetch: cancel, a full or unwritable disk, an AES key that
    could not be had (every segment under it needs it), a bug.
    """
    if ctx.stop.is_set():
        raise CancelledError()
    if ctx.drain is not None and ctx.drain.is_set():
        raise NotStartedError()
    tried = 0

    def once(attempt: int) -> None:
        nonlocal tried
        tried = attempt + 1
        _attempt(ctx, job, key)

    try:
        key = ctx.keys.get(job.key.uri) if job.key is not None else None
        Retry.from_options(ctx.options, ctx.stop, on_retry=ctx.options.on_segment_retry).run(once)
    except _STOPS_ALL:
        ctx.tracker.abandoned(job)
        raise
    except DownloadError as exc:
        ctx.tracker.abandoned(job)
        if tried == 0:  # the key, not the segment
            raise
        return Missing(job, exc, _reason(exc, job, ctx.answers.get(job), tried))
    except BaseException:
        ctx.tracker.abandoned(job)
        raise
    return None


def _attempt(ctx: FetchContext, job: FetchJob, key: bytes | None) -> None:
    """One attempt at ``job``: the rest of its kept bytes (or all of them) fetched into its
    partial file, decrypted on the way, then checked and placed."""
    if ctx.stop.is_set():
        raise CancelledError()
    partial = PartialFile(ctx.work, job.filename)
    try:
        kept = _kept_source(job, partial, encrypted=key is not None)
        ctx.tracker.started(job, job.display, partial.size)
        checked = None
        if kept is None or key is not None or not kept.holds(partial.size):
            checked = _fetch_rest(ctx, job, key, partial, kept)
        if ctx.stop.is_set():
            raise CancelledError()
        size = _place(ctx, job, partial, checked, encrypted=key is not None)
        ctx.tracker.finished(job, size, counted=job.is_segment)
    except BaseException as exc:
        ctx.tracker.attempt_failed(job)
        if isinstance(exc, _SPOILS_PARTIAL):
            partial.discard()
        partial.close()
        raise
    if ctx.on_file is not None:
        ctx.on_file(job)


def _kept_source(job: FetchJob, partial: PartialFile, encrypted: bool) -> Source | None:
    """Open ``partial``; the source of the bytes kept from an earlier attempt, if a request
    can continue them, else None. Decrypted bytes are cut to whole AES blocks
    (short of the file's last one, which may have lost its padding already): their last
    one, encrypted again, is the IV that decrypts the rest."""
    source = Source.from_record(partial.open())
    if encrypted and source is not None:  # whole blocks, and the last one fetched again
        whole = partial.size - partial.size % AES_BLOCK  # (it may have lost its padding)
        partial.truncate(max(0, min(whole, (source.length or whole + AES_BLOCK) - AES_BLOCK)))
    usable = (
        partial.size > 0
        and source is not None
        and source.resumable
        and source.uri == _without_query(job.uri)
        and source.byte_range == job.byte_range
        and (source.length is None or partial.size <= source.length)
    )
    return source if usable else None  # unusable bytes are dropped when the file starts over


def _fetch_rest(
    ctx: FetchContext,
    job: FetchJob,
    key: bytes | None,
    partial: PartialFile,
    kept: Source | None,
) -> TsValidator | None:
    """Fetch what ``partial`` lacks: the rest after its kept bytes when the server continues
    them, else the whole file. The TsValidator that saw every byte of the file as it came
    (a whole file), or None (bytes were kept: check them all afterwards)."""
    what = f"the {job.label}"
    with translate_errors(what):
        response, rest = _request(ctx, job, partial, kept)
        with ctx.active.reading(response), response:
            check_status(response, what)
            if rest is None:  # the whole file, from its first byte
                source = Source.of(_without_query(job.uri), job.byte_range,
                                   response.status_code, response.headers)  # fmt: skip
                partial.start(source.as_record() if source.resumable else None)
            length = LengthCheck(
                rest or job.byte_range,
                response.status_code,
                expected_length(response),
                what,
                max_bytes=ctx.options.max_segment_bytes - partial.size,
            )
            decryptor = _decryptor(job, key, partial if rest is not None else None)
            checks = None
            if rest is None:
                checks = TsValidator(job.ts_check, job.label, encrypted=key is not None)
            _stream_body(ctx, job, response, partial, length, decryptor, checks, what)
    return checks


def _decryptor(job: FetchJob, key: bytes | None, kept: PartialFile | None) -> Decryptor | None:
    """The decryptor of an encrypted file; when it continues the decrypted bytes ``kept``,
    its IV is their last ciphertext block (AES-CBC)."""
    if key is None:
        return None
    iv = job.iv or b"\0" * 16
    if kept is not None:
        iv = last_cipher_block(key, iv, kept.chunks(READ_BLOCK))
    return Decryptor(key, iv, job.display)


def _request(
    ctx: FetchContext, job: FetchJob, partial: PartialFile, kept: Source | None
) -> tuple[requests.Response, ByteRange | None]:
    """GET the file: the rest of the kept bytes if there are some; the response and, when
    it continues them, the range it carries. An answer that does not (a 200 of the whole
    file, a changed file) starts the file over: a 206 of something else is asked again."""
    if kept is not None:
        response = _get(ctx, job, kept.rest_request(partial.size))
        rest = kept.continuation(partial.size, response.status_code, response.headers)
        if rest is not None or response.status_code not in (206, 416):
            return response, rest  # continued, or the whole file, or an error for check_status
        response.close()
    return _get(ctx, job, range_header(job.byte_range)), None


def _get(ctx: FetchContext, job: FetchJob, headers: dict[str, str]) -> requests.Response:
    # a cancel, or the header deadline, reaches it while the headers come
    with ctx.active.requesting(ctx.options.header_deadline, f"the {job.label}"):
        response = get_stream(ctx.session, job.uri, headers, ctx.options)
    ctx.answers[job] = response.status_code
    return response


def _stream_body(
    ctx: FetchContext,
    job: FetchJob,
    response: requests.Response,
    partial: PartialFile,
    length: LengthCheck,
    decryptor: Decryptor | None,
    checks: TsValidator | None,
    what: str,
) -> None:
    """Append the response's body to ``partial``: cut to the range (``length``), decrypted,
    checked. Each chunk is written before anything may stop the loop: no byte that came
    is lost."""
    for chunk in iter_body(response, what, ctx.options, ctx.options.chunk_size):
        ctx.tracker.received(job, len(chunk))
        data = length.cut(chunk)
        clear: tuple[bytes | memoryview, ...] = (data,)
        if decryptor is not None:  # every whole block is kept; the clear bytes lag behind
            data, clear = decryptor.update_blocks(data)
        if checks is not None:
            checks.check_all(clear)
        partial.write(data)
        if ctx.stop.is_set():
            raise CancelledError()
        if ctx.bucket is not None:
            ctx.bucket.take(len(chunk), ctx.stop)
        if length.full:
            break
    length.finish()
    if decryptor is not None:
        data, clear = decryptor.finalize_blocks()
        if checks is not None:
            checks.check_all(clear)
        partial.write(data)
        partial.truncate(partial.size - decryptor.padding)


def _place(
    ctx: FetchContext,
    job: FetchJob,
    partial: PartialFile,
    checked: TsValidator | None,
    encrypted: bool,
) -> int:
    """Check the whole file in ``partial`` and rename it into place; its size. ``checked``
    saw every byte as it came (else they are checked now, from the file)."""
    with translate_errors(f"the {job.label}"):
        checks = checked
        if checks is None:
            checks = TsValidator(job.ts_check, job.label, encrypted=encrypted)
            for block in partial.chunks(READ_BLOCK):
                checks.check(block)
        checks.finish(partial.size)
        check_segment(partial.head(HEAD_BYTES), job.container, job.label, partial.size)
        size = partial.size
        partial.place(ctx.work.path(job.filename))
    return size
