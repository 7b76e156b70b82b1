"""The orphan sweep: what a row left behind when it ended while no daemon looked after it.

A daemon cleans up after its own rows: a cancel removes the work folder, the partial
outputs and the name's reservation; a completion removes the partial outputs, the
reservation and, last, the work folder. A row that ends while its daemon is dead
(the API cancels it after a SIGKILL), or a daemon killed between completing a row
and cleaning up, leaves those behind. The daemon's housekeeping finds them through
the work folders, which is why a daemon removes a work folder last:

    temp_dir/<folder>/.dlstore-work names a task ──▶ its row is cancelled or completed
    and quiet for a lease (no daemon is at it) ──▶ still so when read again ──▶
    partial outputs (every attempt's ``.<name>.<tag>.part``) and the task's name
    reservations removed; for a cancelled row also the video an attempt had placed (as
    the work folder records it, unchanged) and its poster; then the work folder

A completed row's video and poster are never touched. Only folders holding dlstore's
marker for that very task (and at that task's own place) are considered.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from dlstore.config import Settings
from dlstore.errors import DlstoreError
from dlstore.models import DownloadTask, Status
from dlstore.options import check_task_metadata, output_candidates, work_dir_for
from dlstore.paths import (
    poster_path_for,
    read_own_json,
    release_all,
    remove_partials,
    reserved_by,
)
from dlstore.store import TaskStore
from dlstore.workfolder import MARKER_NAME, WorkFolder


def work_folder_owners(temp_dir: Path) -> dict[str, Path]:
    """The tasks whose work folders are in ``temp_dir`` (by their markers), and the folders."""
    owners: dict[str, Path] = {}
    try:
        entries = list(os.scandir(temp_dir))
    except (FileNotFoundError, NotADirectoryError):
        return owners
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        marker = read_own_json(Path(entry.path) / MARKER_NAME)
        task = marker.get("task") if isinstance(marker, dict) else None
        if isinstance(task, str) and work_dir_for(temp_dir, task) == Path(entry.path):
            owners[task] = Path(entry.path)
    return owners


def sweep_orphans(
    store: TaskStore, settings: Settings, log: logging.Logger | logging.LoggerAdapter
) -> list[str]:
    """Clean up after every ended row whose work folder is still there; their ids."""
    temp_dir = Path(settings.temp_dir).expanduser().resolve()
    owners = work_folder_owners(temp_dir)
    if not owners:
        return []
    swept = []
    for task in store.ended_among(sorted(owners), quiet_seconds=settings.lease_seconds):
        if store.status_of(task.id) != task.status:  # moved on meanwhile (a retry)
            continue
        what = _clean_up(task, owners[task.id], settings)
        log.info(
            "[task %s] %s while no daemon was at it: removed %s",
            task.id,
            "Cancelled" if task.status == Status.CANCELLED.value else "Completed",
            what,
        )
        swept.append(task.id)
    return swept


def _clean_up(task: DownloadTask, folder: Path, settings: Settings) -> str:
    """Remove what ``task`` left (module doc); a description of what went."""
    work = WorkFolder(folder, owner=task.id)
    gone = []
    output_folder = _output_folder(task, settings)
    if output_folder is not None:
        if task.status == Status.CANCELLED.value:
            gone += _remove_placed(work, task)
        partials = remove_partials(output_folder, work.part_tag)
        names = release_all(output_folder, task.id)
        gone += [f"{partials} partial file(s)"] if partials else []
        gone += [f"{names} name reservation(s)"] if names else []
    with contextlib.suppress(DlstoreError, OSError):
        work.remove()
    return ", ".join([*gone, "its work folder"])


def _output_folder(task: DownloadTask, settings: Settings) -> Path | None:
    """The folder the task's video goes to; None for a row that never got that far."""
    try:
        metadata = check_task_metadata(task.metadata_dict(), settings.profiles)
        ext = metadata.get("format") or "mp4"
        names = output_candidates(settings.output_dir, metadata.get("output_dir"), task.name, ext)
    except (DlstoreError, ValueError, OSError):
        return None
    return names[0].parent


def _remove_placed(work: WorkFolder, task: DownloadTask) -> list[str]:
    """A cancelled row's video that an attempt placed (and its poster, if the name is the
    task's): it is not a finished video of any row."""
    placed = work.placed(task.url)
    if placed is None or reserved_by(placed.path) not in (None, task.id):
        return []
    removed = []
    for path in (placed.path, poster_path_for(placed.path)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed
