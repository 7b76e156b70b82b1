"""Real test media made with PyAV: a test-pattern video with a sine tone, as HLS.

``build_library(root)`` writes every stream the tests need under ``root`` (a few
seconds each, 1 s segments) and returns a :class:`MediaLibrary` that says where
each one is and what a correct download of it looks like. ``decode_check``
decodes a file completely and reports what is in it; ``stream_tags``, ``audio_tones``,
``first_frame_time``, ``vtt_cues`` and ``mov_text_cues`` read more of it.

Layout under ``root`` (URL paths are the same, relative to the server root)::

    plain/index.m3u8        MPEG-TS, H.264 + AAC, 8 segments
    fmp4/index.m3u8         fragmented MP4 with EXT-X-MAP
    aes_iv/index.m3u8       AES-128 with an IV attribute
    aes_seq/index.m3u8      AES-128 without IV, media sequence starting at 7
    aes_fmp4/index.m3u8     fMP4 with its init section AES-128 encrypted too, key rotating;
                            aes_fmp4/noiv.m3u8: the same without the IV the init needs
    byterange/index.m3u8    one file, EXT-X-BYTERANGE with implicit offsets
    discontinuity/index.m3u8  two encodings back to back, timestamps restarting
    master/master.m3u8      3 video-only variants + a separate audio rendition

``write_multilanguage(root)`` writes (on demand: it takes a few seconds) a master with
audio in two languages and WebVTT subtitles in two, as the real world serves them.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import av
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FPS = 25
SEGMENT_SECONDS = 1
AES_KEY = bytes(range(16))
AES_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")[::-1]


@dataclass(frozen=True)
class StreamFacts:
    """What a correct download of a stream decodes to."""

    path: str  # URL path of the playlist, e.g. "/plain/index.m3u8"
    duration: float
    width: int
    height: int
    streams: int  # video + audio streams in the output
    segments: int  # media segments to fetch (all tracks)
    segment_paths: tuple[str, ...] = ()  # URL paths of the media segments


@dataclass
class MediaLibrary:
    root: Path
    streams: dict[str, StreamFacts] = field(default_factory=dict)

    def __getitem__(self, name: str) -> StreamFacts:
        return self.streams[name]


# --------------------------------------------------------------------------- encoding


def encode_source(
    path: Path,
    *,
    duration: float,
    width: int = 320,
    height: int = 180,
    video: bool = True,
    audio: bool = True,
    tone: int = 440,
) -> Path:
    """An MP4 with H.264 (a keyframe every second, B-frames) and mono AAC."""
    out = av.open(str(path), "w", format="mp4")
    try:
        vstream = astream = None
        if video:
            vstream = out.add_stream(
                "libx264",
                rate=FPS,
                options={
                    "preset": "superfast",
                    "g": str(FPS * SEGMENT_SECONDS),
                    "keyint_min": str(FPS * SEGMENT_SECONDS),
                    "sc_threshold": "0",
                    "bf": "2",
                },
            )
            vstream.width = width
            vstream.height = height
            vstream.pix_fmt = "yuv420p"
        if audio:
            astream = out.add_stream("aac", rate=48000, layout="mono")
        if vstream is not None:
            with av.open(
                f"testsrc=size={width}x{height}:rate={FPS}:duration={duration}", format="lavfi"
            ) as src:
                for frame in src.decode(video=0):
                    out.mux(vstream.encode(frame.reformat(format="yuv420p")))
            out.mux(vstream.encode(None))
        if astream is not None:
            with av.open(
                f"sine=frequency={tone}:sample_rate=48000:duration={duration}", format="lavfi"
            ) as src:
                for frame in src.decode(audio=0):
                    frame.pts = None
                    out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
    finally:
        out.close()
    return path


def write_hls(source: Path, folder: Path, *, kind: str = "mpegts", single_file: bool = False):
    """Cut ``source`` into HLS (stream copy) in ``folder``; returns the playlist path."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "ts" if kind == "mpegts" else "m4s"
    options = {
        "hls_time": str(SEGMENT_SECONDS),
        "hls_list_size": "0",
        "hls_playlist_type": "vod",
        "hls_segment_type": kind,
    }
    if single_file:
        options["hls_flags"] = "single_file"
        options["hls_segment_filename"] = str(folder / f"all.{suffix}")
    else:
        options["hls_segment_filename"] = str(folder / f"seg-%03d.{suffix}")
    if kind == "fmp4":
        options["hls_fmp4_init_filename"] = "init.mp4"
    playlist = folder / "index.m3u8"
    with av.open(str(source)) as src:
        out = av.open(str(playlist), "w", format="hls", options=options)
        try:
            mapping = {s.index: out.add_stream_from_template(s) for s in src.streams}
            for packet in src.demux():
                if packet.dts is None:
                    continue
                packet.stream = mapping[packet.stream.index]
                out.mux(packet)
        finally:
            out.close()
    return playlist


