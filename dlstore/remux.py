"""Join fetched segments into one video file with PyAV, and describe video files.

``remux`` reads each track's files as one continuous stream (a reader that
opens one file at a time, so thousands of segments never hit the open-file
limit), copies the packets (no re-encoding) into MP4 with the ``moov`` atom at
the front, or into MPEG-TS, and muxes separate audio tracks in, each with its
language and default flag (:class:`StreamLabel`), and subtitles as mov_text
(:class:`TextTrack`). ``timeline_start`` says which media time the output's zero is. Timestamps are
shifted so the output starts at zero and never goes backwards, which is what
an ``EXT-X-DISCONTINUITY`` (or a sloppy encoder) would otherwise cause.

``concat`` is the plain byte concatenation used for ``.ts`` output of TS
streams. ``probe``, ``audio_streams`` and ``make_poster`` describe a finished file.

The demuxer opens nothing but the bytes we fetched. FFmpeg, left to guess, reads
an ``ffconcat`` script's local files, opens an SDP description's UDP sockets and
fetches a playlist's URLs; so every input is opened with the container its
playlist says it is (``containers``: FFmpeg demuxer names, see
``playlist.MediaPlan.container``; ``None`` lets the first file's bytes choose
between MPEG-TS and packed audio), no protocol may be opened from inside it, mov
external data references are off, and any nested open raises NestedOpenError.
Our own output is opened as MP4 or MPEG-TS, told apart by its first bytes.
Messages carry FFmpeg's error name, never its log (which may quote the media).
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import io
import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.stream import Disposition
from av.subtitles.subtitle import SubtitleSet

from dlstore.errors import CancelledError, NestedOpenError, RemuxError
from dlstore.options import OUTPUT_FORMATS
from dlstore.sniff import EXPECTED, HEAD_BYTES, Kind, container_of, describe, identify
from dlstore.webvtt import Cue

READ_BUFFER = 1 << 20
NS = 1_000_000_000
JUMP_NS = 10 * NS  # a forward timestamp jump larger than this counts as a discontinuity
PRESCAN_PACKETS = 64  # packets read to find where each input's timeline starts
CANCEL_CHECK_PACKETS = 256
POSTER_POSITION = 0.10
INPUT_CONTAINERS = frozenset(name for name in EXPECTED if name is not None)
#: Options for every input: no protocol may be opened from inside it (no protocol is
#: called "none"): a nested playlist, concat list or SDP description would need one.
NO_PROTOCOLS = {"protocol_whitelist": "none"}
#: Per demuxer: mov/mp4 never follow (``enable_drefs``) nor resolve (``use_absolute_path``)
#: a ``dref`` external data reference.
DEMUXER_OPTIONS = {
    "mov": {"enable_drefs": "0", "use_absolute_path": "0"},
    "mp4": {"enable_drefs": "0", "use_absolute_path": "0"},
}
#: How files dlstore wrote itself are read, by what their first bytes are.
OWN_OUTPUT_FORMATS = {Kind.ISO_BMFF: "mp4", Kind.MPEG_TS: "mpegts"}


@dataclass(frozen=True)
class StreamLabel:
    """What the output says of a stream beyond its codec."""

    language: str | None = None  # ISO 639-2, as FFmpeg stores it (languages.iso639_2)
    default: bool = True  # players take it without being asked
    forced: bool = False  # (subtitles) shown even with subtitles off


@dataclass(frozen=True)
class AudioInput:
    """A separate audio track's files, and how its streams are labelled in the output."""

    files: Sequence[Path]
    label: StreamLabel | None = None


@dataclass(frozen=True)
class TextTrack:
    """Subtitles to embed (MP4 only, as mov_text): cues in ms on the output's clock."""

    cues: Sequence[Cue]
    label: StreamLabel


@dataclass(frozen=True)
class AudioFacts:
    """One audio stream of a finished file."""

    codec: str
    channels: int | None
    language: str | None  # as stored (ISO 639-2); None for "und" or none
    default: bool


