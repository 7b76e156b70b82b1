"""Hostile "segments": the demuxer opens nothing but the bytes dlstore fetched (issue #8).

The ffconcat and SDP attacks are first shown to be live (FFmpeg left to guess
really does read the local file, or open UDP sockets; an HLS playlist is only
detected under an .m3u8 name, which our reader never has). Then each is shown to
fail: at the segment check with a sentence naming what the server sent, and at
the remux even when that check is bypassed, with no secret in any message or
output and no socket opened.
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from dlstore import remux as remux_module
from dlstore.engine import DownloadResult, download
from dlstore.errors import (
    CancelledError,
    DlstoreError,
    NestedOpenError,
    RemuxError,
    WrongContentError,
)
from dlstore.remux import ConcatReader, concat, make_poster, probe, remux
from dlstore.testing.hls_server import Body, HlsServer
from dlstore.testing.media import encode_source

from .support.hostile import ffconcat_script, own_udp_sockets, sdp_description

MARKER = f"SECRET-MARKER-{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def local_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_source(tmp_path_factory.mktemp("local") / "video.mp4", duration=1)


@pytest.fixture
def secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_video: Path) -> Path:
    """Local files an attacker wants, in the working folder (where references resolve):
    ``secret.txt`` (returned) and a video of the host's, ``secret.mp4``."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    shutil.copy(local_video, folder / "secret.mp4")
    path = folder / "secret.txt"
    path.write_text(f"root:x:0:0:{MARKER}:/root:/bin/sh\n" * 200)
    return path


def hls_playlist(secret: Path) -> bytes:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{secret.name}\n#EXT-X-ENDLIST\n".encode()


ATTACKS: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "ffconcat": (ffconcat_script, "an ffconcat script"),
    "sdp": (lambda secret: sdp_description(), "an SDP description"),
    "hls": (hls_playlist, "an HLS playlist"),
}


@pytest.fixture
def sockets_while_open(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """UDP sockets held right after each ``av.open`` returned or raised."""
    seen: list[int] = []
    real_open = av.open

    def spy(*args, **kwargs):
        try:
            return real_open(*args, **kwargs)
        finally:
            seen.append(own_udp_sockets())

    monkeypatch.setattr(av, "open", spy)
    return seen


def attempt(url: str, tmp_path: Path, options, name: str = "video") -> DownloadResult:
    out = tmp_path / "out" / f"{name}.{options.output_format}"
    return download(url, out, work_dir=tmp_path / f"work-{name}", options=options)


def files_containing(root: Path, text: str, *, besides: Path) -> list[Path]:
    needle = text.encode()
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and path != besides and needle in path.read_bytes()
    ]


# --------------------------------------------------------------------------- the attacks are live


def test_guessing_demuxer_reads_the_local_files_an_ffconcat_segment_names(secret, tmp_path):
    segment = tmp_path / "seg.ts"
    segment.write_bytes(f"ffconcat version 1.0\nfile '{secret.name}'\n".encode())
    with av.open(ConcatReader([segment])) as container:  # what remux did before: guess
        assert container.format.name == "concat"
        leaked = b"".join(bytes(packet) for packet in container.demux() if packet.size)
    assert MARKER.encode() in leaked  # the text file, as "video" packets
    segment.write_bytes(ffconcat_script(secret))
    with av.open(ConcatReader([segment])) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}  # the host's video


def test_guessing_demuxer_opens_udp_sockets_for_an_sdp_segment(tmp_path):
    segment = tmp_path / "seg.ts"
    segment.write_bytes(sdp_description())
    before = own_udp_sockets()
    with av.open(ConcatReader([segment]), timeout=(1, 1)) as container:
        assert container.format.name == "sdp"
        assert own_udp_sockets() > before
    assert own_udp_sockets() == before


# --------------------------------------------------------------------------- the segment check


def serve_hostile(server: HlsServer, body: bytes, *, name: str = "evil.ts") -> str:
    """A copy of the plain stream whose third segment is ``body``; returns its URL."""
    server.bodies[f"/plain/{name}"] = Body(body, "video/mp2t")
    server.bodies["/plain/evil.m3u8"] = Body(
        (
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nseg-000.ts\n#EXTINF:1,\nseg-001.ts\n"
            f"#EXTINF:1,\n{name}\n#EXTINF:1,\nseg-003.ts\n#EXT-X-ENDLIST\n"
        ).encode(),
        "application/vnd.apple.mpegurl",
    )
    return server.url("/plain/evil.m3u8")


