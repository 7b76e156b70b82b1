"""Live recording (Streams, #12): a media playlist without EXT-X-ENDLIST, reloaded and
recorded into the work folder until it ends.

    first window (engine.resolve_plan) ──LiveWindow.fresh──▶ the segments not taken yet,
        in media-sequence order ──fetch_all──▶ work folder, renamed video-NNNNNN.seg in
        recording order ──▶ journal (live.jsonl) ──▶ LiveFiles, read by the following remux
    ◀── reload: the target duration after the previous load began, half of it after a
        reload that brought nothing new (RFC 8216 §6.3.4)

The windows come from a :class:`WindowSource`: :class:`HlsWindows` (the variant's
media playlist and each separate audio rendition's, reloaded together) or
:class:`dlstore.dash_tracks.DashWindows` (a live DASH manifest, its windows worked out
from the clock). A window has one plan per track, the video (or
only) one first, then each audio track; each track keeps its own files, journal
entries (``"track"``, absent for the first) and bookkeeping, the others recorded up to
the first one's time. A new recording starts its tracks together (:func:`aligned_start`:
by start time, EXT-X-PROGRAM-DATE-TIME or DASH presentation time, else by media
sequence). The limits, the stall and the progress count the first track.

Each segment is taken once: by its media sequence number, never one at or below the
last taken, so a stale reload (an older copy from a cache) brings nothing. A
segment's discontinuity number is EXT-X-DISCONTINUITY-SEQUENCE plus the
EXT-X-DISCONTINUITY tags up to it, so a discontinuity is seen even once its tag has
left the window.

A new recording starts with the whole window, or its last MAX_START_SECONDS when it
is longer (a DVR window). It stops at EXT-X-ENDLIST, at ``record_limit`` seconds of
recorded media (at most MAX_RECORD_SECONDS; without a limit, that), at
``max_segments``, when ``stop`` is set, or when the stream stops: no new segment for
STALL_TARGET_DURATIONS target durations (at least STALL_MIN_SECONDS), or
MAX_FAILED_RELOADS reloads in a row failing past their retries. ``cancel`` raises
CancelledError; what was recorded stays in the work folder, as for any download.

A gap is logged, kept as a :class:`Gap` (the row's metadata ``live_gaps``) and marks
the next segment as a discontinuity (the remux keeps timestamps monotonic):

    window          segments left the window before they were fetched
    reload_failed   the same, after reloads that failed past their retries (or, with
                    ``missing`` null, the recording ended because they kept failing)
    segment_failed  a segment that could not be fetched past its retries (up to
                    MAX_FAILED_SEGMENTS in a row; then the recording fails)
    resumed         the segments that went by while the recording was not running

Resuming: the journal lists what was recorded; a resumed recording goes on from the
first segment of the current window after the last one it holds (the live edge, if
the window has moved past it: a gap "resumed").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import requests

from dlstore.crypto import KeyStore
from dlstore.errors import CancelledError, DownloadError, PlaylistError, TransientDownloadError
from dlstore.fetch import FetchJob, fetch_all, jobs_for
from dlstore.http import Retry, fetch_small
from dlstore.options import MAX_RECORD_SECONDS, DownloadOptions
from dlstore.playlist import (
    ByteRange,
    InitSection,
    MediaPlan,
    Segment,
    decode_playlist,
    display_name,
    parse_playlist,
)
from dlstore.progress import Progress, ProgressTracker, Throttle
from dlstore.redact import redact_url
from dlstore.workfolder import (
    Track,
    WorkFolder,
    init_filename,
    media_track_names,
    segment_filename,
)

LOG = logging.getLogger("dlstore.live")
JOURNAL_NAME = "live.jsonl"
TICK_SECONDS = 0.25  # how often a wait between reloads reports progress and looks at cancel
DEFAULT_TARGET_SECONDS = 6.0  # for a playlist without EXT-X-TARGETDURATION (it must have one)
MIN_RELOAD_SECONDS = 0.5
STALL_TARGET_DURATIONS = 10
STALL_MIN_SECONDS = 10.0
MAX_FAILED_RELOADS = 3
MAX_FAILED_SEGMENTS = 3
MAX_START_SECONDS = 120.0  # a first window longer than this (a DVR window) starts this far back
ALIGN_SECONDS = 0.1  # start times this close are the same moment (aligned_start)
MIN_CHUNK = 8  # segments fetched, then journaled, at a time (at least; 2 per thread)
#: Files of an attempt that never made it into the journal: removed on resume.
_STRAY = re.compile(
    r"^(live-.*\.seg|.*\.part|(?P<track>video|audio(?:-\d+)?)-"
    r"(?:(?P<segment>\d{6,})|init-(?P<init>\d+))\.seg)$"
)
_GAP_TEXTS = {
    "window": "left the window before they could be fetched",
    "reload_failed": "left the window while the playlist could not be reloaded",
    "segment_failed": "could not be downloaded",
    "resumed": "went by while the recording was stopped",
}


@dataclass(frozen=True)
class Gap:
    """``missing`` segments (None: unknown) lost after the one numbered ``after_sequence``."""

    after_sequence: int | None
    missing: int | None
    reason: str  # a key of _GAP_TEXTS
    track: str | None = None  # a track other than the video: "audio", "audio-2"

    def as_metadata(self) -> dict:
        data = {"after_sequence": self.after_sequence, "missing": self.missing,
                "reason": self.reason}  # fmt: skip
        return data if self.track is None else {**data, "track": self.track}

    def sentence(self) -> str:
        if self.missing is None:
            return "The recording ended: the live playlist could not be reloaded."
        count = f"{self.missing} segment" + ("s" if self.missing != 1 else "")
        count += f" of the {self.track} track" if self.track else ""
        return f"Gap: {count} after media sequence {self.after_sequence} {_GAP_TEXTS[self.reason]}."


@dataclass
class LiveWindow:
    """Which segments of each load are new: bookkeeping by media sequence number (pure)."""

    last_sequence: int | None = None  # of the last segment taken or lost
    last_discontinuity: int | None = None  # that segment's discontinuity number
    broken: bool = False  # the next segment taken follows a gap

    def fresh(self, plan: MediaPlan) -> tuple[list[tuple[Segment, int]], int]:
        """The plan's segments after the last one taken, each with its discontinuity number,
        and how many segments are missing before the first of them."""
        new, number = [], plan.discontinuity_sequence
        for segment in plan.segments:
            number += int(segment.discontinuity)
            if self.last_sequence is None or segment.media_sequence > self.last_sequence:
                new.append((segment, number))
        missing = 0
        if new and self.last_sequence is not None:
            missing = max(0, new[0][0].media_sequence - self.last_sequence - 1)
        return new, missing

    def take(self, segment: Segment, number: int) -> bool:
        """Mark ``segment`` taken; whether a discontinuity comes before it."""
        cut = self.broken or self.last_discontinuity not in (None, number)
        self._passed(segment, number, broken=False)
        return cut

    def lose(self, segment: Segment, number: int) -> None:
        """Mark ``segment`` lost: passed over, with a discontinuity after it."""
        self._passed(segment, number, broken=True)

    def _passed(self, segment: Segment, number: int, *, broken: bool) -> None:
        self.last_sequence = segment.media_sequence
        self.last_discontinuity = number
        self.broken = broken


def reload_delay(target: float, changed: bool) -> float:
    """Seconds from the start of one load to the next (RFC 8216 §6.3.4)."""
    return max(MIN_RELOAD_SECONDS, target if changed else target / 2)


def live_start(segments: list[Segment]) -> int:
    """Where a new recording starts in its first window: the newest MAX_START_SECONDS of
    segments (at least one), the whole window when it is shorter."""
    start, seconds = len(segments) - 1, segments[-1].duration
    while start > 0 and seconds + segments[start - 1].duration <= MAX_START_SECONDS:
        start -= 1
        seconds += segments[start].duration
    return start


def aligned_start(lead: Segment, segments: Sequence[Segment]) -> int:
    """Where a track other than the first starts in its first window ``segments``, so as
    to begin with the first track's first segment ``lead``: by start times when all carry
    one (EXT-X-PROGRAM-DATE-TIME, a DASH presentation time), at the last segment begun by
    ``lead``'s start; else at ``lead``'s media sequence number (packagers number a
    stream's renditions alike). ``len(segments)`` while the window has not reached
    ``lead`` yet: the track waits for the next load."""
    if lead.start is not None and segments and all(s.start is not None for s in segments):
        begun = [n for n, s in enumerate(segments) if s.start <= lead.start + ALIGN_SECONDS]
        if not begun:
            return 0  # the window begins after lead: as early as it can
        last = segments[begun[-1]]
        return len(segments) if last.start + last.duration <= lead.start else begun[-1]
    later = (n for n, s in enumerate(segments) if s.media_sequence >= lead.media_sequence)
    return next(later, len(segments))


def clock_text(seconds: float) -> str:
    """``HH:MM:SS``."""
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class LiveFiles:
    """The recording's files in play order, growing while it runs: what the following
    remux reads (iterating waits for the next file until :meth:`close`)."""

    def __init__(self) -> None:
        self._paths: list = []
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None

    def append(self, path) -> None:
        with self._cond:
            self._paths.append(path)
            self._cond.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        """No more files; with ``error``, a reader still waiting raises it."""
        with self._cond:
            self._closed, self._error = True, error
            self._cond.notify_all()

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Iterator:
        index = 0
        while True:
            with self._cond:
                while index >= len(self._paths) and not self._closed:
                    self._cond.wait()
                if self._error is not None:
                    raise self._error
                if index >= len(self._paths):
                    return
                path = self._paths[index]
            index += 1
            yield path


class Journal:
    """What a recording holds, one JSON object a line in the work folder's live.jsonl,
    appended as it goes (a torn last line, from a crash, is dropped on resume)."""

    def __init__(self, work: WorkFolder) -> None:
        self.path = work.path(JOURNAL_NAME)

    def read(self) -> list[dict]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # absent, or a link: nothing dlstore recorded
            return []
        with os.fdopen(fd, "rb") as source:
            lines = source.read().decode("utf-8", errors="replace").splitlines()
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                break
            if not isinstance(entry, dict):
                break
            entries.append(entry)
        return entries

    def rewrite(self, entries: list[dict]) -> None:
        tmp = self.path.with_name(JOURNAL_NAME + ".tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
        os.replace(tmp, self.path)

    def append(self, entry: dict) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        fd = os.open(self.path, flags, 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


@dataclass
class LiveContext:
    """What a recording shares with the download it is part of (``engine._Download``)."""

    session: requests.Session
    options: DownloadOptions
    work: WorkFolder
    keys: KeyStore
    tracker: ProgressTracker
    emit: Throttle
    cancel: threading.Event
    stop: threading.Event = field(default_factory=threading.Event)
    log: logging.Logger | logging.LoggerAdapter = LOG
    clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class Window:
    """One load of a live stream: each track's segments offered now (numbered by media
    sequence), whether the stream has ended, and how long a load waits for the next."""

    tracks: tuple[MediaPlan, ...]  # the video (or only) track first, then each audio track
    ended: bool
    target: float  # seconds from one load's start to the next (halved when nothing is new)


class WindowSource(Protocol):
    """Where a recording's windows come from: an HLS playlist, a live DASH manifest."""

    url: str  # what messages name

    def load(self) -> Window:
        """The current window; a DownloadError if it cannot be had past its retries."""
        ...


