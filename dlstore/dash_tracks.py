"""A parsed DASH manifest → the tracks to fetch: the one step of DASH that needs the network.

:func:`resolve_dash` chooses the representations (:func:`dlstore.dash.choose`),
lists each one's segments (:func:`dlstore.dash.representation_segments`), which
for a ``SegmentBase`` representation means fetching its ``sidx`` index range,
and joins the periods of each track into one
:class:`~dlstore.playlist.MediaPlan`. The engine wraps the result in its
``DownloadPlan``; from there on a DASH download is an fMP4 download like any other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import requests

from dlstore.dash import DashManifest, Representation, choose, join_periods, representation_segments
from dlstore.http import Retry, fetch_small
from dlstore.options import DownloadOptions
from dlstore.playlist import AudioRendition, ByteRange, MediaPlan, Variant
from dlstore.redact import redact_url


@dataclass(frozen=True)
class DashTracks:
    video: MediaPlan  # the only track of an audio-only stream
    audio: MediaPlan | None
    variant: Variant | None
    audio_rendition: AudioRendition | None


def resolve_dash(
    session: requests.Session,
    manifest: DashManifest,
    options: DownloadOptions,
    retry: Retry,
    cancel: threading.Event | None = None,
) -> DashTracks:
    """The tracks ``manifest`` offers at ``options.quality``, every segment listed."""
    choice = choose(manifest, options.quality)

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

    return DashTracks(
        video=track(choice.video),
        audio=track(choice.audio) if choice.audio else None,
        variant=choice.variant,
        audio_rendition=choice.audio_rendition,
    )
