"""HLS playlists → download plans. Pure: no I/O, no clock.

``parse_playlist(text, url)`` turns the text of an M3U8 file and the URL it was
finally fetched from (after redirects) into either a :class:`MasterPlaylist`
(variants, alternate audio and subtitles to choose from) or a :class:`MediaPlan` (the
segments to fetch, with absolute URIs, byte ranges, keys and init sections).
A media playlist without ``EXT-X-ENDLIST`` (a live stream) is refused unless
``live=True``; then its plan says ``ended=False`` and holds the current window,
which may be empty (:mod:`dlstore.live` records it). ``choose_variant``,
``choose_audio_tracks`` and ``choose_subtitles`` pick from a master playlist
(``choose_audio``: the default audio alone).

``MediaPlan.container`` says which FFmpeg demuxer reads a plan's files.

Everything that goes wrong raises a :class:`~dlstore.errors.DlstoreError`
subclass; the ``m3u8`` library's own exceptions never escape. No message quotes
the fetched text: a body that is not a playlist is described by kind and size
(:func:`dlstore.sniff.describe`), a malformed playlist by line number, a refused
URI by its scheme, and URLs are shown by :func:`~dlstore.redact.redact_url` (no
user-info, query string or control characters). A playlist over the
segment limit is refused by a cheap count before the library sees it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import m3u8

from dlstore.errors import PlaylistError, QualityNotFoundError, UnsupportedStreamError
from dlstore.languages import best_match, matches_any
from dlstore.redact import escape_controls, redact_url
from dlstore.sniff import HEAD_BYTES, Kind, describe, identify

# KEYFORMAT values meaning "a plain AES key at the URI"; anything else is DRM.
PLAIN_KEY_FORMATS = (None, "", "identity")
_QUALITY_RE = re.compile(r"^(\d{2,5})p$")
#: KEYFORMATs named in messages (any other value is playlist text, never quoted).
DRM_KEY_FORMATS = {
    "com.apple.streamingkeydelivery": "FairPlay",
    "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed": "Widevine",
    "com.microsoft.playready": "PlayReady",
    "urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95": "PlayReady",
}
R = TypeVar("R", bound="MediaRendition")
SAMPLE_AES_METHODS = ("SAMPLE-AES", "SAMPLE-AES-CTR", "SAMPLE-AES-CENC")
#: The FFmpeg demuxer for segments without EXT-X-MAP, by the URI's suffix (RFC 8216 §3).
SEGMENT_CONTAINERS = {
    **dict.fromkeys((".ts", ".m2ts", ".mts", ".m2t", ".tsv", ".tsa"), "mpegts"),
    **dict.fromkeys((".aac", ".adts"), "aac"),
    ".ac3": "ac3",
    **dict.fromkeys((".ec3", ".eac3"), "eac3"),
    ".mp3": "mp3",
    **dict.fromkeys((".mp4", ".m4s", ".m4v", ".m4a", ".fmp4", ".cmfv", ".cmfa"), "mov"),
    **dict.fromkeys((".vtt", ".webvtt"), "webvtt"),
}
#: Said after the description of a body that is not a playlist.
_NOT_PLAYLIST_HINTS = {
    Kind.HTML: " (perhaps a login or error page)",
    Kind.XML: " (a DASH manifest or an error?)",
    Kind.TEXT: ", which does not start with #EXTM3U",
}


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
    """An EXT-X-MAP: encrypted with ``key`` when an AES-128 EXT-X-KEY comes before it
    (RFC 8216 §4.3.2.5), always with that key's explicit IV."""

    uri: str
    byte_range: ByteRange | None = None
    key: Key | None = None

    @property
    def iv(self) -> bytes | None:
        """The AES IV: the EXT-X-KEY's own (the parser refuses an encrypted MAP without one)."""
        return self.key.iv if self.key is not None else None


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float
    media_sequence: int
    byte_range: ByteRange | None = None
    key: Key | None = None
    init: InitSection | None = None
    discontinuity: bool = False
    #: where the segment starts on a clock every track of the stream shares (seconds): its
    #: EXT-X-PROGRAM-DATE-TIME, or a live DASH segment's presentation time; None if unknown.
    #: A live recording starts its tracks together by it (Streams, #12)
    start: float | None = None

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
    ended: bool = True  # Streams (#12): False for a live window (no EXT-X-ENDLIST)
    discontinuity_sequence: int = 0  # EXT-X-DISCONTINUITY-SEQUENCE of the first segment

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

    @property
    def container(self) -> str | None:
        """The FFmpeg demuxer for this playlist's files: ``mov`` with EXT-X-MAP, else what
        the first segment's suffix says (``mpegts``, ``aac``, …; see SEGMENT_CONTAINERS).

        ``None`` when the URIs don't say (``seg.php?n=1``): then the first file's bytes
        choose between MPEG-TS and packed audio (:func:`dlstore.sniff.container_of`).
        """
        if self.is_fmp4:
            return "mov"
        if not self.segments:
            return None
        return segment_container(self.segments[0].uri)


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    resolution: tuple[int, int] | None = None
    codecs: str | None = None
    frame_rate: float | None = None
    audio_group: str | None = None
    subtitle_group: str | None = None

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
class MediaRendition:
    """An ``EXT-X-MEDIA`` rendition with a URI (a separate media playlist)."""

    uri: str
    group_id: str | None
    name: str | None = None
    language: str | None = None
    default: bool = False

    def as_metadata(self) -> dict:
        return {"uri": self.uri, "name": self.name, "language": self.language}


