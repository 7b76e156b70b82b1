"""DASH manifests (MPD) → the plan types HLS uses. Pure: no I/O, no clock.

``parse_mpd(body, url)`` turns the bytes of an MPD and the URL it was finally
fetched from into a :class:`DashManifest`: its periods, each with its video
representations and its audio adaptation sets. ``choose`` picks one video
representation per period by ``quality`` (through :func:`playlist.choose_variant`,
each representation seen as a :class:`~dlstore.playlist.Variant`) and the best
representation of the default audio adaptation set. ``representation_segments``
lists a representation's segments with absolute URLs and byte ranges, and
``join_periods`` puts those of every period, in order, into one
:class:`~dlstore.playlist.MediaPlan` (fMP4: each period's init section first).

Segments come from ``SegmentTemplate`` (``$Number$``, ``$Time$``,
``$RepresentationID$``, ``$Bandwidth$``, widths such as ``$Number%05d$``; with
``SegmentTimeline``, ``r="-1"`` included, or ``@duration``), ``SegmentList``, or
``SegmentBase``, whose segments are in a ``sidx`` box at ``indexRange``:
``representation_segments`` reads it through the ``read`` callable it is given,
the one way I/O reaches this module. ``BaseURL`` is resolved at every level
(MPD, Period, AdaptationSet, Representation) against the one above and, at the
top, the MPD's URL.

Refused, each with a sentence that says so: ``ContentProtection`` anywhere
(DRM), ``type="dynamic"`` (live), remote (``xlink:href``) periods, and any
DOCTYPE in the XML: defusedxml parses it, so entity declarations (the "billion
laughs") never expand. Segment counts are checked against ``max_segments``
before a ``SegmentTimeline`` repeat or a ``@duration`` template is expanded.
Errors are :class:`~dlstore.errors.PlaylistError` or
:class:`~dlstore.errors.UnsupportedStreamError`.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from urllib.parse import urljoin, urlsplit

import defusedxml
import defusedxml.ElementTree as SafeET

from dlstore.dash_live import Clock, Entry, available, numbered_window
from dlstore.errors import PlaylistError, QualityNotFoundError, UnsupportedStreamError
from dlstore.playlist import (
    AudioRendition,
    ByteRange,
    InitSection,
    MediaPlan,
    Segment,
    SubtitleRendition,
    Variant,
    choose_variant,
    pick_audio,
    pick_subtitles,
)
from dlstore.redact import escape_controls, redact_url
from dlstore.sidx import Reference, box_size, parse_sidx
from dlstore.sniff import HEAD_BYTES, Kind, identify
from dlstore.timeutil import parse_ts

# schemeIdUri of ContentProtection → the DRM system's name, for the refusal.
DRM_SYSTEMS = {
    "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed": "Widevine",
    "urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95": "PlayReady",
    "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e": "ClearKey",
    "urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b": "ClearKey",
    "urn:uuid:94ce86fb-07ff-4f43-adb8-93d2fa968ca2": "FairPlay",
    "urn:uuid:f239e769-efa3-4850-9c16-a903c6932efb": "Adobe Primetime",
    "urn:mpeg:dash:mp4protection:2011": "Common Encryption",
}
ROLE_SCHEME = "urn:mpeg:dash:role:2011"
TRICKMODE_SCHEME = "http://dashif.org/guidelines/trickmode"
MAX_INDEX_BOXES = 64  # sidx boxes read for one representation (nested or chained)
#: A message quotes at most this many characters of a manifest's own text (an id, a
#: MIME type, a DRM scheme), control characters escaped, and names at most MAX_NAMED
#: distinct values: the manifest is the server's, and the message lands in a row.
MAX_QUOTED_CHARS = 60
MAX_NAMED = 4
INDEX_PREFIX_BYTES = 4096  # first read of a nested sidx box (337 references)
_MPD_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?MPD[\s>/]")
_IDENTIFIER = re.compile(r"\$([^$]*)\$")
_IDENTIFIER_PARTS = re.compile(r"(\w+)(?:%0?(\d*)d)?")
_ISO_DURATION = re.compile(
    r"^P(?:(?P<D>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<H>\d+(?:\.\d+)?)H)?(?:(?P<M>\d+(?:\.\d+)?)M)?(?:(?P<S>\d+(?:\.\d+)?)S)?)?$"
)
Timed = tuple[str, float, "ByteRange | None"]  # a segment's (URL, seconds, byte range)
_VIDEO_CODECS = ("avc", "hvc", "hev", "vp0", "vp9", "av01", "dvh", "dva")
_AUDIO_CODECS = ("mp4a", "ac-3", "ec-3", "ac-4", "opus", "flac", "dts")


@dataclass(frozen=True)
class SegmentLayout:
    """How a representation lists its segments, merged over Period, AdaptationSet and
    Representation, not expanded yet (a long timeline is expanded only if chosen)."""

    kind: str  # "template", "list" or "base"
    attrs: dict[str, str]
    timeline: ET.Element | None = None
    initialization: ET.Element | None = None
    segment_urls: tuple[ET.Element, ...] = ()


@dataclass(frozen=True)
class Representation:
    id: str
    kind: str  # "video" or "audio"
    bandwidth: int
    base_url: str  # absolute: every level's BaseURL resolved
    layout: SegmentLayout = field(compare=False, repr=False)
    period_seconds: Fraction | None = None
    width: int | None = None
    height: int | None = None
    codecs: str | None = None
    frame_rate: float | None = None

    @property
    def uri(self) -> str:
        """What names this representation: its init section's URL, else its first file's."""
        init = init_section(self)
        if init is not None:
            return init.uri
        if self.layout.kind == "template":
            media = self.layout.attrs.get("media", "")
            return _absolute(self, _fill(self, media, number=_start(self), time=0))
        if self.layout.segment_urls:
            return _list_media(self, self.layout.segment_urls[0])[0]
        return self.base_url

    def as_variant(self) -> Variant:
        size = (self.width, self.height) if self.width and self.height else None
        return Variant(
            uri=self.uri, bandwidth=self.bandwidth, resolution=size, codecs=self.codecs,
            frame_rate=self.frame_rate,
        )  # fmt: skip


@dataclass(frozen=True)
class AudioSet:
    """An audio AdaptationSet: one language or mix, at several bitrates."""

    id: str | None
    representations: tuple[Representation, ...]
    language: str | None = None
    label: str | None = None
    main: bool = False  # Role "main"

    def best(self) -> Representation:
        return max(self.representations, key=lambda r: r.bandwidth)

    def as_rendition(self) -> AudioRendition:
        return AudioRendition(
            uri=self.best().uri, group_id=self.id, name=self.label, language=self.language,
            default=self.main,
        )  # fmt: skip


@dataclass(frozen=True)
class TextSet:
    """A WebVTT text AdaptationSet (subtitles): one representation, as a whole ``.vtt``
    file (``BaseURL``) or as segments (``SegmentTemplate``, ``SegmentList``)."""

    id: str | None
    representation: Representation
    language: str | None = None
    label: str | None = None
    main: bool = False  # Role "main"
    forced: bool = False  # Role "forced-subtitle"

    def as_rendition(self) -> SubtitleRendition:
        return SubtitleRendition(
            uri=self.representation.uri, group_id=self.id, name=self.label,
            language=self.language, default=self.main, forced=self.forced,
        )  # fmt: skip


@dataclass(frozen=True)
class Period:
    id: str | None
    start: Fraction
    duration: Fraction | None
    video: tuple[Representation, ...]
    audio: tuple[AudioSet, ...]
    text: tuple[TextSet, ...] = ()


@dataclass(frozen=True)
class DashManifest:
    url: str
    periods: tuple[Period, ...]
    live: LiveTiming | None = None  # a type="dynamic" manifest's timing (Streams, #12)


@dataclass(frozen=True)
class LiveTiming:
    """What a live (``type="dynamic"``) MPD says of its clock."""

    availability_start: float  # seconds since the epoch
    depth: float | None  # timeShiftBufferDepth, seconds
    update_period: float | None  # minimumUpdatePeriod, seconds (None: the MPD never changes)
    utc_timing: tuple[tuple[str, str], ...] = ()  # (schemeIdUri, value) of each UTCTiming


@dataclass(frozen=True)
class DashChoice:
    """What to download: one representation per period for the video, and for the audio."""

    video: tuple[Representation, ...]
    audio: tuple[Representation, ...]
    variant: Variant | None
    audio_rendition: AudioRendition | None
    #: further audio tracks (``"audio": "all"``): each one's rendition and representations
    more_audio: tuple[tuple[AudioRendition, tuple[Representation, ...]], ...] = ()


# --------------------------------------------------------------------------- recognising


def is_mpd(url: str, body: bytes) -> bool:
    """Whether ``body`` (fetched from ``url``) is to be read as DASH: its root element is
    ``MPD``, or the URL names an ``.mpd`` file and the body is not an HLS playlist (as
    :func:`dlstore.sniff.identify` judges one, for :func:`dlstore.playlist.decode_playlist`
    too)."""
    head = body[:HEAD_BYTES]
    if identify(head) is Kind.M3U8:
        return False
    if _MPD_ROOT.search(head):
        return True
    return urlsplit(url).path.lower().endswith(".mpd")


def parse_mpd(body: bytes, url: str, *, live: bool = False) -> DashManifest:
    """Parse the MPD ``body`` fetched from ``url`` (the final URL, after redirects); a live
    (``type="dynamic"``) one is refused unless ``live`` (the task records live streams)."""
    root = _xml_root(body, url)
    _refuse_drm(root)
    kind = (root.get("type") or "static").strip()
    if kind == "dynamic" and not live:
        raise UnsupportedStreamError(
            f'The DASH manifest at {redact_url(url)} is a live stream (type="dynamic"); '
            'to record it, set "live": "record" in the task\'s metadata (or --live), '
            'optionally with "record_limit" in seconds.'
        )
    if kind not in ("static", "dynamic"):
        raise PlaylistError(
            f"The DASH manifest at {redact_url(url)} has the unknown type {kind[:40]!r}."
        )
    base = _base(url, root, url)
    total = _seconds(root.get("mediaPresentationDuration"), "mediaPresentationDuration", url)
    periods = tuple(_periods(root, base, total, url))
    if not any(p.video or p.audio for p in periods):
        raise PlaylistError(f"The DASH manifest at {redact_url(url)} lists no video or audio.")
    timing = _live_timing(root, url) if kind == "dynamic" else None
    return DashManifest(url=url, periods=periods, live=timing)


def _live_timing(root: ET.Element, url: str) -> LiveTiming:
    start = root.get("availabilityStartTime")
    try:
        moment = parse_ts(start)
    except ValueError:
        moment = None
    if moment is None:
        raise _bad(url, "no valid @availabilityStartTime, which a live manifest needs")
    depth = _seconds(root.get("timeShiftBufferDepth"), "timeShiftBufferDepth", url)
    update = _seconds(root.get("minimumUpdatePeriod"), "minimumUpdatePeriod", url)
    timing = tuple(
        ((e.get("schemeIdUri") or "").strip(), (e.get("value") or "").strip())
        for e in _kids(root, "UTCTiming")
    )
    return LiveTiming(
        availability_start=moment.timestamp(), depth=None if depth is None else float(depth),
        update_period=None if update is None else float(update), utc_timing=timing,
    )  # fmt: skip


def _xml_root(body: bytes, url: str) -> ET.Element:
    shown = redact_url(url)
    if not body.strip():
        raise PlaylistError(f"{shown} did not return a DASH manifest: it returned an empty body.")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True)
    except (defusedxml.DefusedXmlException, ET.ParseError) as exc:
        if identify(body[:HEAD_BYTES]) is Kind.HTML:  # "<!DOCTYPE html>" included
            raise PlaylistError(
                f"{shown} did not return a DASH manifest: it returned an HTML page "
                "(perhaps a login or error page)."
            ) from exc
        if isinstance(exc, defusedxml.DefusedXmlException):
            raise PlaylistError(
                f"The DASH manifest at {shown} declares a DOCTYPE or entities; dlstore "
                "refuses them, as entities can expand without bound."
            ) from exc
        raise PlaylistError(
            f"The DASH manifest at {shown} is not well-formed XML ({exc})."
        ) from exc
    if _local(root.tag) != "MPD":
        raise PlaylistError(
            f"{shown} did not return a DASH manifest: it returned an XML document "
            f"whose root element is <{_local(root.tag)[:40]}>, not <MPD>."
        )
    return root


def _refuse_drm(root: ET.Element) -> None:
    systems = []
    for element in root.iter():
        if _local(element.tag) == "ContentProtection":
            scheme = (element.get("schemeIdUri") or "").strip().lower()
            name = DRM_SYSTEMS.get(scheme) or _quoted(scheme or "unknown")
            if name not in systems:
                systems.append(name)
    if systems:
        named = [s for s in systems if s != "Common Encryption"] or systems
        raise UnsupportedStreamError(
            f"This stream is protected by DRM ({_names(named)}); dlstore cannot download it."
        )


# --------------------------------------------------------------------------- structure


def _periods(root: ET.Element, base: str, total: Fraction | None, url: str) -> Iterator[Period]:
    elements = _kids(root, "Period")
    if not elements:
        raise PlaylistError(f"The DASH manifest at {redact_url(url)} has no Period.")
    start = Fraction(0)
    for number, element in enumerate(elements):
        if element.get("{http://www.w3.org/1999/xlink}href"):
            raise UnsupportedStreamError(
                f"The DASH manifest at {redact_url(url)} has a remote period (xlink:href); "
                "dlstore does not fetch those."
            )
        explicit = _seconds(element.get("start"), "Period@start", url)
        start = explicit if explicit is not None else start
        duration = _seconds(element.get("duration"), "Period@duration", url)
        if duration is None and number + 1 < len(elements):
            following = _seconds(elements[number + 1].get("start"), "Period@start", url)
            duration = following - start if following is not None else None
        if duration is None and total is not None and number + 1 == len(elements):
            duration = total - start
        yield _period(element, _base(base, element, url), start, duration, url)
        start = start + duration if duration is not None else start


def _period(
    element: ET.Element, base: str, start: Fraction, duration: Fraction | None, url: str
) -> Period:
    video: list[Representation] = []
    audio: list[AudioSet] = []
    text: list[TextSet] = []
    skipped: set[str] = set()
    for aset in _kids(element, "AdaptationSet"):
        if any(p.get("schemeIdUri") == TRICKMODE_SCHEME for p in _kids(aset, "EssentialProperty")):
            continue
        reps = []
        for rep_el in _kids(aset, "Representation"):
            kind = _content_kind(aset, rep_el)
            mime = (rep_el.get("mimeType") or aset.get("mimeType") or "").strip().lower()
            if kind is None or (kind == "text" and mime != "text/vtt"):
                continue  # images, and text that is not WebVTT as text (wvtt, stpp in MP4)
            if kind != "text" and mime and not mime.endswith("/mp4"):
                skipped.add(mime)
                continue
            rep_base = _base(_base(base, aset, url), rep_el, url)
            try:
                reps.append(_representation((element, aset, rep_el), rep_base, kind, duration,
                                            url))  # fmt: skip
            except (PlaylistError, UnsupportedStreamError):
                if kind != "text":
                    raise  # subtitles dlstore cannot read are left out, not fatal
        video += [r for r in reps if r.kind == "video"]
        sounds = tuple(r for r in reps if r.kind == "audio")
        if sounds:
            audio.append(_audio_set(aset, sounds))
        text += [_text_set(aset, r) for r in reps[:1] if r.kind == "text"]
    if skipped and not video and not audio:
        raise UnsupportedStreamError(
            f"The DASH manifest at {redact_url(url)} offers its media only as "
            f"{_names(sorted(_quoted(m) for m in skipped))}; dlstore downloads MP4 (fMP4) "
            "DASH streams."
        )
    return Period(element.get("id"), start, duration, tuple(video), tuple(audio), tuple(text))


def _audio_set(aset: ET.Element, reps: tuple[Representation, ...]) -> AudioSet:
    return AudioSet(id=aset.get("id"), representations=reps, language=aset.get("lang"),
                    label=_label(aset), main="main" in _roles(aset))  # fmt: skip


def _text_set(aset: ET.Element, rep: Representation) -> TextSet:
    roles = _roles(aset)
    return TextSet(id=aset.get("id"), representation=rep, language=aset.get("lang"),
                   label=_label(aset), main="main" in roles,
                   forced="forced-subtitle" in roles)  # fmt: skip


def _roles(aset: ET.Element) -> list[str | None]:
    return [r.get("value") for r in _kids(aset, "Role") if r.get("schemeIdUri") == ROLE_SCHEME]


def _label(aset: ET.Element) -> str | None:
    return aset.get("label") or next((e.text for e in _kids(aset, "Label") if e.text), None)


def _content_kind(aset: ET.Element, rep: ET.Element) -> str | None:
    """Its kind: "video", "audio", "text", or None for what dlstore does not fetch (images)."""
    kind = (aset.get("contentType") or rep.get("contentType") or "").strip().lower()
    if not kind:
        mime = rep.get("mimeType") or aset.get("mimeType") or ""
        kind = mime.strip().lower().split("/", 1)[0]
    if kind in ("video", "audio", "text"):
        return kind
    if kind:
        return None
    codecs = (rep.get("codecs") or aset.get("codecs") or "").strip().lower()
    if codecs.startswith(_VIDEO_CODECS):
        return "video"
    if codecs.startswith(_AUDIO_CODECS):
        return "audio"
    return None


def _representation(
    layers: tuple[ET.Element, ...], base: str, kind: str, period: Fraction | None, url: str
) -> Representation:
    _, aset, rep = layers
    rep_id = rep.get("id")
    if not rep_id:
        raise PlaylistError(
            f"The DASH manifest at {redact_url(url)} has a Representation without an id."
        )
    return Representation(
        id=rep_id,
        kind=kind,
        bandwidth=_int(rep.get("bandwidth"), "bandwidth", url, default=0),
        base_url=base,
        layout=_layout(layers, url, whole_file=kind == "text"),
        period_seconds=period,
        width=_int(_attr("width", rep, aset), "width", url, default=None),
        height=_int(_attr("height", rep, aset), "height", url, default=None),
        codecs=_attr("codecs", rep, aset),
        frame_rate=_frame_rate(_attr("frameRate", rep, aset)),
    )


def _layout(layers: tuple[ET.Element, ...], url: str, whole_file: bool = False) -> SegmentLayout:
    """The segment information of the innermost level that has some, with the attributes
    and children it inherits from the outer levels; with ``whole_file`` (a WebVTT text
    representation), none is one file: its BaseURL."""
    names = {"SegmentTemplate": "template", "SegmentList": "list", "SegmentBase": "base"}
    found = [(names[_local(c.tag)], c) for el in layers for c in el if _local(c.tag) in names]
    if not found and whole_file:
        return SegmentLayout("file", {})
    if not found:
        raise UnsupportedStreamError(
            f"A representation of the DASH manifest at {redact_url(url)} has no "
            "SegmentTemplate, SegmentList or SegmentBase; dlstore cannot tell its segments."
        )
    kind = found[-1][0]
    chain = [el for k, el in found if k == kind]
    attrs: dict[str, str] = {}
    for el in chain:
        attrs.update(el.attrib)
    timeline, init = _innermost(chain, "SegmentTimeline"), _innermost(chain, "Initialization")
    urls = next((tuple(_kids(el, "SegmentURL")) for el in reversed(chain)
                 if _kids(el, "SegmentURL")), ())  # fmt: skip
    return SegmentLayout(kind, attrs, timeline, init, urls)


def _innermost(chain: list[ET.Element], name: str) -> ET.Element | None:
    """The child ``name`` of the innermost element of ``chain`` that has one."""
    return next((c for el in reversed(chain) for c in _kids(el, name)), None)


# --------------------------------------------------------------------------- choosing


def choose(
    manifest: DashManifest, quality: str, audio: str | Sequence[str] = "default"
) -> DashChoice:
    """One video representation per period by ``quality`` (``best``, ``worst``, ``720p``…;
    a later period without that quality gets its lowest) and the best representation of
    each audio adaptation set chosen by ``audio`` exactly as HLS renditions are
    (:func:`dlstore.playlist.pick_audio`: ``"default"`` is Role "main", else the first;
    ``"all"``; or language codes). Audio-only streams have their first chosen audio as
    the video track, as HLS media playlists do. Periods that differ in what they have
    (video in some only, separate audio in some only) are refused."""
    periods = [p for p in manifest.periods if p.video or p.audio]
    with_video = [p for p in periods if p.video]
    if with_video and len(with_video) != len(periods):
        raise UnsupportedStreamError(
            f"The DASH manifest at {redact_url(manifest.url)} has periods without video "
            "between periods with video; dlstore cannot join those."
        )
    if any(p.audio for p in periods) and not all(p.audio for p in periods):
        raise UnsupportedStreamError(
            f"The DASH manifest at {redact_url(manifest.url)} has separate audio in some "
            "periods only; dlstore cannot join those."
        )
    tracks = _audio_tracks(periods, audio)
    if not with_video:
        return DashChoice(video=tracks[0][1], audio=(), variant=None, audio_rendition=None)
    video, variants = [], []
    for number, period in enumerate(periods):
        variant, rep = _choose_video(period, quality, first=number == 0)
        video.append(rep)
        variants.append((period.duration or 0, -number, variant))
    main = max(variants)[2]  # the longest period's, not an opening clip's
    first = tracks[0] if tracks else (None, ())
    return DashChoice(tuple(video), first[1], main, first[0], tuple(tracks[1:]))


def _audio_tracks(
    periods: list[Period], wanted: str | Sequence[str]
) -> list[tuple[AudioRendition, tuple[Representation, ...]]]:
    """The audio tracks ``wanted`` picks from the first period's sets (default first), each
    with the best representation of its set in every period (the same set by id, else by
    language and label, else that period's default)."""
    if not periods or not periods[0].audio:
        return []
    sets = periods[0].audio
    renditions = [a.as_rendition() for a in sets]
    by_rendition = {id(r): aset for r, aset in zip(renditions, sets)}
    chosen = [(r, by_rendition[id(r)]) for r in pick_audio(renditions, wanted)]
    return [
        (rendition, (aset.best(), *(_same_set(p, aset).best() for p in periods[1:])))
        for rendition, aset in chosen
    ]


def _same_set(period: Period, aset: AudioSet) -> AudioSet:
    for other in period.audio:
        if (aset.id is not None and other.id == aset.id) or (
            aset.id is None and (other.language, other.label) == (aset.language, aset.label)
        ):
            return other
    return _default_audio(period) or aset


def _choose_video(period: Period, quality: str, first: bool) -> tuple[Variant, Representation]:
    variants = [r.as_variant() for r in period.video]
    by_variant = {id(v): r for v, r in zip(variants, period.video)}
    try:
        chosen = choose_variant(variants, quality)
    except QualityNotFoundError:
        if first:
            raise
        chosen = choose_variant(variants, "worst")
    return chosen, by_variant[id(chosen)]


def choose_text(
    manifest: DashManifest, wanted: str | Sequence[str] = "all"
) -> tuple[tuple[SubtitleRendition, tuple[tuple[Fraction, Representation | None], ...]], ...]:
    """The WebVTT text sets ``wanted`` picks from the first period exactly as HLS subtitle
    renditions are (:func:`dlstore.playlist.pick_subtitles`), each with its representation
    in every period that has the same set (None in one that has not) and that period's
    start (cue times count from it)."""
    periods = [p for p in manifest.periods if p.video or p.audio]
    if not periods:
        return ()
    sets = periods[0].text
    renditions = [t.as_rendition() for t in sets]
    by_rendition = {id(r): t for r, t in zip(renditions, sets)}
    chosen = [(r, by_rendition[id(r)]) for r in pick_subtitles(renditions, wanted)]
    return tuple(
        (rendition, ((periods[0].start, text.representation),
                     *((p.start, _same_text(p, text)) for p in periods[1:])))
        for rendition, text in chosen
    )  # fmt: skip


def _same_text(period: Period, text: TextSet) -> Representation | None:
    for other in period.text:
        if (text.id is not None and other.id == text.id) or (
            text.id is None and (other.language, other.label) == (text.language, text.label)
        ):
            return other.representation
    return None


def presentation_offset(rep: Representation) -> Fraction:
    """The media time, in seconds, at which ``rep``'s period starts (presentationTimeOffset)."""
    offset = _int(rep.layout.attrs.get("presentationTimeOffset"), "presentationTimeOffset", rep,
                  default=0)  # fmt: skip
    return Fraction(offset, _timescale(rep))


def _default_audio(period: Period) -> AudioSet | None:
    return next((a for a in period.audio if a.main), period.audio[0] if period.audio else None)


# --------------------------------------------------------------------------- segments


def init_section(rep: Representation) -> InitSection | None:
    """The representation's init section (header) file or byte range, if it has one."""
    layout = rep.layout
    if layout.kind == "template":
        template = layout.attrs.get("initialization")
        if template:
            return InitSection(uri=_absolute(rep, _fill(rep, template)))
    init = layout.initialization
    if init is not None:
        source = init.get("sourceURL")
        uri = _absolute(rep, _fill(rep, source)) if source else _absolute(rep, "")
        byte_range = _range(init.get("range"), "Initialization@range", rep)
        return InitSection(uri=uri, byte_range=byte_range)
    if layout.kind == "base":
        index = _range(layout.attrs.get("indexRange"), "indexRange", rep)
        if index is not None and index.offset > 0:  # the file's header is what precedes its index
            return InitSection(uri=_absolute(rep, ""), byte_range=ByteRange(index.offset, 0))
    return None


def representation_segments(
    rep: Representation, read: Callable[[str, ByteRange], bytes], max_segments: int
) -> tuple[Segment, ...]:
    """The representation's segments in order, at most ``max_segments``.

    ``read(url, byte_range)`` returns those bytes of a file; only a SegmentBase
    representation calls it, for its sidx box.
    """
    init = init_section(rep)
    if rep.layout.kind == "file":  # a whole WebVTT file
        timed = [(_absolute(rep, ""), float(rep.period_seconds or 0), None)]
    elif rep.layout.kind == "template":
        timed = _template(rep, max_segments)
    elif rep.layout.kind == "list":
        timed = _listed(rep, max_segments)
    else:
        timed = _indexed(rep, read, max_segments)
    return tuple(
        Segment(uri=uri, duration=seconds, media_sequence=number, byte_range=byte_range, init=init)
        for number, (uri, seconds, byte_range) in enumerate(timed)
    )


def join_periods(url: str, tracks: Sequence[tuple[Segment, ...]]) -> MediaPlan:
    """One plan of every period's segments in order; a period after the first begins with
    a discontinuity (its timestamps may restart)."""
    joined: list[Segment] = []
    for period, segments in enumerate(tracks):
        for number, segment in enumerate(segments):
            joined.append(replace(segment, media_sequence=len(joined),
                                  discontinuity=period > 0 and number == 0))  # fmt: skip
    if not joined:
        raise PlaylistError(f"The DASH manifest at {redact_url(url)} lists no segments.")
    return MediaPlan(url=url, segments=tuple(joined))


def live_segments(rep: Representation, clock: Clock | None, limit: int) -> tuple[Segment, ...]:
    """A live representation's segments available by ``clock`` (None: every one, the
    manifest having become static), numbered by ``$Number$``: what a recording orders and
    takes them by (:mod:`dlstore.live`). Only ``SegmentTemplate`` streams are recorded."""
    if rep.layout.kind != "template":
        raise UnsupportedStreamError(
            f"The live DASH representation {_id(rep)} lists its segments with a "
            f"{'SegmentList' if rep.layout.kind == 'list' else 'SegmentBase'}; dlstore records "
            "live DASH streams with a SegmentTemplate."
        )
    media = rep.layout.attrs.get("media")
    if not media:
        raise _bad(rep, "a SegmentTemplate without @media")
    init, scale = init_section(rep), _timescale(rep)
    offset = _int(rep.layout.attrs.get("presentationTimeOffset"), "presentationTimeOffset", rep,
                  default=0)  # fmt: skip
    return tuple(
        Segment(
            uri=_absolute(rep, _fill(rep, media, number=number, time=time)),
            duration=ticks / scale,
            media_sequence=number,
            init=init,
            start=(time - offset) / scale,  # on the period's clock, as every track's
        )  # fmt: skip
        for number, time, ticks in _live_entries(rep, clock, limit)
    )


def _live_entries(rep: Representation, clock: Clock | None, limit: int) -> list[Entry]:
    attrs, scale = rep.layout.attrs, _timescale(rep)
    offset = _int(attrs.get("presentationTimeOffset"), "presentationTimeOffset", rep, default=0)
    if clock is None:
        return _timeline(rep, limit) if rep.layout.timeline is not None else _numbered(rep, limit)
    if rep.layout.timeline is not None:
        produced = Fraction(max(0.0, clock.elapsed))  # ``r="-1"`` repeats up to now, and no
        if rep.period_seconds is not None:  # further than the period's end
            produced = min(produced, rep.period_seconds)
        cut = replace(rep, period_seconds=produced)
        return available(_timeline(cut, limit), clock, timescale=scale, offset=offset)
    ticks = _int(attrs.get("duration"), "SegmentTemplate@duration", rep, default=None)
    if ticks is None or ticks <= 0:
        raise _bad(rep, "a SegmentTemplate with neither a SegmentTimeline nor a positive @duration")
    last = _int(attrs.get("endNumber"), "endNumber", rep, default=None)
    return numbered_window(clock, ticks=ticks, timescale=scale, start_number=_start(rep),
                           offset=offset, end_number=last, period_seconds=rep.period_seconds,
                           limit=limit)  # fmt: skip


def _template(rep: Representation, limit: int) -> list[Timed]:
    attrs = rep.layout.attrs
    media = attrs.get("media")
    if not media:
        raise _bad(rep, "a SegmentTemplate without @media")
    scale = _timescale(rep)
    entries = _timeline(rep, limit) if rep.layout.timeline is not None else _numbered(rep, limit)
    return [
        (_absolute(rep, _fill(rep, media, number=number, time=time)), ticks / scale, None)
        for number, time, ticks in entries
    ]


def _timeline(rep: Representation, limit: int) -> list[tuple[int, int, int]]:
    """(number, time, duration) of each segment of the SegmentTimeline, ``r`` expanded;
    ``r="-1"`` repeats up to the next ``S@t``, else to the period's end."""
    assert rep.layout.timeline is not None
    entries = _kids(rep.layout.timeline, "S")
    out: list[tuple[int, int, int]] = []
    number, time = _start(rep), 0
    for position, s in enumerate(entries):
        time = _int(s.get("t"), "S@t", rep, default=time)
        number = _int(s.get("n"), "S@n", rep, default=number)
        ticks = _int(s.get("d"), "S@d", rep, default=None)
        repeat = _int(s.get("r"), "S@r", rep, default=0, low=-1)
        if ticks is None or ticks <= 0:
            raise _bad(rep, "a SegmentTimeline entry without a positive @d")
        if repeat >= 0:
            count = repeat + 1
        else:
            following = entries[position + 1].get("t") if position + 1 < len(entries) else None
            end = _int(following, "S@t", rep, default=None) if following else _end_ticks(rep)
            count = max(0, math.ceil(Fraction(end - time, ticks)))
        _check_count(rep, len(out) + count, limit)
        out.extend((number + k, time + k * ticks, ticks) for k in range(count))
        number, time = number + count, time + count * ticks
    return out


def _numbered(rep: Representation, limit: int) -> list[tuple[int, int, int]]:
    """(number, time, duration) of each segment of a ``@duration`` template: as many as
    fill the period (or up to ``@endNumber``), the last one cut to the period's end."""
    attrs = rep.layout.attrs
    ticks = _int(attrs.get("duration"), "SegmentTemplate@duration", rep, default=None)
    if ticks is None or ticks <= 0:
        raise _bad(rep, "a SegmentTemplate with neither a SegmentTimeline nor a positive @duration")
    first = _start(rep)
    offset = _int(attrs.get("presentationTimeOffset"), "presentationTimeOffset", rep, default=0)
    last = _int(attrs.get("endNumber"), "endNumber", rep, default=None)
    end = None if last is not None else _end_ticks(rep)
    count = last - first + 1 if last is not None else math.ceil(Fraction(end - offset, ticks))
    _check_count(rep, count, limit)
    out = []
    for k in range(max(0, count)):
        time = offset + k * ticks
        length = ticks if end is None else min(ticks, math.ceil(end - time))
        out.append((first + k, time, length))
    return out


def _listed(rep: Representation, limit: int) -> list[Timed]:
    urls = rep.layout.segment_urls
    if not urls:
        raise _bad(rep, "a SegmentList without SegmentURL elements")
    _check_count(rep, len(urls), limit)
    scale = _timescale(rep)
    if rep.layout.timeline is not None:
        durations = [ticks / scale for _, _, ticks in _timeline(rep, limit)]
    else:
        ticks = _int(rep.layout.attrs.get("duration"), "SegmentList@duration", rep, default=None)
        whole = float(rep.period_seconds or 0)
        durations = [ticks / scale if ticks else whole / len(urls)] * len(urls)
    if len(durations) < len(urls):
        raise _bad(rep, "a SegmentList with more SegmentURLs than its SegmentTimeline times")
    out: list[Timed] = []
    for element, seconds in zip(urls, durations):
        uri, byte_range = _list_media(rep, element)
        out.append((uri, seconds, byte_range))
    return out


def _list_media(rep: Representation, element: ET.Element) -> tuple[str, ByteRange | None]:
    uri = _absolute(rep, element.get("media") or "")
    return uri, _range(element.get("mediaRange"), "SegmentURL@mediaRange", rep)


def _indexed(
    rep: Representation, read: Callable[[str, ByteRange], bytes], limit: int
) -> list[Timed]:
    """The subsegments a SegmentBase's sidx box lists, in order, following the sidx boxes
    it points at (hierarchical or daisy-chained indexes), at most MAX_INDEX_BOXES of them."""
    index = _range(rep.layout.attrs.get("indexRange"), "SegmentBase@indexRange", rep)
    if index is None:
        raise UnsupportedStreamError(
            f"The DASH representation {_id(rep)} is one file without an index "
            "(SegmentBase@indexRange); dlstore cannot split it into segments."
        )
    uri = _absolute(rep, "")

    def references(where: ByteRange, whole: bool) -> Iterator[tuple[Reference, float]]:
        data = read(uri, where) if whole else _read_box(read, uri, where)
        sidx = parse_sidx(data, where.offset)
        return iter([(ref, sidx.seconds(ref)) for ref in sidx.references])

    out: list[Timed] = []
    stack = [references(index, whole=True)]
    boxes = 1
    while stack:
        ref, seconds = next(stack[-1], (None, 0.0))
        if ref is None:
            stack.pop()
        elif not ref.is_index:
            _check_count(rep, len(out) + 1, limit)
            out.append((uri, seconds, ref.byte_range))
        elif boxes >= MAX_INDEX_BOXES:
            raise _bad(rep, f"an index of more than {MAX_INDEX_BOXES} sidx boxes")
        else:
            boxes += 1
            stack.append(references(ref.byte_range, whole=False))
    return out


def _read_box(read: Callable[[str, ByteRange], bytes], uri: str, where: ByteRange) -> bytes:
    """The sidx box at the start of ``where``, without the subsegments after it that the
    reference's range also covers: a short read, then one of the box's size if longer."""
    head = read(uri, ByteRange(min(where.length, INDEX_PREFIX_BYTES), where.offset))
    size = box_size(head)
    if size is not None and len(head) < size <= where.length:
        head = read(uri, ByteRange(size, where.offset))
    return head


# --------------------------------------------------------------------------- values


def _local(tag: object) -> str:
    """An element's name without its namespace (MPDs come with several namespace URIs)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _kids(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _attr(name: str, *elements: ET.Element) -> str | None:
    """The attribute from the first (innermost) element that has it."""
    return next((el.get(name) for el in elements if el.get(name) is not None), None)


def _base(parent: str, element: ET.Element, url: str) -> str:
    """``parent`` with the element's first BaseURL resolved against it (the others are
    alternative servers)."""
    for child in _kids(element, "BaseURL"):
        text = (child.text or "").strip()
        if text:
            return urljoin(parent, text)
    return parent


def _absolute(rep: Representation, ref: str) -> str:
    uri = urljoin(rep.base_url, ref.strip()) if ref and ref.strip() else rep.base_url
    if urlsplit(uri).scheme.lower() not in ("http", "https"):
        raise UnsupportedStreamError(
            f"The DASH representation {_id(rep)} refers to {redact_url(uri)}; "
            "only http and https URLs are supported."
        )
    return uri


def _fill(rep: Representation, template: str, *, number=None, time=None) -> str:
    """``template`` with its $identifier$s (and ``%0Nd`` widths) filled in."""
    values = {"RepresentationID": rep.id, "Bandwidth": rep.bandwidth, "Number": number,
              "Time": time}  # fmt: skip

    def substitute(match: re.Match) -> str:
        if not match.group(1):
            return "$"  # "$$" is a literal dollar sign
        parts = _IDENTIFIER_PARTS.fullmatch(match.group(1))
        name, width = parts.groups() if parts else (match.group(1), None)
        value = values.get(name) if parts else None
        if value is None:
            raise _bad(rep, f"the identifier ${_quoted(name)}$ in {template[:80]!r}, which "
                            "cannot be filled there")  # fmt: skip
        text = str(value)
        return text.zfill(int(width)) if width and name != "RepresentationID" else text

    return _IDENTIFIER.sub(substitute, template)


def _start(rep: Representation) -> int:
    return _int(rep.layout.attrs.get("startNumber"), "startNumber", rep, default=1)


def _timescale(rep: Representation) -> int:
    scale = _int(rep.layout.attrs.get("timescale"), "timescale", rep, default=1)
    if scale <= 0:
        raise _bad(rep, "a timescale of 0")
    return scale


def _end_ticks(rep: Representation) -> Fraction:
    """Where the period ends, in the representation's timescale (as its media times count)."""
    if rep.period_seconds is None:
        raise _bad(rep, "segments up to the end of a period whose length is unknown "
                        "(no Period@duration or MPD@mediaPresentationDuration)")  # fmt: skip
    offset = _int(rep.layout.attrs.get("presentationTimeOffset"), "presentationTimeOffset", rep,
                  default=0)  # fmt: skip
    return offset + rep.period_seconds * _timescale(rep)


