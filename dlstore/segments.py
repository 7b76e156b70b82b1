"""Fetch and decrypt the segments of a plan into a work folder, in parallel, resumably.

Each file is streamed to ``<name>.<random>.part``, decrypted on the way,
checked (length against Content-Length and the byte range; MPEG-TS sync bytes
where the data is TS; its first bytes against the container its playlist says,
see sniff.py) and renamed into place. A file already in place is not
fetched again, so running the same download again resumes it. A manifest in the
folder records what the files belong to; a different download wipes them.

Knows nothing of databases: progress goes out through a callback, cancellation
comes in through an event. Only the calling thread runs the callback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import requests

from dlstore.crypto import Decryptor, KeyStore, Passthrough
from dlstore.errors import (
    CancelledError,
    DlstoreError,
    DownloadError,
    SegmentError,
    TransientDownloadError,
)
from dlstore.http import (
    HttpError,
    Retry,
    abort_response,
    check_status,
    expected_length,
    range_header,
    translate_errors,
)
from dlstore.options import DownloadOptions
from dlstore.playlist import ByteRange, InitSection, Key, MediaPlan, display_name
from dlstore.progress import ProgressTracker
from dlstore.sniff import HEAD_BYTES, Kind, check_segment, identify

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
TICK_SECONDS = 0.25  # how often the calling thread wakes to report progress and check cancel
STOP_GRACE_SECONDS = 0.5  # how long to wait for workers after a stop
TS_PACKET = 188
TS_SYNC = 0x47
NOT_TS_SUFFIXES = {
    ".aac", ".ac3", ".ec3", ".mp3", ".m4a", ".m4s", ".m4v", ".mp4", ".fmp4", ".cmfv",
    ".cmfa", ".vtt", ".webvtt", ".flac", ".opus",
}  # fmt: skip
TS_SUFFIXES = {".ts", ".m2ts", ".mts", ".m2t", ".tsv", ".tsa"}


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


@dataclass(frozen=True)
class Track:
    """A media playlist to fetch into the work folder under ``name``."""

    name: str
    plan: MediaPlan


def _init_filename(track: str, number: int) -> str:
    return f"{track}-init-{number}.seg"


def _segment_filename(track: str, index: int) -> str:
    return f"{track}-{index:06d}.seg"


def _ts_check(uri: str, fmp4: bool) -> str:
    if fmp4:
        return "none"
    suffix = PurePosixPath(urlsplit(uri).path).suffix.lower()
    if suffix in TS_SUFFIXES:
        return "require"
    if suffix in NOT_TS_SUFFIXES:
        return "none"
    return "sniff"


def jobs_for(track: Track) -> list[FetchJob]:
    """The files to fetch for ``track``: its init sections first, then its segments."""
    plan = track.plan
    jobs = []
    inits = plan.init_sections
    for number, init in enumerate(inits):
        jobs.append(
            FetchJob(
                track=track.name,
                filename=_init_filename(track.name, number),
                uri=init.uri,
                label=f"{track.name} init section {number + 1}",
                display=display_name(init.uri),
                byte_range=init.byte_range,
                ts_check="none",
                container=plan.container,
            )
        )
    total = len(plan.segments)
    fmp4 = plan.is_fmp4
    container = plan.container
    for index, seg in enumerate(plan.segments):
        display = seg.name
        jobs.append(
            FetchJob(
                track=track.name,
                filename=_segment_filename(track.name, index),
                uri=seg.uri,
                label=f"{track.name} segment {index + 1} of {total} ({display})",
                display=display,
                byte_range=seg.byte_range,
                key=seg.key,
                iv=seg.iv,
                ts_check=_ts_check(seg.uri, fmp4),
                container=container,
            )
        )
    return jobs


def track_files(work: WorkFolder, track: Track) -> list[Path]:
    """The track's files in play order, each init section before the segments it applies to."""
    plan = track.plan
    init_numbers: dict[InitSection, int] = {init: n for n, init in enumerate(plan.init_sections)}
    files: list[Path] = []
    current: InitSection | None = None
    for index, seg in enumerate(plan.segments):
        if seg.init is not None and seg.init != current:
            files.append(work.path(_init_filename(track.name, init_numbers[seg.init])))
            current = seg.init
        files.append(work.path(_segment_filename(track.name, index)))
    return files


