"""A live HLS stream for tests: a sliding-window media playlist that advances in real time.

    pool = make_pool(folder)                  # real TS segments (dlstore.testing.media)
    pool = make_pool(folder, kind="fmp4")     # or fMP4 ones with an init section (EXT-X-MAP)
    with HlsServer() as server, LivePlaylist(server, pool, window=3) as live:
        live.start()                # one segment more every target duration, on a thread,
                                    # from the first time a client loads the playlist
        live.start(advances=4)      # ... and EXT-X-ENDLIST after 4 of them
        live.url                    # the playlist's URL
        live.advance(5)             # jump ahead: segments leave the window unseen (a gap)
        live.end()                  # EXT-X-ENDLIST: the stream is over
        live.offered                # media sequence numbers that have been in the window
        server.hits[live.segment_path(7)]   # how often segment 7 was fetched

    pools = make_rendition_pools(folder)      # video, and audio in two languages, aligned
    with HlsServer() as server, LiveRenditions(server, pools) as live:
        live.start()                # a master playlist: the video and each audio rendition
                                    # a LivePlaylist (live.video, live.audio["en"]), together

Media sequence number ``n`` serves ``pool.segments[n % len]`` as ``/<name>/s<n>.ts`` (``.m4s``,
with ``/<name>/init.mp4``, for fMP4). Each
time the pool starts over its timestamps restart, so that segment carries
EXT-X-DISCONTINUITY, and EXT-X-DISCONTINUITY-SEQUENCE counts those that have left the
window (RFC 8216 §6.2.2). A segment stays served after it leaves the window, as a CDN's
does. The playlist and segments are :class:`~dlstore.testing.hls_server.Body` entries of
the server, replaced at each advance. Standard library only; :func:`make_pool` uses the
media makers.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from dlstore.testing.hls_server import Body, HlsServer

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPES = {".ts": "video/mp2t", ".m4s": "video/iso.segment"}
POLL_SECONDS = 0.02


@dataclass(frozen=True)
class PoolSegment:
    data: bytes
    duration: float


@dataclass(frozen=True)
class Pool:
    """Real segments to serve in turn; ``init`` is the fMP4 init section, if any."""

    segments: tuple[PoolSegment, ...]
    init: bytes | None = None

    @property
    def suffix(self) -> str:
        return ".m4s" if self.init is not None else ".ts"


def make_pool(
    folder: Path, seconds: int = 6, *, kind: str = "mpegts", width: int = 96, height: int = 54
) -> Pool:
    """``seconds`` one-second segments (H.264 + AAC), MPEG-TS or fMP4, made in ``folder``."""
    from dlstore.testing.media import encode_source, write_hls

    folder.mkdir(parents=True, exist_ok=True)
    source = encode_source(folder / "live-source.mp4", duration=seconds, width=width,
                           height=height)  # fmt: skip
    return pool_from(write_hls(source, folder / f"live-pool-{kind}", kind=kind))


def pool_from(playlist: Path) -> Pool:
    """The segments of a VOD media playlist written by FFmpeg (with ``init.mp4`` if fMP4)."""
    from dlstore.testing.media import segment_uris

    text = playlist.read_text()
    durations = [
        float(line.split(":", 1)[1].split(",")[0])
        for line in text.splitlines()
        if line.startswith("#EXTINF:")
    ]
    segments = tuple(
        PoolSegment((playlist.parent / uri).read_bytes(), duration)
        for uri, duration in zip(segment_uris(text), durations)
    )
    init = playlist.parent / "init.mp4"
    return Pool(segments, init.read_bytes() if "#EXT-X-MAP" in text else None)


@dataclass(frozen=True)
class RenditionPools:
    """A video pool and an audio pool per language, cut together (their segments and
    timestamps line up), from :func:`dlstore.testing.media.write_multilanguage`."""

    video: Pool
    audio: dict[str, Pool]  # language → its pool, in the master's order
    names: dict[str, str]  # language → its rendition's NAME
    default: str  # the DEFAULT=YES language


def make_rendition_pools(folder: Path, seconds: int = 6) -> RenditionPools:
    """``seconds`` one-second MPEG-TS segments of 320x180 H.264, and of mono AAC in French
    (660 Hz) and English (440 Hz, the default), made in ``folder``."""
    from dlstore.testing.media import MULTI_AUDIO, write_multilanguage

    write_multilanguage(folder, "live-renditions", duration=seconds)
    root = folder / "live-renditions"
    audio = {lang: pool_from(root / str(n) / "index.m3u8")
             for n, (lang, _, _) in enumerate(MULTI_AUDIO, 1)}  # fmt: skip
    names = {lang: name for lang, name, _ in MULTI_AUDIO}
    return RenditionPools(pool_from(root / "0" / "index.m3u8"), audio, names, default="en")


_T = TypeVar("_T", bound="_Ticking")


class _Ticking:
    """A live test stream that a thread advances every ``interval`` seconds once its
    ``path`` was first loaded (:func:`_tick`): ``start``, ``stop``, and a context manager
    that stops it. Its class sets ``server``, ``path`` and ``interval``, calls
    :meth:`_init_ticking`, and gives ``advance``, ``end`` and ``ended``."""

    path: str
    interval: float

    def _init_ticking(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self: _T, advances: int | None = None) -> _T:
        """Advance every ``interval`` seconds from the first load of ``path`` on; with
        ``advances``, end after that many."""
        self._thread = threading.Thread(
            target=_tick, args=(self, self.path, self.interval, self._stop, advances), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LivePlaylist(_Ticking):
    """A sliding window of ``window`` segments over ``pool``, served by ``server``."""

    def __init__(
        self,
        server: HlsServer,
        pool: Pool,
        *,
        name: str = "live",
        window: int = 3,
        target: int = 1,
        interval: float | None = None,
    ) -> None:
        self.server, self.pool, self.name = server, pool, name
        self.window, self.target = window, target
        self.interval = interval if interval is not None else float(target)
        self.path = f"/{name}/index.m3u8"
        self.offered: set[int] = set()
        self._next = window  # the media sequence number the next advance publishes
        self._ended = False
        self._lock = threading.Lock()
        self._init_ticking()
        self._publish()

    @property
    def url(self) -> str:
        return self.server.url(self.path)

    @property
    def first(self) -> int:
        """The media sequence number of the window's first segment."""
        return max(0, self._next - self.window)

    @property
    def ended(self) -> bool:
        return self._ended

    def segment_path(self, sequence: int) -> str:
        return f"/{self.name}/s{sequence}{self.pool.suffix}"

    def duration_of(self, sequences: Iterable[int]) -> float:
        """The media seconds of the segments numbered ``sequences``."""
        segments = self.pool.segments
        return sum(segments[n % len(segments)].duration for n in sequences)

    def advance(self, count: int = 1) -> None:
        with self._lock:
            if not self._ended:
                self._next += count
                self._publish()

    def end(self) -> None:
        with self._lock:
            self._ended = True
            self._publish()

    def _publish(self) -> None:
        pool, first = self.pool, self.first
        count = len(pool.segments)
        gone = (first - 1) // count if first else 0  # discontinuities that left the window
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{self.target}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{gone}",
        ]
        if pool.init is not None:
            self.server.bodies[f"/{self.name}/init.mp4"] = Body(pool.init, "video/mp4")
            lines.append('#EXT-X-MAP:URI="init.mp4"')
        for sequence in range(first, self._next):
            segment = pool.segments[sequence % count]
            path = self.segment_path(sequence)
            self.server.bodies[path] = Body(segment.data, SEGMENT_TYPES[pool.suffix])
            self.offered.add(sequence)
            if sequence and sequence % count == 0:
                lines.append("#EXT-X-DISCONTINUITY")
            lines += [f"#EXTINF:{segment.duration:.6f},", path.rsplit("/", 1)[1]]
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        body = ("\n".join(lines) + "\n").encode()
        self.server.bodies[self.path] = Body(body, PLAYLIST_TYPE)