class HlsWindows:
    """The windows of a live HLS stream: its media playlists (the variant's, then each
    separate audio rendition's), reloaded together, each load one window. They are
    reloaded on the shortest target duration among them (RFC 8216 §6.3.4 asks each to be
    reloaded at least that often), one request per playlist a reload; the stream has
    ended once each of them has EXT-X-ENDLIST."""

    def __init__(self, ctx: LiveContext, urls: Sequence[str]) -> None:
        self.ctx, self.urls, self.url = ctx, tuple(urls), urls[0]

    @staticmethod
    def window(plans: Sequence[MediaPlan]) -> Window:
        return Window(tracks=tuple(plans), ended=all(plan.ended for plan in plans),
                      target=min(_target(plan) for plan in plans))  # fmt: skip

    def load(self) -> Window:
        return self.window([self._load(url) for url in self.urls])

    def _load(self, url: str) -> MediaPlan:
        ctx = self.ctx
        fetched = fetch_small(
            ctx.session, url, options=ctx.options,
            what=f"the live playlist {redact_url(url)}",
            max_bytes=ctx.options.max_playlist_bytes,
            retry=Retry.from_options(ctx.options, ctx.cancel), cancel=ctx.cancel,
        )  # fmt: skip
        text = decode_playlist(fetched.body, fetched.url, fetched.content_type)
        plan = parse_playlist(text, fetched.url, max_segments=ctx.options.max_segments, live=True)
        if not isinstance(plan, MediaPlan):
            raise PlaylistError(f"The live playlist {redact_url(url)} became a master one.")
        return plan


