"""Progress of one download: a snapshot type and the thread-safe counter behind it.

Workers report bytes and finished files to a :class:`ProgressTracker`; one
thread takes :class:`Progress` snapshots from it and hands them to the caller's
callback. Speed is measured over a sliding window; the ETA extrapolates the
average size of the segments finished so far.

Segments are what the web UI counts: ``total`` and ``done`` count the media
segments of the tracks fetched; init sections (``counted=False``) and keys are
not segments. Bytes count every file.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

SPEED_WINDOW_SECONDS = 5.0
EMIT_INTERVAL_SECONDS = 0.25  # at most ~4 callbacks a second


@dataclass(frozen=True)
class Progress:
    segments_done: int
    segments_total: int
    bytes_done: int
    speed_bps: int | None
    eta_seconds: int | None
    current_file: str | None
    message: str
    #: This run's network work, retries included (the daemon's metrics count these).
    fetched_bytes: int = 0
    segments_fetched: int = 0  # files fetched this run (not those found already in place)
    #: 0–1 done when no segment count can say: a live recording (Streams, #12) is
    #: its recorded time against record_limit, else 0 until it ends. None: by segments.
    fraction: float | None = None

    @property
    def percent(self) -> int:
        """0–100, by segments (or by ``fraction``)."""
        if self.fraction is not None:
            return max(0, min(100, int(100 * self.fraction)))
        if self.segments_total <= 0:
            return 0
        return min(100, (100 * self.segments_done) // self.segments_total)


class ProgressTracker:
    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.total = total
        self.done = 0
        self.finished_bytes = 0  # size of the files finished (this run or an earlier one)
        self.fetched_bytes = 0  # bytes received on the network this run, retries included
        self.fetched = 0  # files fetched and put in place this run
        self._inflight: dict[object, int] = {}
        self._current: str | None = None
        self._samples: deque[tuple[float, int]] = deque()

    def already_done(self, size: int, counted: bool = True) -> None:
        """A file found complete in the work folder (``counted``: it is a media segment)."""
        with self._lock:
            self.done += counted
            self.finished_bytes += size

    def started(self, job: object, name: str, kept: int = 0) -> None:
        """An attempt at ``job`` starts, with ``kept`` of its bytes already in the work folder."""
        with self._lock:
            self._inflight[job] = kept
            self._current = name

    def received(self, job: object, count: int) -> None:
        with self._lock:
            self._inflight[job] = self._inflight.get(job, 0) + count
            self.fetched_bytes += count

    def attempt_failed(self, job: object) -> None:
        with self._lock:
            self._inflight[job] = 0

    def finished(self, job: object, size: int, counted: bool = True) -> None:
        with self._lock:
            self._inflight.pop(job, None)
            self.done += counted
            self.fetched += 1
            self.finished_bytes += size

    def abandoned(self, job: object) -> None:
        with self._lock:
            self._inflight.pop(job, None)

    def snapshot(self, message: str) -> Progress:
        now = self._clock()
        with self._lock:
            samples = self._samples
            samples.append((now, self.fetched_bytes))
            while len(samples) > 2 and now - samples[1][0] >= SPEED_WINDOW_SECONDS:
                samples.popleft()
            speed = None
            t0, b0 = samples[0]
            if now - t0 > 0.2:
                speed = int((self.fetched_bytes - b0) / (now - t0))
            bytes_done = self.finished_bytes + sum(self._inflight.values())
            eta = None
            if speed and self.done:
                expected = self.finished_bytes / self.done * self.total
                eta = int(max(0.0, expected - bytes_done) / speed + 0.5)
            if self.done >= self.total:
                eta = 0
            return Progress(
                segments_done=self.done,
                segments_total=self.total,
                bytes_done=bytes_done,
                speed_bps=speed,
                eta_seconds=eta,
                current_file=self._current,
                message=message,
                fetched_bytes=self.fetched_bytes,
                segments_fetched=self.fetched,
            )


class Throttle:
    """Calls ``callback`` at most once per interval, unless forced."""

    def __init__(
        self,
        callback: Callable[[Progress], None] | None,
        interval: float = EMIT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._callback = callback
        self._interval = interval
        self._clock = clock
        self._last: float | None = None

    def __call__(self, progress: Progress, *, force: bool = False) -> None:
        if self._callback is None:
            return
        now = self._clock()
        if force or self._last is None or now - self._last >= self._interval:
            self._last = now
            self._callback(progress)