def _tick(live, path: str, interval: float, stop: threading.Event, advances: int | None) -> None:
    """Advance ``live`` every ``interval`` seconds from the first load of ``path`` on, until
    ``stop``; with ``advances``, end it after that many."""
    while not live.server.hits[path]:
        if stop.wait(POLL_SECONDS):
            return
    done = 0
    while not live.ended and not stop.wait(interval):
        live.advance()
        done += 1
        if advances is not None and done >= advances:
            live.end()


class LiveRenditions(_Ticking):
    """A live master playlist at ``/<name>/master.m3u8``: one variant, its video a
    :class:`LivePlaylist` (``/<name>-video/``), its ``AUDIO="aud"`` group one live audio
    rendition per language of ``pools`` (``/<name>-<lang>/``), all advancing together
    (as one packager's): ``start``, ``advance``, ``end`` as for a :class:`LivePlaylist`.

        live.video.offered, live.audio["en"].offered    # what each window has offered
        server.hits[live.audio["fr"].segment_path(3)]   # audio segment 3 fetched how often
    """

    def __init__(
        self, server: HlsServer, pools: RenditionPools, *, name: str = "lmaster", window: int = 3
    ) -> None:
        self.server, self.pools = server, pools
        self.video = LivePlaylist(server, pools.video, name=f"{name}-video", window=window)
        self.audio = {lang: LivePlaylist(server, pool, name=f"{name}-{lang}", window=window)
                      for lang, pool in pools.audio.items()}  # fmt: skip
        self.path = f"/{name}/master.m3u8"
        self.interval = self.video.interval
        self._init_ticking()
        self.server.bodies[self.path] = Body(self._master().encode(), PLAYLIST_TYPE)

    @property
    def url(self) -> str:
        return self.server.url(self.path)

    @property
    def ended(self) -> bool:
        return self.video.ended

    def playlists(self) -> list[LivePlaylist]:
        return [self.video, *self.audio.values()]

    def advance(self, count: int = 1) -> None:
        for playlist in self.playlists():
            playlist.advance(count)

    def end(self) -> None:
        for playlist in self.playlists():
            playlist.end()

    def _master(self) -> str:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
        for lang, playlist in self.audio.items():
            default = "YES" if lang == self.pools.default else "NO"
            lines.append(
                f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="{self.pools.names[lang]}",'
                f'LANGUAGE="{lang}",DEFAULT={default},AUTOSELECT=YES,URI="{playlist.path}"'
            )
        lines += ['#EXT-X-STREAM-INF:BANDWIDTH=500000,RESOLUTION=320x180,'
                  'CODECS="avc1.64000d,mp4a.40.2",AUDIO="aud"', self.video.path]  # fmt: skip
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- live DASH

