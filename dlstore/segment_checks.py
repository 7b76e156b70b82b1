"""Checks on the bytes of one fetched file, as they arrive. Pure: bytes in, errors out.

- :class:`LengthCheck`: the body cut to the segment's byte range (when the server
  ignored ``Range``), checked against ``Content-Length`` and the range, and refused
  as soon as it is larger than ``max_segment_bytes`` (at once if the headers say so).
  :class:`SmallFileCheck` is the same for a playlist or key read into memory.
- :func:`ts_check_mode`: whether a segment must be, may be or is not MPEG-TS,
  from its URI's suffix; :class:`TsValidator` applies that to the decrypted bytes
  with a :class:`TsChecker` (0x47 every 188 bytes).
- :class:`Source`: what the kept bytes of an interrupted file are a part of (URI,
  byte range, the server's ETag / Last-Modified / length), the request that asks for
  the rest, and whether an answer continues them (a 206 whose ``Content-Range``
  starts where they end, with the same validator).

A file whose bytes are wrong raises :class:`CorruptSegmentError` (worth fetching
again) or, for a segment that does not decrypt to MPEG-TS, a ``SegmentError``; one
that is too large a ``SegmentTooLargeError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dlstore.errors import (
    CorruptSegmentError,
    DownloadError,
    HttpError,
    SegmentError,
    SegmentTooLargeError,
)
from dlstore.playlist import ByteRange, segment_container
from dlstore.sizes import format_exact_size
from dlstore.sniff import HEAD_BYTES, TS_PACKET, TS_SYNC, Kind, identify

# --------------------------------------------------------------------------- lengths


class LengthCheck:
    """Cuts a response body to the byte range and checks that it arrived whole.

    A ranged request answered with the whole file (200: the server ignored
    ``Range``) has the range cut out here; any other answer must be exactly the
    range's length. Feed every chunk through :meth:`cut`, then call :meth:`finish`.
    A body of more than ``max_bytes`` raises SegmentTooLargeError as that many bytes
    have come, or at once when its headers announce more.
    """

    def __init__(
        self,
        byte_range: ByteRange | None,
        status_code: int,
        wire_expected: int | None,
        what: str,
        max_bytes: int | None = None,
    ) -> None:
        self.what = what
        self.max_bytes = max_bytes
        self.wire_expected = wire_expected  # Content-Length, if the body is not encoded
        self.limit = byte_range.length if byte_range is not None else None
        self.ranged_here = byte_range is not None and status_code == 200
        self.skip = byte_range.offset if self.ranged_here else 0
        self.received = 0  # bytes of the body
        self.kept = 0  # bytes of the range
        answered_range = self.limit is not None and not self.ranged_here  # the server cut it
        if answered_range and wire_expected is not None and wire_expected != self.limit:
            raise DownloadError(
                f"The server answered the request for {what} with {wire_expected} bytes "
                f"instead of the {self.limit} asked for."
            )
        if max_bytes is not None and not self.ranged_here:
            announced = self.limit if self.limit is not None else wire_expected
            if announced is not None and announced > max_bytes:
                raise self._too_large(announced)

    def cut(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` that belongs to the file."""
        self.received += len(chunk)
        if self.max_bytes is not None and self.received > self.max_bytes:
            raise self._too_large(None)
        if self.skip:
            cut = min(self.skip, len(chunk))
            chunk = chunk[cut:]
            self.skip -= cut
        if self.limit is not None:
            chunk = chunk[: max(0, self.limit - self.kept)]
        self.kept += len(chunk)
        return chunk

    @property
    def full(self) -> bool:
        """The range is cut out whole: the rest of the body is not needed."""
        return self.ranged_here and self.kept >= self.limit

    def finish(self) -> None:
        """Raise if the body ended short, or brought nothing."""
        what, expected, limit = _cap(self.what), self.wire_expected, self.limit
        if not self.ranged_here and expected is not None and self.received != expected:
            raise HttpError(f"{what} arrived truncated ({self.received} of {expected} bytes).")
        if limit is not None and self.kept != limit:
            raise HttpError(f"{what} arrived truncated ({self.kept} of {limit} bytes).")
        if self.kept == 0 and not self.empty_ok:
            raise CorruptSegmentError(f"{what} is empty.")

    #: Whether a body of no bytes is whole (else CorruptSegmentError: fetched again).
    empty_ok = False

    def _too_large(self, announced: int | None) -> DownloadError:
        """The error for a body over ``max_bytes``: ``announced`` by its headers, or None
        when more than that came."""
        detail = "the server sent more than that"
        if announced is not None:
            detail = f"the server announces {format_exact_size(announced)}"
        limit = format_exact_size(self.max_bytes or 0)
        return SegmentTooLargeError(
            f"{_cap(self.what)} is larger than max_segment_bytes, {limit}: "
            f"{detail}. If the stream's segments really are this large, raise "
            "max_segment_bytes in the config."
        )


class SmallFileCheck(LengthCheck):
    """A :class:`LengthCheck` for a playlist or a key read into memory: ``max_bytes`` is a
    fixed limit, not max_segment_bytes, and an empty body is for its parser to judge."""

    empty_ok = True

    def _too_large(self, announced: int | None) -> DownloadError:
        if announced is not None:
            return DownloadError(
                f"{_cap(self.what)} is {announced} bytes, over the limit of {self.max_bytes}."
            )
        limit = self.max_bytes
        return DownloadError(f"{_cap(self.what)} is larger than the limit of {limit} bytes.")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------- MPEG-TS


def ts_check_mode(uri: str, fmp4: bool) -> str:
    """How to check a segment: "require" MPEG-TS, "sniff" its first byte, or "none"."""
    if fmp4:
        return "none"
    container = segment_container(uri)  # what its suffix says, if anything
    if container is None:
        return "sniff"
    return "require" if container == "mpegts" else "none"


class TsChecker:
    """Checks that a byte stream is whole MPEG-TS packets: 0x47 every 188 bytes."""

    def __init__(self) -> None:
        self._pos = 0  # offset of the next byte within its packet
        self.ok = True

    def feed(self, data: bytes) -> bool:
        if not data or not self.ok:
            return self.ok
        first = (TS_PACKET - self._pos) % TS_PACKET
        syncs = data[first::TS_PACKET]
        if isinstance(syncs, memoryview):  # a decrypted block's view (dlstore.crypto)
            syncs = syncs.tobytes()
        if syncs.count(TS_SYNC) != len(syncs):
            self.ok = False
        self._pos = (self._pos + len(data)) % TS_PACKET
        return self.ok

    def whole(self) -> bool:
        return self.ok and self._pos == 0


class TsValidator:
    """Applies a :func:`ts_check_mode` to the decrypted bytes of one file as they are written.

    ``label`` names the file in errors; ``encrypted`` says a failure means a wrong key.
    """

    def __init__(self, mode: str, label: str, encrypted: bool) -> None:
        self.mode = mode
        self.label = label
        self.encrypted = encrypted
        self.checker = TsChecker()
        self.started = False

    def check_all(self, pieces: Iterable[bytes | memoryview]) -> None:
        """:meth:`check` each of ``pieces``, in order."""
        for piece in pieces:
            self.check(piece)

    def check(self, data: bytes | memoryview) -> None:
        if self.mode == "none" or not data:
            return
        if not self.started:
            self.started = True
            if data[0] != TS_SYNC:  # "sniff": sniffed at the end, from the file's head
                head = bytes(data[:HEAD_BYTES])
                if self.mode == "sniff" or identify(head) is not Kind.BINARY:
                    self.mode = "none"
                    return
                self._bad("it does not start with an MPEG-TS sync byte")
        if not self.checker.feed(data):
            self._bad("its MPEG-TS sync bytes are out of place")

    def finish(self, written: int) -> None:
        if self.mode != "none" and written and not self.checker.whole():
            self._bad(f"it does not end on a whole MPEG-TS packet ({written} bytes)")

    def _bad(self, detail: str) -> None:
        if self.encrypted:
            raise SegmentError(
                f"The {self.label} did not decrypt to MPEG-TS video ({detail}); "
                "the AES key is probably wrong."
            )
        raise CorruptSegmentError(f"The {self.label} is not valid MPEG-TS data: {detail}.")


# --------------------------------------------------------------------------- resuming