def segment_uris(playlist_text: str) -> list[str]:
    return [line for line in playlist_text.splitlines() if line and not line.startswith("#")]


def aes_encrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def write_aes(plain: Path, folder: Path, *, with_iv: bool, media_sequence: int) -> Path:
    """Encrypt the segments of the TS stream in ``plain`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key.bin").write_bytes(AES_KEY)
    text = (plain / "index.m3u8").read_text()
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1"]
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}")
    lines.append(
        '#EXT-X-KEY:METHOD=AES-128,URI="key.bin"' + (f",IV=0x{AES_IV.hex()}" if with_iv else "")
    )
    durations = [line for line in text.splitlines() if line.startswith("#EXTINF")]
    for number, (extinf, uri) in enumerate(zip(durations, segment_uris(text))):
        iv = AES_IV if with_iv else (media_sequence + number).to_bytes(16, "big")
        (folder / uri).write_bytes(aes_encrypt((plain / uri).read_bytes(), AES_KEY, iv))
        lines += [extinf, uri]
    lines.append("#EXT-X-ENDLIST")
    playlist = folder / "index.m3u8"
    playlist.write_text("\n".join(lines) + "\n")
    return playlist


AES_KEY_2 = bytes(range(16, 32))


def write_aes_fmp4(plain: Path, folder: Path) -> Path:
    """Encrypt the fMP4 stream in ``plain`` (init section and segments) into ``folder``.

    The EXT-X-KEY comes before the EXT-X-MAP, so it applies to the init section too (RFC
    8216 §4.3.2.5), with an explicit IV; halfway through, the key rotates to one without
    IV (the media sequence number is the IV). ``noiv.m3u8`` is the same stream with the
    first key's IV left out: an encrypted init section no client can decrypt.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key1.bin").write_bytes(AES_KEY)
    (folder / "key2.bin").write_bytes(AES_KEY_2)
    text = (plain / "index.m3u8").read_text()
    (folder / "init.mp4").write_bytes(
        aes_encrypt((plain / "init.mp4").read_bytes(), AES_KEY, AES_IV)
    )
    head = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-PLAYLIST-TYPE:VOD"]  # fmt: skip
    first_key = '#EXT-X-KEY:METHOD=AES-128,URI="key1.bin"'
    body = ['#EXT-X-MAP:URI="init.mp4"']
    durations = [line for line in text.splitlines() if line.startswith("#EXTINF")]
    uris = segment_uris(text)
    rotate_at = len(uris) // 2
    for number, (extinf, uri) in enumerate(zip(durations, uris)):
        if number == rotate_at:
            body.append('#EXT-X-KEY:METHOD=AES-128,URI="key2.bin"')
        key, iv = (
            (AES_KEY, AES_IV) if number < rotate_at else (AES_KEY_2, number.to_bytes(16, "big"))
        )
        (folder / uri).write_bytes(aes_encrypt((plain / uri).read_bytes(), key, iv))
        body += [extinf, uri]
    body.append("#EXT-X-ENDLIST")
    (folder / "noiv.m3u8").write_text("\n".join([*head, first_key, *body]) + "\n")
    playlist = folder / "index.m3u8"
    playlist.write_text("\n".join([*head, f"{first_key},IV=0x{AES_IV.hex()}", *body]) + "\n")
    return playlist


