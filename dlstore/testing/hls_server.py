"""A threaded HTTP/1.1 server on 127.0.0.1 that serves a folder, and misbehaves on request.

    with HlsServer(folder) as server:
        server.faults = Faults(rate=0.2, seed=1)          # 503 / reset / truncate on 20%
        server.fail_always["/plain/seg-003.ts"] = 404      # a segment that is gone
        server.fail_times("/aes_iv/key.bin", 2, "503")     # fail twice, then serve
        server.required_headers = {"Referer": "https://site/"}  # 403 without it
        server.redirects["/old.m3u8"] = "/plain/index.m3u8"
        server.bodies["/page.m3u8"] = Body(b"<html>…", "text/html")
        server.latency = 0.05                              # per request, seconds
        server.rate_limit_bps = 1 << 20                    # per connection
        server.fail_times("/plain/seg-001.ts", 1, "dribble")  # 1 byte per dribble_interval
        server.fail_always["/plain/index.m3u8"] = "dribble-head"  # so are the headers
        server.bodies["/live.ts"] = Endless()              # a body that never ends
        server.drop_after("/plain/seg-002.ts", 5000)       # 5000 bytes of the body, then RST
        server.ranges = False                              # Range ignored: always 200, whole
        server.validators = False                          # no ETag, no Last-Modified
        server.etags["/plain/seg-002.ts"] = '"v2"'         # another ETag: "the file changed"
        requests.get(server.url("/plain/index.m3u8"))
        server.hits["/plain/seg-000.ts"]                    # how often it was asked for
        server.sent["/plain/seg-000.ts"]                    # body bytes written for it
        server.requests                                     # [(path, headers)], in order
        server.disconnects["/live.ts"]                      # clients gone mid-body
        server.sent["/plain/seg-000.ts"]                    # body bytes sent for it, in all

Range requests (``bytes=a-b``, ``a-``, ``-n``) get 206 with Content-Range, unless
``If-Range`` names another ETag or date than the file's (then 200, whole). Files
and bodies carry an ETag (files also Last-Modified). Keep-alive is on, as with
real CDNs. Nothing is printed for each request. ``HlsServer(folder,
host="127.0.0.2")`` listens on another loopback address (``base_url`` names it).

:class:`RawServer` answers every connection with fixed bytes, for the replies no
HTTP server library would send (a status line that is not HTTP, a broken chunk
length, a header without a colon)::

    with RawServer(b"SSH-2.0-OpenSSH_9.6\\r\\n") as raw:
        requests.get(raw.url("/v.m3u8"))                    # fails: not HTTP
        raw.connections                                     # 1

A body being dribbled or never ending stops when the client goes away (counted
in ``disconnects``), when a write has waited 5 s, or when the server stops.
"""

from __future__ import annotations

import email.utils
import hashlib
import mimetypes
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

FAULT_KINDS = ("503", "reset", "truncate")  # also "429", "dribble", "dribble-head", on request
WRITE_CHUNK = 16 * 1024
SLOW_WRITE_TIMEOUT = 5.0  # a dribbled or endless body gives up on a client that stops reading
DROP_PAUSE = 0.1  # seconds between the last byte of a dropped body and the RST
TS_NULL_PACKET = b"\x47\x1f\xff\x10" + b"\xff" * 184
CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".bin": "application/octet-stream",
}


@dataclass
class Faults:
    """Fail a share of requests: ``rate`` of them, picking among ``kinds``, reproducibly."""

    rate: float = 0.2
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 1
    applies_to: Callable[[str], bool] = field(default=lambda path: True)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def pick(self, path: str) -> str | None:
        if not self.applies_to(path):
            return None
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            kind = self._rng.choice(self.kinds)
            self.injected[kind] += 1
            return kind


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: str = "application/octet-stream"
    status: int = 200


@dataclass(frozen=True)
class Endless:
    """A body that never ends: ``fill`` over and over, ``step`` bytes every ``interval`` s.

    ``content_length`` is announced if given (and never reached); without it the
    body is delimited by the end of the connection, which never comes.
    """

    fill: bytes = TS_NULL_PACKET
    content_length: int | None = None
    interval: float = 0.0
    step: int = WRITE_CHUNK
    content_type: str = "video/mp2t"


