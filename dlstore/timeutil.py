"""Timestamps as the contract writes them: RFC 3339, UTC, ``Z``.

dlstore writes one fixed-width form, ``2025-01-13T10:00:00.123456Z``, so that
text comparisons in SQL (lease expiry, delayed retries) order like time. It reads
any RFC 3339 form the Rust API may write (offsets, ``z``, a space for ``T``,
nanoseconds).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def format_ts(moment: datetime) -> str:
    """``2025-01-13T10:00:00.123456Z`` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_ts() -> str:
    return format_ts(utcnow())


def ts_after(seconds: float, start: datetime | None = None) -> str:
    return format_ts((start or utcnow()) + timedelta(seconds=seconds))


def parse_ts(text: str | None) -> datetime | None:
    """Parse any RFC 3339 timestamp into an aware UTC datetime.

    A timestamp without an offset is taken as UTC (SQLite's own CURRENT_TIMESTAMP
    writes that form). Returns None for None or an empty string; raises
    ValueError for anything else that is not a timestamp.
    """
    if text is None or not text.strip():
        return None
    match = _RFC3339.match(text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second, frac, _z, sign, off_h, off_m = match.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(offset if sign == "+" else -offset)
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59), micro, tz
        )
        return moment.astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59, past year 9999 in UTC
        raise ValueError(f"not a representable timestamp: {text!r}") from None