#: A validator longer than this, or not printable ASCII, is not kept (nor sent back).
MAX_VALIDATOR_CHARS = 256
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Source:
    """What the kept bytes of a file are a part of, from the answer that brought the first.

    ``byte_range`` is the file's range of the resource (None: the whole resource);
    ``total`` the resource's length when the server said; ``etag`` (strong ones only)
    and ``last_modified`` its validators. Without a validator the bytes cannot be
    continued (:attr:`resumable`): nothing proves the resource is still the same.
    """

    uri: str  # without the query string: tokens rotate
    byte_range: ByteRange | None = None
    total: int | None = None
    etag: str | None = None
    last_modified: str | None = None

    @classmethod
    def of(
        cls, uri: str, byte_range: ByteRange | None, status: int, headers: Mapping[str, str]
    ) -> Source:
        """The source of a fresh answer (200 or 206) to the request for a whole file."""
        encoded = _encoded(headers)
        total = _content_range(headers)[2] if status == 206 else None
        if status == 200 and not encoded:
            total = _number(headers.get("Content-Length"))
        usable = not encoded and (headers.get("Accept-Ranges") or "").strip().lower() != "none"
        return cls(
            uri=uri,
            byte_range=byte_range,
            total=total,
            etag=_strong_etag(headers) if usable else None,
            last_modified=_validator(headers.get("Last-Modified")) if usable else None,
        )

    @property
    def resumable(self) -> bool:
        return bool(self.etag or self.last_modified)

    @property
    def length(self) -> int | None:
        """The whole file's length, when known."""
        return self.byte_range.length if self.byte_range is not None else self.total

    def holds(self, size: int) -> bool:
        """``size`` bytes are the whole file."""
        return self.length is not None and size == self.length

    def rest_request(self, size: int) -> dict[str, str]:
        """The headers that ask for the file after its first ``size`` bytes."""
        offset = self.byte_range.offset if self.byte_range is not None else 0
        last = str(self.byte_range.last) if self.byte_range is not None else ""
        headers = {"Range": f"bytes={offset + size}-{last}"}
        if self.resumable:  # a changed resource is then sent whole, in the same answer
            headers["If-Range"] = self.etag or self.last_modified or ""
        return headers

    def continuation(self, size: int, status: int, headers: Mapping[str, str]) -> ByteRange | None:
        """The range an answer to :meth:`rest_request` carries, if it continues the ``size``
        bytes kept: a 206 of the same resource (validator, length) starting where they end."""
        start, end, total = _content_range(headers)
        offset = self.byte_range.offset if self.byte_range is not None else 0
        if status != 206 or start != offset + size or _encoded(headers):
            return None
        if self.total is not None and total != self.total:
            return None
        wanted_last = self.byte_range.last if self.byte_range is not None else None
        if wanted_last is None and self.total is not None:
            wanted_last = self.total - 1
        if end is None or (wanted_last is not None and end != wanted_last):
            return None
        same = _strong_etag(headers) == self.etag if self.etag else None
        if same is None and self.last_modified:
            same = _validator(headers.get("Last-Modified")) == self.last_modified
        return ByteRange(length=end - start + 1, offset=start) if same else None

    def as_record(self) -> dict:
        span = self.byte_range
        return {
            "uri": self.uri,
            "range": [span.offset, span.length] if span else None,
            "total": self.total,
            "etag": self.etag,
            "last_modified": self.last_modified,
        }

    @classmethod
    def from_record(cls, record: object) -> Source | None:
        """The source a record of :meth:`as_record` describes; None if it is not one."""
        if not isinstance(record, dict) or not isinstance(record.get("uri"), str):
            return None
        span, total = record.get("range"), record.get("total")
        texts = [record.get("etag"), record.get("last_modified")]
        if not all(value is None or isinstance(value, str) for value in texts):
            return None
        if not (total is None or _is_count(total)):
            return None
        if span is not None and not (isinstance(span, list) and len(span) == 2
                                     and all(_is_count(n) for n in span)):  # fmt: skip
            return None
        byte_range = ByteRange(offset=span[0], length=span[1]) if span else None
        return cls(record["uri"], byte_range, total, texts[0], texts[1])


def _content_range(headers: Mapping[str, str]) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of a ``Content-Range: bytes first-last/total`` header."""
    match = _CONTENT_RANGE.fullmatch((headers.get("Content-Range") or "").strip())
    if match is None or int(match[2]) < int(match[1]):
        return None, None, None
    return int(match[1]), int(match[2]), None if match[3] == "*" else int(match[3])


def _strong_etag(headers: Mapping[str, str]) -> str | None:
    value = _validator(headers.get("ETag"))
    return value if value and not value.startswith("W/") else None


def _validator(value: str | None) -> str | None:
    value = (value or "").strip()
    if (
        not value
        or len(value) > MAX_VALIDATOR_CHARS
        or not (value.isascii() and value.isprintable())
    ):
        return None
    return value


def _encoded(headers: Mapping[str, str]) -> bool:
    return (headers.get("Content-Encoding") or "identity").strip().lower() not in ("", "identity")


def _number(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() else None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
