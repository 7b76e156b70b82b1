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

import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import requests

from dlstore.dash import (
    DashManifest,
    Representation,
    choose,
    choose_text,
    join_periods,
    presentation_offset,
    representation_segments,
)
from dlstore.http import Retry, describe, fetch_small
from dlstore.options import DownloadOptions
from dlstore.playlist import AudioRendition, ByteRange, MediaPlan, SubtitleRendition, Variant
from dlstore.webvtt import MPEGTS_HZ, MPEGTS_WRAP

Read = Callable[[str, ByteRange], bytes]


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
            session, uri, options=options, what=f"the segment index of {describe(uri)}",
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
