"""One download, from an M3U8 (or DASH MPD) URL to a playable file. Used by the CLI and the
daemon alike.

    playlist fetched → parsed (variant, audio and subtitle renditions chosen) →
    subtitle and media segments fetched and decrypted into the work folder → joined
    and remuxed beside the output, subtitles joined into WebVTT files beside it
    (dlstore.sidecars) → renamed into place → work folder removed

A live playlist (no EXT-X-ENDLIST), when the options say to record it, is recorded by
:mod:`dlstore.live` instead of fetched; what it recorded is joined the same way.
Before the rename into place the work folder records the placed file (placed.json):
an attempt after a crash there finds it and completes without fetching again.

The engine knows nothing of the database: progress goes out through
``on_progress`` (at most about four times a second, plus once at the end),
cancellation comes in through ``cancel`` (stop now) and ``drain`` (fetch no new
segment, let those in flight finish: :mod:`dlstore.fetch`). Everything that fails raises a
:class:`~dlstore.errors.DlstoreError` subclass whose message a user can act on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

from dlstore import webvtt
from dlstore.crypto import KeyStore
from dlstore.dash import DashManifest, choose, is_mpd, parse_mpd  # Streams (#12): DASH
from dlstore.dash_tracks import DashWindows, resolve_dash  # Streams (#12): DASH
from dlstore.errors import (
    CancelledError,
    DownloadError,
    InvalidInputError,
    PlaylistError,
)
from dlstore.fetch import Arrivals, fetch_all, jobs_for
from dlstore.http import (
    Retry,
    fetch_small,
    make_session,
)
from dlstore.languages import iso639_2
from dlstore.live import LOG as LIVE_LOG  # Streams (#12): live recording
from dlstore.live import HlsWindows, LiveContext, LiveRecorder
from dlstore.options import DownloadOptions, check_format
from dlstore.paths import ensure_absent, place_file
from dlstore.playlist import (
    AudioRendition,
    MasterPlaylist,
    MediaPlan,
    SubtitleRendition,
    Variant,
    choose_audio_tracks,
    choose_subtitles,
    choose_variant,
    decode_playlist,
    parse_playlist,
)
from dlstore.progress import Progress, ProgressTracker, Throttle
from dlstore.redact import redact_url
from dlstore.remux import (
    AudioFacts,
    AudioInput,
    MediaInfo,
    StreamLabel,
    TextTrack,
    audio_streams,
    concat,
    make_poster,
    probe,
    remux,
    timeline_start,
)
from dlstore.sidecars import Sidecars, load, subtitle_names
from dlstore.validate import check_url
from dlstore.workfolder import (
    PLACED_NAME,
    PlacedFile,
    Track,
    WorkFolder,
    media_track_names,
    track_files,
)

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
class Rendition:
    """An alternate rendition (EXT-X-MEDIA) chosen for the download, with its media playlist."""

    info: AudioRendition | SubtitleRendition
    plan: MediaPlan
    #: DASH subtitles: each file's cue clock (90 kHz media time of its cue time 0), used
    #: where a file has no X-TIMESTAMP-MAP (dlstore.dash_tracks.TextTrack)
    clock: tuple[int, ...] = ()


@dataclass(frozen=True)
class DownloadPlan:
    """What will be fetched: the video (or only) track, and separate audio tracks if any:
    ``audio`` (the first, flagged default) and ``more_audio`` (``"audio": "all"``); and
    WebVTT subtitle renditions (sidecar files: their segments are not counted)."""

    url: str
    video: MediaPlan
    audio: MediaPlan | None = None
    variant: Variant | None = None
    audio_rendition: AudioRendition | None = None
    more_audio: tuple[Rendition, ...] = ()
    subtitles: tuple[Rendition, ...] = ()
    #: a live DASH manifest's windows (Streams, #12); a live HLS plan reloads its playlist
    live_source: DashWindows | None = field(default=None, compare=False, repr=False)

    @property
    def tracks(self) -> list[Track]:
        """The media tracks, video first, then each audio track: what the segments count."""
        plans = [self.video, *([self.audio] if self.audio is not None else [])]
        plans += [rendition.plan for rendition in self.more_audio]
        return [Track(name, plan) for name, plan in zip(media_track_names(len(plans)), plans)]

    @property
    def subtitle_tracks(self) -> list[Track]:
        """The subtitle renditions' tracks, their files WebVTT whatever their names say."""
        return [
            Track(f"subtitles-{n}", r.plan, container="webvtt")
            for n, r in enumerate(self.subtitles, 1)
        ]

    @property
    def audio_renditions(self) -> list[AudioRendition | None]:
        """Each separate audio track's rendition (None if unknown), in the order they are muxed."""
        first = [self.audio_rendition] if self.audio is not None else []
        return first + [r.info for r in self.more_audio]

    @property
    def live(self) -> bool:
        """A live stream (no EXT-X-ENDLIST): recorded, not fetched (Streams, #12)."""
        return not self.video.ended or (self.audio is not None and not self.audio.ended)

    def variant_metadata(self) -> dict | None:
        if self.variant is None:
            return None
        data = self.variant.as_metadata()
        data["audio"] = self.audio_rendition.as_metadata() if self.audio_rendition else None
        return data

    def identity(self) -> dict:
        """What the work folder's files belong to: the task's URL as a digest (its query may
        hold a token, and the work folder may be readable), renditions without their query
        strings (tokens rotate)."""
        identity = {
            "url": hashlib.sha256(self.url.encode("utf-8")).hexdigest(),
            "variant": _no_query(self.variant.uri) if self.variant else None,
            "audio": _no_query(self.audio_rendition.uri) if self.audio_rendition else None,
            "segments": [len(t.plan.segments) for t in self.tracks],
        }
        if self.more_audio:  # only then: a folder of an earlier version's download resumes
            identity["more_audio"] = [_no_query(r.info.uri) for r in self.more_audio]
        if self.subtitles:
            identity["subtitles"] = [_no_query(r.info.uri) for r in self.subtitles]
        return identity


@dataclass(frozen=True)
class DownloadResult:
    output_path: Path
    media: MediaInfo
    variant: dict | None  # resolution, bandwidth, codecs, uri, audio; None for a media playlist
    segments: int
    bytes_downloaded: int  # fetched over the network by this run
    #: The output's audio streams, in order: {"language", "name", "codec", "channels", "default"}
    audio_tracks: tuple[dict, ...] = ()
    #: The subtitle files beside it: {"language", "name", "path", "default", "forced"}
    subtitle_tracks: tuple[dict, ...] = ()
    live_gaps: list[dict] | None = None  # a live recording's gaps (dlstore.live.Gap)

    @property
    def subtitle_files(self) -> tuple[Path, ...]:
        return tuple(Path(t["path"]) for t in self.subtitle_tracks)

    def as_metadata(self) -> dict:
        data = {"media": self.media.as_metadata(), "segments": self.segments}
        if self.variant is not None:
            data["variant"] = self.variant
        if self.live_gaps is not None:
            data["live_gaps"] = self.live_gaps
        return data

    def tracks_metadata(self) -> dict:
        """What a completed row's metadata says of the file's tracks."""
        return {
            "audio_tracks": [dict(t) for t in self.audio_tracks],
            "subtitle_tracks": [dict(t) for t in self.subtitle_tracks],
        }

    def as_record(self) -> dict:
        """What :meth:`from_record` needs, as JSON (for the work folder's placed.json)."""
        return {
            "media": asdict(self.media),
            "variant": self.variant,
            "segments": self.segments,
            "bytes_downloaded": self.bytes_downloaded,
            "audio_tracks": [dict(t) for t in self.audio_tracks],
            "subtitle_tracks": [dict(t) for t in self.subtitle_tracks],
            "live_gaps": self.live_gaps,
        }

    @classmethod
    def from_record(cls, placed: PlacedFile) -> DownloadResult:
        """The result of the download that placed ``placed`` (ValueError if the record's
        result is not one)."""
        data = placed.result
        try:
            media = MediaInfo(**data["media"])
            return cls(
                placed.path, media, data["variant"], data["segments"], 0,
                audio_tracks=tuple(data.get("audio_tracks") or ()),
                subtitle_tracks=tuple(data.get("subtitle_tracks") or ()),
                live_gaps=data.get("live_gaps"),
            )  # fmt: skip
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
    stop_recording: threading.Event | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
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
    error unless ``overwrite``. With ``drain`` set no new segment starts (those in
    flight finish). A live recording ends early (and is kept) once
    ``stop_recording`` is set, and logs its gaps to ``log``.
    """
    run = _Download.begin(url, output_path, work_dir, options, on_progress, cancel, overwrite)
    run.drain = drain
    live_gaps = None
    try:
        with make_session(options, run.url) as session:
            plan = resolve_plan(session, run.url, options, run.cancel)
            run.name_subtitles(plan)
            if plan.live:  # Streams (#12): recorded by dlstore.live
                plan, following, live_gaps = run.record(session, plan, stop_recording, log)
            else:
                following = run.fetch(session, plan)
        run.join(plan, following)
        result = run.place(plan, live_gaps)
    finally:
        with contextlib.suppress(FileNotFoundError):
            run.tmp.unlink()
        run.sidecars.clean_up()
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
    sidecars: Sidecars  # the subtitle files, named once the plan is known
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
        if options.embed_subtitles and options.output_format != "mp4":
            raise InvalidInputError(
                "embed_subtitles needs the mp4 format: MPEG-TS output cannot hold mov_text "
                "subtitles. Use mp4, or leave embed_subtitles off (the .vtt files are written "
                "either way)."
            )
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
            sidecars=Sidecars.for_names(work, []),
        )

    def name_subtitles(self, plan: DownloadPlan) -> None:
        """Name the subtitle files; one already there is an error unless ``overwrite``."""
        renditions = [r.info for r in plan.subtitles if isinstance(r.info, SubtitleRendition)]
        self.sidecars = Sidecars.for_names(self.work, subtitle_names(self.output_path, renditions))
        if not self.overwrite:
            for path in self.sidecars.finals:
                ensure_absent(path)

    def fetch(self, session: requests.Session, plan: DownloadPlan) -> _FollowingRemux | None:
        """Fetch the plan's files into the work folder; the remux following them, if any."""
        jobs = [job for track in plan.tracks for job in jobs_for(track)]
        self.tracker.total = sum(job.is_segment for job in jobs)  # what the web UI counts
        self.work.prepare(plan.identity())
        keys = self._keys(session)
        self._fetch_subtitles(session, plan, keys)
        label = plan.variant.label if plan.variant else "the stream"

        def report() -> None:
            done = f"{self.tracker.done}/{self.tracker.total}"
            self.emit(self.tracker.snapshot(f"Downloading {label}: {done} segments"))

        following = None
        if _join_method(plan, self.fmt, self.options.embed_subtitles) == "follow":
            files = track_files(self.work, plan.tracks[0])
            following = _FollowingRemux.start(files, self.tmp, self.cancel, plan.video.container)
        try:
            on_file = following.arrivals.arrived if following else None
            self._fetch_jobs(session, jobs, keys, self.tracker, report, on_file)
        except BaseException:
            if following is not None:
                following.abandon()
            raise
        return following

    def _fetch_subtitles(self, session: requests.Session, plan: DownloadPlan, keys) -> None:
        """Fetch the subtitle segments first (small; a sidecar's files are not counted in
        the segments, so they have their own tally, shown in the message)."""
        jobs = [job for track in plan.subtitle_tracks for job in jobs_for(track)]
        if not jobs:
            return
        tally = ProgressTracker(total=len(jobs))

        def report() -> None:
            self.emit(self.tracker.snapshot(f"Downloading subtitles: {tally.done}/{tally.total}"))

        self._fetch_jobs(session, jobs, keys, tally, report)

    def _fetch_jobs(self, session, jobs, keys, tracker, report, on_file=None) -> None:
        fetch_all(
            jobs,
            session=session,
            options=self.options,
            work=self.work,
            keys=keys,
            tracker=tracker,
            report=report,
            cancel=self.cancel,
            on_file=on_file,
            drain=self.drain,
        )

    def record(
        self,
        session: requests.Session,
        plan: DownloadPlan,
        stop: threading.Event | None,
        log: logging.Logger | logging.LoggerAdapter | None,
    ) -> tuple[DownloadPlan, _FollowingRemux | None, list[dict]]:
        """Record a live plan into the work folder (:mod:`dlstore.live`): what was recorded,
        as a finished plan; the remux following it, if any; its gaps."""
        self.work.prepare({**plan.identity(), "segments": "live"})
        context = LiveContext(
            session=session, options=self.options, work=self.work, keys=self._keys(session),
            tracker=self.tracker, emit=self.emit, cancel=self.cancel,
            stop=stop or threading.Event(), log=log or LIVE_LOG,
        )  # fmt: skip
        source = plan.live_source or HlsWindows(context, _live_playlists(plan))
        first = (
            plan.live_source.first
            if plan.live_source
            else HlsWindows.window([track.plan for track in plan.tracks])
        )
        recorder = LiveRecorder(context, first, source)
        following = None
        if _join_method(plan, self.fmt) == "follow" and plan.video.container is not None:
            following = _FollowingRemux.start(
                recorder.files, self.tmp, self.cancel, plan.video.container
            )
        try:
            recording = recorder.run()
        except BaseException:
            if following is not None:
                following.abandon()
            raise
        return _recorded(plan, recording.plans), following, recording.gaps_metadata()

    def _keys(self, session: requests.Session) -> KeyStore:
        """The AES keys, each fetched (with retries) the first time a segment needs it."""
        retry = Retry.from_options(self.options, self.cancel)
        return KeyStore(
            lambda uri: fetch_small(
                session, uri, options=self.options, what=f"the AES key {redact_url(uri)}",
                max_bytes=MAX_KEY_BYTES, retry=retry, cancel=self.cancel,
            ).body
        )  # fmt: skip

    def join(self, plan: DownloadPlan, following: _FollowingRemux | None) -> None:
        """Join the fetched files into the temporary file (or wait for the remux doing it)."""
        total, fmt, cancel = self.tracker.total, self.fmt, self.cancel
        self.emit(self.tracker.snapshot(f"Joining {total} segments into {fmt.upper()}"), force=True)
        texts = self._subtitles(plan)
        embed = self.options.embed_subtitles
        if following is not None:
            following.finish()
        elif _join_method(plan, fmt, embed) == "concat":
            self.output_path.parent.mkdir(parents=True, exist_ok=True)
            video = plan.video.container
            concat(track_files(self.work, plan.tracks[0]), self.tmp, cancel, container=video)
        else:
            self.output_path.parent.mkdir(parents=True, exist_ok=True)
            remux(
                track_files(self.work, plan.tracks[0]),
                self.tmp,
                audio=_audio_inputs(self.work, plan),
                subtitles=_text_tracks(plan, texts) if embed else (),
                output_format=fmt,
                cancel=cancel,
                containers=[track.plan.container for track in plan.tracks],
            )
        self.sidecars.write(texts)

    def _subtitles(self, plan: DownloadPlan) -> list[webvtt.Track]:
        """Each subtitle rendition's cues on the output's clock: relative to the media time
        the remux puts at zero (the earliest first timestamp of the video and audio)."""
        if not plan.subtitles:
            return []
        start = timeline_start(
            track_files(self.work, plan.tracks[0]),
            containers=[track.plan.container for track in plan.tracks],
            audio=_audio_inputs(self.work, plan),
        )
        reference = round(start * webvtt.MPEGTS_HZ) % webvtt.MPEGTS_WRAP
        return [
            load(self.work, track, reference, rendition.clock)
            for track, rendition in zip(plan.subtitle_tracks, plan.subtitles)
        ]

    def place(self, plan: DownloadPlan, live_gaps: list[dict] | None = None) -> DownloadResult:
        """Record the joined file in the work folder, then rename it (and its subtitle
        files, first: the video's name is the signal) into place."""
        probed = probe(self.tmp)
        media = MediaInfo(**{**probed.__dict__, "size_bytes": self.tmp.stat().st_size})
        audio = audio_tracks(plan.audio_renditions, audio_streams(self.tmp))
        result = DownloadResult(
            output_path=self.output_path,
            media=media,
            variant=plan.variant_metadata(),
            segments=self.tracker.total,
            bytes_downloaded=self.tracker.fetched_bytes,
            audio_tracks=tuple(audio),
            subtitle_tracks=tuple(_subtitle_metadata(plan, self.sidecars.finals)),
            live_gaps=live_gaps,
        )
        placed = PlacedFile.of(self.tmp, self.output_path, self.url, result.as_record())
        self.work.record_placed(placed)  # before the rename: a crash after it finds the file
        self.sidecars.place(overwrite=self.overwrite)
        try:
            place_file(self.tmp, self.output_path, overwrite=self.overwrite)
        except BaseException:
            self.sidecars.remove_placed()
            raise
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


