"""dlstore.paths: safe names, confinement to the output root, no silent overwrite."""

from __future__ import annotations

import os

import pytest

from dlstore.errors import DownloadError, UnsafePathError
from dlstore.paths import (
    MAX_NAME_BYTES,
    place_file,
    resolve_output,
    sanitize_filename,
    temp_path_for,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("My Video", "My Video"),
        ("AC/DC live", "AC_DC live"),
        ('a<b>c:d"e|f?g*h', "a_b_c_d_e_f_g_h"),
        ("tab\there\nnewline", "tab here newline"),
        ("..hidden", "hidden"),
        ("trailing dots...", "trailing dots"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("", "video"),
        ("...", "video"),
        ("Café ☕", "Café ☕"),
    ],
)
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected


def test_sanitize_cuts_long_names_at_a_character_boundary():
    name = "é" * 300  # 600 bytes
    cut = sanitize_filename(name)
    assert len(cut.encode()) <= MAX_NAME_BYTES
    assert set(cut) == {"é"}


def test_resolve_output_inside_root(tmp_path):
    path = resolve_output(tmp_path, "shows/season 1", "Episode 1", "mp4")
    assert path == tmp_path.resolve() / "shows" / "season 1" / "Episode 1.mp4"
    assert resolve_output(tmp_path, None, "x", ".ts") == tmp_path.resolve() / "x.ts"
    assert resolve_output(tmp_path, "a/./b//", "x", "mp4") == tmp_path.resolve() / "a/b/x.mp4"


def test_the_extension_is_not_doubled(tmp_path):
    assert resolve_output(tmp_path, None, "clip.mp4", "mp4").name == "clip.mp4"


@pytest.mark.parametrize(
    "output_dir",
    ["../outside", "a/../../b", "..", "/etc", "\\\\server\\share", "C:\\Windows", "~/x",
     "a\x00b", "a/..\\..\\b", "ok/" + "x" * 300],
)  # fmt: skip
def test_output_dirs_that_escape_are_refused(tmp_path, output_dir):
    with pytest.raises(UnsafePathError):
        resolve_output(tmp_path / "root", output_dir, "v", "mp4")


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "..", "/abs/name", "\\evil", "a/../b", "nul\x00byte", "",
             "   ", "C:evil", "x" * 1000],
)  # fmt: skip
def test_names_that_escape_are_refused(tmp_path, name):
    with pytest.raises(UnsafePathError):
        resolve_output(tmp_path, None, name, "mp4")


def test_a_symlink_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "link")
    with pytest.raises(UnsafePathError, match="symlink"):
        resolve_output(root, "link", "v", "mp4")


def test_bad_extension(tmp_path):
    with pytest.raises(UnsafePathError):
        resolve_output(tmp_path, None, "v", "mp4/../x")


def test_existing_file_is_an_error_unless_overwrite(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"old")
    with pytest.raises(DownloadError, match="already exists"):
        resolve_output(tmp_path, None, "v", "mp4")
    assert resolve_output(tmp_path, None, "v", "mp4", overwrite=True).name == "v.mp4"


def test_place_file_never_replaces_without_overwrite(tmp_path):
    final = tmp_path / "v.mp4"
    tmp = temp_path_for(final, "abc")
    assert tmp.parent == final.parent and tmp.name.startswith(".")
    tmp.write_bytes(b"new")
    final.write_bytes(b"old")
    with pytest.raises(DownloadError, match="already exists"):
        place_file(tmp, final)
    assert final.read_bytes() == b"old"
    place_file(tmp, final, overwrite=True)
    assert final.read_bytes() == b"new" and not tmp.exists()


def test_place_file_moves_into_place(tmp_path):
    final = tmp_path / "v.mp4"
    tmp = temp_path_for(final, "t")
    tmp.write_bytes(b"data")
    place_file(tmp, final)
    assert final.read_bytes() == b"data"
    assert not tmp.exists()
