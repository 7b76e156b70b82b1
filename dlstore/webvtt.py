"""WebVTT subtitle segments → one WebVTT file on the video's clock. Pure: no I/O.

An HLS subtitle rendition is a list of small WebVTT files. Each may start with an
``X-TIMESTAMP-MAP=MPEGTS:<90 kHz ticks>,LOCAL:<cue time>`` header (RFC 8216 §3.5)
saying which media timestamp its cue times are relative to; without one, cue time 0
is MPEG-TS timestamp 0. A cue that spans a segment boundary is often written into
each segment it overlaps. So:

    parse_segment(text)               → Segment (cues as written, its timestamp map)
    join(segments, reference)         → Track: cues in ms from ``reference`` (the media
                                        timestamp, 90 kHz, that the video file starts
                                        at), sorted, copies across boundaries merged
    write(track)                      → the text of one WebVTT file

A cue's time in the output is ``cue - LOCAL + (MPEGTS - reference) / 90 kHz``, the
difference taken modulo 2^33 (the MPEG-TS clock wraps after 26.5 hours). With no
reference, the first segment's MPEGTS is used. Cues ending before the start are
dropped and ones starting before it clipped. Malformed cue blocks are skipped (a
subtitle line lost is better than a download failed); ``Track.skipped`` counts them.

Times are integer milliseconds, WebVTT's own precision. Written in-house rather than
with a WebVTT library: dlstore needs the X-TIMESTAMP-MAP header, lenient reading of
what packagers write, and cue text passed through untouched, which is little code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MPEGTS_HZ = 90_000
MPEGTS_WRAP = 1 << 33
#: Two copies of a cue (same text and settings) this close or overlapping are one cue.
MERGE_GAP_MS = 20
_TIMESTAMP = re.compile(r"^(?:(\d{1,9}):)?(\d{1,2}):(\d{1,2})[.,](\d{1,3})$")
_TIMING = re.compile(r"^(\S+)[ \t]+-->[ \t]+(\S+)(?:[ \t]+(.*))?$")


@dataclass(frozen=True)
class Cue:
    start: int  # ms
    end: int  # ms
    text: str  # the cue's payload, lines joined by "\n", markup kept
    settings: str = ""  # "line:90% align:start", as written


@dataclass(frozen=True)
class Segment:
    """One WebVTT file as written: its cues on its own clock, and its timestamp map."""

    cues: tuple[Cue, ...]
    mpegts: int | None = None  # X-TIMESTAMP-MAP's MPEGTS; None: no header
    local: int = 0  # X-TIMESTAMP-MAP's LOCAL, ms
    blocks: tuple[str, ...] = ()  # STYLE and REGION blocks, verbatim
    skipped: int = 0  # malformed cue blocks left out


@dataclass(frozen=True)
class Track:
    """A whole rendition's cues on the video's clock, ready to write."""

    cues: tuple[Cue, ...]
    blocks: tuple[str, ...] = ()
    skipped: int = 0


def parse_timestamp(text: str) -> int | None:
    """``01:02:03.456`` or ``02:03.456`` (a comma too) → ms; None if it is not one."""
    match = _TIMESTAMP.match(text.strip())
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        return None
    millis = int(fraction.ljust(3, "0"))
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + millis


def format_timestamp(millis: int) -> str:
    hours, rest = divmod(max(0, millis), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def parse_segment(text: str) -> Segment:
    """The cues, timestamp map and STYLE/REGION blocks of one WebVTT file."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks = _blocks(lines)
    header = blocks.pop(0) if blocks and blocks[0][0].startswith("WEBVTT") else []
    mpegts, local = _timestamp_map(header)
    cues: list[Cue] = []
    kept: list[str] = []
    skipped = 0
    for block in blocks:
        first = block[0]
        if first.startswith(("STYLE", "REGION")) and "-->" not in first:
            if not cues:  # allowed before the first cue only
                kept.append("\n".join(block))
            continue
        if first.startswith("NOTE") and "-->" not in first:
            continue
        cue = _cue(block)
        if cue is None:
            skipped += 1
        else:
            cues.append(cue)
    return Segment(tuple(cues), mpegts, local, tuple(kept), skipped)