@dataclass(frozen=True)
class MediaInfo:
    duration: float
    width: int | None
    height: int | None
    video_codec: str | None
    audio_codec: str | None
    size_bytes: int
    streams: int

    def as_metadata(self) -> dict:
        data = asdict(self)
        data["duration"] = round(self.duration, 3)
        data["resolution"] = f"{self.width}x{self.height}" if self.width and self.height else None
        return data


class ConcatReader(io.RawIOBase):
    """A read-only, seekable file over several files back to back; one is open at a time."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._paths = list(paths)
        self._starts = []
        total = 0
        for path in self._paths:
            self._starts.append(total)
            total += Path(path).stat().st_size
        self._size = total
        self._pos = 0
        self._index = -1
        self._file: io.FileIO | None = None

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes from one file (a short read at a file boundary); one copy."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_BUFFER), b""))
        if size == 0 or self._pos >= self._size:
            return b""
        index = bisect.bisect_right(self._starts, self._pos) - 1
        if index != self._index:
            self._open(index)
        assert self._file is not None
        offset = self._pos - self._starts[index]
        if self._file.tell() != offset:
            self._file.seek(offset)
        end = self._starts[index + 1] if index + 1 < len(self._starts) else self._size
        data = self._file.read(min(size, end - self._pos))
        if not data:
            self._shrank(index)
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._pos < self._size:
            index = bisect.bisect_right(self._starts, self._pos) - 1
            if index != self._index:
                self._open(index)
            assert self._file is not None
            self._file.seek(self._pos - self._starts[index])
            count = self._file.readinto(view[filled:])
            if not count:
                self._shrank(index)
            filled += count
            self._pos += count
        return filled

    def _shrank(self, index: int) -> None:
        self._size = self._pos  # FFmpeg reads on after an error: let it meet the end, so
        # that PyAV re-raises this error rather than dropping it for the next one.
        raise RemuxError(f"The segment file {self._paths[index]} shrank while reading.")

    def _open(self, index: int) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(self._paths[index], "rb", buffering=0)  # noqa: SIM115 - kept open
        self._index = index

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


class FollowReader(io.RawIOBase):
    """A read-only, forward-only file over several files back to back, one open at a time.

    ``wait(path)`` is called before each file is opened: it returns once the file is
    complete (or raises), so the files can be read while later ones are still being
    fetched. Not seekable: FFmpeg then reads straight through, as from a pipe.
    """

    def __init__(self, paths: Sequence[Path], wait: Callable[[Path], None]) -> None:
        super().__init__()
        self._paths = iter(paths)
        self._wait = wait
        self._file: io.FileIO | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_BUFFER), b""))
        while size:
            if self._file is None:
                path = next(self._paths, None)
                if path is None:
                    return b""
                try:
                    self._wait(path)
                except BaseException:
                    self._paths = iter(())  # as ConcatReader._shrank: the end, from now on
                    raise
                self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - kept open
            data = self._file.read(size)
            if data:
                return data
            self._file.close()
            self._file = None
        return b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


def concat(
    paths: Sequence[Path],
    dest: Path,
    cancel: threading.Event | None = None,
    *,
    container: str | None,
) -> None:
    """Write the MPEG-TS files back to back into ``dest``; files in another ``container``
    (packed audio) are remuxed into MPEG-TS instead."""
    if _input_container(container, paths, None, "video") != "mpegts":
        remux(paths, dest, containers=[container], output_format="ts", cancel=cancel)
        return
    with open(dest, "wb") as out:
        for path in paths:
            if cancel is not None and cancel.is_set():
                raise CancelledError()
            with open(path, "rb") as src:
                shutil.copyfileobj(src, out, READ_BUFFER)


class _Timeline:
    """Offsets one input's timestamps so each stream's DTS keeps increasing.

    Times are integer nanoseconds (exact enough, and cheap per packet). When a
    stream jumps backwards (or far forwards), the input's offset moves so the
    packet lands where the input's streams had got to.
    """

    def __init__(self, start_ns: int) -> None:
        self.offset = -start_ns  # ns added to every timestamp of this input
        self.last_t: dict[int, int] = {}  # per stream: last output DTS, ns
        self.last_ticks: dict[int, int] = {}  # per stream: last output DTS, stream ticks
        self.end: dict[int, int] = {}  # per stream: where its last packet ended, ns
        self.scales: dict[int, tuple[int, int]] = {}  # per stream: ns per tick as (num, den)

    def place(self, packet: av.Packet) -> int:
        """Rewrite the packet's DTS/PTS; return its output DTS in ns (for interleaving)."""
        index = packet.stream_index
        scale = self.scales.get(index)
        if scale is None:
            tb = packet.time_base
            scale = self.scales[index] = (tb.numerator * NS, tb.denominator)
        num, den = scale
        pts = packet.pts
        dts = packet.dts if packet.dts is not None else pts
        t = dts * num // den + self.offset
        last = self.last_t.get(index)
        if last is not None and (t < last or t > self.end[index] + JUMP_NS):
            new_t = max(self.end.values())
            self.offset += new_t - t
            t = new_t
        shift = self.offset * den // num
        new_dts = dts + shift
        last_ticks = self.last_ticks.get(index)
        if last_ticks is not None and new_dts <= last_ticks:
            new_dts = last_ticks + 1
            shift = new_dts - dts
        packet.dts = new_dts
        packet.pts = max(new_dts, (pts if pts is not None else dts) + shift)
        self.last_ticks[index] = new_dts
        self.last_t[index] = t
        end = t + (packet.duration or 0) * num // den
        if end > self.end.get(index, end - 1):
            self.end[index] = end
        return t


def _refuse_nested_open(url: str, flags: int, options: dict) -> None:
    """PyAV's ``io_open``: the media may not make the demuxer open anything else."""
    raise NestedOpenError()


def open_input(source, container: str) -> av.container.InputContainer:
    """Open ``source`` (a file object) as ``container`` and nothing else: no guessing,
    no protocols, no external references; a nested open raises NestedOpenError."""
    if container not in INPUT_CONTAINERS and container not in OWN_OUTPUT_FORMATS.values():
        raise RemuxError(f"dlstore does not read {container!r} media.")
    return av.open(
        source,
        "r",
        format=container,
        options={**NO_PROTOCOLS, **DEMUXER_OPTIONS.get(container, {})},
        buffer_size=READ_BUFFER,
        io_open=_refuse_nested_open,
    )


def _input_container(
    container: str | None,
    files: Sequence[Path],
    wait: Callable[[Path], None] | None,
    label: str,
) -> str:
    """``container``, or (None) the one the first file's bytes show: MPEG-TS or packed audio."""
    if container is not None:
        if container not in INPUT_CONTAINERS:
            raise RemuxError(f"dlstore does not read {container!r} media.")
        return container
    if not files:
        raise RemuxError(f"There are no downloaded {label} files to join.")
    if wait is not None:
        wait(files[0])
    with open(files[0], "rb") as first:
        return container_of(first.read(HEAD_BYTES), f"first {label} file")


def _reason(exc: av.FFmpegError) -> str:
    """FFmpeg's name for the error, without its log line (which may quote the media)."""
    return exc.strerror or type(exc).__name__


class _Input:
    """One track's files opened as ``container``, with the streams we keep from it."""

    def __init__(
        self,
        files: Sequence[Path],
        kinds: tuple[str, ...],
        label: str,
        container: str | None,
        wait: Callable[[Path], None] | None = None,
        stream_label: StreamLabel | None = None,
    ) -> None:
        self.label = label
        self.stream_label = stream_label  # applied to each of its streams in the output
        container = _input_container(container, files, wait, label)
        self.reader = ConcatReader(files) if wait is None else FollowReader(files, wait)
        try:
            self.container = open_input(self.reader, container)
        except av.FFmpegError as exc:
            self.reader.close()
            raise RemuxError(
                f"The downloaded {label} could not be read as {EXPECTED[container][1]} "
                f"({_reason(exc)}); the server may have sent something other than the "
                "stream's segments."
            ) from exc
        except BaseException:  # e.g. the download stopped while waiting for the first file
            self.reader.close()
            raise
        self.streams = [s for s in self.container.streams if s.type in kinds]
        self.packets = self._demux()  # one generator: _head reads ahead, _placed goes on

    def _demux(self) -> Iterator[av.Packet]:
        for packet in self.container.demux(self.streams):
            if packet.dts is None and packet.pts is None:
                continue  # flush packets and timestamp-less junk
            yield packet

    def close(self) -> None:
        self.container.close()
        self.reader.close()


def remux(
    video_files: Sequence[Path],
    dest: Path,
    *,
    containers: Sequence[str | None],
    audio: Sequence[AudioInput] = (),
    subtitles: Sequence[TextTrack] = (),
    output_format: str = "mp4",
    cancel: threading.Event | None = None,
    wait: Callable[[Path], None] | None = None,
) -> None:
    """Copy the streams of the joined files into ``dest`` (MP4 with faststart, or MPEG-TS).

    ``audio`` lists separate audio tracks, muxed in that order after the video (then
    only the video files' video streams are kept); each labelled as it says.
    ``subtitles`` are encoded as mov_text streams after them (MP4 only).
    ``containers`` says what the video files are, then each audio track's (FFmpeg
    demuxer names from ``MediaPlan.container``). With ``wait``, the files are read
    as they arrive: ``wait(path)`` returns once ``path`` is complete (see
    :class:`FollowReader`).
    """
    if output_format not in OUTPUT_FORMATS:
        raise RemuxError(f"Unknown output format {output_format!r}; use mp4 or ts.")
    inputs: list[_Input] = []
    try:
        with contextlib.ExitStack() as stack:
            for (files, kinds, label, tag), container in zip(
                _sources(video_files, audio), containers, strict=True
            ):
                inputs.append(_Input(files, kinds, label, container, wait, tag))
                stack.callback(inputs[-1].close)
            if not any(item.streams for item in inputs):
                raise RemuxError("The downloaded segments contain no video or audio stream.")
            if subtitles and output_format != "mp4":
                raise RemuxError("Subtitles can only be embedded in MP4.")
            _mux(inputs, dest, output_format, cancel, subtitles)
    except av.FFmpegError as exc:
        raise RemuxError(
            f"The segments could not be joined into {output_format.upper()}: {_reason(exc)}."
            + (" Try --format ts." if output_format == "mp4" else "")
        ) from exc


def _sources(video_files: Sequence[Path], audio: Sequence[AudioInput]) -> list[tuple]:
    """(files, stream kinds kept, name in messages, StreamLabel) of each input, video first."""
    if not audio:
        return [(video_files, ("video", "audio"), "video", None)]
    named = len(audio) > 1
    return [(video_files, ("video",), "video", None)] + [
        (track.files, ("audio",), f"audio track {n}" if named else "audio", track.label)
        for n, track in enumerate(audio, 1)
    ]


def _apply_label(stream, label: StreamLabel) -> None:
    """Set the output stream's language and default/forced flags."""
    if label.language:
        stream.metadata["language"] = label.language
    flags = Disposition(0)
    if label.default:
        flags |= Disposition.default
    if label.forced:
        flags |= Disposition.forced
    stream.disposition = flags


def _mux(
    inputs: list[_Input],
    dest: Path,
    output_format: str,
    cancel,
    subtitles: Sequence[TextTrack] = (),
) -> None:
    options = {"movflags": "+faststart"} if output_format == "mp4" else {}
    out = av.open(str(dest), "w", format=OUTPUT_FORMATS[output_format], options=options)
    try:
        mapping = _add_streams(out, inputs, output_format)
        texts = [(_text_stream(out, track.label), track) for track in subtitles]
        # Each input's timeline starts where the earliest of them starts (they share a clock).
        heads = [_head(item) for item in inputs]
        start = _origin(heads)
        streams = [
            _placed(number, item, head, _Timeline(start))
            for number, (item, head) in enumerate(zip(inputs, heads))
        ]
        streams += [
            _text_packets(stream, track, len(inputs) + n) for n, (stream, track) in enumerate(texts)
        ]
        ordered = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        count = 0
        for _, _, number, packet in ordered:
            if number < len(inputs):  # a text track's packets have their stream already
                packet.stream = mapping[(number, packet.stream_index)]
            out.mux_one(packet)
            count += 1
            if count % CANCEL_CHECK_PACKETS == 0 and cancel is not None and cancel.is_set():
                raise CancelledError()
        if count == 0:
            raise RemuxError("The downloaded segments contain no video or audio packets.")
    finally:
        out.close()


def _add_streams(out, inputs: list[_Input], output_format: str) -> dict:
    """An output stream for each kept input stream, labelled: (input, index) → stream."""
    mapping = {}
    for number, item in enumerate(inputs):
        for stream in item.streams:
            try:
                mapping[(number, stream.index)] = out.add_stream_from_template(stream)
            except ValueError as exc:
                raise RemuxError(
                    f"The stream's {stream.codec_context.name} {stream.type} cannot be "
                    f"stored in {output_format.upper()}."
                ) from exc
            if item.stream_label is not None:
                _apply_label(mapping[(number, stream.index)], item.stream_label)
    return mapping


def _origin(heads: list[list[av.Packet]]) -> int:
    """The source time (ns) that becomes the output's zero: the earliest first DTS."""
    starts = [_start_ns(head) for head in heads if head]
    return min(starts) if starts else 0


def timeline_start(
    video_files: Sequence[Path],
    *,
    containers: Sequence[str | None],
    audio: Sequence[AudioInput] = (),
) -> float:
    """The media time (seconds on the inputs' clock) that :func:`remux` of the same inputs
    puts at the output's zero: what subtitle cue times are made relative to."""
    with contextlib.ExitStack() as stack:
        inputs = []
        for (files, kinds, label, _), container in zip(
            _sources(video_files, audio), containers, strict=True
        ):
            inputs.append(_Input(files, kinds, label, container))
            stack.callback(inputs[-1].close)
        try:
            return _origin([_head(item) for item in inputs]) / NS
        except av.FFmpegError as exc:
            raise RemuxError(f"The downloaded media could not be read: {_reason(exc)}.") from exc


# --------------------------------------------------------------------------- text tracks

#: The ASS style header mov_text is encoded from (FFmpeg's own default).
_ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    b"BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    b"BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0"
    b"\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, "
    b"Effect, Text\n"
)


def _text_stream(out, label: StreamLabel):
    """A mov_text output stream (times in ms), labelled."""
    stream = out.add_stream("mov_text")
    stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
    stream.codec_context.subtitle_header = _ASS_HEADER
    _apply_label(stream, label)
    return stream


def _text_packets(stream, track: TextTrack, number: int) -> Iterator[tuple]:
    """The packets of ``track`` as ``_placed`` yields them. The WebVTT markup goes
    through FFmpeg's own WebVTT decoder (italics, bold, entities) into mov_text."""
    reader = av.CodecContext.create("webvtt", "r")
    for seq, cue in enumerate(_one_per_start(track.cues)):
        source = av.Packet(cue.text.encode("utf-8"))
        source.pts, source.duration = cue.start, cue.end - cue.start
        decoded = reader.decode(source)
        if not decoded:
            continue
        cue_set = SubtitleSet.create(decoded[0].ass, 0, cue.end - cue.start, pts=cue.start)
        packet = stream.codec_context.encode_subtitle(cue_set)
        packet.stream = stream
        packet.time_base = stream.time_base
        packet.pts = packet.dts = cue.start
        packet.duration = cue.end - cue.start
        yield (cue.start * 1_000_000, seq, number, packet)


def _one_per_start(cues: Sequence[Cue]) -> list[Cue]:
    """MP4 text samples need rising times: cues that start together become one."""
    joined: list[Cue] = []
    for cue in sorted(cues, key=lambda c: c.start):
        if joined and joined[-1].start == cue.start:
            last = joined[-1]
            joined[-1] = Cue(last.start, max(last.end, cue.end), f"{last.text}\n{cue.text}")
        else:
            joined.append(cue)
    return joined


def _head(item: _Input) -> list[av.Packet]:
    """The first packets of an input (read ahead to find where its timeline starts)."""
    return list(itertools.islice(item.packets, PRESCAN_PACKETS))


def _start_ns(head: list[av.Packet]) -> int:
    return min(
        (p.dts if p.dts is not None else p.pts)
        * p.time_base.numerator
        * NS
        // p.time_base.denominator
        for p in head
    )


