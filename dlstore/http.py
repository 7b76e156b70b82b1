"""HTTP for dlstore: one pooled session per download, retries, and error mapping.

Apart from :mod:`dlstore.netpolicy`, which shapes the session (where connections
may go, which headers go where), this is the only module that talks to
``requests``. Its exceptions are mapped to dlstore errors here, once: connection
trouble, timeouts, 5xx and 429 become
:class:`~dlstore.errors.TransientDownloadError` (worth retrying), other 4xx a
plain :class:`~dlstore.errors.DownloadError` that says what to do. URLs in those
sentences are shown by :func:`~dlstore.redact.redact_url`, without user-info or query string, and no
sentence quotes what a server sent: a status is given its standard phrase
(:func:`status_text`), a broken connection or response the kind of failure it was.

Bounds: a body is read as it arrives (:func:`iter_body`) and aborted when it
stalls (no byte for ``min(read_timeout, stall_timeout)`` seconds, or less than
1 KiB in ``stall_timeout`` seconds of waiting); one attempt at a playlist or a key
must be over within ``connect_timeout + read_timeout`` seconds (:func:`fetch_small`);
a segment's request must have all its response's headers within ``read_timeout``
seconds (:meth:`ActiveResponses.requesting`, :class:`HeaderWatchdog`).
:class:`ActiveResponses` lets another thread (cancel, shutdown, a deadline) abort
the responses being read by shutting their sockets down.

Tests inject a transport with ``session.mount(prefix, adapter)``.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import functools
import http.client
import math
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import TypeVar

import requests
import urllib3
import urllib3.exceptions

from dlstore.errors import (
    CancelledError,
    DiskFullError,
    DownloadError,
    HttpError,
    NotWritableError,
    SlowServerError,
    TransientDownloadError,
    UnsupportedStreamError,
)
from dlstore.netpolicy import (
    ORIGIN_BOUND_HEADERS,
    OriginBoundSession,
    PolicyAdapter,
    header_watch,
)
from dlstore.options import DownloadOptions
from dlstore.playlist import ByteRange
from dlstore.segment_checks import SmallFileCheck
from dlstore.validate import check_url

USER_AGENT = "Mozilla/5.0 (compatible; dlstore/0.1; +https://github.com/)"
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 60.0
MAX_REDIRECTS = 10

T = TypeVar("T")
_JITTER = random.Random()  # shared: seeding one per segment from os.urandom costs CPU


def make_session(options: DownloadOptions, origin_url: str) -> requests.Session:
    """The session for one download of ``origin_url`` (the URL the task names).

    Its pool fits ``options.threads``; every connection obeys
    ``options.deny_networks``; the task's Cookie and Authorization headers go only to
    ``origin_url``'s origin, its other headers to every host. Nothing comes from the
    environment: no proxy (it would bypass the policy), no ``~/.netrc`` credentials.
    """
    headers = {name.strip(): value.strip() for name, value in options.headers.items()}
    bound = {name: value for name, value in headers.items() if name.lower() in ORIGIN_BOUND_HEADERS}
    session = OriginBoundSession(origin_url, bound)
    session.trust_env = False
    pool = max(4, options.threads + 2)
    adapter = PolicyAdapter(
        options.deny_networks, pool_connections=4, pool_maxsize=pool, max_retries=0
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = MAX_REDIRECTS
    session.headers["User-Agent"] = USER_AGENT
    session.headers.update({name: value for name, value in headers.items() if name not in bound})
    return session


@dataclass
class Retry:
    """How often and how long to retry; ``wait`` returns True when told to stop."""

    attempts: int
    base_delay: float
    wait: Callable[[float], bool]
    rng: random.Random
    on_retry: Callable[[TransientDownloadError], None] | None = None  # before each retry

    @classmethod
    def from_options(
        cls,
        options: DownloadOptions,
        stop: threading.Event | None = None,
        *,
        on_retry: Callable[[TransientDownloadError], None] | None = None,
    ) -> Retry:
        event = stop or threading.Event()
        return cls(
            attempts=max(1, options.max_retries + 1),
            base_delay=max(0.0, options.retry_delay),
            wait=event.wait,
            rng=_JITTER,
            on_retry=on_retry,
        )

    def delay(self, attempt: int, error: TransientDownloadError) -> float:
        backoff = min(MAX_BACKOFF_SECONDS, self.base_delay * (2**attempt))
        backoff *= self.rng.uniform(0.5, 1.5)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            backoff = max(backoff, min(MAX_RETRY_AFTER_SECONDS, retry_after))
        return backoff

    def run(self, action: Callable[[int], T]) -> T:
        """Call ``action(attempt)`` until it stops raising TransientDownloadError."""
        for attempt in range(self.attempts):
            try:
                return action(attempt)
            except TransientDownloadError as exc:
                if attempt + 1 >= self.attempts:
                    raise
                if self.on_retry is not None:
                    self.on_retry(exc)
                if self.wait(self.delay(attempt, exc)):
                    raise CancelledError() from exc
        raise AssertionError("unreachable")  # pragma: no cover


def check_status(response: requests.Response, what: str) -> None:
    """Raise the right dlstore error for a non-2xx response about ``what``."""
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = status_text(status)
    if status == 429 or status == 408 or status >= 500:
        raise HttpError(
            f"The server failed to send {what} ({reason}); trying again later may work.",
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )
    if status in (401, 403):
        raise DownloadError(
            f"The server refused {what} ({reason}). The site probably wants the headers a "
            "browser sends: pass them, e.g. --header 'Referer: https://the-site/' or "
            "--header 'Cookie: …' (or \"headers\" in the task's metadata)."
        )
    if status in (404, 410):
        raise DownloadError(
            f"The server does not have {what} ({reason}); the link may have expired."
        )
    raise DownloadError(f"The server rejected the request for {what} ({reason}).")


def status_text(status: int) -> str:
    """``"HTTP 403 Forbidden"``: the standard phrase for the code, never the server's own
    (which is free text: it may carry an internal service's secrets, or ESC sequences)."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


#: Local errors that are not the network's fault, when writing what was fetched.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Map requests/urllib3/socket exceptions raised inside to dlstore errors."""
    try:
        yield
    except (requests.exceptions.SSLError, urllib3.exceptions.SSLError) as exc:
        raise DownloadError(
            f"The secure connection for {what} failed ({_root(exc)}); "
            "the site's TLS certificate could not be verified."
        ) from exc
    except requests.exceptions.TooManyRedirects as exc:
        raise DownloadError(f"Too many redirects while fetching {what}.") from exc
    except requests.exceptions.InvalidSchema as exc:
        raise UnsupportedStreamError(
            f"{what} is redirected to an unsupported URL; only http and https work."
        ) from exc
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
        raise DownloadError(f"The URL of {what} is invalid ({_root(exc)}).") from exc
    except requests.exceptions.Timeout as exc:
        raise HttpError(f"The server took too long to send {what}.") from exc
    except (
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
        urllib3.exceptions.ProtocolError,  # from iter_body, which reads urllib3 directly
        urllib3.exceptions.DecodeError,
    ) as exc:
        raise HttpError(f"The connection broke while fetching {what} ({_root(exc)}).") from exc
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise DownloadError(f"Fetching {what} failed ({_root(exc)}).") from exc
    except OSError as exc:  # after requests' own (they are OSErrors too)
        if exc.errno in _DISK_FULL:
            raise DiskFullError(
                f"The disk is full: could not save {what} ({exc.strerror}). Free some space; "
                "the download resumes where it stopped."
            ) from exc
        if exc.errno in _NOT_WRITABLE:
            raise NotWritableError(
                f"Could not save {what} ({exc.strerror}: {exc.filename or 'the work folder'}). "
                "Check that the work and output folders are writable."
            ) from exc
        raise HttpError(f"The connection broke while fetching {what} ({_root(exc)}).") from exc


def _root(exc: BaseException) -> str:
    """What kind of failure ``exc`` is, in a few words, from the types in its chain.

    Never the libraries' text: it quotes what the peer sent (a status line, a chunk
    length, a header, a redirect's URL), which may be an internal service's secret.
    The innermost error that names a kind wins; else the innermost error's type name.
    """
    chain = [exc]
    while len(chain) < 20 and (chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
    for error in reversed(chain):
        kind = _failure_kind(error)
        if kind is not None:
            return kind
    return type(chain[-1]).__name__


#: Failure kinds by exception type, most specific first (an error is several of these).
_FAILURE_KINDS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (http.client.RemoteDisconnected, "the server closed the connection without answering"),
    (urllib3.exceptions.InvalidChunkLength, "the response's chunked encoding was broken"),
    ((http.client.IncompleteRead, urllib3.exceptions.IncompleteRead), "the response ended early"),
    (
        (http.client.HTTPException, urllib3.exceptions.HeaderParsingError),
        "the server's response was not valid HTTP",
    ),
    (urllib3.exceptions.DecodeError, "the response's compression was broken"),
    (urllib3.exceptions.LocationParseError, "the URL could not be parsed"),
    (ssl.SSLCertVerificationError, "certificate not trusted"),
    (ssl.SSLError, "the TLS handshake failed"),
    (socket.gaierror, "name not resolved"),
    (TimeoutError, "timed out"),
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    ((BrokenPipeError, ConnectionAbortedError), "connection broken"),
    (urllib3.exceptions.ProtocolError, "the connection broke mid-response"),
)
_ERRNO_KINDS = {
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.EADDRNOTAVAIL: "address not available",
}


def _failure_kind(error: BaseException) -> str | None:
    if isinstance(error, http.client.IncompleteRead) and isinstance(error.__context__, ValueError):
        return "the response's chunked encoding was broken"  # http.client's bad chunk size
    for types, kind in _FAILURE_KINDS:
        if isinstance(error, types):
            return kind
    if isinstance(error, OSError) and error.errno is not None:
        return _ERRNO_KINDS.get(error.errno) or os.strerror(error.errno).lower()
    if isinstance(error, requests.exceptions.InvalidURL):
        return "the URL could not be parsed"
    return None


def get_stream(
    session: requests.Session, url: str, headers: dict[str, str], options: DownloadOptions
) -> requests.Response:
    """GET ``url`` with ``headers``, its body left to be streamed; what ``session.get``
    does, prepared more cheaply in a dlstore session (:meth:`OriginBoundSession.get_stream`)."""
    timeout = request_timeout(options)
    if isinstance(session, OriginBoundSession):
        return session.get_stream(url, headers, timeout)
    return session.get(url, headers=headers, stream=True, timeout=timeout)


def range_header(byte_range: ByteRange | None) -> dict[str, str]:
    if byte_range is None:
        return {}
    return {"Range": f"bytes={byte_range.offset}-{byte_range.last}"}


@dataclass(frozen=True)
class Fetched:
    body: bytes
    url: str  # final URL, after redirects
    content_type: str | None


def fetch_small(
    session: requests.Session,
    url: str,
    *,
    options: DownloadOptions,
    what: str,
    max_bytes: int,
    retry: Retry,
    byte_range: ByteRange | None = None,
    cancel: threading.Event | None = None,
) -> Fetched:
    """GET a small resource (playlist, key) into memory, with retries and a size cap.

    Each attempt must be over within ``options.small_fetch_deadline`` seconds, and
    ``cancel`` ends it at once; either way its socket is shut down.
    """
    check_url(url)

    def attempt(_: int) -> Fetched:
        return call_cancellable(
            lambda active: _get_small(session, url, options, what, max_bytes, byte_range, active),
            cancel,
            deadline=options.small_fetch_deadline,
            what=what,
        )

    return retry.run(attempt)


def _get_small(
    session: requests.Session,
    url: str,
    options: DownloadOptions,
    what: str,
    max_bytes: int,
    byte_range: ByteRange | None,
    active: ActiveResponses,
) -> Fetched:
    with translate_errors(what):
        with active.requesting():
            response = session.get(
                url, headers=range_header(byte_range), stream=True, timeout=request_timeout(options)
            )
        with active.reading(response), response:
            check_url(response.url)
            check_status(response, what)
            length = SmallFileCheck(
                byte_range, response.status_code, expected_length(response), what, max_bytes
            )
            chunks = []
            for chunk in iter_body(response, what, options, chunk_size=64 * 1024):
                chunks.append(length.cut(chunk))
                if length.full:
                    break
            length.finish()
            return Fetched(b"".join(chunks), response.url, response.headers.get("Content-Type"))


def call_cancellable(
    action: Callable[[ActiveResponses], T],
    cancel: threading.Event | None,
    *,
    deadline: float | None = None,
    what: str = "the response",
    poll: float = 0.1,
) -> T:
    """Run ``action(active)`` in a helper thread and return what it returns (or raise).

    Raises CancelledError within ``poll`` s of ``cancel``, and SlowServerError once
    ``deadline`` seconds have passed; either way every response ``action`` put in
    ``active`` is aborted, so its socket closes now and the helper ends: a request
    made in :meth:`ActiveResponses.requesting` too while it still waits for its
    headers (a server may send them a byte at a time).
    """
    active = ActiveResponses()
    if cancel is None and deadline is None:
        return action(active)
    if cancel is not None and cancel.is_set():
        raise CancelledError()
    box: dict[str, object] = {}
    finished = threading.Event()

    def target() -> None:
        try:
            box["value"] = action(active)
        except BaseException as exc:  # handed to the calling thread below
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=target, name="dlstore-request", daemon=True).start()
    ends = math.inf if deadline is None else time.monotonic() + deadline
    while not finished.wait(min(poll, max(0.0, ends - time.monotonic()))):
        if cancel is not None and cancel.is_set():
            active.abort_all()
            raise CancelledError()
        if time.monotonic() >= ends:
            active.abort_all()
            raise SlowServerError(
                f"The server took over {deadline:g} s to send {what}; trying again later may work."
            )
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _encoded(response: requests.Response) -> bool:
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    return encoding not in ("", "identity")


