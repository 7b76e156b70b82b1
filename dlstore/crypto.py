"""AES-128 for HLS: keys fetched once per URI, segments decrypted as they stream.

``KeyStore`` fetches each key URI once, however many threads ask at the same
time. ``Decryptor`` is fed the encrypted bytes chunk by chunk and checks the
PKCS#7 padding at the end: bad padding almost always means the wrong key. It
also hands out every block as soon as it is whole (padding stripped at the end),
so a segment cut short keeps all its whole blocks decrypted, and
:func:`last_cipher_block` (those blocks encrypted again) gives the IV that
decrypts the rest.
A key server's answer that is not a key is described by kind and size
(:func:`dlstore.sniff.describe`), never quoted.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Iterable
from urllib.parse import unquote_to_bytes

from dlstore.errors import DownloadError, SegmentError
from dlstore.redact import redact_url
from dlstore.sniff import Kind, describe, identify

KEY_BYTES = 16
BLOCK_BITS = 128
AES_BLOCK = BLOCK_BITS // 8


class KeyStore:
    """Thread-safe cache of AES keys by URI; ``fetch(uri) -> bytes`` is called once per URI."""

    def __init__(self, fetch: Callable[[str], bytes]) -> None:
        self._fetch = fetch
        self._keys: dict[str, bytes] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, uri: str) -> bytes:
        with self._guard:
            if uri in self._keys:
                return self._keys[uri]
            lock = self._locks.setdefault(uri, threading.Lock())
        with lock:
            with self._guard:
                if uri in self._keys:
                    return self._keys[uri]
            raw = _data_uri(uri) if uri.startswith("data:") else self._fetch(uri)
            key = parse_key(raw, uri)
            with self._guard:
                self._keys[uri] = key
            return key


def parse_key(raw: bytes, uri: str) -> bytes:
    """The 16-byte AES key in ``raw`` (raw bytes, or 32 hex digits), else a clear error."""
    if len(raw) == KEY_BYTES:
        return raw
    text = raw.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    hint = " (the key server may want a Cookie or Referer)" if identify(raw) is Kind.HTML else ""
    data = uri.startswith("data:")
    where = "The playlist's data: key" if data else f"The AES key at {redact_url(uri)}"
    raise DownloadError(
        f"{where} is {len(raw)} bytes long, not {KEY_BYTES}: it is {describe(raw)}{hint}."
    )


def _data_uri(uri: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise DownloadError("The playlist's data: key URI is malformed.")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=False)
        return unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise DownloadError("The playlist's data: key URI is malformed.") from exc


_BUFFERS = threading.local()  # each thread's output buffer, reused by every segment it decrypts


def _out_buffer(size: int) -> bytearray:
    """This thread's output buffer, at least ``size`` bytes: a fresh 200 KB ``bytes`` per
    chunk would cost more than decrypting it (the allocator faults its pages in anew)."""
    buffer = getattr(_BUFFERS, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _BUFFERS.buffer = bytearray(max(size, 1 << 16))
    return buffer


class Decryptor:
    """AES-128-CBC with PKCS#7 padding, fed chunk by chunk.

    :meth:`update` and :meth:`finalize` give the clear bytes. :meth:`update_blocks` and
    :meth:`finalize_blocks` also give every decrypted block as soon as it is whole,
    padding and all: what a segment cut short keeps (its clear bytes lag a block
    behind: the last block may be padding); after them, :attr:`padding` says how many
    bytes to drop from the end. The blocks are decrypted into a buffer that the
    thread's next update reuses (:meth:`update_blocks`); the padding is checked by
    hand on the last block, so no byte is copied to be unpadded.
    """

    def __init__(self, key: bytes, iv: bytes, name: str) -> None:
        # Imported here: a clear stream (most of them) never needs cryptography.
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self._name = name
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        self._held = b""  # the last decrypted block: clear bytes, or the padding
        self.padding = 0  # decrypted bytes given out minus clear bytes given out

    def update(self, data: bytes) -> bytes:
        return b"".join(self.update_blocks(data)[1])

    def finalize(self) -> bytes:
        return b"".join(self.finalize_blocks()[1])

    def update_blocks(self, data: bytes) -> tuple[memoryview, tuple[bytes | memoryview, ...]]:
        """(the whole blocks ``data`` completes, decrypted; the clear bytes they complete,
        in pieces). The blocks and the pieces are views of this thread's buffer: use
        them before this thread decrypts anything else."""
        buffer = _out_buffer(len(data) + AES_BLOCK - 1)
        blocks = memoryview(buffer)[: self._cipher.update_into(data, buffer)]
        if not blocks:
            return blocks, ()
        held, self._held = self._held, bytes(blocks[-AES_BLOCK:])
        self.padding = AES_BLOCK
        return blocks, (held, blocks[:-AES_BLOCK])

    def finalize_blocks(self) -> tuple[bytes, tuple[bytes, ...]]:
        """(the last decrypted blocks, the last clear bytes in pieces); then :attr:`padding`
        is the padding's length. SegmentError if the end is not whole blocks or badly
        padded."""
        try:
            blocks = self._cipher.finalize()  # CBC: nothing, every whole block is out
        except ValueError as exc:
            raise SegmentError(
                f"Segment {self._name} is not a whole number of AES blocks; "
                "it is truncated or not encrypted the way the playlist says."
            ) from exc
        last = self._held
        pad = last[-1] if last else 0
        if not 1 <= pad <= AES_BLOCK or last[-pad:] != bytes([pad]) * pad:
            raise SegmentError(
                f"Segment {self._name} did not decrypt cleanly (bad padding); "
                "the AES key is probably wrong."
            )
        self.padding = pad
        return blocks, (last[:-pad],)


def last_cipher_block(key: bytes, iv: bytes, clear: Iterable[bytes]) -> bytes:
    """The last ciphertext block of ``clear`` (whole blocks, no padding) encrypted with
    AES-128-CBC from ``iv``: the IV that decrypts what follows it. ``iv`` if it is empty."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    last = iv
    for block in clear:
        out = encryptor.update(block)
        if out:
            last = out[-AES_BLOCK:]
    return last