@dataclass(frozen=True)
class AudioRendition(MediaRendition):
    """An ``EXT-X-MEDIA:TYPE=AUDIO`` rendition."""


@dataclass(frozen=True)
class SubtitleRendition(MediaRendition):
    """An ``EXT-X-MEDIA:TYPE=SUBTITLES`` rendition (segmented WebVTT)."""

    forced: bool = False


@dataclass(frozen=True)
class MasterPlaylist:
    url: str
    variants: tuple[Variant, ...]
    audio: tuple[AudioRendition, ...] = ()
    subtitles: tuple[SubtitleRendition, ...] = ()


# --------------------------------------------------------------------------- body checks


def decode_playlist(body: bytes, url: str, content_type: str | None = None) -> str:
    """The body as text if it looks like an M3U8 playlist, else a PlaylistError saying what
    it is instead (its kind and size, never its text)."""
    kind = identify(body[:HEAD_BYTES])
    if kind is not Kind.M3U8:
        what = describe(body[:HEAD_BYTES], len(body), content_type)
        raise PlaylistError(
            f"{redact_url(url)} did not return an HLS playlist: it returned {what}"
            f"{_NOT_PLAYLIST_HINTS.get(kind, '')}."
        )
    return body.decode("utf-8-sig", errors="replace")


# --------------------------------------------------------------------------- parsing


def parse_playlist(
    text: str, url: str, *, max_segments: int = 100_000, live: bool = False
) -> MasterPlaylist | MediaPlan:
    """Parse playlist ``text`` fetched from ``url`` (the final URL, after redirects);
    a live media playlist is refused unless ``live``."""
    if not text.lstrip("\ufeff \t\r\n").startswith("#EXTM3U"):
        raise PlaylistError(
            f"{redact_url(url)} is not an HLS playlist: it does not start with #EXTM3U."
        )
    _prescan(text, url, max_segments)
    line = _LineTracker()
    try:
        doc = m3u8.loads(text, uri=url, custom_tags_parser=line)
        map_keys = line.map_keys(doc)
    except Exception as exc:  # the library raises ValueError, KeyError, IndexError, …
        # Its message quotes the bad line: say where it is, not what it says.
        raise PlaylistError(
            f"The playlist at {redact_url(url)} is malformed: a tag near line {line.number} "
            "could not be read."
        ) from exc
    try:
        if doc.is_variant:
            return _master(doc, url)
        return _media(doc, url, max_segments, map_keys, live)
    except (PlaylistError, UnsupportedStreamError):
        raise
    except Exception as exc:
        raise PlaylistError(
            f"The playlist at {redact_url(url)} is malformed: the value of one of its tags "
            f"({type(exc).__name__}) could not be used."
        ) from exc


class _LineTracker:
    """An m3u8 ``custom_tags_parser`` that remembers the number of the tag line read, and
    the EXT-X-KEY in force at each EXT-X-MAP (the library does not tie the two together)."""

    def __init__(self) -> None:
        self.number = 0
        self._keys_at_maps: list[dict | None] = []

    def __call__(self, line: str, lineno: int, data: dict, state: dict) -> bool:
        self.number = lineno
        if line.startswith("#EXT-X-MAP"):
            self._keys_at_maps.append(state.get("current_key"))
        return False  # let the library parse the line as usual

    def map_keys(self, doc: m3u8.M3U8) -> dict[int, m3u8.Key | None]:
        """``id()`` of each EXT-X-MAP's attribute dict (what the library's segment dicts
        hold) → the EXT-X-KEY that applies to it, or None."""
        maps = doc.data.get("segment_map") or []
        return {
            id(attrs): m3u8.Key(base_uri=doc.base_uri, **key) if key else None
            for attrs, key in zip(maps, self._keys_at_maps)
        }