@pytest.mark.slow
@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("output_format", ["mp4", "ts"])
def test_hostile_segment_fails_the_download_naming_what_it_was(
    attack, output_format, secret, hls_server, fast_options, tmp_path
):
    make, kind = ATTACKS[attack]
    body = make(secret)
    url = serve_hostile(hls_server, body)
    options = dataclasses.replace(fast_options, output_format=output_format)
    before = own_udp_sockets()
    with pytest.raises(WrongContentError) as caught:
        attempt(url, tmp_path, options)
    assert str(caught.value) == (
        f"1 of 4 segments could not be downloaded: video segment 3 of 4 (evil.ts) (it is not "
        f"MPEG-TS video but {kind} of {len(body)} bytes; the server did not send video); the "
        "others are kept, and a retry fetches only these."
    )
    assert hls_server.hits["/plain/evil.ts"] == 1  # not retried: it is not a glitch
    assert not (tmp_path / "out" / f"video.{output_format}").exists()
    assert files_containing(tmp_path, MARKER, besides=secret) == []
    assert own_udp_sockets() == before


@pytest.mark.slow
def test_hostile_init_section_of_an_fmp4_stream_is_refused(
    secret, hls_media, hls_server, fast_options, tmp_path
):
    hls_server.bodies["/fmp4/evil-init.mp4"] = Body(ffconcat_script(secret))
    text = (hls_media.root / "fmp4" / "index.m3u8").read_text()
    assert 'URI="init.mp4"' in text
    hls_server.bodies["/fmp4/evil.m3u8"] = Body(
        text.replace('URI="init.mp4"', 'URI="evil-init.mp4"').encode()
    )
    with pytest.raises(WrongContentError, match=r"video init section 1 \(it is not fragmented MP4 "
                       r"media but an ffconcat script of \d+ bytes") as caught:  # fmt: skip
        attempt(hls_server.url("/fmp4/evil.m3u8"), tmp_path, fast_options)
    assert MARKER not in str(caught.value)


@pytest.mark.slow
def test_segment_uris_that_do_not_say_allow_only_ts_or_packed_audio(
    hls_media, hls_server, fast_options, tmp_path
):
    names = []
    for number in range(4):  # the plain stream's segments, at URIs without a suffix
        data = (hls_media.root / "plain" / f"seg-00{number}.ts").read_bytes()
        hls_server.bodies[f"/bare/s{number}"] = Body(data)
        names.append(f"s{number}")
    lines = "".join(f"#EXTINF:1,\n{name}\n" for name in names)
    hls_server.bodies["/bare/index.m3u8"] = Body(f"#EXTM3U\n{lines}#EXT-X-ENDLIST\n".encode())
    result = attempt(hls_server.url("/bare/index.m3u8"), tmp_path, fast_options, "good")
    assert result.media.video_codec == "h264"  # read as MPEG-TS: the first file said so
    hls_server.bodies["/bare/s2"] = Body(sdp_description())
    with pytest.raises(WrongContentError, match=r"\(s2\) \(it is not MPEG-TS video or packed "
                       "audio but an SDP description of 113 bytes"):  # fmt: skip
        attempt(hls_server.url("/bare/index.m3u8"), tmp_path, fast_options, "bad")


# --------------------------------------------------------------------------- the remux, unsniffed


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("container", ["mpegts", "mov", "aac", "ac3", "eac3", "mp3", "webvtt"])
def test_remux_refuses_hostile_files_even_when_the_sniff_is_bypassed(
    attack, container, secret, tmp_path, sockets_while_open
):
    segment = tmp_path / "video-000000.seg"
    segment.write_bytes(ATTACKS[attack][0](secret))
    dest = tmp_path / "out.mp4"
    with pytest.raises(RemuxError) as caught:
        remux([segment], dest, containers=[container])
    assert MARKER not in str(caught.value)
    assert not dest.exists() or MARKER.encode() not in dest.read_bytes()
    assert sockets_while_open and set(sockets_while_open) == {0}  # no UDP socket, ever


@pytest.mark.parametrize(("attack", "demuxer"), [("ffconcat", "concat"), ("sdp", "sdp")])
def test_the_protocol_whitelist_alone_stops_a_nesting_demuxer(attack, demuxer, secret, tmp_path):
    segment = tmp_path / "seg.ts"
    segment.write_bytes(ATTACKS[attack][0](secret))
    before = own_udp_sockets()
    with pytest.raises(av.FFmpegError):  # even were that demuxer chosen
        av.open(ConcatReader([segment]), format=demuxer, options=remux_module.NO_PROTOCOLS)
    assert own_udp_sockets() == before


@pytest.mark.parametrize("attack", ATTACKS)
def test_remux_of_files_whose_uris_did_not_say_sniffs_the_first(attack, secret, tmp_path):
    segment = tmp_path / "video-000000.seg"
    segment.write_bytes(ATTACKS[attack][0](secret))
    with pytest.raises(WrongContentError, match=ATTACKS[attack][1]):
        remux([segment], tmp_path / "out.mp4", containers=[None])
    with pytest.raises(WrongContentError, match=ATTACKS[attack][1]):
        concat([segment], tmp_path / "out.ts", container=None)