def _check_count(rep: Representation, count: int, limit: int) -> None:
    if count > limit:
        raise PlaylistError(
            f"The DASH representation {_id(rep)} has {count} segments, "
            f"more than the limit of {limit}."
        )


def _range(value: str | None, name: str, where: Representation) -> ByteRange | None:
    """A DASH byte range ``first-last`` (both inclusive)."""
    if value is None:
        return None
    first, dash, last = value.strip().partition("-")
    try:
        start, end = int(first), int(last)
    except ValueError:
        raise _bad(where, f"a malformed {name} {value[:40]!r}") from None
    if not dash or start < 0 or end < start:
        raise _bad(where, f"an invalid {name} {value[:40]!r}")
    return ByteRange(length=end - start + 1, offset=start)


def _int(value: str | None, name: str, where, *, default, low: int = 0):
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise _bad(where, f"a malformed @{name} {value[:40]!r}") from None
    if number < low:
        raise _bad(where, f"an invalid @{name} {value[:40]!r}")
    return number


def _seconds(value: str | None, name: str, url: str) -> Fraction | None:
    """An ISO 8601 duration (``PT1H2M3.5S``, ``P1DT2H``) in seconds, exactly."""
    if value is None or not value.strip():
        return None
    match = _ISO_DURATION.match(value.strip())
    if not match or value.strip() in ("P", "PT"):
        raise _bad(url, f"a malformed @{name} {value[:40]!r}")
    scale = {"D": 86400, "H": 3600, "M": 60, "S": 1}
    return sum((Fraction(v) * scale[k] for k, v in match.groupdict().items() if v), Fraction(0))


def _frame_rate(value: str | None) -> float | None:
    try:
        return float(Fraction(value.strip())) if value else None
    except (ValueError, ZeroDivisionError):
        return None


def _quoted(text: str) -> str:
    """Some of the manifest's own text, as a message shows it: cut, controls escaped."""
    return escape_controls(text[:MAX_QUOTED_CHARS])


def _names(values: Sequence[str]) -> str:
    """``a, b, c, d and 3 more``: at most MAX_NAMED of ``values``."""
    shown = ", ".join(values[:MAX_NAMED])
    return shown if len(values) <= MAX_NAMED else f"{shown} and {len(values) - MAX_NAMED} more"


def _id(rep: Representation) -> str:
    """A representation's id as a message quotes it (its repr escapes controls), cut."""
    return repr(rep.id[:MAX_QUOTED_CHARS])


def _bad(where: Representation | str, what: str) -> PlaylistError:
    if isinstance(where, Representation):
        return PlaylistError(f"The DASH representation {_id(where)} has {what}.")
    return PlaylistError(f"The DASH manifest at {redact_url(where)} has {what}.")
