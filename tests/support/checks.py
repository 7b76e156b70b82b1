"""Assertions several test modules share: a download decoded against what its stream
offers, subtitle cues against the expected ones."""

from __future__ import annotations

import pytest

from dlstore.engine import DownloadResult
from dlstore.testing.media import FPS, StreamFacts, decode_check


def assert_plays(result: DownloadResult, facts: StreamFacts) -> None:
    """The output decodes without error, as long and as large as ``facts`` say, and the
    result's media facts agree."""
    decoded = decode_check(result.output_path)
    assert decoded.errors == ()
    assert decoded.duration == pytest.approx(facts.duration, abs=0.35)
    assert (decoded.width, decoded.height) == (facts.width, facts.height)
    assert decoded.streams == facts.streams
    assert decoded.video_frames == round(facts.duration * FPS)
    assert decoded.audio_seconds == pytest.approx(facts.duration, abs=0.3)
    assert result.media.duration == pytest.approx(decoded.duration, abs=0.01)
    assert (result.media.width, result.media.height) == (facts.width, facts.height)
    assert result.media.video_codec == "h264" and result.media.audio_codec == "aac"
    assert result.media.size_bytes == result.output_path.stat().st_size


#: The tone (Hz) of each language's audio in the multi-language streams.
TONES = {"en": 440, "fr": 660}


def assert_cues_match(found, expected) -> None:
    """The same cue texts, in order, each within 50 ms of its expected times."""
    assert [text for _, _, text in found] == [text for _, _, text in expected]
    for (start, end, _), (want_start, want_end, text) in zip(found, expected):
        assert start == pytest.approx(want_start, abs=0.05), text
        assert end == pytest.approx(want_end, abs=0.05), text