@dataclass(frozen=True)
class Recording:
    """What was recorded, as finished media playlists of the work folder's files."""

    plans: tuple[MediaPlan, ...]  # per track, as the windows list them
    gaps: tuple[Gap, ...]

    @property
    def plan(self) -> MediaPlan:
        return self.plans[0]

    def gaps_metadata(self) -> list[dict]:
        return [gap.as_metadata() for gap in self.gaps]


@dataclass
class _TrackRecording:
    """One track of a recording: what it holds, and which segments it has passed."""

    name: str  # "video", "audio", "audio-2": the work folder's file names
    window: LiveWindow = field(default_factory=LiveWindow)
    segments: list[Segment] = field(default_factory=list)
    inits: dict[tuple, tuple[int, InitSection]] = field(default_factory=dict)
    files: LiveFiles = field(default_factory=LiveFiles)
    seconds: float = 0.0
    lost: float = 0.0  # seconds of segments that could not be fetched, in this run

    @property
    def reached(self) -> float:
        """Seconds of the stream the track has passed: what the other tracks follow."""
        return self.seconds + self.lost


@dataclass(eq=False)
class _Item:
    """One new segment on its way: its files are fetched under provisional names."""

    track: _TrackRecording
    segment: Segment
    number: int  # discontinuity number
    jobs: list[FetchJob]
    init_file: str | None  # the provisional file of an init section not recorded yet
    error: DownloadError | None = None


