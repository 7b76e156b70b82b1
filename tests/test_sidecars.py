"""Subtitle file names beside the video, and the output names they take."""

from __future__ import annotations

from pathlib import Path

from dlstore.options import free_output_path
from dlstore.playlist import SubtitleRendition
from dlstore.sidecars import subtitle_names


def rendition(language: str | None = None, name: str | None = None) -> SubtitleRendition:
    return SubtitleRendition(uri="https://x/s.m3u8", group_id="s", name=name, language=language)


def test_names_by_language_then_name_numbered_when_repeated(tmp_path):
    video = tmp_path / "Show (2).mp4"
    names = subtitle_names(
        video,
        [
            rendition("en", "English"),
            rendition("fr"),
            rendition("EN", "English SDH"),
            rendition(None, "Director's commentary 1.5"),
            rendition(None, None),
            rendition("pt-BR"),
            rendition("en/../x", "../../etc"),  # not a language tag: named by its NAME, made safe
        ],
    )
    assert [p.name for p in names] == [
        "Show (2).en.vtt",
        "Show (2).fr.vtt",
        "Show (2).EN.2.vtt",
        "Show (2).Director's commentary 1_5.vtt",
        "Show (2).subtitles.vtt",
        "Show (2).pt-BR.vtt",
        "Show (2).____etc.vtt",
    ]
    assert all(p.parent == tmp_path for p in names)


def test_a_subtitle_file_of_the_name_makes_the_daemon_take_the_next_name(tmp_path: Path):
    (tmp_path / "Show.en.vtt").write_text("WEBVTT\n")
    (tmp_path / "Showtime.en.vtt").write_text("WEBVTT\n")  # another video's
    assert free_output_path(tmp_path, None, "Show", "mp4") == tmp_path / "Show (2).mp4"
    assert free_output_path(tmp_path, None, "Show (2)", "mp4") == tmp_path / "Show (2).mp4"
    assert free_output_path(tmp_path, None, "Showtime", "mp4") == tmp_path / "Showtime (2).mp4"
