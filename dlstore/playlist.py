"""HLS playlists → download plans. Pure: no I/O, no clock.

``parse_playlist(text, url)`` turns the text of an M3U8 file and the URL it was
finally fetched from (after redirects) into either a :class:`MasterPlaylist`
(variants and alternate audio to choose from) or a :class:`MediaPlan` (the
segments to fetch, with absolute URIs, byte ranges, keys and init sections).
``choose_variant`` and ``choose_audio`` pick from a master playlist.

Everything that goes wrong raises a :class:`~dlstore.errors.DlstoreError`
subclass; the ``m3u8`` library's own exceptions never escape. A playlist over the
segment limit is refused by a cheap count before the library sees it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import m3u8

from dlstore.errors import PlaylistError, QualityNotFoundError, UnsupportedStreamError

SUPPORTED_KEY_METHODS = ("NONE", "AES-128")
# KEYFORMAT values meaning "a plain AES key at the URI"; anything else is DRM.
PLAIN_KEY_FORMATS = (None, "", "identity")
_QUALITY_RE = re.compile(r"^(\d{2,5})p$")


@dataclass(frozen=True)
class ByteRange:
    """``length`` bytes starting at ``offset`` (both resolved, never implicit)."""

    length: int
    offset: int

    @property
    def last(self) -> int:
        """The last byte's offset, as an HTTP Range header wants it."""
        return self.offset + self.length - 1


@dataclass(frozen=True)
class Key:
    method: str  # always "AES-128" (NONE means no Key at all)
    uri: str
    iv: bytes | None  # from the IV attribute; None means "use the media sequence number"


@dataclass(frozen=True)
class InitSection:
    uri: str
    byte_range: ByteRange | None = None


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float
    media_sequence: int
    byte_range: ByteRange | None = None
    key: Key | None = None
    init: InitSection | None = None
    discontinuity: bool = False

    @property
    def iv(self) -> bytes | None:
        """The AES IV: the tag's, else the media sequence number as 16 big-endian bytes."""
        if self.key is None:
            return None
        if self.key.iv is not None:
            return self.key.iv
        return self.media_sequence.to_bytes(16, "big")

    @property
    def name(self) -> str:
        """A short human name for progress lines and errors, e.g. ``seg-092.ts``."""
        return display_name(self.uri)


@dataclass(frozen=True)
class MediaPlan:
    """One media playlist: the segments to fetch, in order."""

    url: str
    segments: tuple[Segment, ...]
    target_duration: float | None = None

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def init_sections(self) -> tuple[InitSection, ...]:
        """Distinct init sections in the order they first appear."""
        seen: dict[InitSection, None] = {}
        for seg in self.segments:
            if seg.init is not None:
                seen.setdefault(seg.init, None)
        return tuple(seen)

    @property
    def is_fmp4(self) -> bool:
        return any(s.init is not None for s in self.segments)


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    resolution: tuple[int, int] | None = None
    codecs: str | None = None
    frame_rate: float | None = None
    audio_group: str | None = None

    @property
    def height(self) -> int | None:
        return self.resolution[1] if self.resolution else None

    @property
    def label(self) -> str:
        if self.height:
            return f"{self.height}p"
        return f"{self.bandwidth // 1000} kb/s"

    def as_metadata(self) -> dict:
        return {
            "resolution": f"{self.resolution[0]}x{self.resolution[1]}" if self.resolution else None,
            "bandwidth": self.bandwidth,
            "codecs": self.codecs,
            "uri": self.uri,
        }


@dataclass(frozen=True)
class AudioRendition:
    uri: str
    group_id: str | None
    name: str | None = None
    language: str | None = None
    default: bool = False

    def as_metadata(self) -> dict:
        return {"uri": self.uri, "name": self.name, "language": self.language}


@dataclass(frozen=True)
class MasterPlaylist:
    url: str
    variants: tuple[Variant, ...]
    audio: tuple[AudioRendition, ...] = ()


# --------------------------------------------------------------------------- body checks


def decode_playlist(body: bytes, url: str, content_type: str | None = None) -> str:
    """The body as text if it looks like an M3U8 playlist, else a PlaylistError saying what
    it is instead."""
    what = _describe_non_playlist(body, content_type)
    if what is not None:
        raise PlaylistError(f"{url} did not return an HLS playlist: it returned {what}.")
    return body.decode("utf-8-sig", errors="replace")


