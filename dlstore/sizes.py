"""Byte sizes and rates as dlstore prints them, everywhere: one style. Pure.

Decimal SI units (1 KB = 1,000 bytes), one decimal, rounded half up, each unit used
while its rounded value stays below 1000 ("999.9 KB", then "1.0 MB"): the style of
the ``download_status`` view's ``speed`` (CONTRACT.md: ``"5.2 MB/s"``), which its
migration computes in SQL (``alembic/versions/0002_…``) and
:func:`format_rate` matches to the character. Fewer than 1000 bytes are counted
exactly: ``"120 bytes"`` for a size, ``"999 B/s"`` for a rate.
"""

from __future__ import annotations

#: (symbol, bytes) of each unit after bytes; the last takes every larger count.
UNITS = (("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000))


def format_size(count: int) -> str:
    """``"1 byte"``, ``"120 bytes"``, ``"512.3 KB"``, ``"5.2 MB"``, ``"1.5 GB"``."""
    if abs(count) < 1000:
        return "1 byte" if count == 1 else f"{count} bytes"
    return _decimal(count)


def format_exact_size(count: int) -> str:
    """``"2049 bytes (2.0 KB)"``: for a limit and what went over it, where a rounded size
    alone could read the same for both; ``"120 bytes"`` below 1000."""
    if abs(count) < 1000:
        return format_size(count)
    return f"{count} bytes ({_decimal(count)})"


def format_rate(bytes_per_second: int) -> str:
    """``"999 B/s"``, ``"512.3 KB/s"``, ``"5.2 MB/s"``: as the ``download_status`` view."""
    if abs(bytes_per_second) < 1000:
        return f"{bytes_per_second} B/s"
    return _decimal(bytes_per_second) + "/s"


def _decimal(count: int) -> str:
    """``count`` (1000 or more) in the largest unit whose rounded value is below 1000."""
    sign, count = ("-", -count) if count < 0 else ("", count)
    for symbol, unit in UNITS:
        step = unit // 10
        tenths = count // step + (1 if count % step >= step // 2 else 0)
        if tenths < 10_000 or symbol == UNITS[-1][0]:
            return f"{sign}{tenths // 10}.{tenths % 10} {symbol}"
    raise AssertionError("unreachable")  # pragma: no cover
