"""dlstore.http: URL checks, retries, status and exception mapping.

Mostly through a fake transport mounted on the session; a few against the local server.
"""

from __future__ import annotations

import errno
import io
import math
import random
import socket
import threading
import time

import pytest
import requests
from requests.adapters import HTTPAdapter

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
from dlstore.http import (
    ActiveResponses,
    HeaderWatchdog,
    Retry,
    WatchedSocket,
    _retry_after,
    due,
    fetch_small,
    make_session,
    translate_errors,
)
from dlstore.netpolicy import header_watch
from dlstore.options import DownloadOptions
from dlstore.playlist import ByteRange
from dlstore.validate import check_url

OPTIONS = DownloadOptions(max_retries=3, retry_delay=0.5, headers={"Referer": "https://site/"})


class FakeAdapter(HTTPAdapter):
    """Answers from a script: (status, headers, body) tuples or exceptions to raise."""

    def __init__(self, script):
        super().__init__()
        self.script = list(script)
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.requests.append(request)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        status, headers, body = item
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 206: "Partial Content"}.get(status, "Error")
        response.headers.update(headers)
        response.raw = io.BytesIO(body)
        response.url = request.url
        response.request = request
        return response


class Waits:
    """A Retry.wait that records delays instead of sleeping."""

    def __init__(self, stop_after: int | None = None):
        self.delays: list[float] = []
        self.stop_after = stop_after

    def __call__(self, delay: float) -> bool:
        self.delays.append(delay)
        return self.stop_after is not None and len(self.delays) >= self.stop_after


def session_with(script, options=OPTIONS):
    session = make_session(options, "https://h.example/a")
    adapter = FakeAdapter(script)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter


def retry(waits: Waits, attempts: int = 4) -> Retry:
    return Retry(attempts=attempts, base_delay=0.5, wait=waits, rng=random.Random(0))


def get(session, waits, url="https://h.example/a.m3u8", **kw):
    return fetch_small(
        session,
        url,
        options=OPTIONS,
        what="the playlist",
        max_bytes=kw.pop("max_bytes", 1000),
        retry=retry(waits),
        **kw,
    )


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://h/x.m3u8",
        "/local/path.m3u8",
        "javascript:alert(1)",
        "data:text/plain,hi",
        "",
        "http://",
    ],
)
def test_check_url_accepts_only_http_and_https(url):
    with pytest.raises(UnsupportedStreamError):
        check_url(url)


def test_check_url_returns_a_good_url():
    assert check_url(" https://h.example/x.m3u8 ") == "https://h.example/x.m3u8"


def test_headers_go_on_every_request_and_the_cookie_to_its_origin():
    options = DownloadOptions(headers={"Referer": "https://site/", "Cookie": "sid=42; theme=dark"})
    session, adapter = session_with([(200, {}, b"#EXTM3U\n")] * 2, options)
    for _ in range(2):
        fetch_small(
            session,
            "https://h.example/a",
            options=options,
            what="x",
            max_bytes=100,
            retry=retry(Waits()),
        )
    for request in adapter.requests:
        assert request.headers["Referer"] == "https://site/"
        assert request.headers["Cookie"] == "sid=42; theme=dark"
        assert "dlstore" in request.headers["User-Agent"]


def test_pool_is_sized_to_threads():
    session = make_session(DownloadOptions(threads=16), "https://x/")
    assert session.get_adapter("https://x/")._pool_maxsize >= 16


def test_5xx_is_retried_with_growing_backoff_then_succeeds():
    session, adapter = session_with(
        [(503, {}, b""), (502, {}, b""), (500, {}, b""), (200, {}, b"#EXTM3U\n")]
    )
    waits = Waits()
    fetched = get(session, waits)
    assert fetched.body == b"#EXTM3U\n"
    assert len(adapter.requests) == 4
    assert len(waits.delays) == 3
    # base 0.5 s doubling, with ±50 % jitter
    for attempt, delay in enumerate(waits.delays):
        assert 0.5 * 2**attempt * 0.5 <= delay <= 0.5 * 2**attempt * 1.5


def test_retries_run_out_with_a_transient_error():
    session, adapter = session_with([(503, {}, b"")] * 4)
    with pytest.raises(TransientDownloadError, match="HTTP 503"):
        get(session, Waits())
    assert len(adapter.requests) == 4


def test_429_honours_retry_after():
    session, _ = session_with([(429, {"Retry-After": "7"}, b""), (200, {}, b"#EXTM3U\n")])
    waits = Waits()
    get(session, waits)
    assert waits.delays == [pytest.approx(7.0)]