def _live_playlists(plan: DownloadPlan) -> list[str]:
    """The media playlists a live HLS recording reloads: the variant's (or the only one),
    then each separate audio rendition's, as ``plan.tracks`` lists their tracks."""
    audio = [info.uri for info in plan.audio_renditions if info is not None]
    return [plan.variant.uri if plan.variant else plan.url, *audio]


def _recorded(plan: DownloadPlan, plans: tuple[MediaPlan, ...]) -> DownloadPlan:
    """``plan`` with each track replaced by what was recorded of it."""
    video, *audio = plans
    more = tuple(replace(r, plan=p) for r, p in zip(plan.more_audio, audio[1:]))
    return replace(plan, video=video, audio=audio[0] if audio else None, more_audio=more,
                   live_source=None)  # fmt: skip


def _subtitle_metadata(plan: DownloadPlan, paths: list[Path]) -> list[dict]:
    """``subtitle_tracks`` of a completed row: each subtitle file and its rendition."""
    return [
        {
            "language": r.info.language,
            "name": r.info.name,
            "path": str(path),
            "default": r.info.default,
            "forced": isinstance(r.info, SubtitleRendition) and r.info.forced,
        }
        for r, path in zip(plan.subtitles, paths)
    ]


def _text_tracks(plan: DownloadPlan, texts: list[webvtt.Track]) -> list[TextTrack]:
    """The subtitle tracks to embed as mov_text, each with its language and flags."""
    return [
        TextTrack(
            text.cues,
            StreamLabel(
                language=iso639_2(r.info.language),
                default=r.info.default,
                forced=isinstance(r.info, SubtitleRendition) and r.info.forced,
            ),
        )
        for r, text in zip(plan.subtitles, texts)
    ]


def _audio_inputs(work: WorkFolder, plan: DownloadPlan) -> list[AudioInput]:
    """The separate audio tracks to mux, the first flagged default, each with its language."""
    return [
        AudioInput(
            track_files(work, track),
            StreamLabel(language=iso639_2(info.language if info else None), default=number == 0),
        )
        for number, (track, info) in enumerate(zip(plan.tracks[1:], plan.audio_renditions))
    ]


def audio_tracks(renditions: list[AudioRendition | None], streams: list[AudioFacts]) -> list[dict]:
    """``audio_tracks`` of a completed row: each audio stream of the output, with the
    playlist's language and name when it came from a rendition (else what the file says)."""
    infos = renditions if len(renditions) == len(streams) else [None] * len(streams)
    return [
        {
            "language": info.language if info and info.language else facts.language,
            "name": info.name if info else None,
            "codec": facts.codec,
            "channels": facts.channels,
            "default": facts.default,
        }
        for info, facts in zip(infos, streams)
    ]


def _join_method(plan: DownloadPlan, fmt: str, embed_subtitles: bool = False) -> str:
    """How the fetched files become one: "follow" (a remux of a single TS track into MP4,
    run while the segments arrive), "concat" (TS files into a .ts) or "remux" (afterwards,
    and always when subtitles are embedded: their cues are only ready then)."""
    embedding = embed_subtitles and bool(plan.subtitles)
    single_ts = plan.audio is None and not plan.video.is_fmp4 and not embedding
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
    if isinstance(parsed, DashManifest) and parsed.live is not None:  # recorded (#12)
        return _dash_live_plan(session, parsed, options, cancel)
    if isinstance(parsed, DashManifest):  # Streams (#12): a DASH manifest lists every track
        dash = resolve_dash(session, parsed, options, retry, cancel)
        more = tuple(Rendition(info, plan) for info, plan in dash.more_audio)
        texts = tuple(Rendition(t.rendition, t.plan, t.clock) for t in dash.subtitles)
        return DownloadPlan(url=url, video=dash.video, audio=dash.audio, variant=dash.variant,
                            audio_rendition=dash.audio_rendition, more_audio=more,
                            subtitles=texts)  # fmt: skip
    if isinstance(parsed, MediaPlan):
        return DownloadPlan(url=url, video=parsed)
    variant = choose_variant(parsed.variants, options.quality)
    video = _fetch_media(session, variant.uri, options, retry, cancel, "variant")
    audio = [
        Rendition(rendition, _fetch_media(session, rendition.uri, options, retry, cancel, "audio"))
        for rendition in choose_audio_tracks(parsed, variant, options.audio)
        if _no_query(rendition.uri) != _no_query(variant.uri)  # else: it is in the variant
    ]
    return DownloadPlan(
        url=url,
        video=video,
        audio=audio[0].plan if audio else None,
        variant=variant,
        audio_rendition=audio[0].info if audio else None,
        more_audio=tuple(audio[1:]),
        subtitles=_subtitle_renditions(session, parsed, variant, options, retry, cancel),
    )


def _dash_live_plan(
    session: requests.Session,
    manifest: DashManifest,
    options: DownloadOptions,
    cancel: threading.Event | None,
) -> DownloadPlan:
    """A live DASH manifest's plan: its first window, and where the next ones come from."""
    source = DashWindows(session, manifest, options, cancel)
    choice = choose(manifest, options.quality, options.audio)
    video, *audio = source.first.tracks
    more = tuple(Rendition(info, plan) for (info, _), plan in zip(choice.more_audio, audio[1:]))
    return DownloadPlan(url=manifest.url, video=video, audio=audio[0] if audio else None,
                        variant=choice.variant, audio_rendition=choice.audio_rendition,
                        more_audio=more, live_source=source)  # fmt: skip


def _subtitle_renditions(
    session: requests.Session,
    master: MasterPlaylist,
    variant: Variant,
    options: DownloadOptions,
    retry: Retry,
    cancel: threading.Event | None,
) -> tuple[Rendition, ...]:
    """The chosen subtitle renditions with their playlists; fMP4 ones (IMSC, WebVTT in MP4)
    are left out: dlstore joins segmented WebVTT text only."""
    chosen = []
    for rendition in choose_subtitles(master, variant, options.subtitles):
        plan = _fetch_media(session, rendition.uri, options, retry, cancel, "subtitle")
        if not plan.is_fmp4:
            chosen.append(Rendition(rendition, plan))
    return tuple(chosen)


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
        what=f"the playlist {redact_url(url)}",
        max_bytes=options.max_playlist_bytes,
        retry=retry,
        cancel=cancel,
    )
    if is_mpd(fetched.url, fetched.body):  # Streams (#12): DASH, by URL or by content
        return parse_mpd(fetched.body, fetched.url, live=options.record_live)
    text = decode_playlist(fetched.body, fetched.url, fetched.content_type)
    return parse_playlist(
        text, fetched.url, max_segments=options.max_segments, live=options.record_live
    )


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
            f"The {what} playlist {redact_url(url)} is itself a master playlist; "
            "nested master playlists are not supported."
        )
    return parsed


def _no_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