def _describe_non_playlist(body: bytes, content_type: str | None) -> str | None:
    stripped = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        return "an empty body"
    if stripped.startswith(b"#EXTM3U"):
        return None
    head = stripped[:512].lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "an HTML page (perhaps a login or error page)"
    if head.startswith(b"<?xml") or head.startswith(b"<mpd"):
        return "an XML document (a DASH manifest or an error?)"
    if head.startswith((b"{", b"[")):
        try:
            value = json.loads(stripped[:65536].decode("utf-8", errors="replace"))
        except ValueError:
            return "JSON-like text"
        if isinstance(value, dict):
            detail = next(
                (str(value[k]) for k in ("error", "message", "detail") if k in value), None
            )
            if detail:
                return f"a JSON document ({detail[:120]})"
        return "a JSON document"
    if stripped[:1] == b"\x47" or b"\x00" in stripped[:512]:
        return f"binary data ({len(body)} bytes{_ctype(content_type)}), not text"
    try:
        stripped[:512].decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data ({len(body)} bytes{_ctype(content_type)}), not text"
    first = stripped.split(b"\n", 1)[0][:80].decode("utf-8", errors="replace").strip()
    return f"text that does not start with #EXTM3U (first line: {first!r})"


def _ctype(content_type: str | None) -> str:
    return f", {content_type}" if content_type else ""


# --------------------------------------------------------------------------- parsing


def parse_playlist(
    text: str, url: str, *, max_segments: int = 100_000
) -> MasterPlaylist | MediaPlan:
    """Parse playlist ``text`` fetched from ``url`` (the final URL, after redirects)."""
    if not text.lstrip("\ufeff \t\r\n").startswith("#EXTM3U"):
        raise PlaylistError(f"{url} is not an HLS playlist: it does not start with #EXTM3U.")
    _prescan(text, url, max_segments)
    try:
        doc = m3u8.loads(text, uri=url)
    except Exception as exc:  # the library raises ValueError, KeyError, IndexError, …
        raise PlaylistError(f"The playlist at {url} is malformed: {_brief(exc)}.") from exc
    try:
        if doc.is_variant:
            return _master(doc, url)
        return _media(doc, url, max_segments)
    except (PlaylistError, UnsupportedStreamError):
        raise
    except Exception as exc:
        raise PlaylistError(f"The playlist at {url} is malformed: {_brief(exc)}.") from exc


