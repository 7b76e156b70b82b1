from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dlstore.timeutil import format_ts, parse_ts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-13T10:00:00Z", datetime(2025, 1, 13, 10, tzinfo=timezone.utc)),
        ("2025-01-13t10:00:00z", datetime(2025, 1, 13, 10, tzinfo=timezone.utc)),
        ("2025-01-13 10:00:00", datetime(2025, 1, 13, 10, tzinfo=timezone.utc)),
        ("2025-01-13T12:30:00+02:30", datetime(2025, 1, 13, 10, tzinfo=timezone.utc)),
        ("2025-01-13T05:00:00-0500", datetime(2025, 1, 13, 10, tzinfo=timezone.utc)),
        ("2025-01-13T10:00:00.5Z", datetime(2025, 1, 13, 10, 0, 0, 500000, tzinfo=timezone.utc)),
        (
            "2025-01-13T10:00:00.123456789Z",
            datetime(2025, 1, 13, 10, 0, 0, 123456, tzinfo=timezone.utc),
        ),
    ],
)
def test_parse_any_rfc3339(text, expected):
    assert parse_ts(text) == expected


@pytest.mark.parametrize(
    "text", ["yesterday", "2025-13-01", "2025-01-13T10:00", "2025-01-13T10:00:00+2"]
)
def test_parse_rejects_non_timestamps(text):
    with pytest.raises(ValueError):
        parse_ts(text)


def test_parse_empty_is_none():
    assert parse_ts(None) is None and parse_ts("") is None


def test_format_is_fixed_width_utc_z_and_orders_like_time():
    a = format_ts(datetime(2025, 1, 13, 10, 0, 0, tzinfo=timezone.utc))
    b = format_ts(datetime(2025, 1, 13, 10, 0, 0, 1, tzinfo=timezone.utc))
    assert a == "2025-01-13T10:00:00.000000Z" and len(a) == len(b) and a < b
    assert parse_ts(a) == datetime(2025, 1, 13, 10, tzinfo=timezone.utc)
