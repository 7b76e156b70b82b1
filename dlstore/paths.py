"""Where output files go: safe names, confinement to the output root, no silent overwrites.

``check_name`` refuses a task's name that tries to escape or holds control
characters; ``sanitize_filename`` turns an accepted name into one harmless file name.
``resolve_output`` joins the output root, a task's ``output_dir`` and name into a
path that provably stays under the root, and refuses (with
:class:`~dlstore.errors.UnsafePathError`) anything that tries to leave it.
``place_file`` moves a finished temporary file to its final name atomically.

A daemon's download holds its output name from the start with a reservation: a
hidden ``.<stem>.reserved`` file beside the output, created with ``O_EXCL`` and
naming its task, so two rows of one name get two files. The reservation covers
the video, its poster (``<stem>.jpg``) and its subtitle files (``<stem>.<lang>.vtt``).
``write_new_file`` and ``read_own_json`` are the small-file primitives behind it and
behind the work folder's marker: they never replace a file and never follow a symbolic
link.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import unicodedata
from pathlib import Path, PurePosixPath

from dlstore.errors import DownloadError, UnsafePathError
from dlstore.redact import unsafe_character

MAX_NAME_BYTES = 200  # leaves room for an extension and temporary suffixes under 255
MAX_DIR_BYTES = 1024
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_WINDOWS_RESERVED = {
    "con", "prn", "aux", "nul",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
}  # fmt: skip
DEFAULT_NAME = "video"
POSTER_SUFFIX = ".jpg"
SUBTITLE_SUFFIX = ".vtt"
RESERVATION_SUFFIX = ".reserved"
#: The largest marker or reservation file read back; anything bigger is not dlstore's.
MAX_RECORD_BYTES = 1024 * 1024


def sanitize_filename(name: str, default: str = DEFAULT_NAME) -> str:
    """One safe file name (no extension added): separators, control characters and
    characters Windows forbids become ``_``; leading dots and trailing dots or spaces
    go; overlong names are cut (at a character boundary) to MAX_NAME_BYTES."""
    text = unicodedata.normalize("NFC", str(name))
    text = re.sub(r"\s+", " ", text).strip()
    text = _UNSAFE_CHARS.sub("_", text)
    text = text.lstrip(".").rstrip(". ")
    if text.split(".", 1)[0].lower() in _WINDOWS_RESERVED:
        text = "_" + text
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_NAME_BYTES:
        text = encoded[:MAX_NAME_BYTES].decode("utf-8", errors="ignore").rstrip(". ")
    return text or default


def check_name(name: str) -> None:
    """Refuse names that try to escape, cannot be a file name, or hold control characters
    (which would rewrite a terminal or forge a log line); harmless oddities are left to
    sanitize_filename."""
    if not isinstance(name, str) or not name.strip():
        raise UnsafePathError("The task's name is empty; give it a name for the file.")
    bad = unsafe_character(name, spaces=True)
    if bad is not None:
        raise UnsafePathError(
            f"The task's name contains {bad}; a name must not hold control characters "
            "(a line break, a tab, ESC) or text-direction marks."
        )
    parts = re.split(r"[/\\]", name)
    if ".." in (p.strip() for p in parts) or name.startswith(("/", "\\")) or _is_drive(name):
        raise UnsafePathError(
            f"The name {name[:80]!r} tries to leave the output folder; use a plain file name."
        )
    if len(name.encode("utf-8")) > 4 * MAX_NAME_BYTES:
        raise UnsafePathError(
            f"The name is {len(name)} characters long; keep it under {MAX_NAME_BYTES}."
        )


def _is_drive(text: str) -> bool:
    return bool(re.match(r"^[A-Za-z]:", text))


def safe_subdir(output_dir: str | None) -> PurePosixPath:
    """``output_dir`` as a relative path of plain components, or UnsafePathError."""
    if output_dir is None:
        return PurePosixPath()
    if not isinstance(output_dir, str):
        raise UnsafePathError("output_dir must be a string (a folder under the output root).")
    if "\x00" in output_dir:
        raise UnsafePathError("The output folder contains a NUL character.")
    text = output_dir.replace("\\", "/").strip()
    if text.startswith("/") or _is_drive(text) or text.startswith("~"):
        raise UnsafePathError(
            f"The output folder {output_dir[:80]!r} is absolute; it must be relative to "
            "the output root."
        )
    if len(text.encode("utf-8")) > MAX_DIR_BYTES:
        raise UnsafePathError("The output folder name is too long.")
    parts = []
    for part in text.split("/"):
        part = part.strip()
        if part in ("", "."):
            continue
        if part == "..":
            raise UnsafePathError(
                f"The output folder {output_dir[:80]!r} tries to leave the output root."
            )
        if _UNSAFE_CHARS.search(part.replace("/", "")) or len(part.encode()) > 255:
            raise UnsafePathError(
                f"The output folder {output_dir[:80]!r} has a component that cannot be a "
                "folder name."
            )
        parts.append(part)
    return PurePosixPath(*parts)


def resolve_output(
    root: Path,
    output_dir: str | None,
    name: str,
    ext: str,
    *,
    overwrite: bool = False,
) -> Path:
    """The path for ``name`` + ``ext`` under ``root/output_dir``, confined to ``root``.

    Symlinks are resolved before the check, so a link inside the root that points
    outside is refused too. An existing file is an error unless ``overwrite``.
    """
    check_name(name)
    ext = ext.lstrip(".")
    if not re.fullmatch(r"[A-Za-z0-9]{1,8}", ext):
        raise UnsafePathError(f"{ext!r} is not a valid file extension.")
    base = Path(root).expanduser().resolve()
    folder = (base / safe_subdir(output_dir)).resolve()
    if folder != base and base not in folder.parents:
        raise UnsafePathError(
            f"The output folder {output_dir!r} leads outside the output root (via a symlink)."
        )
    stem = sanitize_filename(name)
    if stem.lower().endswith("." + ext.lower()):
        stem = stem[: -len(ext) - 1] or DEFAULT_NAME
    target = folder / f"{stem}.{ext}"
    if target.parent != folder:  # belt and braces: sanitize_filename made one component
        raise UnsafePathError(f"The name {name[:80]!r} is not a plain file name.")
    if not overwrite:
        ensure_absent(target)
    return target


def ensure_absent(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise DownloadError(
            f"{path} already exists; dlstore does not overwrite files silently. "
            "Choose another name or folder, or delete the file (or pass --overwrite)."
        )


def temp_path_for(final: Path, tag: str) -> Path:
    """A hidden temporary name beside ``final`` (same folder, so rename is atomic)."""
    return final.with_name(f".{final.name}.{tag}.part")


def _hidden_files(folder: Path, suffix: str) -> list[Path]:
    """The regular files (never through a link) in ``folder`` named ``.<something><suffix>``."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                named = name.startswith(".") and name.endswith(suffix)
                if named and len(name) > len(suffix) + 1 and entry.is_file(follow_symlinks=False):
                    found.append(Path(entry.path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return found


def remove_partials(folder: Path, tag: str) -> int:
    """Remove every temporary file in ``folder`` made with ``tag`` (:func:`temp_path_for`):
    those of every attempt of one download, whatever name each was for. How many went."""
    removed = 0
    for path in _hidden_files(folder, f".{tag}.part"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def place_file(tmp: Path, final: Path, *, overwrite: bool = False) -> None:
    """Move ``tmp`` to ``final`` atomically; without ``overwrite``, never replace a file."""
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # fails if final exists: no window for a silent overwrite
    except FileExistsError:
        ensure_absent(final)
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        ensure_absent(final)  # file systems without hard links: best effort
        os.replace(tmp, final)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


# --- small files of dlstore's own: never replaced, never through a link ----------------------


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``; FileExistsError if anything is there (a link too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def read_own_json(path: Path) -> object | None:
    """The JSON in the regular file ``path``; None if it is absent, a link, not a regular
    file, larger than MAX_RECORD_BYTES or not JSON, nested too deep for the parser
    included (then it is not one of dlstore's, which are flat objects)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECORD_BYTES:
            return None
        try:
            return json.loads(source.read(MAX_RECORD_BYTES + 1))
        except (OSError, ValueError, RecursionError):
            return None


def owner_record(owner: str) -> bytes:
    """What a reservation holds: the task id, in full."""
    return json.dumps({"task": owner}).encode("ascii")  # json escapes all else


# --- output names held by a task ---------------------------------------------------------------


def poster_path_for(video: Path) -> Path:
    """The poster frame of ``video``: named after it, so ``name (2).jpg`` for ``name (2).mp4``."""
    return video.with_suffix(POSTER_SUFFIX)


def reservation_path(output: Path) -> Path:
    """The hidden file holding ``output``'s name (and its poster's) for one task."""
    return output.with_name(f".{output.stem}{RESERVATION_SUFFIX}")


def reserve(output: Path, owner: str) -> bool:
    """Reserve ``output``'s name for ``owner`` atomically; False if it is reserved already."""
    try:
        write_new_file(reservation_path(output), owner_record(owner))
    except FileExistsError:
        return False
    return True


def reserved_by(output: Path) -> str | None:
    """The task holding ``output``'s reservation; None if none (or one dlstore cannot read)."""
    record = read_own_json(reservation_path(output))
    owner = record.get("task") if isinstance(record, dict) else None
    return owner if isinstance(owner, str) else None


def release(output: Path, owner: str) -> None:
    """Give ``output``'s name back, if ``owner`` holds it (another task's is left alone)."""
    if reserved_by(output) == owner:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(reservation_path(output))


def subtitle_path_for(video: Path, label: str) -> Path:
    """A subtitle file beside ``video``: ``name (2).en.vtt`` for ``name (2).mp4``."""
    return video.with_name(f"{video.stem}.{label}{SUBTITLE_SUFFIX}")


def _subtitles_exist(video: Path) -> bool:
    """Whether a subtitle file named after ``video`` (``<stem>.<label>.vtt``) is there."""
    prefix = video.stem + "."
    try:
        with os.scandir(video.parent) as entries:
            return any(
                e.name.startswith(prefix) and e.name.endswith(SUBTITLE_SUFFIX) for e in entries
            )
    except (FileNotFoundError, NotADirectoryError):
        return False


def release_all(folder: Path, owner: str) -> int:
    """Give back every name in ``folder`` that ``owner`` holds; how many there were."""
    released = 0
    for path in _hidden_files(folder, RESERVATION_SUFFIX):
        record = read_own_json(path)
        if isinstance(record, dict) and record.get("task") == owner:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                released += 1
    return released


def output_files_exist(output: Path) -> bool:
    """Whether the video, its poster or a subtitle file of its name is there (a dangling
    link counts)."""
    if any(os.path.lexists(p) for p in (output, poster_path_for(output))):
        return True
    return _subtitles_exist(output)
