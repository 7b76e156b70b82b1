"""What a fetched body is, judged from its first bytes. Pure: no I/O.

Servers answer with login pages, JSON errors and worse; FFmpeg, left to guess,
would treat an ``ffconcat`` script as a list of local files to read, an SDP
description as UDP sockets to open and a playlist as URLs to fetch. So every
segment is checked against the container its playlist says it is, and every
error about a body says what kind of thing it was and how big, never its text:

    identify(head)                          → Kind.FFCONCAT
    describe(head, size)                    → "an ffconcat script of 42 bytes"
    check_segment(head, "mpegts", label, size)  raises WrongContentError
    container_of(head, label)               → "mpegts" (when a playlist's URIs don't say)

Containers are FFmpeg demuxer names: ``mpegts``, ``mov`` (fMP4/CMAF), ``aac``
(ADTS), ``ac3``, ``eac3``, ``mp3`` (packed audio) and ``webvtt``; ``None`` means
"the URIs don't say": MPEG-TS or packed audio, whichever the first bytes show.
"""

from __future__ import annotations

import re
from enum import Enum

from dlstore.errors import WrongContentError
from dlstore.sizes import format_size

HEAD_BYTES = 4096  # how much of a body is looked at
TS_PACKET = 188
TS_SYNC = 0x47
BMFF_BOXES = {b"ftyp", b"styp", b"moof", b"moov", b"sidx", b"emsg", b"free", b"mdat", b"skip",
              b"prft", b"uuid"}  # fmt: skip
_TEXT_PREFIX = b"\xef\xbb\xbf \t\r\n"
_SDP_LINE = re.compile(rb"(?m)^(v=0\r?$|c=IN IP[46] )")
_MIME = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,40}/[A-Za-z0-9!#$&^_.+-]{1,60}$")


class Kind(Enum):
    """A kind of body; the value is how a sentence names it."""

    EMPTY = "an empty body"
    MPEG_TS = "MPEG-TS video"
    ISO_BMFF = "MP4 (ISO BMFF) media"
    ID3_AUDIO = "ID3-tagged audio"
    ADTS = "AAC (ADTS) audio"
    AC3 = "AC-3 audio"
    EAC3 = "E-AC-3 audio"
    MP3 = "MP3 audio"
    WEBVTT = "WebVTT subtitles"
    M3U8 = "an HLS playlist"
    FFCONCAT = "an ffconcat script"
    SDP = "an SDP description"
    HTML = "an HTML page"
    XML = "an XML document"
    JSON = "a JSON document"
    TEXT = "plain text"
    BINARY = "binary data"


#: The container each kind of media is read with when the playlist's URIs don't say.
SELF_DESCRIBING = {Kind.MPEG_TS: "mpegts", Kind.ADTS: "aac", Kind.AC3: "ac3",
                   Kind.EAC3: "eac3", Kind.MP3: "mp3"}  # fmt: skip
#: container → (the kinds it accepts, what it is called, what the server should have sent)
EXPECTED: dict[str | None, tuple[frozenset[Kind], str, str]] = {
    "mpegts": (frozenset({Kind.MPEG_TS}), "MPEG-TS video", "video"),
    "mov": (frozenset({Kind.ISO_BMFF}), "fragmented MP4 media", "video"),
    "aac": (frozenset({Kind.ADTS, Kind.ID3_AUDIO}), "AAC (ADTS) audio", "audio"),
    "ac3": (frozenset({Kind.AC3, Kind.EAC3, Kind.ID3_AUDIO}), "AC-3 audio", "audio"),
    "eac3": (frozenset({Kind.AC3, Kind.EAC3, Kind.ID3_AUDIO}), "E-AC-3 audio", "audio"),
    "mp3": (frozenset({Kind.MP3, Kind.ID3_AUDIO}), "MP3 audio", "audio"),
    "webvtt": (frozenset({Kind.WEBVTT}), "WebVTT subtitles", "subtitles"),
    None: (frozenset(SELF_DESCRIBING), "MPEG-TS video or packed audio", "video"),
}


def identify(head: bytes) -> Kind:
    """The kind of body that starts with ``head`` (its first bytes, ideally HEAD_BYTES)."""
    head = head[:HEAD_BYTES]
    if not head.strip(_TEXT_PREFIX):
        return Kind.EMPTY
    media = _media_kind(head)
    if media is not None:
        return media
    text = head.lstrip(_TEXT_PREFIX)
    return _text_kind(text) or (Kind.TEXT if _is_text(text) else Kind.BINARY)


def _media_kind(head: bytes) -> Kind | None:
    if head[0] == TS_SYNC and len(head) >= TS_PACKET:
        syncs = head[::TS_PACKET]  # the first byte of every packet the head reaches
        return Kind.MPEG_TS if syncs.count(TS_SYNC) == len(syncs) else None
    if len(head) >= 8 and head[4:8] in BMFF_BOXES:
        return Kind.ISO_BMFF
    if head[:3] == b"ID3" and len(head) >= 10 and head[3] in (2, 3, 4):
        end = 10 + _syncsafe(head[6:10]) + (10 if head[5] & 0x10 else 0)
        if end >= len(head):
            return Kind.ID3_AUDIO
        return _audio_kind(head[end:]) or Kind.BINARY
    return _audio_kind(head)


def _syncsafe(data: bytes) -> int:
    return (data[0] & 0x7F) << 21 | (data[1] & 0x7F) << 14 | (data[2] & 0x7F) << 7 | data[3] & 0x7F


def _audio_kind(head: bytes) -> Kind | None:
    """ADTS, MP3 or AC-3 from a frame header at the start of ``head``."""
    if len(head) < 6:
        return None
    b0, b1, b2 = head[0], head[1], head[2]
    if b0 == 0xFF and b1 & 0xF6 == 0xF0 and (b2 >> 2) & 0x0F < 13:
        return Kind.ADTS  # 12-bit sync, layer 00, a valid sampling frequency index
    if b0 == 0xFF and b1 & 0xE0 == 0xE0 and b1 & 0x06 and b2 >> 4 != 0x0F and b2 & 0x0C != 0x0C:
        return Kind.MP3  # 11-bit sync, a layer, a valid bitrate and sampling rate
    if head[:2] == b"\x0b\x77":
        bsid = head[5] >> 3
        if bsid <= 10:
            return Kind.AC3
        if bsid <= 16:
            return Kind.EAC3
    return None


def _text_kind(text: bytes) -> Kind | None:
    lower = text[:512].lower()
    if text.startswith(b"WEBVTT") and text[6:7] in (b"", b" ", b"\t", b"\r", b"\n"):
        return Kind.WEBVTT
    if text.startswith(b"#EXTM3U"):
        return Kind.M3U8
    if lower.startswith(b"ffconcat version"):
        return Kind.FFCONCAT
    if _SDP_LINE.search(text):
        return Kind.SDP
    if lower.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in lower:
        return Kind.HTML
    if lower.startswith(b"<"):
        return Kind.XML
    if lower.startswith((b"{", b"[")):
        return Kind.JSON
    return None


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(data) - 3:  # not just a character cut at the end of the head
            return False
    return True


def describe(body_or_head: bytes, size: int | None = None, content_type: str | None = None) -> str:
    """What the body is and how big: "an HTML page of 2.2 KB"; never any of its text.

    ``size`` is the whole body's (default: ``len(body_or_head)``). A ``content_type``
    that looks like a media type is added ("sent as text/html"); other values are not.
    """
    size = len(body_or_head) if size is None else size
    kind = identify(body_or_head)
    if kind is Kind.EMPTY:
        text = (
            "an empty body" if size == 0 else f"an empty body ({format_size(size)} of white space)"
        )
    else:
        text = f"{kind.value} of {format_size(size)}"
    mime = (content_type or "").split(";", 1)[0].strip()
    if _MIME.match(mime):
        text += f", sent as {mime.lower()}"
    return text


def check_segment(head: bytes, container: str | None, label: str, size: int | None = None) -> None:
    """Raise WrongContentError unless ``head`` starts what ``container`` reads.

    ``label`` names the file for people ("video segment 3 of 12 (seg-002.ts)").
    """
    accepted, expected, medium = EXPECTED[container]
    kind = identify(head)
    if kind in accepted:
        return
    raise WrongContentError(
        f"The {label} is not {expected} but {describe(head, size)}; "
        f"the server did not send {medium}."
    )


def container_of(head: bytes, label: str) -> str:
    """The container for a playlist whose URIs don't say, from its first file's bytes."""
    check_segment(head, None, label)
    return SELF_DESCRIBING[identify(head)]