#: A reference that ``urljoin`` would append to its base's folder as it is: a relative
#: path of plain characters (no scheme, no "//", no dot segment), maybe with a query.
_PLAIN_REF = re.compile(
    r"[\w~%+=,@!$&'()*-][\w.~%+=,@!$&'()*/-]*(\?[\w.~%+=,@!$&'()*/:;?-]+)?", re.ASCII
)


class _Resolver:
    """:func:`_absolute` for the many URIs of one playlist: a plain relative reference
    (most segments') is joined by appending it to the base's folder, worked out once;
    any other goes through ``urljoin``. The same URL either way."""

    def __init__(self, base: str) -> None:
        self.base = base
        folder = urljoin(base, "x")[:-1]
        plain_ok = urlsplit(folder).scheme.lower() in ("http", "https")
        self._folder = folder if plain_ok else None

    def absolute(self, ref: str | None, what: str) -> str:
        if self._folder is not None and ref is not None:
            ref = ref.strip()
            path = ref.partition("?")[0]
            if _PLAIN_REF.fullmatch(ref) and "//" not in path and "/." not in path:
                return self._folder + ref
        return _absolute(self.base, ref, what)


def _absolute(base: str, ref: str | None, what: str) -> str:
    if ref is None or not ref.strip():
        raise PlaylistError(f"The playlist at {redact_url(base)} has a {what} without a URI.")
    ref = ref.strip()
    absolute = urljoin(base, ref)
    scheme = urlsplit(absolute).scheme.lower()
    if scheme not in ("http", "https") and not (what == "key" and scheme == "data"):
        raise UnsupportedStreamError(
            f"The playlist at {redact_url(base)} refers to a {what} by a {scheme[:20]}: URL; "
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
            f"The playlist at {redact_url(url)} has {segments} segments, more than the limit of "
            f"{max_segments} (max_segments)."
        )
    lines = sum(map(text.count, _LINE_BREAKS)) - text.count("\r\n")
    max_lines = LINES_PER_SEGMENT * max_segments + SPARE_LINES
    if lines > max_lines:
        raise PlaylistError(
            f"The playlist at {redact_url(url)} has {lines} lines, more than the "
            f"{max_lines} allowed for the limit of {max_segments} segments (max_segments)."
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
                subtitle_group=info.subtitles,
            )
        )
    if not variants:
        raise PlaylistError(f"The master playlist at {redact_url(url)} lists no variant streams.")
    audio, subtitles = [], []
    for media in doc.media:
        kind = (media.type or "").upper()
        if kind not in ("AUDIO", "SUBTITLES") or not media.uri:
            continue  # a rendition without URI is in the variant itself
        common = {"group_id": media.group_id, "name": media.name, "language": media.language,
                  "default": _yes(media.default)}  # fmt: skip
        if kind == "AUDIO":
            audio.append(AudioRendition(uri=_absolute(url, media.uri, "audio playlist"), **common))
        else:
            uri = _absolute(url, media.uri, "subtitle playlist")
            subtitles.append(SubtitleRendition(uri=uri, forced=_yes(media.forced), **common))
    return MasterPlaylist(url, tuple(variants), tuple(audio), tuple(subtitles))


def _yes(value: str | None) -> bool:
    return (value or "").strip().upper() == "YES"


def _media(
    doc: m3u8.M3U8, url: str, max_segments: int, map_keys: dict, live: bool = False
) -> MediaPlan:
    segments = []
    next_offset: dict[str, int] = {}  # URI → where an implicit byte range would start
    key_cache: dict[int, Key | None] = {}
    inits = _InitSections(url, map_keys)
    resolver = _Resolver(url)
    ended = bool(doc.is_endlist) or (doc.playlist_type or "").lower() == "vod"
    for position, (raw, attrs) in enumerate(_raw_segments(doc, url, max_segments, live)):
        seg_uri = resolver.absolute(raw.uri, "segment")
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
                init=inits.get(raw, attrs),
                discontinuity=bool(raw.discontinuity),
                start=_date_time(raw),
            )
        )
    target = doc.target_duration
    return MediaPlan(
        url=url,
        segments=tuple(segments),
        target_duration=float(target) if target is not None else None,
        ended=ended,
        discontinuity_sequence=max(0, int(doc.discontinuity_sequence or 0)),
    )