DASH_TYPE = "application/dash+xml"


def make_dash_pool(folder: Path, seconds: int = 12) -> Path:
    """A ``seconds`` long DASH stream (96x54 H.264 + AAC, 1 s segments, a ``$Number$``
    template with ``@duration``) from FFmpeg's dash muxer; returns its folder."""
    from dlstore.testing.dash_media import write_dash
    from dlstore.testing.media import encode_source

    folder.mkdir(parents=True, exist_ok=True)
    source = encode_source(folder / "dash-source.mp4", duration=seconds, width=96, height=54)
    write_dash([source], folder / "pool", layout="number")
    return folder / "pool"


class LiveDash:
    """A live DASH stream over the files of :func:`make_dash_pool`, served by ``server``
    from ``/<name>/``: a ``type="dynamic"`` MPD whose ``availabilityStartTime`` is
    ``lead`` seconds before it was made, so segment ``n`` (from 1) may be fetched once
    ``n`` seconds have passed since then (the client works that out from its clock:
    the MPD does not change); ``depth`` is its ``timeShiftBufferDepth``.

        live.end()                # the MPD becomes static, exactly as long as what was produced
        live.available()          # the segment numbers the window offers now
        server.hits[live.segment_path(3)]          # video segment 3 fetched how often
    """

    def __init__(
        self,
        server: HlsServer,
        pool: Path,
        *,
        name: str = "dlive",
        lead: float = 2.5,
        depth: float = 3.0,
        update: float = 1.0,
        utc: str | None = None,
    ) -> None:
        self.server, self.name, self.depth = server, name, depth
        self.static = (pool / "manifest.mpd").read_text()
        self.count = len(list(pool.glob("chunk-stream0-*.m4s")))
        for path in pool.iterdir():
            if path.suffix == ".m4s":
                self.server.bodies[f"/{name}/{path.name}"] = Body(path.read_bytes(), "video/mp4")
        self.start = time.time() - lead
        self.path = f"/{name}/manifest.mpd"
        self.ended_after: int | None = None
        when = datetime.fromtimestamp(self.start, timezone.utc).isoformat(timespec="milliseconds")
        head = (f'type="dynamic" availabilityStartTime="{when.replace("+00:00", "Z")}" '
                f'minimumUpdatePeriod="PT{update}S" timeShiftBufferDepth="PT{depth}S"')  # fmt: skip
        dynamic = re.sub(r'type="static"\s+mediaPresentationDuration="[^"]*"', head, self.static)
        if utc is not None:
            dynamic = dynamic.replace("</MPD>", f"{utc}\n</MPD>")
        self._publish(dynamic)

    @property
    def url(self) -> str:
        return self.server.url(self.path)

    def segment_path(self, number: int, track: int = 0) -> str:
        return f"/{self.name}/chunk-stream{track}-{number:05d}.m4s"

    def available(self) -> list[int]:
        """The numbers of the video segments the window offers now."""
        elapsed = time.time() - self.start
        return [n for n in range(1, self.count + 1) if elapsed - self.depth <= n <= elapsed]

    def end(self) -> int:
        """Make the MPD static, exactly as long as the segments produced by now; their
        count. It is in place before another segment comes out (else published again), so
        the dynamic MPD a client fetched before never said one more had been produced."""
        while True:
            produced = min(self.count, int(time.time() - self.start))
            total = f'mediaPresentationDuration="PT{produced}S"'
            self._publish(re.sub(r'mediaPresentationDuration="[^"]*"', total, self.static))
            if produced == self.count or time.time() - self.start < produced + 1:
                self.ended_after = produced
                return produced

    def _publish(self, text: str) -> None:
        self.server.bodies[self.path] = Body(text.encode(), DASH_TYPE)