def test_concat_of_packed_audio_remuxes_it_into_real_mpeg_ts(tmp_path):
    source = encode_source(tmp_path / "a.mp4", duration=1, video=False)
    adts = tmp_path / "audio.aac"
    with av.open(str(source)) as src, av.open(str(adts), "w", format="adts") as out:
        stream = out.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    concat([adts], tmp_path / "out.ts", container="aac")
    info = probe(tmp_path / "out.ts")
    assert info.audio_codec == "aac" and info.duration == pytest.approx(1, abs=0.2)


# --------------------------------------------------------------------------- mov data references


CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"dinf"}


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _alias_to(name: bytes) -> bytes:
    """A ``dref`` holding one Macintosh alias record: the track's data is in file ``name``."""
    volume = b"vol"
    record = (
        bytes(10) + bytes([len(volume)]) + volume.ljust(27, b"\0") + bytes(12)
        + bytes([len(name)]) + name.ljust(63, b"\0") + bytes(16)
        + struct.pack(">hh", 1, 1) + bytes(16)  # nlvl_from, nlvl_to: "beside this file"
    )  # fmt: skip
    path = volume + b":" + name
    path += b"\0" * (len(path) % 2)
    record += struct.pack(">hH", 2, len(path)) + path + struct.pack(">hH", -1, 0)
    entry = struct.pack(">I", 12 + len(record)) + b"alis" + b"\0\0\0\0" + record
    return _box(b"dref", b"\0\0\0\0" + struct.pack(">I", 1) + entry)


def _with_external_video(data: bytes, name: bytes, done: list[bool]) -> bytes:
    """``data`` (MP4 boxes) with the first track's data references pointing at ``name``."""
    out, pos = b"", 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind in CONTAINER_BOXES:
            out += _box(kind, _with_external_video(data[pos + 8 : pos + size], name, done))
        elif kind == b"dref" and not done:
            done.append(True)
            out += _alias_to(name)
        else:
            out += data[pos : pos + size]
        pos += size
    return out


@pytest.fixture
def external_reference(secret: Path, tmp_path: Path) -> Path:
    """An MP4 (moov after mdat) whose video samples are to be read from the secret file."""
    source = encode_source(tmp_path / "src.mp4", duration=1)
    data = source.read_bytes()
    secret.write_bytes(MARKER.encode() * (len(data) // len(MARKER) + 1))
    crafted = tmp_path / "video-000000.seg"
    crafted.write_bytes(_with_external_video(data, secret.name.encode(), []))
    return crafted


def test_an_mp4_data_reference_to_a_local_file_is_a_live_attack(external_reference):
    with av.open(ConcatReader([external_reference]), format="mov",
                 options={"enable_drefs": "1"}) as container:  # fmt: skip
        leaked = b"".join(bytes(p) for p in container.demux(video=0) if p.size)
    assert MARKER.encode() in leaked


def test_remux_does_not_follow_an_mp4_data_reference(external_reference, tmp_path):
    dest = tmp_path / "out.mp4"
    try:
        remux([external_reference], dest, containers=["mov"])
    except RemuxError as exc:
        assert MARKER not in str(exc)
    assert not dest.exists() or MARKER.encode() not in dest.read_bytes()


def test_a_nested_open_is_refused_even_with_data_references_enabled(
    external_reference, tmp_path, monkeypatch
):
    monkeypatch.setitem(remux_module.DEMUXER_OPTIONS, "mov", {"enable_drefs": "1"})
    dest = tmp_path / "out.mp4"
    with pytest.raises(NestedOpenError, match="asked to open another file or URL"):
        remux([external_reference], dest, containers=["mov"])
    assert not dest.exists()


# --------------------------------------------------------------------------- our own output


@pytest.mark.parametrize("read", [probe, lambda path: make_poster(path, path.with_suffix(".jpg"))])
def test_our_output_is_read_only_as_mp4_or_mpeg_ts(read, secret, tmp_path, sockets_while_open):
    fake = tmp_path / "video.mp4"
    fake.write_bytes(ffconcat_script(secret))
    with pytest.raises(RemuxError, match="is not MP4 or MPEG-TS video but an ffconcat script"):
        read(fake)
    fake.write_bytes(sdp_description())
    with pytest.raises(DlstoreError, match="an SDP description") as caught:
        read(fake)
    assert MARKER not in str(caught.value)
    assert set(sockets_while_open) <= {0}


def test_a_reader_error_while_the_demuxer_opens_is_raised_once(tmp_path, capfd):
    """A forced demuxer reads on after a failed read; PyAV must keep the first error."""
    segment = tmp_path / "video-000000.seg"
    segment.write_bytes(b"\x47" + bytes(187))

    def wait(path: Path) -> None:
        raise CancelledError()

    with pytest.raises(CancelledError):
        remux([segment, segment], tmp_path / "out.mp4", containers=["mpegts"], wait=wait)
    assert "exception being dropped" not in capfd.readouterr().err
