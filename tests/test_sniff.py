"""What a body is, from its first bytes; and no error message quotes a body (issue #8)."""

from __future__ import annotations

import struct

import pytest

from dlstore.crypto import parse_key
from dlstore.engine import download
from dlstore.errors import (
    DownloadError,
    PlaylistError,
    SegmentError,
    UnsupportedStreamError,
    WrongContentError,
)
from dlstore.playlist import MediaPlan, decode_playlist, parse_playlist
from dlstore.sizes import format_size
from dlstore.sniff import (
    HEAD_BYTES,
    Kind,
    check_segment,
    container_of,
    describe,
    identify,
)
from dlstore.testing.hls_server import Body

BASE = "https://cdn.example/show/"
SECRET = "SECRET-123"
ADTS = b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(9)
MP3 = b"\xff\xfb\x90\x64" + bytes(12)
AC3 = b"\x0b\x77\x00\x00\x00" + bytes([8 << 3]) + bytes(10)  # bsid 8
EAC3 = b"\x0b\x77\x00\x00\x00" + bytes([16 << 3]) + bytes(10)  # bsid 16
TS = (b"\x47\x40\x00\x10" + bytes(184)) * 3


def id3(payload: bytes, tag_size: int = 20) -> bytes:
    size = bytes((tag_size >> shift) & 0x7F for shift in (21, 14, 7, 0))  # syncsafe
    return b"ID3\x04\x00\x00" + size + b"P" * tag_size + payload


def bmff(kind: bytes) -> bytes:
    return struct.pack(">I", 24) + kind + bytes(16)


# --------------------------------------------------------------------------- identify


#: Heads of each kind (every kind has some: see the test below).
EXAMPLES: dict[Kind, list[bytes]] = {
    Kind.EMPTY: [b"", b" \r\n\t"],
    Kind.MPEG_TS: [TS, TS[:188]],  # several packets; one whole packet
    Kind.ISO_BMFF: [
        bmff(box)
        for box in (b"ftyp", b"styp", b"moof", b"moov", b"sidx", b"emsg", b"free", b"mdat")
    ],  # fmt: skip
    # HLS packed audio starts with an ID3 PRIV timestamp, then frames
    Kind.ADTS: [ADTS, id3(ADTS)],
    Kind.ID3_AUDIO: [id3(b"", tag_size=HEAD_BYTES)],  # the tag outlasts the head
    Kind.AC3: [AC3, id3(AC3)],
    Kind.EAC3: [EAC3],
    Kind.MP3: [MP3, id3(MP3)],
    Kind.WEBVTT: [b"WEBVTT\n\n00:00.000 --> 00:01.000\nhi\n", b"\xef\xbb\xbfWEBVTT"],
    Kind.M3U8: [b"#EXTM3U\n#EXTINF:1,\na.ts\n", b"\n\n#EXTM3U\n"],
    Kind.FFCONCAT: [b"ffconcat version 1.0\nfile 'x.mp4'\n"],
    # FFmpeg's SDP probe needs only a c= line
    Kind.SDP: [b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\n", b"o=- 0\nc=IN IP4 127.0.0.1\n"],
    Kind.HTML: [b"<!DOCTYPE html><html><body>Sign in</body></html>", b"  <HTML><body>x</HTML>"],
    Kind.XML: [b"<?xml version='1.0'?><MPD/>"],
    Kind.JSON: [b'{"error": "nope"}', b"[1, 2, 3]"],
    # a character cut at the end of the head; a G is a sync byte only if 188 bytes on is one
    Kind.TEXT: [b"hello world\n", "grüße".encode() * 1000, b"G" + b"x" * 300],
    # a sync byte, but none 188 bytes later; an ID3 tag followed by no audio
    Kind.BINARY: [
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"\x00" * 200,
        b"\x47" + bytes(400),
        id3(b"\x00" * 40),
    ],  # fmt: skip
}


@pytest.mark.parametrize(
    ("head", "kind"), [(head, kind) for kind, heads in EXAMPLES.items() for head in heads]
)
def test_identify(head, kind):
    assert identify(head) is kind


def test_every_kind_has_an_example():
    assert set(EXAMPLES) == set(Kind)


def test_identify_real_media(hls_media):
    root = hls_media.root
    assert identify((root / "plain" / "seg-000.ts").read_bytes()[:HEAD_BYTES]) is Kind.MPEG_TS
    assert identify((root / "fmp4" / "init.mp4").read_bytes()[:HEAD_BYTES]) is Kind.ISO_BMFF
    segment = (root / "fmp4" / "seg-000.m4s").read_bytes()
    assert identify(segment[:HEAD_BYTES]) is Kind.ISO_BMFF


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 bytes"), (1, "1 byte"), (120, "120 bytes"), (999, "999 bytes"),
     (1000, "1.0 KB"), (2150, "2.2 KB"), (3072, "3.1 KB"), (999_949, "999.9 KB"),
     (999_950, "1.0 MB"), (1_200_000, "1.2 MB"), (5 * 10**9, "5.0 GB")],
)  # fmt: skip
def test_format_size(size, text):
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("body", "size", "text"),
    [
        (b"<html><body>" + b"x" * 2138, None, "an HTML page of 2.2 KB"),
        (b'{"error": "' + b"e" * 107 + b'"}', None, "a JSON document of 120 bytes"),
        (b"just words " * 279 + b"abc", None, "plain text of 3.1 KB"),
        (b"\x00\x01" * 100, 1_200_000, "binary data of 1.2 MB"),
        (b"ffconcat version 1.0\nfile 'a'\n", None, "an ffconcat script of 30 bytes"),
        (b"v=0\nc=IN IP4 1.2.3.4\n", None, "an SDP description of 21 bytes"),
        (b"#EXTM3U\n", None, "an HLS playlist of 8 bytes"),
        (b"", None, "an empty body"),
        (b"   ", None, "an empty body (3 bytes of white space)"),
    ],
)
def test_describe_says_kind_and_size(body, size, text):
    assert describe(body, size) == text


def test_describe_adds_a_media_type_only_when_it_looks_like_one():
    assert describe(b"<html>", None, "text/html; charset=UTF-8") == (
        "an HTML page of 6 bytes, sent as text/html"
    )
    assert describe(b"<html>", None, f"text/html {SECRET}") == "an HTML page of 6 bytes"
    assert describe(b"<html>", None, None) == "an HTML page of 6 bytes"


@pytest.mark.parametrize(
    "body",
    [
        f"<html><title>{SECRET}</title></html>",
        f'{{"error": "{SECRET}", "message": "{SECRET}"}}',
        f"ffconcat version 1.0\nfile '{SECRET}'\n",
        f"v=0\nc=IN IP4 {SECRET}\n",
        f"#EXTM3U\n{SECRET}.ts\n",
        f"password={SECRET}\n",
        f"\x00\x01{SECRET}\x00",
    ],
)
def test_describe_never_quotes_the_body(body):
    assert SECRET not in describe(body.encode())
    with pytest.raises(WrongContentError) as caught:
        check_segment(body.encode(), "mpegts", "video segment 1 of 1 (a.ts)")
    assert SECRET not in str(caught.value)


# --------------------------------------------------------------------------- check_segment


def test_check_segment_names_what_came_instead():
    script = b"ffconcat version 1.0\nfile 'secret.mp4'\n" + b"#" * 3
    with pytest.raises(WrongContentError) as caught:
        check_segment(script, "mpegts", "video segment 3 of 12 (seg-002.ts)")
    assert str(caught.value) == (
        "The video segment 3 of 12 (seg-002.ts) is not MPEG-TS video but an ffconcat "
        "script of 42 bytes; the server did not send video."
    )
    assert isinstance(caught.value, SegmentError) and not caught.value.transient


def test_check_segment_uses_the_whole_size_when_given():
    with pytest.raises(WrongContentError, match="an HTML page of 2.0 MB; the server did not"):
        check_segment(b"<html>", "mov", "video init section 1", size=2 * 10**6)


@pytest.mark.parametrize(
    ("container", "good", "bad"),
    [
        ("mpegts", TS, bmff(b"moof")),
        ("mov", bmff(b"moof"), TS),
        ("aac", id3(ADTS), MP3),
        ("ac3", AC3, ADTS),
        ("eac3", EAC3, ADTS),
        ("mp3", MP3, AC3),
        ("webvtt", b"WEBVTT\n", b"#EXTM3U\n"),
        (None, ADTS, bmff(b"moof")),  # URIs that don't say: MPEG-TS or packed audio only
        (None, TS, b"v=0\n"),
    ],
)
def test_check_segment_accepts_only_its_container(container, good, bad):
    check_segment(good, container, "audio segment 1 of 1 (a)")
    with pytest.raises(WrongContentError, match=r"^The audio segment 1 of 1 \(a\) is not "):
        check_segment(bad, container, "audio segment 1 of 1 (a)")


def test_container_of_a_first_file_whose_uri_did_not_say():
    assert container_of(TS, "first video file") == "mpegts"
    assert container_of(id3(ADTS), "first audio file") == "aac"
    assert container_of(EAC3, "first audio file") == "eac3"
    with pytest.raises(WrongContentError, match="not MPEG-TS video or packed audio but an SDP"):
        container_of(b"v=0\nc=IN IP4 127.0.0.1\n", "first video file")


# --------------------------------------------------------------------------- plan → container


def media(*uris: str, header: str = "") -> MediaPlan:
    body = "".join(f"#EXTINF:2,\n{uri}\n" for uri in uris)
    plan = parse_playlist(f"#EXTM3U\n{header}{body}#EXT-X-ENDLIST\n", BASE + "index.m3u8")
    assert isinstance(plan, MediaPlan)
    return plan


@pytest.mark.parametrize(
    ("uri", "container"),
    [("seg-1.ts", "mpegts"), ("SEG.TS?token=1", "mpegts"), ("a.aac", "aac"), ("a.ac3", "ac3"),
     ("a.ec3", "eac3"), ("a.mp3", "mp3"), ("a.m4s", "mov"), ("a.vtt", "webvtt"),
     ("get.php?id=1", None), ("segment", None)],
)  # fmt: skip
def test_plan_container_from_the_segment_suffix(uri, container):
    assert media(uri).container == container


def test_plan_container_with_an_init_section_is_mov_whatever_the_suffix():
    assert media("a.ts", header='#EXT-X-MAP:URI="init.mp4"\n').container == "mov"


# --------------------------------------------------------------------------- no echo: playlists


def test_a_json_playlist_body_is_described_not_quoted():
    body = f'{{"error": "{SECRET}", "message": "{SECRET}", "detail": "{SECRET}"}}'.encode()
    with pytest.raises(PlaylistError) as caught:
        decode_playlist(body, BASE + "index.m3u8", "application/json")
    assert SECRET not in str(caught.value)
    assert f"a JSON document of {len(body)} bytes, sent as application/json" in str(caught.value)


def test_a_text_playlist_body_is_described_not_quoted():
    with pytest.raises(PlaylistError, match="plain text of 17 bytes") as caught:
        decode_playlist(f"token={SECRET}\n".encode(), BASE + "index.m3u8", "text/plain")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:{SECRET},\na.ts\n#EXT-X-ENDLIST\n", 3),
        (f"#EXTM3U\n#EXT-X-TARGETDURATION:{SECRET}\n#EXTINF:1,\na.ts\n", 2),
        (f"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:{SECRET}\n#EXTINF:1,\na.ts\n", 2),
    ],
)
def test_a_malformed_playlist_error_gives_the_line_not_its_text(text, line):
    with pytest.raises(PlaylistError, match=f"malformed: a tag near line {line} ") as caught:
        parse_playlist(text, BASE + "index.m3u8")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION={SECRET}x1\nv.m3u8\n",
        f'#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0x{SECRET}\n#EXTINF:1,\na.ts\n'
        "#EXT-X-ENDLIST\n",
        f"#EXTM3U\n#EXT-X-BYTERANGE:{SECRET}@0\n#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n",
        f"#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:10\na.ts\n#EXT-X-ENDLIST\n#{SECRET}\n",
    ],
)
def test_malformed_values_are_not_quoted(text):
    with pytest.raises(PlaylistError) as caught:
        parse_playlist(text, BASE + "index.m3u8")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (f"file:///home/{SECRET}/.ssh/id_rsa", "segment by a file: URL"),
        (f"gopher://internal/{SECRET}", "segment by a gopher: URL"),
        (f"data:text/plain,{SECRET}", "segment by a data: URL"),
    ],
)
def test_refused_uris_are_named_by_scheme_only(line, match):
    with pytest.raises(UnsupportedStreamError, match=match) as caught:
        parse_playlist(f"#EXTM3U\n#EXTINF:1,\n{line}\n#EXT-X-ENDLIST\n", BASE + "i.m3u8")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "match"),
    [
        (f'METHOD=AES-128,URI="k",KEYFORMAT="{SECRET}"', "DRM \\(an unknown KEYFORMAT\\)"),
        ('METHOD=AES-128,URI="k",KEYFORMAT="com.apple.streamingkeydelivery"', "FairPlay"),
        (f'METHOD=SAMPLE-AES{SECRET},URI="k"', "uses SAMPLE-AES encryption"),
        (f'METHOD={SECRET},URI="k"', "unknown encryption method"),
    ],
)
def test_key_tags_are_not_quoted(key, match):
    text = f"#EXTM3U\n#EXT-X-KEY:{key}\n#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n"
    with pytest.raises(UnsupportedStreamError, match=match) as caught:
        parse_playlist(text, BASE + "i.m3u8")
    assert SECRET not in str(caught.value)


# --------------------------------------------------------------------------- no echo: keys


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (f"<html><body>{SECRET}</body></html>".encode(), "an HTML page of 36 bytes"),
        (f'{{"key": "{SECRET}"}}'.encode(), "a JSON document of 21 bytes"),
        (SECRET.encode(), "plain text of 10 bytes"),
        (b"\x00" * 20, "binary data of 20 bytes"),
    ],
)
def test_a_key_that_is_not_a_key_is_described(raw, kind):
    with pytest.raises(DownloadError, match=f"not 16: it is {kind}") as caught:
        parse_key(raw, "https://keys.example/k")
    assert SECRET not in str(caught.value)


def test_a_bad_data_key_is_not_quoted():
    with pytest.raises(DownloadError, match="The playlist's data: key is 10 bytes") as caught:
        parse_key(SECRET.encode(), f"data:text/plain,{SECRET}")
    assert SECRET not in str(caught.value)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_playlist_url_answering_json_fails_without_its_text(hls_server, fast_options, tmp_path):
    body = f'{{"error": "{SECRET}"}}'.encode()
    hls_server.bodies["/api/index.m3u8"] = Body(body, "application/json")
    out = tmp_path / "v.mp4"
    with pytest.raises(PlaylistError, match="a JSON document of 23 bytes") as caught:
        download(hls_server.url("/api/index.m3u8"), out, work_dir=tmp_path, options=fast_options)
    assert SECRET not in str(caught.value)
    assert not out.exists()
