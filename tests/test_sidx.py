"""The sidx parser on the indexes FFmpeg's dash muxer writes, and on broken boxes."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from dlstore.errors import PlaylistError
from dlstore.playlist import ByteRange
from dlstore.sidx import box_size, parse_sidx
from dlstore.testing.dash_media import sidx_box, top_level_boxes, write_dash
from dlstore.testing.media import encode_source


@pytest.fixture(scope="module")
def dash_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sidx")
    source = encode_source(root / "source.mp4", duration=4)
    write_dash([source], root / "list", layout="list")
    write_dash([source], root / "base", layout="base")
    return root


def ranges(text: str, name: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(name + r'="(\d+)-(\d+)"', text)]


def test_each_fragments_sidx_references_its_fragment(dash_files):
    """FFmpeg's single_file output: a sidx before each fragment; the MPD's SegmentURL
    gives both the sidx (indexRange) and the whole fragment (mediaRange)."""
    mpd = (dash_files / "list" / "manifest.mpd").read_text().split('contentType="audio"')[0]
    data = (dash_files / "list" / "manifest-stream0.mp4").read_bytes()
    index_ranges, media_ranges = ranges(mpd, "indexRange"), ranges(mpd, "mediaRange")
    assert len(index_ranges) == 4  # the video track's four 1 s fragments
    for (first, last), (_, media_last) in zip(index_ranges, media_ranges):
        index = parse_sidx(data[first : last + 1], first)
        (ref,) = index.references
        assert not ref.is_index
        assert ref.byte_range == ByteRange(media_last - last, last + 1)
        assert data[ref.byte_range.offset + 4 : ref.byte_range.offset + 8] == b"moof"
        assert index.seconds(ref) == pytest.approx(1.0, abs=0.05)


def test_a_global_sidx_tiles_the_file_fragment_by_fragment(dash_files):
    path = dash_files / "base" / "manifest-stream0.mp4"
    data = path.read_bytes()
    boxes = top_level_boxes(path)
    _, offset, size = next(b for b in boxes if b[0] == b"sidx")
    mpd = (dash_files / "base" / "manifest.mpd").read_text()
    assert (offset, offset + size - 1) in ranges(mpd, "indexRange")
    index = parse_sidx(data[offset : offset + size], offset)
    moofs = [o for kind, o, _ in boxes if kind == b"moof"]
    assert [r.byte_range.offset for r in index.references] == moofs
    last = index.references[-1].byte_range
    assert last.offset + last.length == len(data)  # contiguous to the end of the file
    assert sum(index.seconds(r) for r in index.references) == pytest.approx(4.0, abs=0.05)


def test_the_index_is_found_after_other_boxes_and_64_bit_fields_are_read():
    box = sidx_box([10, 20], [3000, 6000], version=1, first_offset=5, timescale=3000)
    styp = struct.pack(">I4s", 12, b"styp") + b"msdh"
    index = parse_sidx(styp + box, position=1000)
    end = 1000 + len(styp) + len(box)
    assert [r.byte_range for r in index.references] == [ByteRange(10, end + 5),
                                                         ByteRange(20, end + 15)]  # fmt: skip
    assert [index.seconds(r) for r in index.references] == [1.0, 2.0]
    assert index.timescale == 3000


def test_a_largesize_box_header_is_read():
    box = sidx_box([7], [1])
    large = struct.pack(">I4sQ", 1, b"sidx", len(box) + 8) + box[8:]
    assert box_size(large) == len(box) + 8
    assert parse_sidx(large).references[0].byte_range == ByteRange(7, len(large))


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (sidx_box([10, 20], [1, 1])[:-12], "does not fit"),
        (struct.pack(">I4s", 16, b"free") + bytes(8), "holds no sidx box"),
        (sidx_box([10], [1], timescale=0), "timescale of 0"),
        (sidx_box([0], [1]), "reference 1 is empty"),
        (sidx_box([10], [1])[:8] + b"\x02" + sidx_box([10], [1])[9:], "unknown version 2"),
        (
            sidx_box([10], [1])[:30] + struct.pack(">H", 9) + sidx_box([10], [1])[32:],
            "lists 9 references but holds only 1",
        ),
    ],
)
def test_broken_boxes_are_named(data, says):
    with pytest.raises(PlaylistError, match=says):
        parse_sidx(data)


def test_box_size_needs_a_header():
    assert box_size(b"\x00\x00") is None
    assert box_size(sidx_box([1], [1])) == 44
