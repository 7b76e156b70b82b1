"""A parsed DASH manifest → the tracks to fetch: the one step of DASH that needs the network.

:func:`resolve_dash` chooses the representations (:func:`dlstore.dash.choose`: video
by ``quality``, audio sets by ``audio``; :func:`dlstore.dash.choose_text`: WebVTT
text sets by ``subtitles``), lists each one's segments
(:func:`dlstore.dash.representation_segments`), which for a ``SegmentBase``
representation means fetching its ``sidx`` index range, and joins the periods of
each track into one :class:`~dlstore.playlist.MediaPlan`. The engine wraps the
result in its ``DownloadPlan``; from there on a DASH download is an fMP4 download
like any other, its subtitles WebVTT files like HLS ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from urllib.parse import urljoin

import requests

from dlstore.dash import (
    DashManifest,
    Period,
    Representation,
    choose,
    choose_text,
    join_periods,
    live_segments,
    parse_mpd,
    presentation_offset,
    representation_segments,
)
from dlstore.dash_live import UTC_DIRECT, UTC_HTTP, Clock, clock_offset
from dlstore.errors import DownloadError, TransientDownloadError
from dlstore.http import Retry, fetch_small
from dlstore.live import DEFAULT_TARGET_SECONDS, Window
from dlstore.options import DownloadOptions
from dlstore.playlist import AudioRendition, ByteRange, MediaPlan, SubtitleRendition, Variant
from dlstore.redact import redact_url
from dlstore.webvtt import MPEGTS_HZ, MPEGTS_WRAP

Read = Callable[[str, ByteRange], bytes]
LOG = logging.getLogger("dlstore.live")


@dataclass(frozen=True)
class TextTrack:
    """A WebVTT text set's files, and for each file the media timestamp (90 kHz) its cue
    time 0 is at: its period's start on the media clock (DASH cue times count from the
    start of their period)."""

    rendition: SubtitleRendition
    plan: MediaPlan
    clock: tuple[int, ...]


@dataclass(frozen=True)
class DashTracks:
    video: MediaPlan  # the only track of an audio-only stream
    audio: MediaPlan | None
    variant: Variant | None
    audio_rendition: AudioRendition | None
    more_audio: tuple[tuple[AudioRendition, MediaPlan], ...] = ()  # ``"audio": "all"``
    subtitles: tuple[TextTrack, ...] = ()


def resolve_dash(
    session: requests.Session,
    manifest: DashManifest,
    options: DownloadOptions,
    retry: Retry,
    cancel: threading.Event | None = None,
) -> DashTracks:
    """The tracks ``manifest`` offers at ``options.quality``, every segment listed."""
    choice = choose(manifest, options.quality, options.audio)

    def read(uri: str, byte_range: ByteRange) -> bytes:
        fetched = fetch_small(
            session, uri, options=options, what=f"the segment index of {redact_url(uri)}",
            max_bytes=options.max_playlist_bytes, retry=retry, byte_range=byte_range,
            cancel=cancel,
        )  # fmt: skip
        return fetched.body

    def track(reps: tuple[Representation, ...]) -> MediaPlan:
        periods = []
        budget = options.max_segments
        for rep in reps:
            periods.append(representation_segments(rep, read, budget))
            budget -= len(periods[-1])
        return join_periods(manifest.url, periods)

    zero = presentation_offset(choice.video[0])  # the media time the first period starts at
    return DashTracks(
        video=track(choice.video),
        audio=track(choice.audio) if choice.audio else None,
        variant=choice.variant,
        audio_rendition=choice.audio_rendition,
        more_audio=tuple((rendition, track(reps)) for rendition, reps in choice.more_audio),
        subtitles=tuple(
            _text_track(manifest.url, rendition, periods, zero, read, options.max_segments)
            for rendition, periods in choose_text(manifest, options.subtitles)
        ),
    )


def _text_track(
    url: str,
    rendition: SubtitleRendition,
    periods: tuple[tuple[Fraction, Representation | None], ...],
    zero: Fraction,
    read: Read,
    limit: int,
) -> TextTrack:
    """A text set's files over every period that has it, each with its period's clock."""
    lists, clock = [], []
    for start, rep in periods:
        if rep is not None:
            lists.append(representation_segments(rep, read, limit))
            at = round((zero + start - periods[0][0]) * MPEGTS_HZ) % MPEGTS_WRAP
            clock += [at] * len(lists[-1])
    return TextTrack(rendition, join_periods(url, lists), tuple(clock))


class DashWindows:
    """The windows of a live (``type="dynamic"``) DASH manifest, for :mod:`dlstore.live`.

    Each load lists the segments of the chosen representations that were available by
    the wall clock (:mod:`dlstore.dash_live`) when the manifest was fetched: the server's
    clock, by the manifest's ``UTCTiming`` when dlstore can read it (a time given
    directly, or a URL whose body is the time), else the local one. A segment the clock
    says came out since then is taken only once a fetch of the manifest shows it: the
    manifest is fetched again when one has (so a stream that ends in between is seen to
    end, and the recording holds exactly the segments its last manifest lists), and once
    its ``minimumUpdatePeriod`` has passed. The recording follows the period that was
    current when it began; once the manifest becomes ``static`` (or that period is gone)
    the window is the rest of the period and the stream has ended.
    """

    def __init__(
        self,
        session: requests.Session,
        manifest: DashManifest,
        options: DownloadOptions,
        cancel: threading.Event | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.session, self.options, self.cancel, self.wall = session, options, cancel, wall
        self.url = manifest.url
        self.manifest, self.loaded_at = manifest, wall()  # the manifest's local fetch time
        self.offset = self._utc_offset(manifest)
        period = _current_period(manifest, self.now())
        self.period = (period.id, period.start)
        self.first = self.window()

    def now(self) -> float:
        """The server's time now (seconds since the epoch)."""
        return self.wall() + self.offset

    def load(self) -> Window:
        if self._stale():
            began = self.wall()  # the answer is at least as new as the request
            self.manifest, self.loaded_at = self._fetch(), began
        return self.window()

    def _stale(self) -> bool:
        """Whether the manifest must be fetched again: it is static (not a live one any
        more), its minimumUpdatePeriod has passed, or a segment came out since its fetch."""
        timing = self.manifest.live
        if timing is None or self.wall() - self.loaded_at >= (timing.update_period or 0):
            return True
        newest = self._newest(self.window(self.now()))
        return newest is not None and newest != self._newest(self.window())

    @staticmethod
    def _newest(window: Window) -> int | None:
        segments = window.tracks[0].segments
        return segments[-1].media_sequence if segments else None

    def window(self, at: float | None = None) -> Window:
        """The current manifest's window at the server time ``at`` (by default its fetch
        time: what the manifest said was available when it was fetched)."""
        manifest = self.manifest
        now = self.loaded_at + self.offset if at is None else at
        period = next((p for p in manifest.periods if (p.id, p.start) == self.period), None)
        if period is None:  # the period left the manifest: the recording is over
            return Window(tracks=tuple(MediaPlan(self.url, ()) for _ in self.first.tracks),
                          ended=True, target=self.first.target)  # fmt: skip
        choice = choose(replace(manifest, periods=(period,)), self.options.quality,
                        self.options.audio)  # fmt: skip
        reps = [choice.video[0], *choice.audio, *(reps[0] for _, reps in choice.more_audio)]
        clock = None
        if manifest.live is not None:
            clock = Clock(now, manifest.live.availability_start, period.start, manifest.live.depth)
        plans = tuple(
            MediaPlan(
                url=self.url,
                segments=live_segments(rep, clock, self.options.max_segments),
                ended=clock is None,
            )  # fmt: skip
            for rep in reps
        )
        longest = max((s.duration for s in plans[0].segments), default=None)
        update = manifest.live.update_period if manifest.live else None
        target = longest or update or DEFAULT_TARGET_SECONDS
        return Window(tracks=plans, ended=clock is None, target=target)

    def _fetch(self) -> DashManifest:
        retry = Retry.from_options(self.options, self.cancel)
        fetched = fetch_small(
            self.session, self.url, options=self.options,
            what=f"the live manifest {redact_url(self.url)}",
            max_bytes=self.options.max_playlist_bytes, retry=retry, cancel=self.cancel,
        )  # fmt: skip
        return parse_mpd(fetched.body, fetched.url, live=True)

    def _utc_offset(self, manifest: DashManifest) -> float:
        """The server clock's offset from the local one, by the first UTCTiming dlstore
        reads (0: the local clock, when there is none or it cannot be had)."""
        for scheme, value in manifest.live.utc_timing if manifest.live else ():
            text = None
            if scheme in UTC_DIRECT:
                text = value
            elif scheme in UTC_HTTP and value:
                text = self._time_from(urljoin(self.url, value))
            offset = clock_offset(text, self.wall()) if text else None
            if offset is not None:
                return offset
        return 0.0

    def _time_from(self, url: str) -> str | None:
        try:
            fetched = fetch_small(
                self.session, url, options=self.options, what=f"the time at {redact_url(url)}",
                max_bytes=256, retry=Retry.from_options(self.options, self.cancel),
                cancel=self.cancel,
            )  # fmt: skip
        except DownloadError as exc:
            LOG.warning("The live manifest's clock could not be read: %s", exc)
            return None
        return fetched.body.decode("ascii", errors="replace")


def _current_period(manifest: DashManifest, now: float) -> Period:
    """The period a live recording takes: the last one begun by ``now``."""
    timing = manifest.live
    begun = [
        p for p in manifest.periods
        if (p.video or p.audio) and (timing is None
                                     or timing.availability_start + float(p.start) <= now)
    ]  # fmt: skip
    if not begun:
        raise TransientDownloadError(
            f"The live DASH stream {redact_url(manifest.url)} has not begun yet; try again when "
            "it is on the air."
        )
    return begun[-1]
