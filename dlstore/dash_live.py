"""Live DASH (``type="dynamic"``): which segments are available now. Pure: the wall
clock is an argument (seconds since the epoch, already corrected by ``UTCTiming``).

A live MPD's segment ``k`` of a period (from 0) covers the presentation times
``[k·d, (k+1)·d)`` from the period's start, and may be fetched once it has been produced:
when ``availabilityStartTime + Period@start + (k+1)·d`` is past (ISO 23009-1 §5.3.9.5,
``availabilityTimeOffset`` not used). It stays available for ``timeShiftBufferDepth``
after that (without one, as long as the period lasts). The clock never adds a segment
the manifest does not list: none past ``@endNumber``, the timeline's entries, or the
period's end when the manifest gives one. So:

    numbered_window(...)   a ``@duration`` template: the numbers available now, computed
                           from the clock alone (the MPD need not change for them)
    available(...)         a ``SegmentTimeline``'s (number, time, duration) entries cut
                           to those available now

Both return ``(number, media time, duration)`` in the representation's timescale, as
:mod:`dlstore.dash` expands static templates; the number (``$Number$``, ``startNumber``
and its successors, or ``S@n``) is what a recording orders and deduplicates segments by.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from dlstore.timeutil import parse_ts

#: UTCTiming schemes dlstore reads: the time itself, or a URL whose body is the time.
UTC_DIRECT = ("urn:mpeg:dash:utc:direct:2014", "urn:mpeg:dash:utc:direct:2012")
UTC_HTTP = (
    "urn:mpeg:dash:utc:http-iso:2014", "urn:mpeg:dash:utc:http-xsdate:2014",
    "urn:mpeg:dash:utc:http-iso:2012", "urn:mpeg:dash:utc:http-xsdate:2012",
)  # fmt: skip
#: A server clock further than this from the local one is not believed.
MAX_CLOCK_OFFSET = 86400.0
Entry = tuple[int, int, int]  # (number, media time, duration) in timescale ticks
#: A window without timeShiftBufferDepth lists at most this many seconds back: a
#: recording starts at most MAX_START_SECONDS back anyway (dlstore.live).
MAX_WINDOW_SECONDS = 600


@dataclass(frozen=True)
class Clock:
    """Where a period sits on the wall clock and what may be fetched of it now."""

    now: float  # seconds since the epoch
    availability_start: float  # MPD@availabilityStartTime, seconds since the epoch
    period_start: Fraction  # Period@start, seconds
    depth: float | None  # MPD@timeShiftBufferDepth, seconds

    @property
    def elapsed(self) -> float:
        """Presentation seconds of the period produced by now (negative: not begun)."""
        return self.now - self.availability_start - float(self.period_start)

    @property
    def oldest(self) -> float:
        """The earliest end (presentation seconds) of a segment still available."""
        depth = self.depth if self.depth is not None else MAX_WINDOW_SECONDS
        return self.elapsed - min(depth, MAX_WINDOW_SECONDS)


def numbered_window(
    clock: Clock,
    *,
    ticks: int,
    timescale: int,
    start_number: int = 1,
    offset: int = 0,
    end_number: int | None = None,
    period_seconds: Fraction | None = None,
    limit: int = 100_000,
) -> list[Entry]:
    """The segments of a ``@duration`` template (``ticks`` long, media times from the
    ``presentationTimeOffset`` ``offset``) that are available by ``clock``: at most
    ``limit``, the newest, and none past what the manifest lists (``@endNumber``) or past
    the period's end (``period_seconds``: Period@duration, mediaPresentationDuration),
    whatever the clock says."""
    seconds = Fraction(ticks, timescale)
    last = math.floor(Fraction(clock.elapsed) / seconds) - 1  # the last one complete
    first = max(0, math.ceil(Fraction(clock.oldest) / seconds) - 1, last + 1 - limit)
    if end_number is not None:
        last = min(last, end_number - start_number)
    if period_seconds is not None:  # the period holds this many, the last one maybe cut
        last = min(last, math.ceil(period_seconds / seconds) - 1)
    return [(start_number + k, offset + k * ticks, ticks) for k in range(first, last + 1)]


def available(
    entries: Iterable[Entry], clock: Clock, *, timescale: int, offset: int = 0
) -> list[Entry]:
    """The ``entries`` (a timeline's, media times from ``offset``) that ``clock`` says
    have been produced and have not left the time-shift buffer."""
    out = []
    for number, time, ticks in entries:
        end = Fraction(time - offset + ticks, timescale)
        if clock.oldest <= end <= clock.elapsed:
            out.append((number, time, ticks))
    return out


def clock_offset(text: str, local_now: float) -> float | None:
    """Seconds to add to the local clock to get the server's, from a UTCTiming time
    (``2026-01-01T00:00:00.250Z``, an ``xs:dateTime``); None if it is not one or is
    implausibly far off."""
    try:
        moment = parse_ts(text.strip()[:64])
    except ValueError:
        return None
    if moment is None:
        return None
    offset = moment.timestamp() - local_now
    return offset if abs(offset) <= MAX_CLOCK_OFFSET else None