def implicit_byteranges(playlist: Path) -> None:
    """Rewrite ``len@offset`` as plain ``len`` wherever the offset continues the previous range."""
    out = []
    next_offset = None
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXT-X-BYTERANGE:"):
            length, _, offset = line.split(":", 1)[1].partition("@")
            if offset and next_offset is not None and int(offset) == next_offset:
                line = f"#EXT-X-BYTERANGE:{length}"
            next_offset = (int(offset) if offset else next_offset) + int(length)
        out.append(line)
    playlist.write_text("\n".join(out) + "\n")


def write_discontinuity(a: Path, b: Path, folder: Path) -> Path:
    """Segments of TS stream ``a`` then ``b`` (timestamps restart) with EXT-X-DISCONTINUITY."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for part, src in (("a", a), ("b", b)):
        text = (src / "index.m3u8").read_text()
        if part == "b":
            lines.append("#EXT-X-DISCONTINUITY")
        durations = [line for line in text.splitlines() if line.startswith("#EXTINF")]
        for extinf, uri in zip(durations, segment_uris(text)):
            os.link(src / uri, folder / f"{part}-{uri}")
            lines += [extinf, f"{part}-{uri}"]
    lines.append("#EXT-X-ENDLIST")
    playlist = folder / "index.m3u8"
    playlist.write_text("\n".join(lines) + "\n")
    return playlist


# --------------------------------------------------------------------------- the library


def build_library(root: Path) -> MediaLibrary:
    root.mkdir(parents=True, exist_ok=True)
    src_dir = root / "_src"
    src_dir.mkdir(exist_ok=True)
    lib = MediaLibrary(root=root)

    main = encode_source(src_dir / "main.mp4", duration=8)
    write_hls(main, root / "plain")
    lib.streams["plain"] = _facts(root, "plain", 8, 320, 180, 2)

    write_hls(main, root / "fmp4", kind="fmp4")
    lib.streams["fmp4"] = _facts(root, "fmp4", 8, 320, 180, 2)

    write_aes(root / "plain", root / "aes_iv", with_iv=True, media_sequence=0)
    lib.streams["aes_iv"] = _facts(root, "aes_iv", 8, 320, 180, 2)
    write_aes(root / "plain", root / "aes_seq", with_iv=False, media_sequence=7)
    lib.streams["aes_seq"] = _facts(root, "aes_seq", 8, 320, 180, 2)

    write_aes_fmp4(root / "fmp4", root / "aes_fmp4")
    lib.streams["aes_fmp4"] = _facts(root, "aes_fmp4", 8, 320, 180, 2)

    implicit_byteranges(write_hls(main, root / "byterange", single_file=True))
    lib.streams["byterange"] = _facts(root, "byterange", 8, 320, 180, 2)

    other = encode_source(src_dir / "other.mp4", duration=4, tone=660)
    write_hls(other, src_dir / "other_hls")
    write_discontinuity(root / "plain", src_dir / "other_hls", root / "discontinuity")
    lib.streams["discontinuity"] = _facts(root, "discontinuity", 12, 320, 180, 2)

    master = root / "master"
    variants = [(480, 270, 900_000), (320, 180, 500_000), (256, 144, 300_000)]
    lines = [
        "#EXTM3U",
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",LANGUAGE="en",'
        'DEFAULT=YES,AUTOSELECT=YES,URI="audio/index.m3u8"',
    ]
    for width, height, bandwidth in variants:
        source = encode_source(src_dir / f"v{height}.mp4", duration=6, width=width,
                               height=height, audio=False)  # fmt: skip
        write_hls(source, master / f"v{height}")
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={width}x{height},"
            f'CODECS="avc1.64000d,mp4a.40.2",AUDIO="aud"'
        )
        lines.append(f"v{height}/index.m3u8")
    write_hls(encode_source(src_dir / "audio.mp4", duration=6, video=False), master / "audio")
    (master / "master.m3u8").write_text("\n".join(lines) + "\n")
    for width, height, _ in variants:
        lib.streams[f"master_{height}p"] = StreamFacts(
            path="/master/master.m3u8",
            duration=6,
            width=width,
            height=height,
            streams=2,
            segments=_count(root, f"master/v{height}") + _count(root, "master/audio"),
            segment_paths=_paths(root, f"master/v{height}") + _paths(root, "master/audio"),
        )
    return lib


# --------------------------------------------------------------------------- languages

#: (language, NAME, tone in Hz) of the multi-language stream's audio renditions, in
#: playlist order: French first but not the default, English the DEFAULT=YES one.
MULTI_AUDIO = (("fr", "Français", 660), ("en", "English", 440))
#: Its subtitle cues, in seconds from the video's first frame. The cues that span a
#: subtitle segment boundary (every 2 s) are written into each segment they overlap,
#: as packagers do: a download must show them once.
MULTI_CUES = {
    "en": ((0.5, 1.5, "Hello"), (1.8, 2.6, "Two lines,\nthe second <i>in italics</i>"),
           (3.5, 4.4, "Across a boundary"), (5.0, 5.8, "Bye &amp; thanks")),
    "fr": ((0.4, 1.2, "Bonjour"), (1.6, 2.5, "Ça va ?"), (3.9, 4.2, "Très bien")),
}  # fmt: skip
MULTI_SUBTITLE_SECONDS = 2
MULTI_START_SECONDS = 10  # where the media's timestamps start


@dataclass(frozen=True)
class MultiLanguageStream:
    """A master playlist with two audio languages and two subtitle languages."""

    path: str  # URL path of the master playlist
    duration: float
    video_paths: tuple[str, ...]  # URL paths of the video segments
    audio_paths: dict[str, tuple[str, ...]]  # language → its audio segments' URL paths
    subtitle_paths: dict[str, tuple[str, ...]]  # language → its WebVTT segments' URL paths


def write_multilanguage(
    root: Path, folder: str = "multi", duration: int = 6
) -> MultiLanguageStream:
    """HLS from FFmpeg's muxer (``var_stream_map`` with an ``agroup`` and ``language:``)
    plus segmented WebVTT renditions written here, each segment with an X-TIMESTAMP-MAP:
    English maps the video's first PTS to LOCAL 00:00:10.000 (cue times run 10 s ahead),
    French maps each segment's own start to LOCAL 1 h + that start (a map per segment).
    The media's timestamps start 10 s in (MPEG-TS PTS 900000 and more), as a cut from a
    longer broadcast would."""
    out = root / folder
    sources = root / f"_{folder}_src"
    sources.mkdir(parents=True, exist_ok=True)
    video = encode_source(sources / "video.mp4", duration=duration, audio=False)
    tones = [encode_source(sources / f"{lang}.mp4", duration=duration, video=False, tone=tone)
             for lang, _, tone in MULTI_AUDIO]  # fmt: skip
    _write_variants(video, tones, out)
    first_pts = _first_video_pts(out / "0" / "seg-000.ts")
    master = (out / "master.m3u8").read_text()
    for number, (_lang, name, _) in enumerate(MULTI_AUDIO, 1):
        master = master.replace(f'NAME="audio_{number}"', f'NAME="{name}"')
    subtitles = []
    for lang, cues in MULTI_CUES.items():
        _write_vtt_rendition(
            out / "subs" / lang, cues, first_pts, duration, per_segment=lang == "fr"
        )
        name = {"en": "English", "fr": "Français"}[lang]
        subtitles.append(
            f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="{name}",LANGUAGE="{lang}",'
            f"DEFAULT={'YES' if lang == 'en' else 'NO'},AUTOSELECT=YES,FORCED=NO,"
            f'URI="subs/{lang}/index.m3u8"'
        )
    lines = master.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF"))
    lines[at] += ',SUBTITLES="subs"'
    (out / "master.m3u8").write_text("\n".join(lines[:at] + subtitles + lines[at:]) + "\n")
    return MultiLanguageStream(
        path=f"/{folder}/master.m3u8",
        duration=duration,
        video_paths=_paths(root, f"{folder}/0"),
        audio_paths={
            lang: _paths(root, f"{folder}/{n}") for n, (lang, _, _) in enumerate(MULTI_AUDIO, 1)
        },
        subtitle_paths={lang: _paths(root, f"{folder}/subs/{lang}") for lang in MULTI_CUES},
    )


def _write_variants(video: Path, audio: list[Path], out: Path) -> None:
    """One video variant and one audio rendition per ``audio`` file, with FFmpeg's HLS muxer."""
    renditions = " ".join(
        f"a:{n},agroup:aud,language:{lang}" + (",default:yes" if lang == "en" else "")
        for n, (lang, _, _) in enumerate(MULTI_AUDIO)
    )
    options = {
        "hls_time": str(SEGMENT_SECONDS),
        "hls_list_size": "0",
        "hls_playlist_type": "vod",
        "master_pl_name": "master.m3u8",
        "hls_segment_filename": str(out / "%v" / "seg-%03d.ts"),
        "var_stream_map": f"v:0,agroup:aud {renditions}",
    }
    out.mkdir(parents=True, exist_ok=True)
    inputs = [av.open(str(video)), *(av.open(str(path)) for path in audio)]
    muxer = av.open(str(out / "%v" / "index.m3u8"), "w", format="hls", options=options)
    try:
        streams = [muxer.add_stream_from_template(inputs[0].streams.video[0])]
        streams += [muxer.add_stream_from_template(src.streams.audio[0]) for src in inputs[1:]]
        packets = []
        for number, src in enumerate(inputs):
            for packet in src.demux():
                if packet.dts is not None:
                    shift = int(MULTI_START_SECONDS / packet.time_base)
                    packet.dts, packet.pts = packet.dts + shift, packet.pts + shift
                    packet.stream = streams[number]
                    packets.append(packet)
        for packet in sorted(packets, key=lambda p: float(p.dts * p.time_base)):
            muxer.mux(packet)
    finally:
        muxer.close()
        for src in inputs:
            src.close()


