"""The work folder of one download: its fetched files, their names, and the manifest.

A file in the folder is complete (the fetcher renames a file in only once it is
checked), so a download run again with the same folder fetches only what is
missing: that is all resuming is. The manifest records what the files belong
to; a different download wipes them. File names are pure functions of the
track and the position, so every run names the same file the same way.

A file whose fetch was interrupted keeps what had come in ``<file>.partial``, with
a record of where it came from (:class:`PartialFile`): the next attempt, in this
run or a later one, asks only for the rest.

The folder is dlstore's alone: created with a marker naming the task, never
followed through a symbolic link, and only a folder holding that marker is ever
written into, wiped or removed (:class:`WorkFolder`).

Placed is placed: before the finished file is renamed into place, the folder records
it (``placed.json``: its path, size and :func:`fingerprint`, and what the download
learned), and a caller that must record the file elsewhere (the daemon, in its row)
keeps the folder until it has. A later attempt that finds the record, and the file
unchanged at its path, takes that file instead of downloading it again
(:meth:`WorkFolder.placed`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlstore.errors import PartialBusyError, WorkFolderError
from dlstore.paths import read_own_json, temp_path_for, write_new_file

if TYPE_CHECKING:  # the options module imports this one; keep m3u8 off the CLI's path
    from dlstore.playlist import InitSection, MediaPlan

MANIFEST_NAME = "manifest.json"
PARTIAL_SUFFIX = ".partial"  # the bytes of an interrupted file so far
SOURCE_SUFFIX = ".partial.json"  # where they came from, if the file cannot say (PartialFile)
RECORD_XATTR = "user.dlstore.source"  # where they came from, on the file itself
MANIFEST_VERSION = 1
#: The file that makes a folder dlstore's: {"format": MARKER_FORMAT, "task": <the owner>}.
MARKER_NAME = ".dlstore-work"
MARKER_FORMAT = 1
#: The record of the file this download placed (:class:`PlacedFile`).
PLACED_NAME = "placed.json"
PLACED_FORMAT = 1
#: :func:`fingerprint` reads this much from each end of a file.
FINGERPRINT_BYTES = 1024 * 1024
#: A partial file keeps this much of its first bytes in memory too, for :meth:`PartialFile.head`.
HEAD_KEPT = 64 * 1024


def fingerprint(path: Path) -> str:
    """``sha256:<hex>`` of the file's size, its first and its last MiB: cheap on a large
    video, and enough to tell the file dlstore placed from another one put there."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        digest.update(str(size).encode("ascii") + b"\n")
        digest.update(source.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            source.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            digest.update(source.read(FINGERPRINT_BYTES))
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class PlacedFile:
    """The file a download placed, as its work folder records it."""

    path: Path  # absolute
    size: int
    checksum: str  # fingerprint(path)
    url: str  # what it was downloaded from
    result: dict[str, Any] = field(default_factory=dict)  # the engine's, for the caller

    @classmethod
    def of(cls, file: Path, final: Path, url: str, result: dict[str, Any]) -> PlacedFile:
        """The record of ``file`` (still at its temporary name) once it is at ``final``."""
        size = os.stat(file).st_size
        return cls(Path(os.path.abspath(final)), size, fingerprint(file), url, result)

    def as_json(self) -> dict[str, Any]:
        return {
            "format": PLACED_FORMAT,
            "path": str(self.path),
            "size": self.size,
            "checksum": self.checksum,
            "url": self.url,
            "result": self.result,
        }

    @classmethod
    def from_json(cls, data: object) -> PlacedFile | None:
        """The record in ``data``, or None if it is not one (then it is ignored)."""
        if not isinstance(data, dict) or data.get("format") != PLACED_FORMAT:
            return None
        path, size, checksum = data.get("path"), data.get("size"), data.get("checksum")
        url, result = data.get("url"), data.get("result")
        if not (isinstance(path, str) and os.path.isabs(path) and isinstance(url, str)):
            return None
        if not (isinstance(size, int) and isinstance(checksum, str) and isinstance(result, dict)):
            return None
        return cls(Path(path), size, checksum, url, result)

    def unchanged(self) -> bool:
        """Whether the file is at its path, a regular file of its size and fingerprint."""
        try:
            info = os.lstat(self.path)
            return (
                stat.S_ISREG(info.st_mode)
                and info.st_size == self.size
                and fingerprint(self.path) == self.checksum
            )
        except OSError:
            return False


@dataclass(frozen=True)
class Track:
    """A media playlist to fetch into the work folder under ``name``."""

    name: str  # "video", "audio", "audio-2", …, "subtitles-1", …
    plan: MediaPlan
    #: What every file must be, whatever the URIs say ("webvtt" for subtitles); None:
    #: what the playlist says (MediaPlan.container).
    container: str | None = None


def media_track_names(count: int) -> list[str]:
    """The names of ``count`` media tracks, video first: "video", "audio", "audio-2", …"""
    return ["video", "audio", *(f"audio-{n}" for n in range(2, count))][:count]


def init_filename(track: str, number: int) -> str:
    """The file of the track's ``number``-th distinct init section (from 0)."""
    return f"{track}-init-{number}.seg"


def segment_filename(track: str, index: int) -> str:
    """The file of the track's ``index``-th segment (from 0)."""
    return f"{track}-{index:06d}.seg"


class WorkFolder:
    """The folder holding one download's fetched files and its manifest.

    dlstore makes it, with a marker file naming its ``owner`` (a task id, or None for
    ``download``/``batch``), and only ever writes into, wipes or removes a folder that
    holds that marker: a symbolic link, a file or a folder someone else made is
    refused with a :class:`~dlstore.errors.WorkFolderError` and left alone. An empty
    folder is adopted (there is nothing in it to lose), and so is one an earlier dlstore
    made before markers existed (it holds that version's manifest).
    """

    def __init__(self, root: Path, owner: str | None = None) -> None:
        self.root = Path(root)
        self.owner = owner

    def path(self, filename: str) -> Path:
        return self.root / filename

    @property
    def part_tag(self) -> str:
        """A tag of this folder's download, the same on every attempt (:meth:`temp_file_for`)."""
        where = os.path.abspath(self.root).encode("utf-8", "surrogateescape")
        return hashlib.sha256(where).hexdigest()[:12]

    def temp_file_for(self, final: Path) -> Path:
        """The hidden temporary file beside ``final`` that this download writes before placing
        it: one name per task, so a later attempt replaces (or removes) an earlier one's."""
        return temp_path_for(final, self.part_tag)

    def check(self) -> None:
        """Raise WorkFolderError unless the folder is absent, adoptable or this owner's."""
        self._state()

    def claim(self) -> None:
        """Create the folder with its marker, or check that it is ours (WorkFolderError)."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(self.root)
        except FileExistsError:
            if self._state() == "ours":
                return
        record = {"format": MARKER_FORMAT, "task": self.owner}
        try:
            write_new_file(self.path(MARKER_NAME), json.dumps(record).encode("ascii"))
        except FileExistsError:  # another run claimed it meantime: it must be for this owner
            self._state()

    def prepare(self, identity: dict) -> bool:
        """Claim the folder for ``identity``; wipe files of another download. True if resuming."""
        self.claim()
        manifest = self.path(MANIFEST_NAME)
        wanted = {"version": MANIFEST_VERSION, **identity}
        if read_own_json(manifest) == wanted:
            return True
        self.wipe()
        replace_json(manifest, wanted)
        return False

    def wipe(self, keep: tuple[str, ...] = ()) -> None:
        """Delete everything in the folder but its marker and ``keep`` (only if it is
        dlstore's)."""
        if self._state() != "ours":
            return
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name == MARKER_NAME or entry.name in keep:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def remove(self) -> None:
        """Delete the folder if it is dlstore's; WorkFolderError (nothing deleted) if it is not."""
        if self._state() == "ours":
            shutil.rmtree(self.root, ignore_errors=True)  # rmtree never follows a link

    def record_placed(self, placed: PlacedFile) -> None:
        """Write the record of the file about to be placed (atomically: whole or absent)."""
        record = self.path(PLACED_NAME)
        tmp = record.with_name(PLACED_NAME + ".tmp")
        tmp.write_text(json.dumps(placed.as_json(), indent=1), encoding="utf-8")
        os.replace(tmp, record)

    def placed(self, url: str) -> PlacedFile | None:
        """The file an earlier attempt at ``url`` placed, if it is still there unchanged."""
        placed = PlacedFile.from_json(read_own_json(self.path(PLACED_NAME)))
        if placed is None or placed.url != url or not placed.unchanged():
            return None
        return placed

    def forget_placed(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(PLACED_NAME))

    def finished_size(self, filename: str) -> int | None:
        """The size of the file if it is in place (complete), else None."""
        try:
            return self.path(filename).stat().st_size
        except FileNotFoundError:
            return None

    def _is_empty(self) -> bool:
        with os.scandir(self.root) as entries:
            return next(entries, None) is None

    def _is_from_before_markers(self) -> bool:
        manifest = read_own_json(self.path(MANIFEST_NAME))
        return isinstance(manifest, dict) and manifest.get("version") == 1 and "url" in manifest

    def _state(self) -> str:
        """One of "absent", "adoptable" or "ours"; WorkFolderError for anything else."""
        try:
            info = os.lstat(self.root)
        except FileNotFoundError:
            return "absent"
        if stat.S_ISLNK(info.st_mode):
            raise WorkFolderError(
                f"The work folder {self.root} is a symbolic link; dlstore never follows one "
                "there. Remove the link and retry (what it points to is left alone)."
            )
        if not stat.S_ISDIR(info.st_mode):
            raise WorkFolderError(
                f"The work folder {self.root} is a file, not a folder; dlstore leaves it "
                "alone. Move it away and retry."
            )
        marker = read_own_json(self.path(MARKER_NAME))
        if marker is None:
            if self._is_empty() or self._is_from_before_markers():
                return "adoptable"
            raise WorkFolderError(
                f"The folder {self.root} was not made by dlstore (it holds no {MARKER_NAME} "
                "marker), so dlstore neither writes into it nor wipes it. Move it away and retry."
            )
        if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
            raise WorkFolderError(f"The work folder {self.root} has a marker dlstore cannot read.")
        if self.owner is not None and marker.get("task") != self.owner:
            raise WorkFolderError(
                f"The work folder {self.root} belongs to another task, not {self.owner[:80]!r}; "
                "dlstore leaves it alone."
            )
        return "ours"


def replace_json(path: Path, record: object) -> None:
    """Write ``record`` to ``path`` as JSON, all at once (beside it, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, sort_keys=True, indent=1), encoding="utf-8")
    os.replace(tmp, path)


class PartialFile:
    """What has come of one file of the work folder so far, kept across attempts and runs.

    ``<file>.partial`` holds the file's bytes in the order they came (cut to its byte range,
    decrypted: what will be placed); the record of their source
    (:meth:`dlstore.segment_checks.Source.as_record`) is written before the first byte, on
    the file itself as an extended attribute (``user.dlstore.source``: no second file to
    create for every segment) or, where the filesystem has none, in a sidecar,
    ``<file>.partial.json``. Every chunk is written through to the page cache as it comes:
    a killed process loses at most the chunk it was writing (nothing is fsynced).

    The names are the same on every attempt, so an attempt holds the file open and
    locked (``flock``) from :meth:`open` to :meth:`close`: another process fetching the
    same file into the same folder gets a :class:`~dlstore.errors.PartialBusyError`
    rather than mixing its bytes in. :meth:`place` renames the bytes into the file,
    :meth:`discard` drops them.
    """

    def __init__(self, work: WorkFolder, filename: str) -> None:
        self.path = work.path(filename + PARTIAL_SUFFIX)
        self.record_path = work.path(filename + SOURCE_SUFFIX)
        self.size = 0
        self._fd: int | None = None  # open from open() to close(), appending
        self._first: bytes | None = None  # the first bytes, when written by this attempt

    def open(self) -> object | None:
        """Open (or create) and lock the file for this attempt; the record of its kept
        bytes' source (None if there is none) and their count in :attr:`size`."""
        self.close()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise PartialBusyError(
                f"Another dlstore process is fetching {self.path.name} into the same work "
                f"folder; trying again later may work."
            ) from exc
        self._fd = fd
        self.size = os.fstat(fd).st_size
        if not self.size:
            self._first = b""
            return None
        try:
            return json.loads(os.getxattr(fd, RECORD_XATTR))
        except (AttributeError, OSError, ValueError):  # none there, or no xattrs here
            return read_own_json(self.record_path)

    def truncate(self, size: int) -> None:
        """Keep only the first ``size`` bytes."""
        if self._fd is not None and size < self.size:
            os.ftruncate(self._fd, size)
            self.size = size
            if self._first is not None:
                self._first = self._first[:size]

    def start(self, record: object | None) -> None:
        """Drop the kept bytes and record the source of those to come (None: no record, so
        they will not be continued); then :meth:`write` appends."""
        assert self._fd is not None, "open() first"
        self.truncate(0)
        self._first = b""
        fd = self._fd
        data = json.dumps(record).encode("utf-8") if record is not None else b""
        try:
            if data:
                os.setxattr(fd, RECORD_XATTR, data)
                return
            os.removexattr(fd, RECORD_XATTR)  # the bytes dropped had one
        except (AttributeError, OSError):  # no xattrs here, too long for one, or none to remove
            pass
        if data:  # written in place: a torn record is unreadable, and the bytes start over
            self.record_path.write_bytes(data)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.record_path)

    def write(self, data: bytes) -> None:
        assert self._fd is not None, "open() first"
        _write_all(self._fd, data)  # straight into the page cache: a SIGKILL loses nothing
        if self._first is not None and len(self._first) < HEAD_KEPT:  # it holds every byte
            self._first += data[: HEAD_KEPT - len(self._first)]
        self.size += len(data)

    def close(self) -> None:
        """Unlock (the lock goes with the file descriptor); every write is in already."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._first = None

    def chunks(self, size: int) -> Iterator[bytes]:
        """The kept bytes, ``size`` at a time."""
        with open(self.path, "rb") as source:
            while block := source.read(size):
                yield block

    def head(self, count: int) -> bytes:
        """The first ``count`` bytes (fewer if the file is shorter)."""
        first = self._first
        if first is not None and (count <= len(first) or len(first) == self.size):
            return first[:count]
        with open(self.path, "rb") as source:
            return source.read(count)

    def place(self, final: Path) -> None:
        """Rename the (complete, checked) bytes into ``final``; forget their source."""
        os.replace(self.path, final)
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.record_path)

    def discard(self) -> None:
        """Drop the bytes and their record (only call it holding the file: after open())."""
        for path in (self.path, self.record_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.close()
        self.size = 0


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` at the end of ``fd`` (a short write goes on)."""
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)
        while written < len(data):
            written += os.write(fd, view[written:])


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