def _brief(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


def _absolute(base: str, ref: str | None, what: str) -> str:
    if ref is None or not ref.strip():
        raise PlaylistError(f"The playlist at {base} has a {what} without a URI.")
    ref = ref.strip()
    absolute = urljoin(base, ref)
    scheme = urlsplit(absolute).scheme.lower()
    if scheme not in ("http", "https") and not (what == "key" and scheme == "data"):
        raise UnsupportedStreamError(
            f"The playlist at {base} refers to a {what} at {ref!r}; "
            "only http and https URLs are supported."
        )
    return absolute


#: What ``str.splitlines`` (and so the m3u8 library) ends a line with.
_LINE_BREAKS = ("\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
#: Lines a playlist may have per segment of max_segments (its tags and its URI), plus a margin.
LINES_PER_SEGMENT = 4
SPARE_LINES = 1000


def _prescan(text: str, url: str, max_segments: int) -> None:
    """Refuse a playlist over the segment limit before the m3u8 library parses it.

    The library costs about 1 KB and 5 µs a line; this counts ``#EXTINF`` tags (one
    per segment) and lines with ``str.count``, at C speed and without a copy.
    """
    segments = text.count("#EXTINF")
    if segments > max_segments:
        raise PlaylistError(
            f"The playlist at {url} has {segments} segments, more than the limit of "
            f"{max_segments} (max_segments)."
        )
    lines = sum(map(text.count, _LINE_BREAKS)) - text.count("\r\n")
    max_lines = LINES_PER_SEGMENT * max_segments + SPARE_LINES
    if lines > max_lines:
        raise PlaylistError(
            f"The playlist at {url} has {lines} lines, more than the {max_lines} allowed "
            f"for the limit of {max_segments} segments (max_segments)."
        )


def _master(doc: m3u8.M3U8, url: str) -> MasterPlaylist:
    variants = []
    for pl in doc.playlists:
        info = pl.stream_info
        variants.append(
            Variant(
                uri=_absolute(url, pl.uri, "variant playlist"),
                bandwidth=int(info.bandwidth or 0),
                resolution=tuple(info.resolution) if info.resolution else None,
                codecs=info.codecs,
                frame_rate=info.frame_rate,
                audio_group=info.audio,
            )
        )
    if not variants:
        raise PlaylistError(f"The master playlist at {url} lists no variant streams.")
    audio = []
    for media in doc.media:
        if (media.type or "").upper() != "AUDIO" or not media.uri:
            continue
        audio.append(
            AudioRendition(
                uri=_absolute(url, media.uri, "audio playlist"),
                group_id=media.group_id,
                name=media.name,
                language=media.language,
                default=(media.default or "").upper() == "YES",
            )
        )
    return MasterPlaylist(url=url, variants=tuple(variants), audio=tuple(audio))


def _media(doc: m3u8.M3U8, url: str, max_segments: int) -> MediaPlan:
    segments = []
    next_offset: dict[str, int] = {}  # URI → where an implicit byte range would start
    key_cache: dict[int, Key | None] = {}
    for position, raw in enumerate(_raw_segments(doc, url, max_segments)):
        seg_uri = _absolute(url, raw.uri, "segment")
        byte_range = _byte_range(raw.byterange, next_offset.get(seg_uri), url, "segment")
        if byte_range is not None:
            next_offset[seg_uri] = byte_range.offset + byte_range.length
        duration = _duration(raw, url)
        sequence = _sequence(raw, (doc.media_sequence or 0) + position, url)
        key_obj = raw.key
        if id(key_obj) not in key_cache:
            key_cache[id(key_obj)] = _key(key_obj, url)
        segments.append(
            Segment(
                uri=seg_uri,
                duration=duration,
                media_sequence=sequence,
                byte_range=byte_range,
                key=key_cache[id(key_obj)],
                init=_init_section(raw, url),
                discontinuity=bool(raw.discontinuity),
            )
        )
    target = doc.target_duration
    return MediaPlan(
        url=url,
        segments=tuple(segments),
        target_duration=float(target) if target is not None else None,
    )


def _raw_segments(doc: m3u8.M3U8, url: str, max_segments: int) -> list:
    """The segments of a finished media playlist, within the limit."""
    if doc.is_i_frames_only:
        raise UnsupportedStreamError(f"The playlist at {url} is an I-frame-only trick-play list.")
    raw_segments = [s for s in doc.segments if s.uri is not None and s.uri.strip()]
    if not raw_segments:
        raise PlaylistError(f"The playlist at {url} lists no segments.")
    if not doc.is_endlist and (doc.playlist_type or "").lower() != "vod":
        raise UnsupportedStreamError(
            f"The playlist at {url} is a live stream (it has no #EXT-X-ENDLIST); "
            "dlstore only downloads finished (VOD) streams."
        )
    if len(raw_segments) > max_segments:
        raise PlaylistError(
            f"The playlist at {url} has {len(raw_segments)} segments, "
            f"more than the limit of {max_segments}."
        )
    return raw_segments


def _duration(raw, url: str) -> float:
    duration = float(raw.duration) if raw.duration is not None else 0.0
    if not duration >= 0 or duration == float("inf"):
        raise PlaylistError(f"The playlist at {url} has a segment with a bad duration.")
    return duration


def _sequence(raw, implicit: int, url: str) -> int:
    """The segment's media sequence number: its own, else ``implicit`` (from its position)."""
    sequence = raw.media_sequence if raw.media_sequence is not None else implicit
    if sequence < 0 or sequence >= 2**128:
        raise PlaylistError(f"The playlist at {url} has a bad media sequence number.")
    return sequence


def _init_section(raw, url: str) -> InitSection | None:
    if raw.init_section is None:
        return None
    return InitSection(
        uri=_absolute(url, raw.init_section.uri, "init section (EXT-X-MAP)"),
        byte_range=_byte_range(raw.init_section.byterange, 0, url, "EXT-X-MAP"),
    )


def _byte_range(value: str | None, implicit_offset: int | None, url: str, what: str):
    if value is None:
        return None
    text = str(value).strip().strip('"')
    length_text, _, offset_text = text.partition("@")
    try:
        length = int(length_text)
        offset = int(offset_text) if offset_text else implicit_offset
    except ValueError:
        raise PlaylistError(
            f"The playlist at {url} has a malformed {what} byte range {text!r}."
        ) from None
    if offset is None:
        raise PlaylistError(
            f"The playlist at {url} has a {what} byte range {text!r} without an offset "
            "and no earlier range of the same file to continue from."
        )
    if length <= 0 or offset < 0:
        raise PlaylistError(f"The playlist at {url} has an invalid {what} byte range {text!r}.")
    return ByteRange(length=length, offset=offset)


def _key(key, url: str) -> Key | None:
    if key is None:
        return None
    method = (key.method or "").strip().upper()
    if method == "NONE":
        return None
    keyformat = key.keyformat
    if keyformat not in PLAIN_KEY_FORMATS:
        raise UnsupportedStreamError(
            f"The stream at {url} is protected by DRM (KEYFORMAT {keyformat!r}); "
            "DRM-protected streams cannot be downloaded."
        )
    if method.startswith("SAMPLE-AES"):
        raise UnsupportedStreamError(
            f"The stream at {url} uses {method} encryption, which is not supported "
            "(only AES-128 is)."
        )
    if method != "AES-128":
        raise UnsupportedStreamError(
            f"The stream at {url} uses the unknown encryption method {method or '(none)'!r}."
        )
    return Key(method=method, uri=_absolute(url, key.uri, "key"), iv=_iv(key.iv, url))


def _iv(value: str | None, url: str) -> bytes | None:
    if value is None:
        return None
    text = str(value).strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        number = int(text, 16)
        if not text or len(text) > 32:
            raise ValueError
    except ValueError:
        raise PlaylistError(f"The playlist at {url} has a malformed key IV {value!r}.") from None
    return number.to_bytes(16, "big")


# --------------------------------------------------------------------------- choosing


def available_qualities(variants: tuple[Variant, ...] | list[Variant]) -> list[str]:
    """Distinct quality labels, best first."""
    labels: list[str] = []
    for v in sorted(variants, key=_rank, reverse=True):
        if v.label not in labels:
            labels.append(v.label)
    return labels


def _rank(v: Variant) -> tuple[int, int]:
    return (v.height or 0, v.bandwidth)


def choose_variant(variants: tuple[Variant, ...] | list[Variant], quality: str) -> Variant:
    """``"best"``, ``"worst"`` or ``"<height>p"``: that height, else the nearest lower one.

    Among variants of the same height the highest bandwidth wins.
    """
    if not variants:
        raise PlaylistError("The master playlist lists no variant streams.")
    wanted = (quality or "best").strip().lower()
    if wanted == "best":
        return max(variants, key=_rank)
    if wanted == "worst":
        return min(variants, key=lambda v: (v.height or 0, v.bandwidth))
    match = _QUALITY_RE.match(wanted)
    offered = ", ".join(available_qualities(variants))
    if not match:
        raise QualityNotFoundError(
            f"Unknown quality {quality!r}: use best, worst or a height such as 720p "
            f"(this stream offers {offered})."
        )
    height = int(match.group(1))
    candidates = [v for v in variants if v.height is not None and v.height <= height]
    if not candidates:
        raise QualityNotFoundError(
            f"The stream offers no quality at or below {height}p; it offers {offered}."
        )
    return max(candidates, key=_rank)


def choose_audio(master: MasterPlaylist, variant: Variant) -> AudioRendition | None:
    """The separate audio to mux with ``variant``: its group's default, else the group's first."""
    if not variant.audio_group:
        return None
    group = [a for a in master.audio if a.group_id == variant.audio_group]
    if not group:
        return None
    return next((a for a in group if a.default), group[0])


def display_name(uri: str) -> str:
    """The last path component of ``uri`` (no query), for humans."""
    path = urlsplit(uri).path if "://" in uri else uri
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name[:80] or "segment"
