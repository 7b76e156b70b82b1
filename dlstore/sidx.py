"""The ``sidx`` (segment index) box of an ISO base media file. Pure: bytes in, index out.

A DASH ``SegmentBase`` representation is one fragmented MP4 file whose
``indexRange`` holds a ``sidx`` box (ISO/IEC 14496-12 §8.16.3): for each
subsegment its size in bytes and its duration. Subsegments follow each other
from ``first_offset`` bytes after the box's end. A reference may point at
another ``sidx`` instead of media (hierarchical or daisy-chained indexes);
:func:`parse_sidx` reports those as ``is_index`` references for the caller to
read in turn.

    parse_sidx(data, position) → SegmentIndex(timescale, references)
    box_size(head) → how many bytes the box starting in ``head`` has

``position`` is the file offset of ``data[0]``, so the references' byte ranges
are file offsets ready for an HTTP ``Range`` header. Malformed bytes raise
:class:`~dlstore.errors.PlaylistError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dlstore.errors import PlaylistError
from dlstore.playlist import ByteRange

BOX_HEADER = 8
REFERENCE_BYTES = 12


@dataclass(frozen=True)
class Reference:
    """One subsegment (or, with ``is_index``, another sidx box) of the file."""

    byte_range: ByteRange
    duration: int  # in the index's timescale
    is_index: bool = False


@dataclass(frozen=True)
class SegmentIndex:
    timescale: int
    earliest_time: int
    references: tuple[Reference, ...]

    def seconds(self, reference: Reference) -> float:
        return reference.duration / self.timescale


def parse_sidx(data: bytes, position: int = 0) -> SegmentIndex:
    """The first ``sidx`` box among the top-level boxes of ``data`` (found at file offset
    ``position``)."""
    offset = 0
    while offset + BOX_HEADER <= len(data):
        size, kind, header = _box_header(data, offset)
        if size < header or offset + size > len(data):
            raise PlaylistError(
                f"The segment index has a box {kind!r} of {size} bytes at offset "
                f"{position + offset}, which does not fit the {len(data)} bytes read."
            )
        if kind == b"sidx":
            body = data[offset + header : offset + size]
            return _sidx_body(body, position + offset + size)
        offset += size
    raise PlaylistError("The index range of the DASH representation holds no sidx box.")


def box_size(head: bytes) -> int | None:
    """The size of the box that ``head`` (at least its first 16 bytes) starts with; None if
    ``head`` is too short to tell."""
    if len(head) < BOX_HEADER:
        return None
    size = struct.unpack_from(">I", head)[0]
    if size == 1:
        return struct.unpack_from(">Q", head, 8)[0] if len(head) >= 16 else None
    return size or None


def _box_header(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(box size, four-character type, header length) of the box at ``offset``."""
    size, kind = struct.unpack_from(">I4s", data, offset)
    if size == 1:
        if offset + 16 > len(data):
            raise PlaylistError("The segment index ends inside a box header.")
        (size,) = struct.unpack_from(">Q", data, offset + 8)
        return size, kind, 16
    if size == 0:  # the box runs to the end of the file
        return len(data) - offset, kind, BOX_HEADER
    return size, kind, BOX_HEADER


def _sidx_body(body: bytes, end: int) -> SegmentIndex:
    """The fields after the box header; ``end`` is the file offset just past the box."""
    if len(body) < 4:
        raise PlaylistError("The sidx box is truncated.")
    version = body[0]
    if version not in (0, 1):
        raise PlaylistError(f"The sidx box has the unknown version {version}.")
    wide = version == 1
    fixed = ">IIQQHH" if wide else ">IIIIHH"
    if len(body) < 4 + struct.calcsize(fixed):
        raise PlaylistError("The sidx box is truncated.")
    _ref_id, timescale, earliest, first_offset, _reserved, count = struct.unpack_from(
        fixed, body, 4
    )
    table = 4 + struct.calcsize(fixed)
    if timescale == 0:
        raise PlaylistError("The sidx box has a timescale of 0.")
    if len(body) < table + count * REFERENCE_BYTES:
        raise PlaylistError(
            f"The sidx box lists {count} references but holds only "
            f"{(len(body) - table) // REFERENCE_BYTES}."
        )
    references = []
    start = end + first_offset
    for number in range(count):
        word, duration, _sap = struct.unpack_from(">III", body, table + number * REFERENCE_BYTES)
        size = word & 0x7FFFFFFF
        if size == 0:
            raise PlaylistError(f"The sidx box's reference {number + 1} is empty.")
        references.append(Reference(ByteRange(size, start), duration, is_index=bool(word >> 31)))
        start += size
    return SegmentIndex(timescale=timescale, earliest_time=earliest, references=tuple(references))
