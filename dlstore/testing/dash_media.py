"""Real DASH test media: FFmpeg's ``dash`` muxer (through PyAV) cuts test-pattern sources.

``build_dash_library(root)`` writes every DASH stream the tests need under
``root`` and returns a :class:`~dlstore.testing.media.MediaLibrary` of
:class:`~dlstore.testing.media.StreamFacts` (what a correct download decodes to).
``write_dash`` is the muxer call; ``top_level_boxes`` lists an MP4 file's boxes;
``sidx_box`` makes a segment index box from its fields.

Layout under ``root`` (URL paths are the same, relative to the server root)::

    timeline/manifest.mpd   SegmentTemplate + SegmentTimeline ($Number%05d$), video + audio
    number/manifest.mpd     SegmentTemplate with @duration, no timeline
    list/manifest.mpd       one file per track, SegmentList with mediaRange (FFmpeg's single_file)
    base/manifest.mpd       one file per track with one global sidx, as SegmentBase@indexRange
    multi/manifest.mpd      two video representations (180p, 144p) in one set + audio
    periods/manifest.mpd    two periods (4 s then 3 s, another tone), each with its BaseURL
    languages/manifest.mpd  (write_dash_languages) video, French audio (lang="fre") then
                            English (Role main), English WebVTT as one file, French
                            WebVTT in 2 s segments ($Number$), and a wvtt-in-MP4 set

FFmpeg writes a ``SegmentList`` even for ``single_file``; the ``base`` stream is
that output (``global_sidx=1``: one ``sidx`` box for the whole file) with each
``SegmentList`` rewritten as the on-demand profile's
``<SegmentBase indexRange=…><Initialization range=…/></SegmentBase>``, the
ranges read from the file's own boxes.
"""

from __future__ import annotations

import heapq
import itertools
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import av

from dlstore.testing.media import (
    MULTI_AUDIO,
    MULTI_CUES,
    MULTI_SUBTITLE_SECONDS,
    SEGMENT_SECONDS,
    MediaLibrary,
    StreamFacts,
    encode_source,
)

LAYOUTS = {
    "timeline": {"use_template": "1", "use_timeline": "1"},
    "number": {"use_template": "1", "use_timeline": "0"},
    "list": {"single_file": "1"},
    "base": {"single_file": "1", "global_sidx": "1"},
}
_SEGMENT_LIST = re.compile(r"<BaseURL>([^<]+)</BaseURL>(\s*)<SegmentList.*?</SegmentList>", re.S)


def write_dash(
    sources: list[Path],
    folder: Path,
    *,
    layout: str = "timeline",
    sets: str = "id=0,streams=v id=1,streams=a",
    tags: dict[int, dict[str, str]] | None = None,
) -> Path:
    """Every stream of ``sources`` (stream copy) as DASH in ``folder``, the video streams in
    one adaptation set and the audio in another (or as ``sets`` says, FFmpeg's
    ``adaptation_sets``), ``tags`` the metadata of the output streams by index (FFmpeg
    writes ``language`` as ``lang`` and ``role`` as a Role); returns the MPD's path."""
    folder.mkdir(parents=True, exist_ok=True)
    options = {**LAYOUTS[layout], "seg_duration": str(SEGMENT_SECONDS), "adaptation_sets": sets}
    mpd = folder / "manifest.mpd"
    inputs = [av.open(str(source)) for source in sources]
    out = av.open(str(mpd), "w", format="dash", options=options)
    try:
        feeds = []
        for number, src in enumerate(inputs):
            mapping = {s.index: out.add_stream_from_template(s) for s in src.streams}
            feeds.append(_timed(src, mapping, number))
        for stream in out.streams:
            stream.metadata.update((tags or {}).get(stream.index, {}))
        for _, _, _, packet, stream in heapq.merge(*feeds):
            packet.stream = stream
            out.mux(packet)
    finally:
        out.close()
        for src in inputs:
            src.close()
    if layout == "base":
        _as_segment_base(mpd)
    return mpd


def _timed(src, mapping: dict, number: int):
    """(seconds, input, sequence, packet, output stream) of every packet, in demux order."""
    sequence = itertools.count()
    for packet in src.demux():
        if packet.dts is None:
            continue
        seconds = float(packet.dts * packet.time_base)
        yield (seconds, number, next(sequence), packet, mapping[packet.stream.index])