# --------------------------------------------------------------------------- work folder


class WorkFolder:
    """The folder holding one download's fetched files and its manifest."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, filename: str) -> Path:
        return self.root / filename

    def prepare(self, identity: dict) -> bool:
        """Create the folder for ``identity``; wipe files of another download. True if resuming."""
        manifest = self.root / MANIFEST_NAME
        wanted = {"version": MANIFEST_VERSION, **identity}
        if self.root.exists():
            try:
                current = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                current = None
            if current == wanted:
                return True
            self.wipe()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = manifest.with_name(MANIFEST_NAME + ".tmp")
        tmp.write_text(json.dumps(wanted, sort_keys=True, indent=1), encoding="utf-8")
        os.replace(tmp, manifest)
        return False

    def wipe(self) -> None:
        """Delete everything in the folder (but keep the folder)."""
        if not self.root.exists():
            return
        for entry in self.root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def finished_size(self, job: FetchJob) -> int | None:
        try:
            return self.path(job.filename).stat().st_size
        except FileNotFoundError:
            return None


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


# --------------------------------------------------------------------------- bandwidth cap


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


# --------------------------------------------------------------------------- validation


class TsChecker:
    """Checks that a byte stream is whole MPEG-TS packets: 0x47 every 188 bytes."""

    def __init__(self) -> None:
        self._pos = 0  # offset of the next byte within its packet
        self.ok = True

    def feed(self, data: bytes) -> bool:
        if not data or not self.ok:
            return self.ok
        first = (TS_PACKET - self._pos) % TS_PACKET
        syncs = data[first::TS_PACKET]
        if syncs.count(TS_SYNC) != len(syncs):
            self.ok = False
        self._pos = (self._pos + len(data)) % TS_PACKET
        return self.ok

    def whole(self) -> bool:
        return self.ok and self._pos == 0


class _Corrupt(TransientDownloadError):
    """A clear segment whose bytes are not what they should be; retried, then a SegmentError."""


# --------------------------------------------------------------------------- fetching


class _ActiveResponses:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._responses: set[requests.Response] = set()

    def add(self, response: requests.Response) -> None:
        with self._lock:
            self._responses.add(response)

    def discard(self, response: requests.Response) -> None:
        with self._lock:
            self._responses.discard(response)

    def abort_all(self) -> None:
        with self._lock:
            responses = list(self._responses)
        for response in responses:
            abort_response(response)


@dataclass
class FetchContext:
    session: requests.Session
    options: DownloadOptions
    work: WorkFolder
    keys: KeyStore
    tracker: ProgressTracker
    stop: threading.Event
    bucket: TokenBucket | None
    active: _ActiveResponses
    on_file: Callable[[FetchJob], None] | None = None


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
) -> None:
    """Fetch every job not already in ``work``; ``report()`` is called about 4 times a second.

    ``on_file(job)`` is called (in a fetch thread) as soon as a job's file is in place.
    Raises the first failure (after stopping the other threads), or CancelledError.
    """
    stop = threading.Event()
    ctx = FetchContext(
        session=session,
        options=options,
        work=work,
        keys=keys,
        tracker=tracker,
        stop=stop,
        bucket=TokenBucket(options.rate_limit_bps) if options.rate_limit_bps else None,
        active=_ActiveResponses(),
        on_file=on_file,
    )
    pending = []
    for job in jobs:
        size = work.finished_size(job)
        if size is None:
            pending.append(job)
        else:
            tracker.already_done(size)
    if not pending:
        return
    if cancel is not None and cancel.is_set():
        raise CancelledError()
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(options.threads, len(pending))),
        thread_name_prefix="dlstore-fetch",
    )
    futures: list[Future[None]] = [pool.submit(_fetch_job, ctx, job) for job in pending]
    error: BaseException | None = None
    try:
        waiting = set(futures)
        while waiting:
            done, waiting = wait(waiting, timeout=TICK_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                exc = future.exception()
                if exc is not None and error is None:
                    error = exc
            if error is not None:
                break
            if cancel is not None and cancel.is_set():
                error = CancelledError()
                break
            report()
    except BaseException as exc:  # KeyboardInterrupt in the calling thread
        error = exc
    finally:
        if error is not None:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            ctx.active.abort_all()
            # cancelled futures never count as done for wait(): leave them out
            wait([f for f in futures if not f.cancelled()], timeout=STOP_GRACE_SECONDS)
        else:
            pool.shutdown(wait=True)
    if error is not None:
        raise error


def _fetch_job(ctx: FetchContext, job: FetchJob) -> None:
    if ctx.stop.is_set():
        raise CancelledError()
    retry = Retry.from_options(ctx.options, ctx.stop)
    try:
        decrypt_key = None
        if job.key is not None:
            decrypt_key = ctx.keys.get(job.key.uri)
        retry.run(lambda attempt: _attempt(ctx, job, decrypt_key))
    except CancelledError:
        ctx.tracker.abandoned(job)
        raise
    except _Corrupt as exc:
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
                timeout=(ctx.options.connect_timeout, ctx.options.read_timeout),
            )
            ctx.active.add(response)
            try:
                with response:
                    size = _stream_body(ctx, job, key, response, out, what)
            finally:
                ctx.active.discard(response)
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
    check_status(response, what)
    wire_expected = expected_length(response)
    byte_range = job.byte_range
    skip = 0
    limit = None
    if byte_range is not None:
        limit = byte_range.length
        if response.status_code == 200:
            skip = byte_range.offset  # the server ignored Range: cut the range out ourselves
        elif wire_expected is not None and wire_expected != byte_range.length:
            raise DownloadError(
                f"The server answered the request for {what} with {wire_expected} bytes "
                f"instead of the {byte_range.length} asked for."
            )
    ranged_by_us = byte_range is not None and response.status_code == 200
    decryptor = Decryptor(key, job.iv or b"\0" * 16, job.display) if key else Passthrough()
    validator = _Validator(job)
    received = 0
    kept = 0
    written = 0
    for chunk in response.iter_content(ctx.options.chunk_size):
        if ctx.stop.is_set():
            raise CancelledError()
        received += len(chunk)
        ctx.tracker.received(job, len(chunk))
        if ctx.bucket is not None:
            ctx.bucket.take(len(chunk), ctx.stop)
        if skip:
            cut = min(skip, len(chunk))
            chunk = chunk[cut:]
            skip -= cut
        if limit is not None:
            chunk = chunk[: max(0, limit - kept)]
        kept += len(chunk)
        data = decryptor.update(chunk)
        validator.check(data)
        out.write(data)
        written += len(data)
        if ranged_by_us and kept >= limit:
            break
    if not ranged_by_us and wire_expected is not None and received != wire_expected:
        raise HttpError(f"{_cap(what)} arrived truncated ({received} of {wire_expected} bytes).")
    if limit is not None and kept != limit:
        raise HttpError(f"{_cap(what)} arrived truncated ({kept} of {limit} bytes).")
    if kept == 0:
        raise _Corrupt(f"{_cap(what)} is empty.")
    tail = decryptor.finalize()
    validator.check(tail)
    out.write(tail)
    written += len(tail)
    validator.finish(written)
    return written


class _Validator:
    """Applies a job's MPEG-TS check to the decrypted bytes as they are written."""

    def __init__(self, job: FetchJob) -> None:
        self.job = job
        self.mode = job.ts_check
        self.checker = TsChecker()
        self.started = False

    def check(self, data: bytes) -> None:
        if self.mode == "none" or not data:
            return
        if not self.started:
            self.started = True
            if data[0] != TS_SYNC:
                if self.mode == "sniff" or identify(data) is not Kind.BINARY:  # sniffed at the end
                    self.mode = "none"
                    return
                _bad_ts(self.job, "it does not start with an MPEG-TS sync byte")
        if not self.checker.feed(data):
            _bad_ts(self.job, "its MPEG-TS sync bytes are out of place")

    def finish(self, written: int) -> None:
        if self.mode != "none" and written and not self.checker.whole():
            _bad_ts(self.job, f"it does not end on a whole MPEG-TS packet ({written} bytes)")


def _bad_ts(job: FetchJob, detail: str) -> None:
    if job.key is not None:
        raise SegmentError(
            f"The {job.label} did not decrypt to MPEG-TS video ({detail}); "
            "the AES key is probably wrong."
        )
    raise _Corrupt(f"The {job.label} is not valid MPEG-TS data: {detail}.")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