def test_retry_after_is_capped():
    session, _ = session_with([(503, {"Retry-After": "86400"}, b""), (200, {}, b"ok")])
    waits = Waits()
    get(session, waits)
    assert waits.delays == [60.0]


def test_retry_after_http_date():
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert _retry_after("12") == 12.0
    assert _retry_after("soon") is None


@pytest.mark.parametrize(
    ("status", "match"),
    [(404, "HTTP 404.*expired"), (403, "Referer"), (401, "Cookie"), (400, "HTTP 400")],
)
def test_other_4xx_fail_fast(status, match):
    session, adapter = session_with([(status, {}, b"no")] * 4)
    with pytest.raises(DownloadError, match=match) as info:
        get(session, Waits())
    assert not isinstance(info.value, TransientDownloadError)
    assert len(adapter.requests) == 1


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError("reset by peer"),
        requests.exceptions.ReadTimeout("slow"),
        requests.exceptions.ChunkedEncodingError("broken"),
    ],
)
def test_network_exceptions_are_transient_and_retried(exc):
    session, adapter = session_with([exc, (200, {}, b"#EXTM3U\n")])
    assert get(session, Waits()).body == b"#EXTM3U\n"
    assert len(adapter.requests) == 2


def test_network_exception_keeps_its_cause():
    session, _ = session_with([requests.exceptions.ConnectionError("boom")] * 4)
    with pytest.raises(TransientDownloadError) as info:
        get(session, Waits())
    assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)


def test_tls_failure_is_not_transient():
    session, adapter = session_with([requests.exceptions.SSLError("bad cert")] * 4)
    with pytest.raises(DownloadError, match="certificate") as info:
        get(session, Waits())
    assert not isinstance(info.value, TransientDownloadError)
    assert len(adapter.requests) == 1


def test_truncated_body_is_retried():
    session, adapter = session_with(
        [(200, {"Content-Length": "100"}, b"#EXTM3U\n"), (200, {}, b"#EXTM3U\nfull")]
    )
    assert get(session, Waits()).body == b"#EXTM3U\nfull"
    assert len(adapter.requests) == 2


def test_size_cap():
    session, _ = session_with([(200, {"Content-Length": "5000"}, b"x" * 5000)])
    with pytest.raises(DownloadError, match="over the limit"):
        get(session, Waits())
    session, _ = session_with([(200, {}, b"x" * 5000)])
    with pytest.raises(DownloadError, match="larger than the limit"):
        get(session, Waits())


def test_byte_range_is_requested_and_cut_when_ignored():
    session, adapter = session_with([(200, {}, b"0123456789")])
    fetched = get(session, Waits(), byte_range=ByteRange(length=3, offset=4))
    assert adapter.requests[0].headers["Range"] == "bytes=4-6"
    assert fetched.body == b"456"


def test_a_206_of_the_wrong_length_for_a_byte_range_fails_clearly():
    wrong = (206, {"Content-Length": "9", "Content-Range": "bytes 4-12/20"}, b"x" * 9)
    session, adapter = session_with([wrong])
    with pytest.raises(DownloadError) as info:
        get(session, Waits(), byte_range=ByteRange(length=3, offset=4))
    assert str(info.value) == (
        "The server answered the request for the playlist with 9 bytes instead of the 3 asked for."
    )
    assert not isinstance(info.value, TransientDownloadError) and len(adapter.requests) == 1


def test_a_206_shorter_than_its_byte_range_is_truncated_and_one_longer_is_cut():
    short = (206, {"Content-Range": "bytes 4-6/20"}, b"45")
    session, _ = session_with([short] * 4)
    with pytest.raises(HttpError, match=r"The playlist arrived truncated \(2 of 3 bytes\)"):
        get(session, Waits(), byte_range=ByteRange(length=3, offset=4))
    session, _ = session_with([(206, {"Content-Range": "bytes 4-6/20"}, b"4567")])
    assert get(session, Waits(), byte_range=ByteRange(length=3, offset=4)).body == b"456"


def test_cancel_during_backoff():
    session, adapter = session_with([(503, {}, b"")] * 4)
    with pytest.raises(CancelledError):
        get(session, Waits(stop_after=1))
    assert len(adapter.requests) == 1


def test_retry_from_options_waits_on_the_stop_event():
    stop = threading.Event()
    stop.set()
    r = Retry.from_options(DownloadOptions(max_retries=2, retry_delay=5.0), stop)
    assert r.attempts == 3
    calls = []

    def action(attempt):
        calls.append(attempt)
        raise TransientDownloadError("flaky")

    with pytest.raises(CancelledError):
        r.run(action)  # the stop event is already set: no 5 s sleep
    assert calls == [0]