def _placed(number: int, item: _Input, head: list[av.Packet], timeline: _Timeline):
    """(output DTS ns, sequence, input number, packet) for every packet, in input order."""
    place = timeline.place
    for seq, packet in enumerate(itertools.chain(head, item.packets)):
        yield (place(packet), seq, number, packet)


# --------------------------------------------------------------------------- facts


@contextlib.contextmanager
def _open_own(path: Path) -> Iterator[av.container.InputContainer]:
    """Open a file dlstore wrote: MP4 or MPEG-TS, told apart by its first bytes."""
    with open(path, "rb") as file:
        head = file.read(HEAD_BYTES)
        fmt = OWN_OUTPUT_FORMATS.get(identify(head))
        if fmt is None:
            size = os.fstat(file.fileno()).st_size
            raise RemuxError(f"{path.name} is not MP4 or MPEG-TS video but {describe(head, size)}.")
        file.seek(0)
        with open_input(file, fmt) as container:
            yield container


def probe(path: Path) -> MediaInfo:
    """Duration, size and codecs of a finished video file."""
    path = Path(path)
    try:
        with _open_own(path) as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            duration = (container.duration or 0) / av.time_base
            if not duration:
                duration = max(
                    (float(s.duration * s.time_base) for s in container.streams if s.duration),
                    default=0.0,
                )
            return MediaInfo(
                duration=float(duration),
                width=video.codec_context.width if video is not None else None,
                height=video.codec_context.height if video is not None else None,
                video_codec=video.codec_context.name if video is not None else None,
                audio_codec=audio.codec_context.name if audio is not None else None,
                size_bytes=path.stat().st_size,
                streams=len(container.streams),
            )
    except av.FFmpegError as exc:
        raise RemuxError(
            f"The file {path.name} could not be read as video: {_reason(exc)}."
        ) from exc


def audio_streams(path: Path) -> list[AudioFacts]:
    """The audio streams of a finished video file, in order."""
    path = Path(path)
    try:
        with _open_own(path) as container:
            return [
                AudioFacts(
                    codec=stream.codec_context.name,
                    channels=stream.codec_context.channels or None,
                    language=_language(stream.metadata.get("language")),
                    default=bool(stream.disposition & Disposition.default),
                )
                for stream in container.streams.audio
            ]
    except av.FFmpegError as exc:
        raise RemuxError(
            f"The file {path.name} could not be read as video: {_reason(exc)}."
        ) from exc


def _language(value: str | None) -> str | None:
    return None if not value or value == "und" else value


def make_poster(video_path: Path, jpeg_path: Path, position: float = POSTER_POSITION) -> Path:
    """Write a JPEG of the frame about ``position`` (a fraction) into the video."""
    video_path, jpeg_path = Path(video_path), Path(jpeg_path)
    try:
        with _open_own(video_path) as container:
            if not container.streams.video:
                raise RemuxError(f"{video_path.name} has no video to take a poster frame from.")
            stream = container.streams.video[0]
            duration = (container.duration or 0) / av.time_base
            target = duration * position
            if target > 0:
                container.seek(int(target * av.time_base), backward=True)
            frame = None
            for candidate in container.decode(stream):
                frame = candidate
                if candidate.time is None or candidate.time >= target:
                    break
            if frame is None:
                raise RemuxError(f"{video_path.name} has no decodable video frame.")
            data = _encode_jpeg(frame)
    except av.FFmpegError as exc:
        raise RemuxError(
            f"No poster could be made from {video_path.name}: {_reason(exc)}."
        ) from exc
    tmp = jpeg_path.with_name(f".{jpeg_path.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    os.replace(tmp, jpeg_path)
    return jpeg_path


def _encode_jpeg(frame: av.VideoFrame) -> bytes:
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width = frame.width
    codec.height = frame.height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 25)
    image = frame.reformat(format="yuvj420p")
    image.pts = 0
    packets = list(codec.encode(image)) + list(codec.encode(None))
    if not packets:
        raise RemuxError("The poster frame could not be encoded as JPEG.")
    return bytes(packets[0])