def top_level_boxes(path: Path) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of each top-level box of an MP4 file."""
    data = Path(path).read_bytes()
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        boxes.append((kind, offset, size))
        offset += size
    return boxes


def sidx_box(
    sizes: list[int],
    durations: list[int],
    *,
    version: int = 0,
    first_offset: int = 0,
    timescale: int = 1000,
    index_refs: tuple[int, ...] = (),
) -> bytes:
    """A ``sidx`` box whose references are ``sizes`` bytes long and last ``durations``
    ticks; the references numbered in ``index_refs`` point at sidx boxes."""
    offsets = ">QQ" if version else ">II"
    body = struct.pack(">B3xII", version, 1, timescale) + struct.pack(offsets, 0, first_offset)
    body += struct.pack(">HH", 0, len(sizes))
    for number, (size, duration) in enumerate(zip(sizes, durations)):
        kind = 1 << 31 if number in index_refs else 0
        body += struct.pack(">III", kind | size, duration, 0x90000000)  # starts with SAP type 1
    return struct.pack(">I4s", 8 + len(body), b"sidx") + body


def _as_segment_base(mpd: Path) -> None:
    def rewrite(match: re.Match) -> str:
        name, space = match.group(1), match.group(2)
        sidx = next(b for b in top_level_boxes(mpd.parent / name) if b[0] == b"sidx")
        _, offset, size = sidx
        return (
            f"<BaseURL>{name}</BaseURL>{space}"
            f'<SegmentBase timescale="1000" indexRange="{offset}-{offset + size - 1}">'
            f'<Initialization range="0-{offset - 1}" /></SegmentBase>'
        )

    text, count = _SEGMENT_LIST.subn(rewrite, mpd.read_text())
    assert count, "no SegmentList to rewrite"
    mpd.write_text(text)


def join_periods(parts: list[Path], dest: Path) -> Path:
    """One MPD at ``dest`` whose periods are the (single) periods of the MPDs ``parts``, in
    order, each with a BaseURL to its part's folder and its part's duration."""
    periods, total = [], 0.0
    for number, mpd in enumerate(parts):
        text = mpd.read_text()
        seconds = float(re.search(r'mediaPresentationDuration="PT([\d.]+)S"', text).group(1))
        body = re.search(r"<Period[^>]*>(.*?)</Period>", text, re.S).group(1)
        folder = mpd.parent.relative_to(dest.parent).as_posix()
        periods.append(
            f'<Period id="p{number}" duration="PT{seconds}S">'
            f"<BaseURL>{folder}/</BaseURL>{body}</Period>"
        )
        total += seconds
    head = re.sub(
        r'mediaPresentationDuration="[^"]*"',
        f'mediaPresentationDuration="PT{total}S"',
        parts[0].read_text().split("<Period", 1)[0],
    )
    dest.write_text(head + "\n".join(periods) + "\n</MPD>\n")
    return dest


def build_dash_library(root: Path) -> MediaLibrary:
    root.mkdir(parents=True, exist_ok=True)
    src = root / "_src"
    src.mkdir(exist_ok=True)
    lib = MediaLibrary(root=root)
    main = encode_source(src / "main.mp4", duration=4)
    for layout in LAYOUTS:
        write_dash([main], root / layout, layout=layout)
        lib.streams[layout] = _facts(root, layout, main, 320, 180)
    # "number" lists 4 s of each track (mediaPresentationDuration): the audio's fifth file
    # (0.1 s of AAC priming spill-over) lies past it and is, by the rules, not in the stream.
    lib.streams["number"] = replace(lib.streams["number"], segments=4 + 4)
    # the same cut as "list": its SegmentURLs count the subsegments the sidx lists
    lib.streams["base"] = replace(lib.streams["base"], segments=lib.streams["list"].segments)

    small = encode_source(src / "v144.mp4", duration=4, width=256, height=144, audio=False)
    large = encode_source(src / "v180.mp4", duration=4, audio=False)
    sound = encode_source(src / "sound.mp4", duration=4, video=False)
    write_dash([large, small, sound], root / "multi")
    for rep, (width, height) in enumerate([(320, 180), (256, 144)]):
        files = len(list((root / "multi").glob(f"chunk-stream{rep}-*")))
        files += len(list((root / "multi").glob("chunk-stream2-*")))  # the audio's
        lib.streams[f"multi_{height}p"] = replace(
            _facts(root, "multi", main, width, height), segments=files
        )

    other = encode_source(src / "other.mp4", duration=3, tone=660)
    parts = [
        write_dash([main], root / "periods" / "a"),
        write_dash([other], root / "periods" / "b"),
    ]
    join_periods(parts, root / "periods" / "manifest.mpd")
    lib.streams["periods"] = StreamFacts(
        path="/periods/manifest.mpd",
        duration=_seconds(main) + _seconds(other),
        width=320,
        height=180,
        streams=2,
        segments=_media_segments(root / "periods" / "a") + _media_segments(root / "periods" / "b"),
    )
    return lib


def _facts(root: Path, name: str, source: Path, width: int, height: int) -> StreamFacts:
    return StreamFacts(
        path=f"/{name}/manifest.mpd",
        duration=_seconds(source),
        width=width,
        height=height,
        streams=2,
        segments=_media_segments(root / name),
    )


def _seconds(source: Path) -> float:
    with av.open(str(source)) as container:
        return (container.duration or 0) / av.time_base


def _media_segments(folder: Path) -> int:
    """Media segments of every track: segment files, or SegmentURLs of single files."""
    files = len(list(folder.glob("chunk-*.m4s")))
    return files or (folder / "manifest.mpd").read_text().count("<SegmentURL")


@dataclass(frozen=True)
class DashLanguages:
    """The ``languages`` stream: what :func:`write_dash_languages` wrote."""

    path: str  # URL path of the MPD
    duration: float
    video_paths: tuple[str, ...]  # URL paths of the video's files (init section first)
    audio_paths: dict[str, tuple[str, ...]]  # "fr", "en" → that audio set's files
    subtitle_paths: dict[str, tuple[str, ...]]  # "en", "fr", "wvtt" → that text set's files


def write_dash_languages(root: Path, folder: str = "languages", duration: int = 6):
    """Video and two audio languages (French first, English with Role main, as the HLS
    ``multi`` stream has them) from FFmpeg's dash muxer, plus WebVTT text sets written
    here with :data:`MULTI_CUES` (cue times from the period's start): English as one
    whole ``.vtt`` file, French as 2 s segments of a ``$Number$`` template (a cue across
    a boundary in both), and a ``wvtt`` (WebVTT in MP4) set dlstore leaves out."""
    out, sources = root / folder, root / f"_{folder}_src"
    sources.mkdir(parents=True, exist_ok=True)
    video = encode_source(sources / "video.mp4", duration=duration, audio=False)
    tones = [encode_source(sources / f"{lang}.mp4", duration=duration, video=False, tone=tone)
             for lang, _, tone in MULTI_AUDIO]  # fmt: skip
    tags = {1: {"language": "fre"}, 2: {"language": "eng", "role": "main"}}
    mpd = write_dash([video, *tones], out, sets="id=0,streams=0 id=1,streams=1 id=2,streams=2",
                     tags=tags)  # fmt: skip
    (out / "en.vtt").write_text(_vtt(MULTI_CUES["en"]), encoding="utf-8")
    step = MULTI_SUBTITLE_SECONDS
    french = list(range(0, duration, step))
    for number, start in enumerate(french, 1):
        cues = [c for c in MULTI_CUES["fr"] if c[0] < start + step and c[1] > start]
        (out / f"fr-{number}.vtt").write_text(_vtt(cues), encoding="utf-8")
    text = mpd.read_text()
    for name, number in (("Français", 1), ("English", 2)):
        text = text.replace(f'<AdaptationSet id="{number}" ', f'<AdaptationSet id="{number}" '
                            f'label="{name}" ', 1)  # fmt: skip
    texts = _TEXT_SETS.format(step=step * 1000, duration=duration)
    mpd.write_text(text.replace("\t</Period>", texts + "\t</Period>", 1), encoding="utf-8")

    def chunks(rep: int) -> tuple[str, ...]:
        files = sorted(out.glob(f"*-stream{rep}*.m4s"), key=lambda p: (p.name[0] != "i", p.name))
        return tuple(f"/{folder}/{p.name}" for p in files)  # the init section first

    return DashLanguages(
        path=f"/{folder}/manifest.mpd",
        duration=duration,
        video_paths=chunks(0),
        audio_paths={"fr": chunks(1), "en": chunks(2)},
        subtitle_paths={
            "en": (f"/{folder}/en.vtt",),
            "fr": tuple(f"/{folder}/fr-{n}.vtt" for n in range(1, len(french) + 1)),
            "wvtt": (f"/{folder}/wvtt-init.mp4", f"/{folder}/wvtt-1.m4s"),
        },
    )


_TEXT_SETS = """\
\t\t<AdaptationSet id="3" contentType="text" mimeType="text/vtt" lang="en">
\t\t\t<Role schemeIdUri="urn:mpeg:dash:role:2011" value="main"/><Label>English</Label>
\t\t\t<Representation id="en" bandwidth="256"><BaseURL>en.vtt</BaseURL></Representation>
\t\t</AdaptationSet>
\t\t<AdaptationSet id="4" contentType="text" mimeType="text/vtt" lang="fr" label="Français">
\t\t\t<SegmentTemplate timescale="1000" duration="{step}" startNumber="1" media="fr-$Number$.vtt"/>
\t\t\t<Representation id="fr" bandwidth="256"/>
\t\t</AdaptationSet>
\t\t<AdaptationSet id="5" contentType="text" mimeType="application/mp4" lang="de">
\t\t\t<SegmentTemplate timescale="1000" duration="{step}" initialization="wvtt-init.mp4"
\t\t\t\tmedia="wvtt-$Number$.m4s"/>
\t\t\t<Representation id="de" bandwidth="256" codecs="wvtt"/>
\t\t</AdaptationSet>
"""


def _vtt(cues) -> str:
    blocks = ["WEBVTT\n"]
    blocks += [f"{_vtt_time(a)} --> {_vtt_time(b)}\n{text}\n" for a, b, text in cues]
    return "\n".join(blocks)


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, minutes, secs = millis // 3600000, millis // 60000 % 60, millis // 1000 % 60
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis % 1000:03d}"
