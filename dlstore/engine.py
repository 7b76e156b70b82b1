"""One download, from an M3U8 (or DASH MPD) URL to a playable file. Used by the CLI and the
daemon alike.

    playlist fetched → parsed (variant and audio chosen) → segments fetched and
    decrypted into the work folder → joined and remuxed beside the output →
    recorded in the work folder (placed.json) → renamed into place → work folder
    removed (or, with ``keep_work_folder``, emptied but for that record)

The engine knows nothing of the database: progress goes out through
``on_progress`` (at most about four times a second, plus once at the end),
cancellation comes in through ``cancel`` (stop now) and ``drain`` (fetch no new
segment, let those in flight finish: :mod:`dlstore.fetch`). Everything that fails raises a
:class:`~dlstore.errors.DlstoreError` subclass whose message a user can act on.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

from dlstore.crypto import KeyStore
from dlstore.dash import DashManifest, is_mpd, parse_mpd  # Streams (#12): DASH
from dlstore.dash_tracks import resolve_dash  # Streams (#12): DASH
from dlstore.errors import CancelledError, DownloadError, PlaylistError
from dlstore.fetch import Arrivals, fetch_all, jobs_for
from dlstore.http import (
    Retry,
    describe,
    fetch_small,
    make_session,
)
from dlstore.options import DownloadOptions, check_format
from dlstore.paths import ensure_absent, place_file
from dlstore.playlist import (
    AudioRendition,
    MasterPlaylist,
    MediaPlan,
    Variant,
    choose_audio,
    choose_variant,
    decode_playlist,
    parse_playlist,
)
from dlstore.progress import Progress, ProgressTracker, Throttle
from dlstore.remux import MediaInfo, concat, make_poster, probe, remux
from dlstore.validate import check_url
from dlstore.workfolder import PLACED_NAME, PlacedFile, Track, WorkFolder, track_files

__all__ = [
    "DownloadPlan",
    "DownloadResult",
    "MediaInfo",
    "Progress",
    "download",
    "make_poster",
    "probe",
    "resolve_plan",
]

MAX_KEY_BYTES = 4096


@dataclass(frozen=True)
class DownloadPlan:
    """What will be fetched: the video (or only) track, and a separate audio track if any."""

    url: str
    video: MediaPlan
    audio: MediaPlan | None = None
    variant: Variant | None = None
    audio_rendition: AudioRendition | None = None

    @property
    def tracks(self) -> list[Track]:
        tracks = [Track("video", self.video)]
        if self.audio is not None:
            tracks.append(Track("audio", self.audio))
        return tracks

    def variant_metadata(self) -> dict | None:
        if self.variant is None:
            return None
        data = self.variant.as_metadata()
        data["audio"] = self.audio_rendition.as_metadata() if self.audio_rendition else None
        return data

    def identity(self) -> dict:
        """What the work folder's files belong to (query strings dropped: tokens rotate)."""
        return {
            "url": self.url,
            "variant": _no_query(self.variant.uri) if self.variant else None,
            "audio": _no_query(self.audio_rendition.uri) if self.audio_rendition else None,
            "segments": [len(t.plan.segments) for t in self.tracks],
        }


@dataclass(frozen=True)
class DownloadResult:
    output_path: Path
    media: MediaInfo
    variant: dict | None  # resolution, bandwidth, codecs, uri, audio; None for a media playlist
    segments: int
    bytes_downloaded: int  # fetched over the network by this run

    def as_metadata(self) -> dict:
        data = {"media": self.media.as_metadata(), "segments": self.segments}
        if self.variant is not None:
            data["variant"] = self.variant
        return data

    def as_record(self) -> dict:
        """What :meth:`from_record` needs, as JSON (for the work folder's placed.json)."""
        return {
            "media": asdict(self.media),
            "variant": self.variant,
            "segments": self.segments,
            "bytes_downloaded": self.bytes_downloaded,
        }

    @classmethod
    def from_record(cls, placed: PlacedFile) -> DownloadResult:
        """The result of the download that placed ``placed`` (ValueError if the record's
        result is not one)."""
        data = placed.result
        try:
            media = MediaInfo(**data["media"])
            return cls(placed.path, media, data["variant"], data["segments"], 0)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a download's result: {exc}") from exc