def _first_video_pts(segment: Path) -> int:
    """The first video PTS of an MPEG-TS file, in 90 kHz ticks."""
    with av.open(str(segment)) as container:
        stream = container.streams.video[0]
        pts = min(p.pts for p in container.demux(stream) if p.pts is not None)
        return int(pts * stream.time_base * 90000)


def _write_vtt_rendition(folder: Path, cues, first_pts: int, duration: int, *, per_segment: bool):
    folder.mkdir(parents=True, exist_ok=True)
    step = MULTI_SUBTITLE_SECONDS
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{step}",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]  # fmt: skip
    for number, start in enumerate(range(0, duration, step)):
        # cue time in the file = its time from the video's start - mpegts offset + local
        mpegts, local = (
            (first_pts + start * 90000, 3600.0 + start) if per_segment else (first_pts, 10.0)
        )
        shift = local - (mpegts - first_pts) / 90000
        body = [f"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:{_vtt_time(local)}\n"]
        for begin, end, text in cues:
            if begin < start + step and end > start:
                body.append(f"{_vtt_time(begin + shift)} --> {_vtt_time(end + shift)}\n{text}\n")
        (folder / f"seg-{number:03d}.vtt").write_text("\n".join(body), encoding="utf-8")
        lines += [f"#EXTINF:{min(step, duration - start)}.000,", f"seg-{number:03d}.vtt"]
    lines.append("#EXT-X-ENDLIST")
    (folder / "index.m3u8").write_text("\n".join(lines) + "\n")


