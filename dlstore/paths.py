"""Where output files go: safe names, confinement to the output root, no silent overwrites.

``check_name`` refuses a task's name that tries to escape or holds control
characters; ``sanitize_filename`` turns an accepted name into one harmless file name.
``resolve_output`` joins the output root, a task's ``output_dir`` and name into a
path that provably stays under the root, and refuses (with
:class:`~dlstore.errors.UnsafePathError`) anything that tries to leave it.
``place_file`` moves a finished temporary file to its final name atomically.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
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