def download(
    url: str,
    output_path: Path,
    *,
    work_dir: Path,
    options: DownloadOptions,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    overwrite: bool = False,
    drain: threading.Event | None = None,
    keep_work_folder: bool = False,
) -> DownloadResult:
    """Download the HLS stream at ``url`` into ``output_path``.

    ``work_dir`` holds the fetched segments; running the same download with the
    same ``work_dir`` again resumes it. It is removed on success and kept on
    failure or cancel; with ``keep_work_folder`` it is kept on success too, holding
    only the record of the placed file, for the caller to remove once it has
    recorded the file itself (:meth:`~dlstore.workfolder.WorkFolder.placed`).
    ``output_path`` never holds a partial file, and an existing file there is an
    error unless ``overwrite``.
    """
    run = _Download.begin(url, output_path, work_dir, options, on_progress, cancel, overwrite)
    run.drain = drain
    try:
        with make_session(options, run.url) as session:
            plan = resolve_plan(session, run.url, options, run.cancel)
            following = run.fetch(session, plan)
        run.join(plan, following)
        result = run.place(plan)
    finally:
        with contextlib.suppress(FileNotFoundError):
            run.tmp.unlink()
    return run.finish(result, keep_work_folder)


@dataclass
class _Download:
    """One run of :func:`download`: what its steps share.

    begin → (:func:`resolve_plan`) → fetch → join → place → finish
    """

    url: str
    output_path: Path
    options: DownloadOptions
    cancel: threading.Event
    overwrite: bool
    emit: Throttle
    tracker: ProgressTracker
    work: WorkFolder
    tmp: Path  # the joined file, beside the output until it is placed
    drain: threading.Event | None = None  # set: fetch no new segment

    @property
    def fmt(self) -> str:
        return self.options.output_format

    @classmethod
    def begin(
        cls,
        url: str,
        output_path: Path,
        work_dir: Path,
        options: DownloadOptions,
        on_progress: Callable[[Progress], None] | None,
        cancel: threading.Event | None,
        overwrite: bool,
    ) -> _Download:
        """Check the arguments (nothing is fetched if they are wrong: a work folder that is a
        link or not dlstore's is a WorkFolderError) and say it has started."""
        url = check_url(url)
        output_path = Path(output_path)
        check_format(options.output_format, what="output format")
        if not overwrite:
            ensure_absent(output_path)
        work = WorkFolder(Path(work_dir))
        work.check()  # a link or a folder dlstore did not make: refused before any fetch
        tmp = work.temp_file_for(output_path)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # an earlier, interrupted attempt's partial file
        cancel = cancel if cancel is not None else threading.Event()
        emit = Throttle(on_progress)
        tracker = ProgressTracker(total=0)
        emit(tracker.snapshot("Fetching the playlist"), force=True)
        return cls(
            url=url,
            output_path=output_path,
            options=options,
            cancel=cancel,
            overwrite=overwrite,
            emit=emit,
            tracker=tracker,
            work=work,
            tmp=tmp,
        )

    def fetch(self, session: requests.Session, plan: DownloadPlan) -> _FollowingRemux | None:
        """Fetch the plan's files into the work folder; the remux following them, if any."""
        jobs = [job for track in plan.tracks for job in jobs_for(track)]
        self.tracker.total = len(jobs)
        self.work.prepare(plan.identity())
        keys = self._keys(session)
        label = plan.variant.label if plan.variant else "the stream"

        def report() -> None:
            done = f"{self.tracker.done}/{self.tracker.total}"
            self.emit(self.tracker.snapshot(f"Downloading {label}: {done} segments"))

        following = None
        if _join_method(plan, self.fmt) == "follow":
            files = track_files(self.work, plan.tracks[0])
            following = _FollowingRemux.start(files, self.tmp, self.cancel, plan.video.container)
        try:
            fetch_all(
                jobs,
                session=session,
                options=self.options,
                work=self.work,
                keys=keys,
                tracker=self.tracker,
                report=report,
                cancel=self.cancel,
                on_file=following.arrivals.arrived if following else None,
                drain=self.drain,
            )
        except BaseException:
            if following is not None:
                following.abandon()
            raise
        return following

    def _keys(self, session: requests.Session) -> KeyStore:
        """The AES keys, each fetched (with retries) the first time a segment needs it."""
        retry = Retry.from_options(self.options, self.cancel)
        return KeyStore(
            lambda uri: fetch_small(
                session, uri, options=self.options, what=f"the AES key {describe(uri)}",
                max_bytes=MAX_KEY_BYTES, retry=retry, cancel=self.cancel,
            ).body
        )  # fmt: skip

    def join(self, plan: DownloadPlan, following: _FollowingRemux | None) -> None:
        """Join the fetched files into the temporary file (or wait for the remux doing it)."""
        total, fmt, cancel = self.tracker.total, self.fmt, self.cancel
        self.emit(self.tracker.snapshot(f"Joining {total} segments into {fmt.upper()}"), force=True)
        if following is not None:
            following.finish()
            return
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        video_files = track_files(self.work, plan.tracks[0])
        if _join_method(plan, fmt) == "concat":
            concat(video_files, self.tmp, cancel, container=plan.video.container)
        else:
            audio_files = track_files(self.work, plan.tracks[1]) if plan.audio else None
            remux(
                video_files,
                self.tmp,
                audio_files=audio_files,
                output_format=fmt,
                cancel=cancel,
                containers=[track.plan.container for track in plan.tracks],
            )

    def place(self, plan: DownloadPlan) -> DownloadResult:
        """Record the joined file in the work folder, then rename it into place."""
        probed = probe(self.tmp)
        media = MediaInfo(**{**probed.__dict__, "size_bytes": self.tmp.stat().st_size})
        result = DownloadResult(
            output_path=self.output_path,
            media=media,
            variant=plan.variant_metadata(),
            segments=self.tracker.total,
            bytes_downloaded=self.tracker.fetched_bytes,
        )
        placed = PlacedFile.of(self.tmp, self.output_path, self.url, result.as_record())
        self.work.record_placed(placed)  # before the rename: a crash after it finds the file
        place_file(self.tmp, self.output_path, overwrite=self.overwrite)
        return result

    def finish(self, result: DownloadResult, keep_work_folder: bool) -> DownloadResult:
        """Remove the work folder (only now: the file is in place) and say it is done."""
        if keep_work_folder:
            self.work.wipe(keep=(PLACED_NAME,))
        else:
            self.work.remove()
        final = self.tracker.snapshot(f"Done: {self.output_path.name}")
        self.emit(Progress(**{**final.__dict__, "speed_bps": None, "eta_seconds": 0}), force=True)
        return result


def _join_method(plan: DownloadPlan, fmt: str) -> str:
    """How the fetched files become one: "follow" (a remux of a single TS track into MP4,
    run while the segments arrive), "concat" (TS files into a .ts) or "remux" (afterwards)."""
    single_ts = plan.audio is None and not plan.video.is_fmp4
    if single_ts and fmt == "mp4":
        return "follow"
    if single_ts and fmt == "ts":
        return "concat"
    return "remux"


class _FollowingRemux:
    """The remux of a single MPEG-TS track into MP4, run in a thread while the segments
    are still arriving, so little is left to do after the last one.

    Other cases (separate audio, fMP4 init sections, ``.ts`` output) are joined after
    the download, as their inputs don't arrive in reading order or need no remux.
    """

    def __init__(
        self, files: list[Path], dest: Path, cancel: threading.Event, container: str | None
    ) -> None:
        self.arrivals = Arrivals()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(files, dest, cancel, container),
            name="dlstore-remux",
            daemon=True,
        )

    @classmethod
    def start(
        cls, files: list[Path], dest: Path, cancel: threading.Event, container: str | None
    ) -> _FollowingRemux:
        join = cls(files, dest, cancel, container)
        join._thread.start()
        return join

    def _run(
        self, files: list[Path], dest: Path, cancel: threading.Event, container: str | None
    ) -> None:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            remux(
                files,
                dest,
                output_format="mp4",
                cancel=cancel,
                wait=self.arrivals.wait,
                containers=[container],
            )
        except BaseException as exc:  # handed to the engine's thread by finish()
            self._error = exc

    def finish(self) -> None:
        """Wait for the remux of the (now complete) files; raise what it raised."""
        self.arrivals.stop(DownloadError("A segment file vanished from the work folder."))
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop the remux (the download failed) and wait until its file is closed."""
        self.arrivals.stop(CancelledError())
        self._thread.join()


def resolve_plan(
    session: requests.Session,
    url: str,
    options: DownloadOptions,
    cancel: threading.Event | None = None,
) -> DownloadPlan:
    """Fetch the playlist at ``url`` (and the chosen variant's and audio's) into a plan;
    a DASH manifest's plan comes from :func:`dlstore.dash_tracks.resolve_dash`."""
    retry = Retry.from_options(options, cancel)
    parsed = _fetch_playlist(session, url, options, retry, cancel)
    if isinstance(parsed, DashManifest):  # Streams (#12): a DASH manifest lists every track
        dash = resolve_dash(session, parsed, options, retry, cancel)
        return DownloadPlan(url=url, video=dash.video, audio=dash.audio, variant=dash.variant,
                            audio_rendition=dash.audio_rendition)  # fmt: skip
    if isinstance(parsed, MediaPlan):
        return DownloadPlan(url=url, video=parsed)
    variant = choose_variant(parsed.variants, options.quality)
    video = _fetch_media(session, variant.uri, options, retry, cancel, "variant")
    rendition = choose_audio(parsed, variant)
    audio = None
    if rendition is not None and _no_query(rendition.uri) != _no_query(variant.uri):
        audio = _fetch_media(session, rendition.uri, options, retry, cancel, "audio")
    else:
        rendition = None
    return DownloadPlan(
        url=url, video=video, audio=audio, variant=variant, audio_rendition=rendition
    )


def _fetch_playlist(
    session: requests.Session,
    url: str,
    options: DownloadOptions,
    retry: Retry,
    cancel: threading.Event | None,
) -> MasterPlaylist | MediaPlan | DashManifest:
    fetched = fetch_small(
        session,
        url,
        options=options,
        what=f"the playlist {describe(url)}",
        max_bytes=options.max_playlist_bytes,
        retry=retry,
        cancel=cancel,
    )
    if is_mpd(fetched.url, fetched.body):  # Streams (#12): DASH, by URL or by content
        return parse_mpd(fetched.body, fetched.url)
    text = decode_playlist(fetched.body, fetched.url, fetched.content_type)
    return parse_playlist(text, fetched.url, max_segments=options.max_segments)


def _fetch_media(
    session: requests.Session,
    url: str,
    options: DownloadOptions,
    retry: Retry,
    cancel: threading.Event | None,
    what: str,
) -> MediaPlan:
    parsed = _fetch_playlist(session, url, options, retry, cancel)
    if not isinstance(parsed, MediaPlan):
        raise PlaylistError(
            f"The {what} playlist {describe(url)} is itself a master playlist; "
            "nested master playlists are not supported."
        )
    return parsed


def _no_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