def _no_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _init_key(init: InitSection) -> tuple:
    return (_no_query(init.uri), init.byte_range)


def _target(plan: MediaPlan) -> float:
    target = plan.target_duration
    return target if target and target > 0 else DEFAULT_TARGET_SECONDS


class LiveRecorder:
    """Records the live stream of ``source`` (first loaded as ``first``); see the module."""

    def __init__(self, ctx: LiveContext, first: Window, source: WindowSource) -> None:
        self.ctx, self.first, self.source, self.url = ctx, first, source, source.url
        self.journal = Journal(ctx.work)
        self.tracks = [_TrackRecording(name) for name in media_track_names(len(first.tracks))]
        self.gaps: list[Gap] = []
        self.limit = min(ctx.options.record_limit or MAX_RECORD_SECONDS, MAX_RECORD_SECONDS)
        self.target = first.target
        self.failed_reloads = self.failed_segments = 0
        self.reload_failed = False  # since the last reload that brought segments
        self.last_error: DownloadError | None = None
        self.resumed = self._resume()
        self.last_new = ctx.clock()

    @property
    def files(self) -> LiveFiles:
        """The first track's files, for a remux that follows the recording."""
        return self.tracks[0].files

    @property
    def seconds(self) -> float:
        return self.tracks[0].seconds

    @property
    def segment_count(self) -> int:
        return sum(len(t.segments) for t in self.tracks)

    # --- the loop ------------------------------------------------------------------

    def run(self) -> Recording:
        """Record until the recording ends; the files stay in the work folder."""
        try:
            recording = self._finish(self._loop())
        except BaseException:
            for track in self.tracks:
                track.files.close(CancelledError())
            raise
        for track in self.tracks:
            track.files.close()
        return recording

    def _loop(self) -> str:
        """Take, wait, reload, until a reason to end (returned, for the log)."""
        window: Window | None = self.first
        loaded_at = self.ctx.clock()
        while True:
            changed = window is not None and self._take(window)
            if changed:
                self.last_new = loaded_at
            reason = self._end_reason(window)
            if reason is not None:
                return reason
            if not self._wait_until(loaded_at + reload_delay(self.target, changed)):
                return "it was asked to stop"
            loaded_at = self.ctx.clock()
            window = self._reload()

    def _end_reason(self, window: Window | None) -> str | None:
        options = self.ctx.options
        if self.seconds >= self.limit:
            return f"it reached its limit of {clock_text(self.limit)}"
        if self.segment_count >= options.max_segments:
            return f"it reached the limit of {options.max_segments} segments (max_segments)"
        if window is not None and window.ended:
            return "the stream ended"
        if self.ctx.stop.is_set():
            return "it was asked to stop"
        if self.failed_reloads >= MAX_FAILED_RELOADS:
            self._gap(Gap(self.tracks[0].window.last_sequence, None, "reload_failed"))
            return f"the playlist could not be reloaded {self.failed_reloads} times in a row"
        stall = max(STALL_TARGET_DURATIONS * self.target, STALL_MIN_SECONDS)
        if self.failed_reloads == 0 and self.ctx.clock() - self.last_new > stall:
            return f"no new segment came for {stall:.0f} s: the stream seems to have stopped"
        return None

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until ``deadline``, reporting progress; False if ``stop`` came first."""
        ctx = self.ctx
        while not ctx.stop.is_set():
            if ctx.cancel.is_set():
                raise CancelledError()
            left = deadline - ctx.clock()
            if left <= 0:
                return True
            ctx.cancel.wait(min(left, TICK_SECONDS))
            self._report()
        return False

    def _reload(self) -> Window | None:
        """The window again; None (logged, counted) if it failed past its retries."""
        try:
            window = self.source.load()
            if len(window.tracks) != len(self.tracks):
                raise PlaylistError(f"The live stream {redact_url(self.url)} changed its tracks.")
        except DownloadError as exc:
            self.failed_reloads += 1
            self.reload_failed, self.last_error = True, exc
            self.ctx.log.warning(
                "Reloading the live playlist failed (%d in a row): %s", self.failed_reloads, exc
            )
            return None
        self.failed_reloads = 0
        self.target = window.target
        return window

    def _finish(self, reason: str) -> Recording:
        if not self.tracks[0].segments:
            if self.last_error is not None:
                raise self.last_error
            raise TransientDownloadError(
                f"The live stream {redact_url(self.url)} ended before any segment was recorded "
                f"({reason}); try again when it is on the air."
            )
        self.ctx.log.info(
            "Live recording ended: %s; %s recorded in %d segments, %d gap(s)",
            reason, clock_text(self.seconds), self.segment_count, len(self.gaps),
        )  # fmt: skip
        self.ctx.tracker.total = self.segment_count
        self.ctx.emit(self.progress(), force=True)
        plans = tuple(
            MediaPlan(url=plan.url, segments=tuple(track.segments), target_duration=self.target)
            for plan, track in zip(self.first.tracks, self.tracks)
        )
        return Recording(plans=plans, gaps=tuple(self.gaps))

    # --- taking new segments ----------------------------------------------------------

    def _take(self, window: Window) -> bool:
        """Record the window's new segments (within the limits); whether there were any."""
        reason = "resumed" if self.resumed else "reload_failed" if self.reload_failed else "window"
        chosen: list[tuple[_TrackRecording, Segment, int]] = []
        until = None  # the first track's recorded seconds after this load: the others follow
        lead = None  # the first track's first segment: where the others begin
        for track, plan in zip(self.tracks, window.tracks):
            taken = self._within(track, self._fresh(track, plan, reason, lead, window), until)
            chosen += [(track, s, n) for s, n in taken]
            if until is None:
                until = track.reached + sum(s.duration for s, _ in taken)
                first = track.segments or [s for s, _ in taken]
                lead = first[0] if first else None
        if not chosen:
            return False
        step = max(MIN_CHUNK, 2 * self.ctx.options.threads)
        for start in range(0, len(chosen), step):  # a long window in chunks: each one is
            if start and self.ctx.stop.is_set():  # journaled and handed on before the next
                break
            self._take_chunk(chosen[start : start + step])
        return True

    def _fresh(
        self, track: _TrackRecording, plan: MediaPlan, reason: str, lead: Segment | None,
        window: Window,
    ):  # fmt: skip
        """The track's new segments in ``plan`` (a new recording's: from where it starts in
        its first window), a gap (for ``reason``) logged for those it missed."""
        fresh, missing = track.window.fresh(plan)
        if track.window.last_sequence is None and fresh:
            segments = [segment for segment, _ in fresh]
            fresh = fresh[self._starts_at(track, segments, lead, window) :]
        if missing and fresh:
            self._gap(Gap(track.window.last_sequence, missing, reason, self._label(track)), track)
        if fresh and track is self.tracks[0]:
            self.reload_failed = self.resumed = False
        return fresh

    def _starts_at(
        self, track: _TrackRecording, segments: list[Segment], lead: Segment | None,
        window: Window,
    ) -> int:  # fmt: skip
        """Where a new recording of ``track`` starts in its first window: the first track at
        its newest MAX_START_SECONDS, or later where another new track's window begins
        later; the others with it (at ``lead``, its first segment, once there is one)."""
        if track is not self.tracks[0]:
            return len(segments) if lead is None else aligned_start(lead, segments)
        start = live_start(segments)
        if start:
            self.ctx.log.info("Recording from the window's last %d segments; its %d older "
                              "ones are left out", len(segments) - start, start)  # fmt: skip
        others = [plan.segments[0] for other, plan in zip(self.tracks[1:], window.tracks[1:])
                  if other.window.last_sequence is None and plan.segments]  # fmt: skip
        return max([start, *(aligned_start(first, segments) for first in others)])

    def _within(self, track: _TrackRecording, fresh, until: float | None):
        """The segments of ``fresh`` within the limits: ``record_limit`` and max_segments for
        the first track; the others up to the time the first track has reached (``until``)."""
        limit = self.limit if until is None else until
        room = self.ctx.options.max_segments - self.segment_count
        seconds, chosen = (track.seconds if until is None else track.reached), []
        for segment, number in fresh[: max(0, room)]:
            if seconds >= limit - (0 if until is None else 1e-3):
                break
            chosen.append((segment, number))
            seconds += segment.duration
        return chosen

    def _label(self, track: _TrackRecording) -> str | None:
        return None if track is self.tracks[0] else track.name

    def _take_chunk(self, chosen: list[tuple[_TrackRecording, Segment, int]]) -> None:
        pending: dict[tuple, str] = {}
        items = [self._item(track, segment, number, pending) for track, segment, number in chosen]
        try:
            fetched = self._fetch(items)
        except CancelledError:
            self._record_in_place(items)  # fetched before the stop: kept, not a gap later
            raise
        for item in items:
            if item in fetched:
                self._record(item)
            else:
                self._lose(item)

    def _record_in_place(self, items: list[_Item]) -> None:
        """Record the leading items of each track whose files are all in place (in order: a
        recording never skips a segment it then keeps)."""
        work, stopped = self.ctx.work, set()
        for item in items:
            if id(item.track) in stopped:
                continue
            if any(work.finished_size(job.filename) is None for job in item.jobs):
                stopped.add(id(item.track))
                continue
            self._record(item)

    def _item(
        self, track: _TrackRecording, segment: Segment, number: int, pending: dict[tuple, str]
    ) -> _Item:
        """The fetch jobs of a new segment (and of its init section, if not recorded yet)."""
        name = track.name
        *init_jobs, job = jobs_for(Track(name, MediaPlan(url=self.url, segments=(segment,))))
        label = f"live segment {segment.media_sequence} ({segment.name})"
        jobs = [replace(job, filename=f"live-{name}-{segment.media_sequence}.seg", label=label)]
        init_file = None
        if segment.init is not None and _init_key(segment.init) not in track.inits:
            init_file = pending.setdefault(
                (name, *_init_key(segment.init)), f"live-{name}-init-{segment.media_sequence}.seg"
            )
            what = f"live init section ({display_name(segment.init.uri)})"
            jobs.insert(0, replace(init_jobs[0], filename=init_file, label=what))
        return _Item(track, segment, number, jobs, init_file)

    def _fetch(self, items: list[_Item]) -> list[_Item]:
        """Fetch the items' files; the items whose files are all in place. After a failure
        the items are fetched one by one, so one bad segment loses only itself."""
        try:
            self._fetch_jobs([job for item in items for job in item.jobs])
            return items
        except DownloadError as exc:
            if len(items) == 1:
                items[0].error = exc
                return []
        fetched = []
        for item in items:
            try:
                self._fetch_jobs(item.jobs)
                fetched.append(item)
            except DownloadError as exc:
                item.error = exc
        return fetched

    def _fetch_jobs(self, jobs: list[FetchJob]) -> None:
        work = self.ctx.work
        todo = {j.filename: j for j in jobs if work.finished_size(j.filename) is None}
        ctx = self.ctx
        ctx.tracker.total = ctx.tracker.done + len(todo)
        fetch_all(
            list(todo.values()),
            session=ctx.session,
            options=ctx.options,
            work=work,
            keys=ctx.keys,
            tracker=ctx.tracker,
            report=self._report,
            cancel=ctx.cancel,
        )

    def _record(self, item: _Item) -> None:
        """Move a fetched segment into the recording: renamed, journaled, handed to the remux."""
        segment, work, track = item.segment, self.ctx.work, item.track
        init = None
        if segment.init is not None:
            init = self._record_init(track, segment.init, item.init_file)
        cut = track.window.take(segment, item.number)
        index = len(track.segments)
        os.replace(work.path(item.jobs[-1].filename),
                   work.path(segment_filename(track.name, index)))  # fmt: skip
        recorded = Segment(
            uri=_no_query(segment.uri),
            duration=segment.duration,
            media_sequence=segment.media_sequence,
            init=init,
            discontinuity=cut,
        )
        self.journal.append(
            self._tagged(track, {
                "segment": index,
                "sequence": segment.media_sequence,
                "duration": segment.duration,
                "number": item.number,
                "discontinuity": cut,
                "uri": recorded.uri,
                "init": track.inits[_init_key(init)][0] if init else None,
            })
        )  # fmt: skip
        self._add(track, recorded)
        self.failed_segments = 0

    def _tagged(self, track: _TrackRecording, entry: dict) -> dict:
        """A journal entry, naming its track unless it is the first (as older journals)."""
        return entry if track is self.tracks[0] else {**entry, "track": track.name}

    def _record_init(
        self, track: _TrackRecording, init: InitSection, provisional: str | None
    ) -> InitSection:
        """The recorded form of ``init``, renamed and journaled the first time."""
        key = _init_key(init)
        if key not in track.inits:
            assert provisional is not None  # _item named one: the section was not recorded then
            number = len(track.inits)
            work = self.ctx.work
            os.replace(work.path(provisional), work.path(init_filename(track.name, number)))
            track.inits[key] = (number, InitSection(uri=key[0], byte_range=init.byte_range))
            r = init.byte_range
            entry = {"init": number, "uri": key[0], "length": r and r.length,
                     "offset": r and r.offset}  # fmt: skip
            self.journal.append(self._tagged(track, entry))
        return track.inits[key][1]

    def _add(self, track: _TrackRecording, recorded: Segment) -> None:
        """``recorded`` (its file in place) at the end of the track and of its LiveFiles."""
        work = self.ctx.work
        previous = track.segments[-1].init if track.segments else None
        if recorded.init is not None and recorded.init != previous:
            number = track.inits[_init_key(recorded.init)][0]
            track.files.append(work.path(init_filename(track.name, number)))
        track.files.append(work.path(segment_filename(track.name, len(track.segments))))
        track.segments.append(recorded)
        track.seconds += recorded.duration

    def _lose(self, item: _Item) -> None:
        item.track.window.lose(item.segment, item.number)
        item.track.lost += item.segment.duration
        self.failed_segments += 1
        error = item.error or DownloadError("A live segment could not be downloaded.")
        if self.failed_segments >= MAX_FAILED_SEGMENTS:
            raise error
        self.ctx.log.warning("%s", error)
        previous = item.segment.media_sequence - 1
        self._gap(Gap(previous, 1, "segment_failed", self._label(item.track)), item.track)

    def _gap(self, gap: Gap, track: _TrackRecording | None = None) -> None:
        self.gaps.append(gap)
        self.journal.append({"gap": gap.as_metadata()})
        (track or self.tracks[0]).window.broken = True
        self.ctx.log.warning("%s", gap.sentence())

    # --- progress ---------------------------------------------------------------------

    def _report(self) -> None:
        self.ctx.emit(self.progress())

    def progress(self) -> Progress:
        """ "Recording live: 00:12:30 recorded", against record_limit when there is one."""
        limit = self.ctx.options.record_limit
        text = f"Recording live: {clock_text(self.seconds)}"
        text += f" of {clock_text(limit)} recorded" if limit else " recorded"
        if self.gaps:
            text += f", {len(self.gaps)} gap" + ("s" if len(self.gaps) > 1 else "")
        snapshot = self.ctx.tracker.snapshot(text)
        return replace(
            snapshot,
            segments_done=self.segment_count,
            segments_total=0,
            eta_seconds=max(0, round(limit - self.seconds)) if limit else None,
            fraction=min(1.0, self.seconds / limit) if limit else 0.0,
        )

    # --- resuming ---------------------------------------------------------------------

    def _resume(self) -> bool:
        """Take up what the journal says was recorded; whether there was anything."""
        entries = self.journal.read()
        kept = []
        for entry in entries:
            try:
                if not self._replay(entry):
                    break
            except (KeyError, TypeError, ValueError, StopIteration):
                break
            kept.append(entry)
        self.journal.rewrite(kept)
        self._remove_strays()
        if not self.tracks[0].segments:
            return False
        for track in self.tracks:  # after a gap, each track's next segment is a cut
            track.window.broken = track.window.broken or "gap" in kept[-1]
        self.ctx.log.info(
            "Resuming a live recording: %s recorded in %d segments",
            clock_text(self.seconds), self.segment_count,
        )  # fmt: skip
        self.ctx.emit(self.progress(), force=True)
        return True

    def _replay(self, entry: dict) -> bool:
        """One journal entry back into the recording's state; False if its file is gone."""
        if "gap" in entry:
            gap = entry["gap"]
            track = self._track(gap.get("track"))
            self.gaps.append(Gap(gap["after_sequence"], gap["missing"], str(gap["reason"]),
                                 gap.get("track")))  # fmt: skip
            if gap["after_sequence"] is not None and gap["missing"] is not None:
                last = int(gap["after_sequence"]) + int(gap["missing"])
                track.window.last_sequence = max(track.window.last_sequence or 0, last)
            return True
        track = self._track(entry.get("track"))
        if "init" in entry and "segment" not in entry:
            return self._replay_init(track, entry)
        return self._replay_segment(track, entry)

    def _track(self, name: object) -> _TrackRecording:
        """The track a journal entry names (none: the first); KeyError if there is none."""
        if name is None:
            return self.tracks[0]
        return next(t for t in self.tracks if t.name == name)

    def _replay_init(self, track: _TrackRecording, entry: dict) -> bool:
        byte_range = None
        if entry["length"] is not None:
            byte_range = ByteRange(length=int(entry["length"]), offset=int(entry["offset"]))
        number, key = int(entry["init"]), (str(entry["uri"]), byte_range)
        if (
            number != len(track.inits)
            or self.ctx.work.finished_size(init_filename(track.name, number)) is None
        ):
            return False
        track.inits[key] = (number, InitSection(uri=key[0], byte_range=byte_range))
        return True

    def _replay_segment(self, track: _TrackRecording, entry: dict) -> bool:
        size = self.ctx.work.finished_size(segment_filename(track.name, len(track.segments)))
        if int(entry["segment"]) != len(track.segments) or size is None:
            return False
        init = None
        if entry["init"] is not None:
            init = next(i for n, i in track.inits.values() if n == int(entry["init"]))
        sequence = int(entry["sequence"])
        self._add(
            track,
            Segment(
                uri=str(entry["uri"]),
                duration=float(entry["duration"]),
                media_sequence=sequence,
                init=init,
                discontinuity=bool(entry["discontinuity"]),
            ),
        )
        track.window.last_sequence = max(track.window.last_sequence or 0, sequence)
        track.window.last_discontinuity = int(entry["number"])
        self.ctx.tracker.already_done(size)
        return True

    def _remove_strays(self) -> None:
        """Delete the files of an attempt that the journal does not list."""
        with os.scandir(self.ctx.work.root) as entries:
            names = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
        held = {t.name: t for t in self.tracks}
        for name in names:
            match = _STRAY.match(name)
            if match is None:
                continue
            track = held.get(match.group("track") or "")
            segment, init = match.group("segment"), match.group("init")
            if track is not None and segment is not None and int(segment) < len(track.segments):
                continue
            if track is not None and init is not None and int(init) < len(track.inits):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.ctx.work.path(name))