def _vtt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, minutes, secs = millis // 3600000, millis // 60000 % 60, millis // 1000 % 60
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis % 1000:03d}"


def _paths(root: Path, folder: str) -> tuple[str, ...]:
    text = (root / folder / "index.m3u8").read_text()
    return tuple(dict.fromkeys(f"/{folder}/{uri}" for uri in segment_uris(text)))


def _count(root: Path, folder: str) -> int:
    text = (root / folder / "index.m3u8").read_text()
    return len(segment_uris(text))


def _facts(root: Path, name: str, duration: float, width: int, height: int, streams: int):
    return StreamFacts(
        path=f"/{name}/index.m3u8",
        duration=duration,
        width=width,
        height=height,
        streams=streams,
        segments=_count(root, name),
        segment_paths=_paths(root, name),
    )


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Decoded:
    duration: float
    width: int | None
    height: int | None
    video_frames: int
    audio_samples: int
    audio_rate: int | None
    streams: int
    codecs: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def audio_seconds(self) -> float:
        return self.audio_samples / self.audio_rate if self.audio_rate else 0.0


def decode_check(path: Path) -> Decoded:
    """Decode every frame of ``path``; errors are collected from FFmpeg's log and exceptions."""
    errors: list[str] = []
    frames = 0
    samples = 0
    width = height = rate = None
    previous_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs, av.open(str(path)) as container:
            duration = (container.duration or 0) / av.time_base
            codecs = tuple(s.codec_context.name for s in container.streams)
            streams = len(container.streams)
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            if video is not None:
                width, height = video.codec_context.width, video.codec_context.height
            if audio is not None:
                rate = audio.codec_context.sample_rate
            wanted = [s for s in (video, audio) if s is not None]
            try:
                for frame in container.decode(*wanted):
                    if isinstance(frame, av.VideoFrame):
                        frames += 1
                    else:
                        samples += frame.samples
            except av.FFmpegError as exc:
                errors.append(f"decode: {exc}")
        errors.extend(
            f"{name}: {message}" for level, name, message in logs if level <= av.logging.ERROR
        )
    finally:
        av.logging.set_level(previous_level)
    return Decoded(
        duration=duration,
        width=width,
        height=height,
        video_frames=frames,
        audio_samples=samples,
        audio_rate=rate,
        streams=streams,
        codecs=codecs,
        errors=tuple(errors),
    )


