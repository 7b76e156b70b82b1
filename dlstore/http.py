"""HTTP for dlstore: one pooled session per download, retries, and error mapping.

Apart from :mod:`dlstore.netpolicy`, which shapes the session (where connections
may go, which headers go where), this is the only module that talks to
``requests``. Its exceptions are mapped to dlstore errors here, once: connection
trouble, timeouts, 5xx and 429 become
:class:`~dlstore.errors.TransientDownloadError` (worth retrying), other 4xx a
plain :class:`~dlstore.errors.DownloadError` that says what to do. URLs in those
sentences are shown by :func:`describe`, without user-info or query string.

Tests inject a transport with ``session.mount(prefix, adapter)``.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import requests

from dlstore.errors import (
    CancelledError,
    DownloadError,
    HttpError,
    TransientDownloadError,
    UnsupportedStreamError,
)
from dlstore.netpolicy import ORIGIN_BOUND_HEADERS, OriginBoundSession, PolicyAdapter
from dlstore.options import DownloadOptions
from dlstore.playlist import ByteRange
from dlstore.redact import escape_controls, redact_text, redact_url
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


def describe(url: str) -> str:
    """``url`` as error sentences show it: no user-info or query string, at most 160 chars."""
    shown = redact_url(url)
    return shown if len(shown) <= 160 else shown[:157] + "..."


def check_status(response: requests.Response, what: str) -> None:
    """Raise the right dlstore error for a non-2xx response about ``what``."""
    status = response.status_code
    if 200 <= status < 300:
        return
    phrase = escape_controls(str(response.reason or "")[:60])  # the server's text: keep it tame
    reason = f"HTTP {status}{' ' + phrase if phrase else ''}"
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
    except requests.exceptions.SSLError as exc:
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
    ) as exc:
        raise HttpError(f"The connection broke while fetching {what} ({_root(exc)}).") from exc
    except requests.exceptions.RequestException as exc:
        raise DownloadError(f"Fetching {what} failed ({_root(exc)}).") from exc
    except OSError as exc:  # after requests' own (they are OSErrors too)
        if exc.errno in _DISK_FULL:
            raise TransientDownloadError(
                f"The disk is full: could not save {what} ({exc.strerror}). Free some space; "
                "the download resumes where it stopped."
            ) from exc
        if exc.errno in _NOT_WRITABLE:
            raise DownloadError(
                f"Could not save {what} ({exc.strerror}: {exc.filename or 'the work folder'}). "
                "Check that the work and output folders are writable."
            ) from exc
        raise HttpError(f"The connection broke while fetching {what} ({_root(exc)}).") from exc


def _root(exc: BaseException) -> str:
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__
    text = redact_text(str(seen)) or type(seen).__name__
    return text[:160]


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
) -> Fetched:
    """GET a small resource (playlist, key) into memory, with retries and a size cap."""
    check_url(url)

    def attempt(_: int) -> Fetched:
        with translate_errors(what):
            response = session.get(
                url,
                headers=range_header(byte_range),
                stream=True,
                timeout=(options.connect_timeout, options.read_timeout),
            )
            with response:
                check_url(response.url)
                check_status(response, what)
                expected = _content_length(response)
                if expected is not None and expected > max_bytes:
                    raise DownloadError(
                        f"{what.capitalize()} is {expected} bytes, over the limit of {max_bytes}."
                    )
                chunks = []
                size = 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(
                            f"{what.capitalize()} is larger than the limit of {max_bytes} bytes."
                        )
                    chunks.append(chunk)
                body = b"".join(chunks)
                if expected is not None and size != expected and not _encoded(response):
                    raise HttpError(
                        f"{what.capitalize()} arrived truncated ({size} of {expected} bytes)."
                    )
                if byte_range is not None and response.status_code == 200:
                    body = body[byte_range.offset : byte_range.offset + byte_range.length]
                return Fetched(body, response.url, response.headers.get("Content-Type"))

    return retry.run(attempt)


def call_cancellable(
    action: Callable[[], T], cancel: threading.Event | None, poll: float = 0.1
) -> T:
    """Run ``action`` in a helper thread; raise CancelledError within ``poll`` s of ``cancel``.

    For requests the calling thread must not be stuck in (a server that holds the
    headers back): the helper is left to finish on its own, bounded by the timeouts.
    """
    if cancel is None:
        return action()
    if cancel.is_set():
        raise CancelledError()
    box: dict[str, object] = {}
    finished = threading.Event()

    def target() -> None:
        try:
            box["value"] = action()
        except BaseException as exc:  # handed to the calling thread below
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=target, name="dlstore-request", daemon=True).start()
    while not finished.wait(poll):
        if cancel.is_set():
            raise CancelledError()
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


def abort_response(response: requests.Response) -> None:
    """Break a response's socket so a thread blocked reading it wakes up now."""
    raw = getattr(response, "raw", None)
    conn = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        fp = getattr(raw, "_fp", None)
        sock = getattr(getattr(getattr(fp, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
