"""AES-128 for HLS: keys fetched once per URI, segments decrypted as they stream.

``KeyStore`` fetches each key URI once, however many threads ask at the same
time. ``Decryptor`` is fed the encrypted bytes chunk by chunk and checks the
PKCS#7 padding at the end: bad padding almost always means the wrong key.
A key server's answer that is not a key is described by kind and size
(:func:`dlstore.sniff.describe`), never quoted.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from dlstore.errors import DownloadError, SegmentError
from dlstore.redact import redact_url
from dlstore.sniff import Kind, describe, identify

KEY_BYTES = 16
BLOCK_BITS = 128


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


class Decryptor:
    """AES-128-CBC with PKCS#7 padding, fed chunk by chunk."""

    def __init__(self, key: bytes, iv: bytes, name: str) -> None:
        # Imported here: a clear stream (most of them) never needs cryptography.
        from cryptography.hazmat.primitives import padding
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self._name = name
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        self._unpadder = padding.PKCS7(BLOCK_BITS).unpadder()

    def update(self, data: bytes) -> bytes:
        return self._unpadder.update(self._cipher.update(data))

    def finalize(self) -> bytes:
        try:
            tail = self._cipher.finalize()
        except ValueError as exc:
            raise SegmentError(
                f"Segment {self._name} is not a whole number of AES blocks; "
                "it is truncated or not encrypted the way the playlist says."
            ) from exc
        try:
            return self._unpadder.update(tail) + self._unpadder.finalize()
        except ValueError as exc:
            raise SegmentError(
                f"Segment {self._name} did not decrypt cleanly (bad padding); "
                "the AES key is probably wrong."
            ) from exc


class Passthrough:
    """The Decryptor interface for clear segments."""

    def update(self, data: bytes) -> bytes:
        return data

    def finalize(self) -> bytes:
        return b""
