"""Subtitle files beside the video: their names, their cues, their placing.

    subtitle_names(video, renditions)      → Show (2).en.vtt, Show (2).fr.vtt, Show (2).en.2.vtt
    load(work, track, reference)           → the rendition's fetched WebVTT segments joined
                                             (dlstore.webvtt) on the video's clock
    Sidecars.write → place                 → written beside the output under a temporary
                                             name, then renamed into place like the video

A rendition is named by its LANGUAGE (``en``, ``pt-BR``), else by its NAME made safe
for a file name, else ``subtitles``; a second one of the same label gets ``.2``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dlstore import webvtt
from dlstore.paths import place_file, sanitize_filename, subtitle_path_for
from dlstore.playlist import SubtitleRendition
from dlstore.workfolder import Track, WorkFolder, track_files

MAX_LABEL_CHARS = 40
_LANGUAGE_LABEL = re.compile(r"^[A-Za-z0-9-]{1,35}$")


def subtitle_label(rendition: SubtitleRendition) -> str:
    """What names the rendition's file: its language, else its NAME, else "subtitles"."""
    language = (rendition.language or "").strip()
    if _LANGUAGE_LABEL.match(language):
        return language
    name = sanitize_filename((rendition.name or "")[:MAX_LABEL_CHARS], default="subtitles")
    return name.replace(".", "_")


def subtitle_names(video: Path, renditions: list[SubtitleRendition]) -> list[Path]:
    """The file of each rendition beside ``video``; repeated labels get ``.2``, ``.3``…"""
    seen: dict[str, int] = {}
    paths = []
    for rendition in renditions:
        label = subtitle_label(rendition)
        count = seen[label.lower()] = seen.get(label.lower(), 0) + 1
        paths.append(subtitle_path_for(video, label if count == 1 else f"{label}.{count}"))
    return paths


def load(
    work: WorkFolder, track: Track, reference: int | None, clock: Sequence[int] = ()
) -> webvtt.Track:
    """The track's fetched segments as one WebVTT track, cues in ms from the media
    timestamp ``reference`` (90 kHz; None: the first segment's X-TIMESTAMP-MAP).
    ``clock`` gives each segment without an X-TIMESTAMP-MAP the media timestamp of its
    cue time 0 (DASH: its period's start); without it, that is MPEG-TS time 0."""
    segments = (
        _clocked(webvtt.parse_segment(path.read_bytes().decode("utf-8", errors="replace")),
                 clock[number] if number < len(clock) else None)
        for number, path in enumerate(track_files(work, track))
    )  # fmt: skip
    return webvtt.join(segments, reference)


def _clocked(segment: webvtt.Segment, mpegts: int | None) -> webvtt.Segment:
    if segment.mpegts is not None or mpegts is None:
        return segment
    return replace(segment, mpegts=mpegts, local=0)


@dataclass
class Sidecars:
    """The subtitle files of one download: written aside, placed, or removed."""

    work: WorkFolder
    finals: list[Path]
    placed: list[Path]

    @classmethod
    def for_names(cls, work: WorkFolder, finals: list[Path]) -> Sidecars:
        return cls(work=work, finals=finals, placed=[])

    def write(self, tracks: list[webvtt.Track]) -> None:
        """Write each track beside its final name, under this download's temporary name."""
        for final, track in zip(self.finals, tracks, strict=True):
            final.parent.mkdir(parents=True, exist_ok=True)
            self.work.temp_file_for(final).write_text(webvtt.write(track), encoding="utf-8")

    def place(self, *, overwrite: bool) -> None:
        """Rename each written file into place (never over a file, unless ``overwrite``)."""
        for final in self.finals:
            place_file(self.work.temp_file_for(final), final, overwrite=overwrite)
            self.placed.append(final)

    def remove_placed(self) -> None:
        """Take back what :meth:`place` put in place (the video could not follow)."""
        for final in self.placed:
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
        self.placed.clear()

    def clean_up(self) -> None:
        """Remove the temporary files, whatever happened."""
        for final in self.finals:
            with contextlib.suppress(FileNotFoundError):
                self.work.temp_file_for(final).unlink()