class HlsServer:
    def __init__(self, root: Path | None = None, host: str = "127.0.0.1") -> None:
        self.root = Path(root) if root is not None else None
        self.hits: Counter[str] = Counter()
        self.request_headers: list[dict[str, str]] = []
        self.faults: Faults | None = None
        self.fail_always: dict[str, int | str] = {}
        self._fail_counts: dict[str, tuple[int, str]] = {}
        self.required_headers: dict[str, str] = {}
        self.redirects: dict[str, str] = {}
        self.bodies: dict[str, Body | Endless] = {}
        self.latency: float = 0.0
        self.rate_limit_bps: int | None = None
        self.retry_after: str | None = None  # sent with injected 503s
        self.dribble_interval: float = 0.1  # seconds between the bytes of a "dribble" body
        self.bytes_sent = 0
        self.sent: Counter[str] = Counter()  # body bytes written, per path
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers), in order
        self.ranges = True  # False: Range is ignored (200, the whole body)
        self.validators = True  # False: no ETag or Last-Modified
        self.etags: dict[str, str] = {}  # an ETag to send instead of the computed one
        self._drops: dict[str, tuple[int, int, int]] = {}  # path → (bytes, times, skip)
        self.disconnects: Counter[str] = Counter()  # bodies the client left before their end
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.app = self
        self._thread: threading.Thread | None = None

    # -- lifecycle
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def start(self) -> HlsServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HlsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration helpers
    def fail_times(self, path: str, times: int, kind: str = "503") -> None:
        """Fail the next ``times`` requests for ``path`` with ``kind``, then serve it."""
        with self._lock:
            self._fail_counts[path] = (times, kind)

    def drop_after(self, path: str, count: int, times: int = 1, skip: int = 0) -> None:
        """Of the bodies of ``path`` after the next ``skip``, the next ``times`` stop after
        ``count`` bytes (the headers announce all of it): a pause, for the client to read
        them, then a TCP RST."""
        with self._lock:
            self._drops[path] = (count, times, skip)

    def fetched(self, paths: Iterable[str]) -> set[str]:
        """Those of ``paths`` that were requested at least once."""
        with self._lock:
            return {path for path in paths if self.hits[path]}

    def reset_counters(self) -> None:
        with self._lock:
            self.hits.clear()
            self.request_headers.clear()
            self.requests.clear()
            self.bytes_sent = 0
            self.sent.clear()
            self.disconnects.clear()

    # -- used by the handler
    def _record(self, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.hits[path] += 1
            self.request_headers.append(headers)
            self.requests.append((path, headers))

    def _drop_for(self, path: str) -> int | None:
        with self._lock:
            count, times, skip = self._drops.get(path, (0, 0, 0))
            if times <= 0 or skip > 0:
                if skip > 0:
                    self._drops[path] = (count, times, skip - 1)
                return None
            self._drops[path] = (count, times - 1, 0)
            return count

    def _fault_for(self, path: str) -> int | str | None:
        if path in self.fail_always:
            return self.fail_always[path]
        with self._lock:
            if path in self._fail_counts:
                times, kind = self._fail_counts[path]
                if times > 0:
                    self._fail_counts[path] = (times - 1, kind)
                    return kind
        if self.faults is not None:
            return self.faults.pick(path)
        return None

    def _count_sent(self, path: str, count: int) -> None:
        with self._lock:
            self.bytes_sent += count
            self.sent[path] += count

    def _client_left(self, path: str) -> None:
        with self._lock:
            self.disconnects[path] += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: HlsServer

    def handle_error(self, request, client_address) -> None:
        pass  # clients that go away mid-body are expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        app = self.server.app
        path = self._served = unquote(urlsplit(self.path).path)
        app._record(path, {k: v for k, v in self.headers.items()})
        if app.latency:
            time.sleep(app.latency)
        for name, value in app.required_headers.items():
            if self.headers.get(name) != value:
                return self._plain(403, b"forbidden: missing header\n")
        if path in app.redirects:
            return self._redirect(app.redirects[path])
        fault = app._fault_for(path)
        if isinstance(fault, int):
            return self._plain(fault, f"error {fault}\n".encode())
        if fault == "503":
            extra = {"Retry-After": app.retry_after} if app.retry_after else {}
            return self._plain(503, b"busy\n", extra)
        if fault == "429":
            return self._plain(429, b"slow down\n", {"Retry-After": app.retry_after or "0"})
        if fault == "reset":
            return self._reset()
        if isinstance(app.bodies.get(path), Endless):
            return self._send_endless(app.bodies[path], head)
        data = self._load(path)
        if data is None:
            return self._plain(404, b"not found\n")
        body, content_type, status = data
        self._send_body(body, content_type, status, head, fault)

    def _load(self, path: str):
        app = self.server.app
        if path in app.bodies:
            b = app.bodies[path]
            return b.data, b.content_type, b.status
        if app.root is None:
            return None
        target = (app.root / path.lstrip("/")).resolve()
        root = app.root.resolve()
        if root not in target.parents or not target.is_file():
            return None
        suffix = target.suffix.lower()
        ctype = CONTENT_TYPES.get(suffix) or mimetypes.guess_type(target.name)[0]
        return target, ctype or "application/octet-stream", 200

    def _send_body(self, body, content_type: str, status: int, head: bool, fault: str | None):
        size = body.stat().st_size if isinstance(body, Path) else len(body)
        start, end = 0, size - 1
        validators = self._validators(body)
        if self._honours_range(status, size, validators):
            parsed = _parse_range(self.headers["Range"], size)
            if parsed is None:
                return self._plain(416, b"bad range\n", {"Content-Range": f"bytes */{size}"})
            start, end = parsed
            status = 206
        length = max(0, end - start + 1)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        if self.server.app.ranges:
            self.send_header("Accept-Ranges", "bytes")
        for name, value in validators.items():
            self.send_header(name, value)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if fault == "dribble-head":
            self._dribble_head()
        else:
            self.end_headers()
        if head:
            return
        drop = self.server.app._drop_for(self._served)
        cut = fault == "truncate" or drop is not None
        to_send = length // 2 if fault == "truncate" else min(length, drop or length)
        step = 1 if fault == "dribble" else WRITE_CHUNK
        if isinstance(body, Path):
            with open(body, "rb") as fh:
                fh.seek(start)
                self._write(fh.read, to_send, step)
        else:
            view = memoryview(body)[start : start + to_send]
            pos = 0

            def read(n: int) -> bytes:
                nonlocal pos
                chunk = bytes(view[pos : pos + n])
                pos += len(chunk)
                return chunk

            self._write(read, to_send, step)
        if cut:
            self.wfile.flush()
            if drop is not None:
                time.sleep(DROP_PAUSE)
            self._reset()

    def _dribble_head(self) -> None:
        """End the headers (as end_headers does) but send them a byte per dribble_interval."""
        self._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]
        head, self._headers_buffer = b"".join(self._headers_buffer), []  # type: ignore[attr-defined]
        view = iter(head)
        self._write(lambda n: bytes([next(view)]) if n else b"", len(head), step=1)

    def _validators(self, body) -> dict[str, str]:
        """The ETag (and for a file Last-Modified) of ``body``, unless validators are off."""
        app = self.server.app
        if not app.validators:
            return {}
        if isinstance(body, Path):
            info = body.stat()
            etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
            found = {"Last-Modified": email.utils.formatdate(info.st_mtime, usegmt=True)}
        else:
            etag, found = f'"{hashlib.sha256(body).hexdigest()[:16]}"', {}
        return {"ETag": app.etags.get(self._served, etag), **found}

    def _honours_range(self, status: int, size: int, validators: dict[str, str]) -> bool:
        """Answer the request's Range: ranges on, a 200 body, and ``If-Range`` (if sent)
        naming the body's ETag or Last-Modified."""
        if not (self.headers.get("Range") and status == 200 and size and self.server.app.ranges):
            return False
        if_range = self.headers.get("If-Range")
        return if_range is None or if_range in validators.values()

    def _write(self, read, count: int, step: int = WRITE_CHUNK) -> None:
        """Send ``count`` bytes from ``read``; ``step`` 1 dribbles them (``dribble_interval``)."""
        app = self.server.app
        rate = app.rate_limit_bps
        started = time.monotonic()
        sent = 0
        if step < WRITE_CHUNK:  # a slow body: give up on a stuck client, then close
            self.connection.settimeout(SLOW_WRITE_TIMEOUT)
            self.close_connection = True
        while sent < count:
            chunk = read(min(step, count - sent))
            if not chunk or not self._send(chunk):
                break
            sent += len(chunk)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if step < WRITE_CHUNK and app._stopping.wait(app.dribble_interval):
                break

    def _send(self, chunk: bytes) -> bool:
        """Write ``chunk``; False (and the connection closed) when the client has gone."""
        try:
            self.wfile.write(chunk)
        except OSError:
            self.close_connection = True
            self.server.app._client_left(self._served)
            return False
        self.server.app._count_sent(self._served, len(chunk))
        return True

    def _send_endless(self, body: Endless, head: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", body.content_type)
        if body.content_length is not None:
            self.send_header("Content-Length", str(body.content_length))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if head:
            return
        self.connection.settimeout(SLOW_WRITE_TIMEOUT)
        repeated = body.fill * (body.step // len(body.fill) + 2)
        offset = 0
        while not self.server.app._stopping.wait(body.interval):
            chunk = repeated[offset : offset + body.step]
            offset = (offset + body.step) % len(body.fill)
            if not self._send(chunk):
                return

    def _plain(self, status: int, text: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(text)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _reset(self) -> None:
        """Abort the connection with a TCP RST."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class RawServer:
    """A TCP server on ``host`` that reads each request's head, sends ``reply`` as it
    is and closes the connection. ``connections`` counts the connections answered."""

    def __init__(self, reply: bytes, host: str = "127.0.0.1") -> None:
        self.reply = reply
        self.connections = 0
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.05)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def url(self, path: str) -> str:
        return f"http://{self._listener.getsockname()[0]}:{self.port}{path}"

    def start(self) -> RawServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    conn.sendall(self.reply)
                except OSError:
                    pass
            self.connections += 1


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            count = int(last)
            start, end = max(0, size - count), size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
    except ValueError:
        return None
    end = min(end, size - 1)
    if start > end or start >= size:
        return None
    return start, end