def _raw_segments(doc: m3u8.M3U8, url: str, max_segments: int, allowed: bool) -> list[tuple]:
    """The segments of a media playlist, within the limit; a live one only if ``allowed``
    (a live window may be empty): each the library's Segment with the attribute dict it
    was made from (one per segment, in order)."""
    if doc.is_i_frames_only:
        raise UnsupportedStreamError(
            f"The playlist at {redact_url(url)} is an I-frame-only trick-play list."
        )
    paired = zip(doc.segments, doc.data.get("segments") or [])
    raw_segments = [(s, d) for s, d in paired if s.uri is not None and s.uri.strip()]
    live = not doc.is_endlist and (doc.playlist_type or "").lower() != "vod"
    if not raw_segments and not (live and allowed):
        raise PlaylistError(f"The playlist at {redact_url(url)} lists no segments.")
    if live and not allowed:
        raise UnsupportedStreamError(
            f"The playlist at {redact_url(url)} is a live stream (it has no #EXT-X-ENDLIST); "
            'to record it, set "live": "record" in the task\'s metadata (or --live), '
            'optionally with "record_limit" in seconds.'
        )
    if len(raw_segments) > max_segments:
        raise PlaylistError(
            f"The playlist at {redact_url(url)} has {len(raw_segments)} segments, "
            f"more than the limit of {max_segments}."
        )
    return raw_segments


def _date_time(raw) -> float | None:
    """The segment's EXT-X-PROGRAM-DATE-TIME (the library carries the last one forward by
    the durations), seconds since the epoch; None without one, or if it is no time."""
    moment = raw.current_program_date_time
    try:
        return float(moment.timestamp()) if moment is not None else None
    except (AttributeError, OverflowError, OSError, ValueError):
        return None


def _duration(raw, url: str) -> float:
    duration = float(raw.duration) if raw.duration is not None else 0.0
    if not duration >= 0 or duration == float("inf"):
        raise PlaylistError(f"The playlist at {redact_url(url)} has a segment with a bad duration.")
    return duration


def _sequence(raw, implicit: int, url: str) -> int:
    """The segment's media sequence number: its own, else ``implicit`` (from its position)."""
    sequence = raw.media_sequence if raw.media_sequence is not None else implicit
    if sequence < 0 or sequence >= 2**128:
        raise PlaylistError(f"The playlist at {redact_url(url)} has a bad media sequence number.")
    return sequence


class _InitSections:
    """Each segment's init section, with the key of the EXT-X-MAP it comes from."""

    def __init__(self, url: str, map_keys: dict[int, m3u8.Key | None]) -> None:
        self._url = url
        self._map_keys = map_keys
        self._made: dict[int, InitSection] = {}  # id() of the MAP's attributes → its section

    def get(self, raw, attrs: dict) -> InitSection | None:
        if raw.init_section is None:
            return None
        map_attrs = attrs.get("init_section")
        if id(map_attrs) not in self._made:
            self._made[id(map_attrs)] = self._make(raw.init_section, map_attrs)
        return self._made[id(map_attrs)]

    def _make(self, section, map_attrs) -> InitSection:
        url = self._url
        uri = _absolute(url, section.uri, "init section (EXT-X-MAP)")
        key = _key(self._map_keys.get(id(map_attrs)), url)
        if key is not None and key.iv is None:
            raise UnsupportedStreamError(
                f"The init section {display_name(uri)} of the playlist at {redact_url(url)} is "
                "encrypted but its EXT-X-KEY has no IV, which RFC 8216 requires; dlstore cannot "
                "decrypt it."
            )
        byte_range = _byte_range(section.byterange, 0, url, "EXT-X-MAP")
        return InitSection(uri=uri, byte_range=byte_range, key=key)


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
            f"The playlist at {redact_url(url)} has a malformed {what} byte range."
        ) from None
    if offset is None:
        raise PlaylistError(
            f"The playlist at {redact_url(url)} has a {what} byte range without an offset "
            "and no earlier range of the same file to continue from."
        )
    if length <= 0 or offset < 0:
        raise PlaylistError(f"The playlist at {redact_url(url)} has an invalid {what} byte range.")
    return ByteRange(length=length, offset=offset)