def expected_length(response: requests.Response) -> int | None:
    """Bytes the body should have on the wire, when the server says (and didn't compress)."""
    if _encoded(response):
        return None
    return _content_length(response)


class ActiveResponses:
    """The responses being read now, and the requests made in :meth:`requesting` that
    still wait for their headers, so that another thread can abort them mid-read.

    After :meth:`abort_all`, a response or request that is added is aborted at once:
    it was already under way when the stop came.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._responses: set[requests.Response] = set()
        self._waiting: set[socket.socket] = set()  # sockets awaiting a response's headers
        self._aborted = False

    @contextmanager
    def requesting(self, deadline: float | None = None, what: str = "") -> Iterator[None]:
        """While this thread sends a request: its socket, as it waits for the headers,
        is one :meth:`abort_all` shuts down (through the connection's header watch).

        With a ``deadline``, every header the request waits for (each redirect hop's)
        must have come within that many seconds from now, or :data:`HEADER_WATCHDOG`
        shuts its socket down and the request raises SlowServerError naming ``what``."""
        previous = getattr(header_watch, "watch", None)
        if deadline is None:
            header_watch.watch = self._awaiting_headers
        else:
            limit = HeaderLimit(time.monotonic() + deadline, deadline, what)
            header_watch.watch = functools.partial(self._awaiting_headers, limit=limit)
        try:
            yield
        finally:
            header_watch.watch = previous

    @contextmanager
    def _awaiting_headers(
        self, sock: socket.socket, limit: HeaderLimit | None = None
    ) -> Iterator[None]:
        with self._lock:
            self._waiting.add(sock)
            aborted = self._aborted
        if aborted:
            _shut_down(sock)
        watched = None if limit is None else HEADER_WATCHDOG.watch(sock, limit.until)
        failure: BaseException | None = None
        try:
            yield
        except BaseException as exc:  # re-raised below, unless the deadline explains it
            failure = exc
        with self._lock:
            self._waiting.discard(sock)
        if watched is not None and HEADER_WATCHDOG.unwatch(watched):
            # shut down mid-headers: an error, or headers cut short that look whole
            raise limit.too_slow() from failure  # type: ignore[union-attr]
        if failure is not None:
            raise failure

    @contextmanager
    def reading(self, response: requests.Response) -> Iterator[None]:
        with self._lock:
            self._responses.add(response)
            aborted = self._aborted
        if aborted:
            abort_response(response)
        try:
            yield
        finally:
            with self._lock:
                self._responses.discard(response)

    def abort_all(self) -> None:
        with self._lock:
            self._aborted = True
            responses, waiting = list(self._responses), list(self._waiting)
        for response in responses:
            abort_response(response)
        for sock in waiting:
            _shut_down(sock)


@dataclass(frozen=True)
class HeaderLimit:
    """A request's headers must all have come by ``until`` (``time.monotonic()``)."""

    until: float
    seconds: float
    what: str

    def too_slow(self) -> SlowServerError:
        return SlowServerError(
            f"The server sent its headers too slowly for {self.what}: not all of them within "
            f"{self.seconds:g} s; trying again later may work."
        )


@dataclass(eq=False)
class WatchedSocket:
    """A socket waiting for a response's headers until ``until``; ``expired`` once the
    watchdog has shut it down for being late."""

    sock: socket.socket
    until: float
    expired: bool = False


def due(watched: Iterable[WatchedSocket], now: float) -> tuple[list[WatchedSocket], float]:
    """The sockets whose deadline has passed at ``now``, and the earliest deadline still
    to come (``math.inf`` if none)."""
    late, earliest = [], math.inf
    for entry in watched:
        if entry.until <= now:
            late.append(entry)
        elif entry.until < earliest:
            earliest = entry.until
    return late, earliest


class HeaderWatchdog:
    """One thread that shuts down the sockets whose response headers are late.

    :meth:`watch` and :meth:`unwatch` cost a lock and a set operation: the thread
    sleeps until the earliest deadline it knows of and is woken only for an earlier
    one, which is rare (every deadline is the same length from its request's start)
    and happens once after an idle spell. Nothing runs while nothing is watched.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._watched: set[WatchedSocket] = set()
        self._wake = math.inf  # when the thread looks next
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, until: float) -> WatchedSocket:
        entry = WatchedSocket(sock, until)
        with self._cond:
            self._watched.add(entry)
            if until < self._wake:
                self._wake = until
                self._wake_thread()
        return entry

    def unwatch(self, entry: WatchedSocket) -> bool:
        """Stop watching ``entry``; True if it was late (its socket is shut down)."""
        with self._cond:
            self._watched.discard(entry)
        return entry.expired  # final: set only under the lock, while watched

    def _wake_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():  # (gone in a forked child)
            self._thread = threading.Thread(
                target=self._run, name="dlstore-header-deadlines", daemon=True
            )
            self._thread.start()
        else:
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                late, self._wake = due(self._watched, now)
                for entry in late:
                    self._watched.discard(entry)
                    entry.expired = True
                    _shut_down(entry.sock)
                self._cond.wait(None if self._wake == math.inf else self._wake - now)


#: The process's one header watchdog (:meth:`ActiveResponses.requesting` with a deadline).
HEADER_WATCHDOG = HeaderWatchdog()


def request_timeout(options: DownloadOptions) -> tuple[float, float]:
    """requests' ``timeout``: connect, then the longest wait for any one byte."""
    return (options.connect_timeout, options.read_wait)


#: A body must bring at least this many bytes per ``stall_timeout`` seconds of waiting.
STALL_MIN_BYTES = 1024
#: Small reads (a TLS record, a slow link's trickle) are joined for at most this long.
GATHER_SECONDS = 0.05


def iter_body(
    response: requests.Response, what: str, options: DownloadOptions, chunk_size: int
) -> Iterator[bytes]:
    """The body in chunks of up to ``chunk_size`` bytes, aborted with SlowServerError
    when it stalls (:class:`_BodyReader`).

    Each chunk is what arrives within GATHER_SECONDS of its first byte: a chunk never
    waits to be filled, so a slow body still shows progress and meets the stall rule.
    A read that fails while a chunk is being gathered raises only after that chunk is
    handed out: bytes that came are never dropped (the fetch pool keeps them).
    """
    body = _BodyReader(response, what, options)
    while True:
        first = body.read(chunk_size)
        if not first:
            return
        parts, size, failure = [first], len(first), None
        until = time.monotonic() + GATHER_SECONDS
        while size < chunk_size and time.monotonic() < until:
            try:
                more = body.read(chunk_size - size)
            except Exception as exc:  # noqa: BLE001 - raised below, after what came
                failure = exc
                break
            if not more:
                break
            parts.append(more)
            size += len(more)
        yield first if len(parts) == 1 else b"".join(parts)
        if failure is not None:
            raise failure


class _BodyReader:
    """Reads a body as it arrives (``read1``: whatever one socket read brings).

    Stalled: fewer than STALL_MIN_BYTES bytes in ``stall_timeout`` seconds spent waiting
    for the server (time the caller spends elsewhere, e.g. in a bandwidth limit, does
    not count); the read that shows it still returns its bytes, the next one raises.
    Silence is caught sooner, by the read timeout (:func:`request_timeout`).
    urllib3's other errors are left to :func:`translate_errors`.
    """

    def __init__(self, response: requests.Response, what: str, options: DownloadOptions) -> None:
        self.response = response
        self.what = what
        self.options = options
        self.waited, self.got = 0.0, 0  # in the current stall window
        self.stalled: SlowServerError | None = None  # raised by the next read
        self.fallback = None
        if not isinstance(response.raw, urllib3.response.BaseHTTPResponse):  # a test's fake
            self.fallback = response.iter_content(options.chunk_size)
        # An identity body is read as it came: urllib3's decoding would only copy it.
        self.decode = _encoded(response)

    def read(self, amount: int) -> bytes:
        if self.stalled is not None:  # the bytes that showed it were handed out first
            raise self.stalled
        started = time.monotonic()
        data = self._read1(amount)
        self.waited += time.monotonic() - started
        self.got += len(data)
        if data and self.waited >= self.options.stall_timeout:
            if self.got < STALL_MIN_BYTES:
                self.stalled = SlowServerError(
                    f"The server stalled while sending {self.what}: less than 1 KiB in "
                    f"{self.options.stall_timeout:g} s; trying again later may work."
                )
            self.waited, self.got = 0.0, 0
        return data

    def _read1(self, amount: int) -> bytes:
        if self.fallback is not None:
            return next(self.fallback, b"")
        try:
            return self.response.raw.read1(amount, decode_content=self.decode)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise SlowServerError(
                f"The server sent nothing of {self.what} for {self.options.read_wait:g} s; "
                "trying again later may work."
            ) from exc


def abort_response(response: requests.Response) -> None:
    """Break a response's socket so a thread blocked reading it wakes up now."""
    raw = getattr(response, "raw", None)
    conn = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        fp = getattr(raw, "_fp", None)
        sock = getattr(getattr(getattr(fp, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    """Shut ``sock`` down both ways: a thread blocked reading it wakes up at once."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