# --------------------------------------------------------------------------- real server


def test_redirect_to_another_scheme_is_refused(hls_server):
    hls_server.redirects["/go.m3u8"] = "file:///etc/passwd"
    session = make_session(OPTIONS, hls_server.base_url)
    with pytest.raises(UnsupportedStreamError):
        get(session, Waits(), url=hls_server.url("/go.m3u8"))


def test_redirects_are_followed_and_the_final_url_returned(hls_server):
    hls_server.redirects["/moved.m3u8"] = "/plain/index.m3u8"
    session = make_session(OPTIONS, hls_server.base_url)
    fetched = get(session, Waits(), url=hls_server.url("/moved.m3u8"), max_bytes=10_000)
    assert fetched.url == hls_server.url("/plain/index.m3u8")
    assert fetched.body.startswith(b"#EXTM3U")


def test_connection_resets_and_truncation_from_a_real_server_are_retried(hls_server):
    hls_server.fail_times("/plain/index.m3u8", 1, "reset")
    session = make_session(OPTIONS, hls_server.base_url)
    assert get(session, Waits(), url=hls_server.url("/plain/index.m3u8"), max_bytes=10_000).body
    hls_server.fail_times("/plain/seg-000.ts", 1, "truncate")
    body = get(session, Waits(), url=hls_server.url("/plain/seg-000.ts"), max_bytes=10**7).body
    assert len(body) % 188 == 0 and body[0] == 0x47
    assert hls_server.hits["/plain/index.m3u8"] == 2
    assert hls_server.hits["/plain/seg-000.ts"] == 2


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), DiskFullError, "disk is full"),
        (PermissionError(errno.EACCES, "Permission denied", "/w/seg.part"), NotWritableError,
         "writable"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
         TransientDownloadError, "connection broke"),
        (requests.exceptions.ConnectionError("refused"), TransientDownloadError,
         "connection broke"),
        (requests.exceptions.RequestException("odd"), DownloadError, "failed"),
    ],
)  # fmt: skip
def test_translate_errors_tells_disk_trouble_from_network_trouble(error, kind, text):
    with pytest.raises(DownloadError) as info, translate_errors("segment 3"):
        raise error
    assert type(info.value) is kind or (kind is TransientDownloadError and info.value.transient)
    assert text in str(info.value) and "segment 3" in str(info.value)
    if kind in (DownloadError, NotWritableError):
        assert not info.value.transient


# --------------------------------------------------------------------------- header deadlines


def test_due_picks_the_late_sockets_and_the_next_deadline():
    a, b, c = (WatchedSocket(None, until) for until in (1.0, 2.0, 3.0))  # type: ignore[arg-type]
    assert due([c, a, b], 2.0) == ([a, b], 3.0)
    assert due([c], 2.0) == ([], 3.0)
    assert due([], 2.0) == ([], math.inf)


def test_the_watchdog_shuts_a_late_socket_down_and_leaves_an_early_one():
    watchdog = HeaderWatchdog()
    late_ours, late_theirs = socket.socketpair()
    done_ours, done_theirs = socket.socketpair()
    with late_ours, late_theirs, done_ours, done_theirs:
        now = time.monotonic()
        done = watchdog.watch(done_ours, now + 0.1)
        late = watchdog.watch(late_ours, now + 0.2)
        assert not watchdog.unwatch(done)  # its headers came in time
        late_ours.settimeout(2)
        assert late_ours.recv(1) == b""  # shut down: a blocked read wakes up
        waited = time.monotonic() - now
        assert 0.2 <= waited < 1.5, waited  # (a busy machine)
        assert watchdog.unwatch(late)
        done_ours.sendall(b"x")  # untouched
        assert done_theirs.recv(1) == b"x"


def test_requesting_with_a_deadline_raises_slow_server_error_once_it_passes():
    active = ActiveResponses()
    ours, theirs = socket.socketpair()
    segment = "the video segment 2 of 3 (seg-001.ts)"
    with (
        ours,
        theirs,
        pytest.raises(SlowServerError) as caught,
        active.requesting(0.2, segment),
        header_watch.watch(ours),
    ):
        ours.settimeout(2)
        ours.recv(1)  # nothing comes: what a dribbled status line looks like
    assert str(caught.value) == (
        "The server sent its headers too slowly for the video segment 2 of 3 (seg-001.ts): "
        "not all of them within 0.2 s; trying again later may work."
    )
    assert getattr(header_watch, "watch", None) is None  # restored


def test_requesting_without_a_deadline_never_times_out():
    active = ActiveResponses()
    ours, theirs = socket.socketpair()
    with ours, theirs, active.requesting(), header_watch.watch(ours):
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"