def _key(key, url: str) -> Key | None:
    if key is None:
        return None
    method = (key.method or "").strip().upper()
    if method == "NONE":
        return None
    keyformat = key.keyformat
    if keyformat not in PLAIN_KEY_FORMATS:
        drm = DRM_KEY_FORMATS.get(str(keyformat).strip().lower(), "an unknown KEYFORMAT")
        raise UnsupportedStreamError(
            f"The stream at {redact_url(url)} is protected by DRM ({drm}); "
            "DRM-protected streams cannot be downloaded."
        )
    if method.startswith("SAMPLE-AES"):
        name = method if method in SAMPLE_AES_METHODS else "SAMPLE-AES"
        raise UnsupportedStreamError(
            f"The stream at {redact_url(url)} uses {name} encryption, which is not supported "
            "(only AES-128 is)."
        )
    if method != "AES-128":
        raise UnsupportedStreamError(
            f"The stream at {redact_url(url)} uses an unknown encryption method "
            "(only AES-128 is supported)."
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
        raise PlaylistError(f"The playlist at {redact_url(url)} has a malformed key IV.") from None
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
    chosen = choose_audio_tracks(master, variant, "default")
    return chosen[0] if chosen else None


def choose_audio_tracks(
    master: MasterPlaylist, variant: Variant, wanted: str | Sequence[str] = "default"
) -> tuple[AudioRendition, ...]:
    """The audio renditions of ``variant``'s AUDIO group to mux, the default one first.

    ``"default"``: the rendition marked DEFAULT=YES, else the group's first. ``"all"``:
    every rendition of the group, that one first, then the others in playlist order.
    A list of language codes, in order of preference: the first rendition in the first
    language the group offers (``pt-BR`` before ``pt-PT`` for ``pt-BR``); none offered,
    the default rendition, as for ``"default"``. Empty when the variant names no group
    (its audio, if any, is in the variant itself).
    """
    group = [a for a in master.audio if variant.audio_group and a.group_id == variant.audio_group]
    return pick_audio(group, wanted)


def pick_audio(group: Sequence[R], wanted: str | Sequence[str] = "default") -> tuple[R, ...]:
    """The renditions of one audio ``group`` to mux, the default one first, by the caller's
    ``audio`` key (see :func:`choose_audio_tracks`); HLS renditions and DASH audio
    adaptation sets alike (anything with ``language`` and ``default``)."""
    if not group:
        return ()
    default = next((a for a in group if a.default), group[0])
    if wanted == "all":
        return (default, *(a for a in group if a is not default))
    if isinstance(wanted, str):
        return (default,)
    return (best_match(wanted, group, lambda a: a.language) or default,)


def choose_subtitles(
    master: MasterPlaylist, variant: Variant, wanted: str | Sequence[str] = "all"
) -> tuple[SubtitleRendition, ...]:
    """The subtitle renditions of ``variant``'s SUBTITLES group to fetch, in playlist order.

    ``"all"``: every one; ``"none"``: none; a list of language codes: every rendition in
    one of those languages (``en`` takes ``en-US`` and ``eng`` too).
    """
    group = variant.subtitle_group
    return pick_subtitles([s for s in master.subtitles if group and s.group_id == group], wanted)


def pick_subtitles(renditions: Sequence[R], wanted: str | Sequence[str] = "all") -> tuple[R, ...]:
    """The subtitle ``renditions`` to fetch by the caller's ``subtitles`` key (see
    :func:`choose_subtitles`); HLS renditions and DASH text adaptation sets alike."""
    if wanted == "all":
        return tuple(renditions)
    if isinstance(wanted, str):
        return ()
    return tuple(s for s in renditions if matches_any(s.language, wanted))


def segment_container(uri: str) -> str | None:
    """The FFmpeg demuxer a segment URI's suffix names, or None if it names none."""
    return SEGMENT_CONTAINERS.get(_suffix(urlsplit(uri).path))


def _suffix(path: str) -> str:
    """``PurePosixPath(path).suffix.lower()`` without making a path object (per segment)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if name == ".":  # a "." component, which a path drops: rare, left to pathlib
        return PurePosixPath(path).suffix.lower()
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def display_name(uri: str) -> str:
    """The last path component of ``uri`` (no query, controls escaped), for humans."""
    path = urlsplit(uri).path if "://" in uri else uri
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return escape_controls(name[:80]) or "segment"