@dataclass(frozen=True)
class StreamTag:
    """One stream of a file as a player sees it: kind, codec, language, default flag."""

    kind: str  # "video", "audio", "subtitle"
    codec: str
    language: str | None
    default: bool
    forced: bool


def stream_tags(path: Path) -> list[StreamTag]:
    """What each stream of ``path`` is tagged with, in order."""
    with av.open(str(path)) as container:
        return [
            StreamTag(
                kind=stream.type,
                codec=stream.codec_context.name,
                language=stream.metadata.get("language"),
                default=bool(stream.disposition & av.stream.Disposition.default),
                forced=bool(stream.disposition & av.stream.Disposition.forced),
            )
            for stream in container.streams
        ]


def audio_tones(path: Path) -> list[float]:
    """The frequency (Hz) of the sine tone in each audio stream of ``path``, from the
    zero crossings of its decoded samples: 440 and 660 tell the two languages apart."""
    with av.open(str(path)) as container:
        count = len(container.streams.audio)
    return [_tone(path, number) for number in range(count)]


def _tone(path: Path, number: int) -> float:
    crossings, samples, previous = 0, 0, 0.0
    with av.open(str(path)) as container:
        stream = container.streams.audio[number]
        for frame in container.decode(stream):
            if frame.format.name != "fltp":
                raise ValueError(f"expected float planar audio, not {frame.format.name}")
            for value in array("f", bytes(frame.planes[0])[: frame.samples * 4]):
                crossings += (value >= 0) != (previous >= 0)
                previous = value
            samples += frame.samples
        rate = stream.codec_context.sample_rate
    return crossings / 2 / (samples / rate) if samples else 0.0


def first_frame_time(path: Path) -> float:
    """When the output shows its first video frame: where the source's cue times start."""
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).time


def vtt_cues(path: Path) -> list[tuple[float, float, str]]:
    """The cues of a WebVTT file as FFmpeg's WebVTT demuxer reads them."""
    with av.open(str(path), format="webvtt") as container:
        stream = container.streams.subtitles[0]
        return [
            (float(p.pts * p.time_base), float((p.pts + p.duration) * p.time_base),
             bytes(p).decode())
            for p in container.demux(stream) if p.pts is not None and p.size
        ]  # fmt: skip


def mov_text_cues(path: Path, number: int) -> list[tuple[float, float, str]]:
    """The cues of the output's ``number``-th subtitle stream, decoded."""
    cues = []
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[number]
        for packet in container.demux(stream):
            if packet.pts is None or not packet.size:
                continue
            for sub in stream.decode(packet):
                text = sub.ass.decode().split(",", 8)[-1]
                start = float(packet.pts * packet.time_base)
                if text:
                    cues.append((start, start + float(packet.duration * packet.time_base), text))
    return cues