def _blocks(lines: list[str]) -> list[list[str]]:
    """The file's blocks: runs of non-blank lines."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _timestamp_map(header: list[str]) -> tuple[int | None, int]:
    """X-TIMESTAMP-MAP's MPEGTS and LOCAL (ms) from the header block; (None, 0) if none."""
    for line in header:
        name, sep, value = line.partition("=")
        if not sep or name.strip().upper() != "X-TIMESTAMP-MAP":
            continue
        fields = dict(part.partition(":")[::2] for part in value.split(","))
        fields = {k.strip().upper(): v.strip() for k, v in fields.items()}
        local = parse_timestamp(fields.get("LOCAL", ""))
        mpegts = fields.get("MPEGTS", "")
        if mpegts.isdigit() and local is not None:
            return int(mpegts) % MPEGTS_WRAP, local
    return None, 0


def _cue(block: list[str]) -> Cue | None:
    """A cue block (optional identifier line, timing line, payload); None if malformed."""
    timing_at = 0 if "-->" in block[0] else 1
    if len(block) <= timing_at or "-->" not in block[timing_at]:
        return None
    match = _TIMING.match(block[timing_at].strip())
    if match is None:
        return None
    start, end = parse_timestamp(match.group(1)), parse_timestamp(match.group(2))
    if start is None or end is None or end <= start:
        return None
    text = "\n".join(line.replace("-->", "--&gt;") for line in block[timing_at + 1 :])
    return Cue(start, end, text, (match.group(3) or "").strip()) if text.strip() else None


def join(segments: Iterable[Segment], reference: int | None = None) -> Track:
    """The segments' cues on one clock: ms from the media timestamp ``reference`` (90 kHz;
    None: the first segment's MPEGTS), sorted, with copies across boundaries merged."""
    cues: list[Cue] = []
    blocks: dict[str, None] = {}
    skipped = 0
    for segment in segments:
        if reference is None:
            reference = segment.mpegts or 0
        shift = _ticks_to_ms(_mpegts_delta(segment.mpegts or 0, reference)) - segment.local
        for cue in segment.cues:
            start, end = max(0, cue.start + shift), cue.end + shift
            if end > start:
                cues.append(Cue(start, end, cue.text, cue.settings))
        blocks.update(dict.fromkeys(segment.blocks))
        skipped += segment.skipped
    return Track(tuple(merge_copies(cues)), tuple(blocks), skipped)


def _mpegts_delta(value: int, reference: int) -> int:
    """``value - reference`` on the 33-bit MPEG-TS clock, in (-2^32, 2^32]."""
    delta = (value - reference) % MPEGTS_WRAP
    return delta - MPEGTS_WRAP if delta > MPEGTS_WRAP // 2 else delta


def _ticks_to_ms(ticks: int) -> int:
    return round(ticks * 1000 / MPEGTS_HZ)


def merge_copies(cues: Iterable[Cue]) -> list[Cue]:
    """Cues sorted by start; a cue with the same text and settings as an earlier one that
    overlaps or touches it (within MERGE_GAP_MS) extends that one instead."""
    merged: list[Cue] = []
    last: dict[tuple[str, str], int] = {}  # (text, settings) → index of its latest cue
    for cue in sorted(cues, key=lambda c: (c.start, c.end)):
        key = (cue.text, cue.settings)
        index = last.get(key)
        if index is not None and merged[index].end + MERGE_GAP_MS >= cue.start:
            earlier = merged[index]
            merged[index] = Cue(earlier.start, max(earlier.end, cue.end), cue.text, cue.settings)
            continue
        last[key] = len(merged)
        merged.append(cue)
    return merged


def write(track: Track) -> str:
    """The text of one WebVTT file holding ``track`` (UTF-8 when encoded)."""
    parts = ["WEBVTT", *track.blocks]
    for cue in track.cues:
        timing = f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}"
        parts.append(f"{timing} {cue.settings}".rstrip() + "\n" + cue.text)
    return "\n\n".join(parts) + "\n"
