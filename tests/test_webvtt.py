"""The pure WebVTT joiner: timestamp maps, the 33-bit wrap, copies across boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlstore.webvtt import (
    MPEGTS_WRAP,
    Cue,
    Segment,
    format_timestamp,
    join,
    merge_copies,
    parse_segment,
    parse_timestamp,
    write,
)

FIRST = """\ufeffWEBVTT
X-TIMESTAMP-MAP=MPEGTS:900000,LOCAL:00:00:10.000

STYLE
::cue { color: yellow }

NOTE a comment

1
00:00:10.500 --> 00:00:11.500 line:90% align:start
Hello
<i>world</i>

00:11.800 --> 00:14.000
Across

broken --> 00:00:13.000
lost

00:00:13.000 --> 00:00:12.000
backwards
"""
SECOND = """WEBVTT
X-TIMESTAMP-MAP=LOCAL:00:00:00.000,MPEGTS:1080000

00:00:-0.200 --> 00:00:00.500
bad timestamp

00:00:00.000 --> 00:00:02.000
Across

00:00:00.500 --> 00:00:01.000
Hello
<i>world</i>
"""


def test_parse_a_segment():
    seg = parse_segment(FIRST)
    assert (seg.mpegts, seg.local) == (900000, 10_000)
    assert seg.blocks == ("STYLE\n::cue { color: yellow }",)
    assert seg.cues == (
        Cue(10_500, 11_500, "Hello\n<i>world</i>", "line:90% align:start"),
        Cue(11_800, 14_000, "Across"),
    )
    assert seg.skipped == 2  # the malformed timing, the cue ending before it starts


def test_join_aligns_each_segment_through_its_map_and_merges_copies():
    track = join([parse_segment(FIRST), parse_segment(SECOND)], reference=900000 - 7200)
    # reference 80 ms before the first map's MPEGTS: every cue moves 80 ms later
    assert track.cues == (
        Cue(580, 1580, "Hello\n<i>world</i>", "line:90% align:start"),
        Cue(1880, 4080, "Across"),  # 1.8–4.0 and its copy 2.0–4.0 (second map: +2 s) are one
        Cue(2580, 3080, "Hello\n<i>world</i>"),  # other settings: another cue
    )
    assert track.skipped == 3
    text = write(track)
    assert text.startswith("WEBVTT\n\nSTYLE\n::cue { color: yellow }\n\n00:00:00.580 --> ")
    assert "00:00:00.580 --> 00:00:01.580 line:90% align:start\nHello\n<i>world</i>\n" in text
    assert parse_segment(text).cues == track.cues  # what we write, we read back


def test_without_reference_the_first_map_is_time_zero_and_no_map_means_mpegts_zero():
    assert join([parse_segment(FIRST)]).cues[0] == Cue(500, 1500, "Hello\n<i>world</i>",
                                                       "line:90% align:start")  # fmt: skip
    plain = parse_segment("WEBVTT\n\n00:00:12.000 --> 00:00:13.000\nhi\n")
    assert plain.mpegts is None
    assert join([plain], reference=900000).cues == (Cue(2000, 3000, "hi"),)  # 12 s - 10 s
    assert join([plain], reference=90000 * 12_500 // 1000).cues == (Cue(0, 500, "hi"),)  # clipped
    assert join([plain], reference=90000 * 14).cues == ()  # wholly before the start


def test_the_mpegts_clock_wraps_after_33_bits():
    near_end = MPEGTS_WRAP - 90000  # one second before the wrap
    after = Segment((Cue(0, 1000, "after the wrap"),), mpegts=45000, local=0)
    assert join([after], reference=near_end).cues == (Cue(1500, 2500, "after the wrap"),)


def test_touching_copies_merge_and_distinct_texts_overlap():
    cues = [Cue(0, 1000, "a"), Cue(1010, 2000, "a"), Cue(500, 1500, "b"), Cue(3000, 4000, "a")]
    assert merge_copies(cues) == [Cue(0, 2000, "a"), Cue(500, 1500, "b"), Cue(3000, 4000, "a")]


def test_arrows_in_cue_text_cannot_end_the_cue():
    seg = parse_segment("WEBVTT\n\n00:01.000 --> 00:02.000\nx\ny --> z\n")
    assert seg.cues[0].text == "x\ny --&gt; z"


@pytest.mark.parametrize(
    ("text", "millis"),
    [("00:00:01.000", 1000), ("01:02.5", 62500), ("100:00:00,001", 360_000_001),
     ("1:2:3.4", 3723400), ("00:60.000", None), ("abc", None), ("00:01", None)],
)  # fmt: skip
def test_timestamps(text, millis):
    assert parse_timestamp(text) == millis


@given(st.integers(min_value=0, max_value=10**10))
def test_timestamps_round_trip(millis):
    assert parse_timestamp(format_timestamp(millis)) == millis


@given(st.text(max_size=300))
def test_any_text_parses_without_raising(text):
    track = join([parse_segment(text)], reference=0)
    parse_segment(write(track))
