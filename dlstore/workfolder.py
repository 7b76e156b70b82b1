"""The work folder of one download: its fetched files, their names, and the manifest.

A file in the folder is complete (the fetcher renames a file in only once it is
checked), so a download run again with the same folder fetches only what is
missing: that is all resuming is. The manifest records what the files belong
to; a different download wipes them. File names are pure functions of the
track and the position, so every run names the same file the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dlstore.playlist import InitSection, MediaPlan

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Track:
    """A media playlist to fetch into the work folder under ``name``."""

    name: str  # "video" or "audio"
    plan: MediaPlan


def init_filename(track: str, number: int) -> str:
    """The file of the track's ``number``-th distinct init section (from 0)."""
    return f"{track}-init-{number}.seg"


def segment_filename(track: str, index: int) -> str:
    """The file of the track's ``index``-th segment (from 0)."""
    return f"{track}-{index:06d}.seg"


class WorkFolder:
    """The folder holding one download's fetched files and its manifest."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, filename: str) -> Path:
        return self.root / filename

    def prepare(self, identity: dict) -> bool:
        """Create the folder for ``identity``; wipe files of another download. True if resuming."""
        manifest = self.root / MANIFEST_NAME
        wanted = {"version": MANIFEST_VERSION, **identity}
        if self.root.exists():
            try:
                current = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                current = None
            if current == wanted:
                return True
            self.wipe()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = manifest.with_name(MANIFEST_NAME + ".tmp")
        tmp.write_text(json.dumps(wanted, sort_keys=True, indent=1), encoding="utf-8")
        os.replace(tmp, manifest)
        return False

    def wipe(self) -> None:
        """Delete everything in the folder (but keep the folder)."""
        if not self.root.exists():
            return
        for entry in self.root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def finished_size(self, filename: str) -> int | None:
        """The size of the file if it is in place (complete), else None."""
        try:
            return self.path(filename).stat().st_size
        except FileNotFoundError:
            return None


def track_files(work: WorkFolder, track: Track) -> list[Path]:
    """The track's files in play order, each init section before the segments it applies to."""
    return [work.path(name) for name in track_filenames(track)]


def track_filenames(track: Track) -> list[str]:
    """The names of :func:`track_files`, without the folder."""
    plan = track.plan
    init_numbers: dict[InitSection, int] = {init: n for n, init in enumerate(plan.init_sections)}
    names: list[str] = []
    current: InitSection | None = None
    for index, seg in enumerate(plan.segments):
        if seg.init is not None and seg.init != current:
            names.append(init_filename(track.name, init_numbers[seg.init]))
            current = seg.init
        names.append(segment_filename(track.name, index))
    return names
