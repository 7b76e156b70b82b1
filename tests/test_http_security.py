"""A hostile row against dlstore's HTTP layer, on real servers on the loopback addresses.

127.0.0.1 and 127.0.0.2 are two hosts (both answer on Linux loopback): a
``deny_networks`` of ``127.0.0.2/32`` makes one of them a denied internal service.
Each server records every request it gets, so "no request reached it" is checked
on the server's side. Also here: the header rules, URL checks and redaction.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests

from dlstore.engine import download
from dlstore.errors import (
    DownloadError,
    InvalidInputError,
    NetworkPolicyError,
    UnsupportedStreamError,
)
from dlstore.http import Retry, fetch_small, make_session, translate_errors
from dlstore.netpolicy import parse_networks
from dlstore.options import DownloadOptions, check_headers, parse_header
from dlstore.redact import redact_url
from dlstore.validate import check_url

PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg-0.ts\n#EXT-X-ENDLIST\n"
SEGMENT = bytes([0x47]) + bytes(187)  # one MPEG-TS packet
DENY_SECOND = parse_networks(["127.0.0.2/32"])
SECRET = "s3cr3t-value"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None


class LoopbackServer:
    """A threaded HTTP/1.1 server on ``host`` answering from ``routes`` (404 otherwise);
    ``requests`` holds each request's path and headers (names lower-cased)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.httpd = ThreadingHTTPServer((host, 0), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.httpd.server_address[1]}{path}"

    def redirect(self, path: str, location: str, **headers: str) -> None:
        self.routes[path] = Route(302, headers={"Location": location, **headers})

    def seen(self, path: str) -> list[dict[str, str]]:
        return [headers for got, headers in self.requests if urlsplit(got).path == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                server.requests.append((self.path, headers))
                route = server.routes.get(urlsplit(self.path).path, Route(404, b"not found"))
                self.send_response(route.status, route.reason)
                for name, value in {
                    **route.headers,
                    "Content-Length": str(len(route.body)),
                }.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def serve() -> Iterator[Callable[..., LoopbackServer]]:
    started: list[LoopbackServer] = []

    def start(host: str = "127.0.0.1") -> LoopbackServer:
        started.append(LoopbackServer(host))
        return started[-1]

    yield start
    for server in started:
        server.httpd.shutdown()
        server.httpd.server_close()


def fetch(session: requests.Session, url: str, options: DownloadOptions) -> bytes:
    retry = Retry(attempts=3, base_delay=0.01, wait=lambda _: False, rng=random.Random(0))
    return fetch_small(
        session, url, options=options, what="the playlist", max_bytes=10_000, retry=retry
    ).body


def options_with(**changes) -> DownloadOptions:
    return DownloadOptions(output_format="ts", max_retries=2, retry_delay=0.01,
                           connect_timeout=5, read_timeout=5, **changes)  # fmt: skip


# --- deny_networks on real connections ------------------------------------------------


def test_a_denied_playlist_host_fails_the_download_and_gets_no_request(serve, tmp_path):
    server = serve()
    server.routes["/v.m3u8"] = Route(body=PLAYLIST)
    options = options_with(deny_networks=parse_networks(["127.0.0.0/8"]))
    with pytest.raises(NetworkPolicyError) as info:
        download(server.url("/v.m3u8"), tmp_path / "o.ts", work_dir=tmp_path / "w", options=options)
    assert "network policy (deny_networks)" in str(info.value) and "127.0.0.1" in str(info.value)
    assert server.requests == []
    assert not (tmp_path / "o.ts").exists()


def test_a_redirect_to_a_denied_address_is_refused_at_the_hop(serve):
    allowed, denied = serve("127.0.0.1"), serve("127.0.0.2")
    denied.routes["/v.m3u8"] = Route(body=PLAYLIST)
    allowed.redirect("/v.m3u8", denied.url("/v.m3u8"))
    options = options_with(deny_networks=DENY_SECOND)
    with pytest.raises(NetworkPolicyError, match=r"connecting to 127\.0\.0\.2, which is in"):
        fetch(make_session(options, allowed.url("/v.m3u8")), allowed.url("/v.m3u8"), options)
    assert [path for path, _ in allowed.requests] == ["/v.m3u8"]
    assert denied.requests == []
    # the same redirect, with nothing denied, reaches the second host: the test is real
    open_options = options_with(deny_networks=())
    session = make_session(open_options, allowed.url("/v.m3u8"))
    assert fetch(session, allowed.url("/v.m3u8"), open_options) == PLAYLIST
    assert len(denied.seen("/v.m3u8")) == 1


@pytest.mark.parametrize(
    ("kind", "playlist"),
    [
        ("variant", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=320x180\n{b}/v.m3u8\n"),
        ("segment", "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{b}/seg-0.ts\n#EXT-X-ENDLIST\n"),
        ("key", '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI="{b}/k.bin",'
                "IV=0x00000000000000000000000000000001\n#EXTINF:2,\n/seg-0.ts\n#EXT-X-ENDLIST\n"),
    ],
)  # fmt: skip
def test_a_variant_segment_or_key_on_a_denied_host_fails_the_download(
    kind, playlist, serve, tmp_path
):
    origin, internal = serve("127.0.0.1"), serve("127.0.0.2")
    base = internal.url("")
    origin.routes["/index.m3u8"] = Route(body=playlist.format(b=base).encode())
    origin.routes["/seg-0.ts"] = Route(body=SEGMENT)
    internal.routes.update(
        {"/v.m3u8": Route(body=PLAYLIST), "/seg-0.ts": Route(body=SEGMENT),
         "/k.bin": Route(body=bytes(16))}
    )  # fmt: skip
    with pytest.raises(DownloadError) as info:
        download(
            origin.url("/index.m3u8"), tmp_path / "o.ts", work_dir=tmp_path / "w",
            options=options_with(deny_networks=DENY_SECOND),
        )  # fmt: skip
    assert "network policy (deny_networks)" in str(info.value) and "127.0.0.2" in str(info.value)
    assert not info.value.transient
    assert internal.requests == []


def test_each_new_connection_is_judged_by_its_own_lookup(serve, monkeypatch):
    """DNS rebinding: the name first points at an allowed host, then at the metadata
    service. The second connection is refused, and the address checked is the one used."""
    server = serve()
    server.routes["/v.m3u8"] = Route(body=PLAYLIST, headers={"Connection": "close"})
    answers = iter(["127.0.0.1", "169.254.169.254"])
    real = socket.getaddrinfo

    def rebinding(host, port, *args):
        if host != "rebind.example":
            return real(host, port, *args)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://rebind.example:{server.httpd.server_address[1]}/v.m3u8"
    options = options_with()
    session = make_session(options, url)
    assert fetch(session, url, options) == PLAYLIST
    with pytest.raises(NetworkPolicyError, match=r"169\.254\.169\.254 \(rebind\.example\)"):
        fetch(session, url, options)
    assert len(server.requests) == 1


# --- credentials stay with their origin ------------------------------------------------

ROW_HEADERS = {"Cookie": "sid=42", "Authorization": "Bearer t0k", "Referer": "https://site/",
               "Origin": "https://site", "X-Custom": "1"}  # fmt: skip


def test_cookie_and_authorization_go_only_to_the_origin_across_redirects(serve):
    origin, other = serve(), serve()  # same address, another port: another origin
    origin.redirect("/start.m3u8", other.url("/hop.m3u8"))
    other.redirect("/hop.m3u8", origin.url("/back.m3u8"))
    origin.routes["/back.m3u8"] = Route(body=PLAYLIST)
    options = options_with(headers=ROW_HEADERS)
    session = make_session(options, origin.url("/start.m3u8"))
    assert fetch(session, origin.url("/start.m3u8"), options) == PLAYLIST

    (start,), (hop,), (back,) = (
        origin.seen("/start.m3u8"),
        other.seen("/hop.m3u8"),
        origin.seen("/back.m3u8"),
    )
    for at_origin in (start, back):
        assert at_origin["cookie"] == "sid=42" and at_origin["authorization"] == "Bearer t0k"
    assert "cookie" not in hop and "authorization" not in hop
    for everywhere in (start, hop, back):
        assert everywhere["referer"] == "https://site/" and everywhere["x-custom"] == "1"
        assert everywhere["origin"] == "https://site" and "dlstore" in everywhere["user-agent"]


def test_a_segment_host_gets_the_referer_but_no_credentials(serve):
    origin, cdn = serve(), serve()
    cdn.routes["/seg-0.ts"] = Route(body=SEGMENT)
    session = make_session(options_with(headers=ROW_HEADERS), origin.url("/v.m3u8"))
    assert session.get(cdn.url("/seg-0.ts"), timeout=5).content == SEGMENT
    (seen,) = cdn.seen("/seg-0.ts")
    assert seen["referer"] == "https://site/"
    assert "cookie" not in seen and "authorization" not in seen


def test_cookies_the_origin_sets_are_sent_with_the_row_cookie(serve):
    origin = serve()
    origin.redirect("/start.m3u8", "/back.m3u8", **{"Set-Cookie": "srv=1; Path=/"})
    origin.routes["/back.m3u8"] = Route(body=PLAYLIST)
    options = options_with(headers={"Cookie": "sid=42"})
    fetch(make_session(options, origin.url("/start.m3u8")), origin.url("/start.m3u8"), options)
    assert origin.seen("/back.m3u8")[0]["cookie"] == "sid=42; srv=1"


def test_the_environment_neither_proxies_nor_authenticates(serve, monkeypatch, tmp_path):
    server, proxy = serve("127.0.0.1"), serve("127.0.0.2")
    server.routes["/v.m3u8"] = Route(body=PLAYLIST)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login user password {SECRET}\n")
    netrc.chmod(0o600)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url(""))
    monkeypatch.setenv("http_proxy", proxy.url(""))
    monkeypatch.setenv("NETRC", str(netrc))
    options = options_with()
    assert fetch(make_session(options, server.url("/")), server.url("/v.m3u8"), options) == PLAYLIST
    assert proxy.requests == []
    assert "authorization" not in server.seen("/v.m3u8")[0]
    requests.get(server.url("/v.m3u8"), timeout=5)  # a plain session would have used both
    assert len(proxy.requests) == 1 and "authorization" in proxy.requests[0][1]


# --- header rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["Host", "host", "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
     "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length"],
)  # fmt: skip
def test_connection_headers_are_refused_by_name(name):
    with pytest.raises(InvalidInputError) as info:
        check_headers({"Referer": "https://site/", name: SECRET})
    assert name in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [f"{SECRET}\r\nX-Injected: 1", f"{SECRET}\n", f"\x00{SECRET}", f"\x1b[31m{SECRET}",
     f"{SECRET}\tb", f"{SECRET}\x7f", f"{SECRET} €", f"{SECRET} 日本"],
)  # fmt: skip
def test_header_values_with_controls_or_beyond_latin1_are_refused_without_echo(value):
    with pytest.raises(InvalidInputError) as info:
        check_headers({"Cookie": value})
    assert "Cookie" in str(info.value) and SECRET not in str(info.value)


def test_ordinary_headers_pass():
    headers = {**ROW_HEADERS, "User-Agent": "Mozilla/5.0 (X11)", "X-Name": "café"}
    assert check_headers(headers) == headers


def test_a_header_given_twice_is_refused():
    with pytest.raises(InvalidInputError, match="given twice"):
        check_headers({"Cookie": "a=1", "cookie": "b=2"})


def test_a_host_header_from_the_command_line_is_refused():
    with pytest.raises(InvalidInputError, match="Host cannot be set"):
        parse_header("Host: internal.example")


# --- URLs: control characters and redaction -------------------------------------------


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("https://cdn.example/v.m3u8\nX-Injected: 1", "U+000A (line feed)"),
        ("https://cdn.example/\x1b[2Jv.m3u8", "U+001B (escape)"),
        ("https://cdn.example/a\tb.m3u8", "U+0009 (tab)"),
        ("https://cdn.example/a\x00.m3u8", "U+0000 (nul)"),
        ("https://cdn.example/a b.m3u8", "U+0020 (space)"),
        ("https://cdn.example/\u202eu8m3.v", "U+202E (right-to-left override)"),
    ],
)
def test_check_url_refuses_control_characters_and_spaces_without_echoing_them(url, named):
    with pytest.raises(UnsupportedStreamError) as info:
        check_url(url)
    message = str(info.value)
    assert named in message
    assert not any(ch in message for ch in "\n\x1b\t\x00\u202e")


def test_check_url_refuses_an_unparsable_url_clearly():
    with pytest.raises(UnsupportedStreamError, match="not a valid URL"):
        check_url("http://[::1/v.m3u8")


def test_check_url_errors_mask_credentials_and_query():
    with pytest.raises(UnsupportedStreamError) as info:
        check_url(f"ftp://user:{SECRET}@cdn.example/v.m3u8?token={SECRET}")
    assert SECRET not in str(info.value) and "ftp://cdn.example/v.m3u8?…" in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@cdn.example/v.m3u8?token=x", "https://cdn.example/v.m3u8?…"),
        ("https://cdn.example/v.m3u8", "https://cdn.example/v.m3u8"),
        ("https://cdn.example/v.m3u8#t=secret", "https://cdn.example/v.m3u8#…"),
        ("http://u@[::1]:8080/a?x=1#y", "http://[::1]:8080/a?…#…"),
        ("https://cdn.example/a\x1b[2J?x", "https://cdn.example/a\\x1b[2J?…"),
        ("/relative/v.m3u8?token=x", "/relative/v.m3u8?…"),
        ("http://[::1/a?token=x", "http://[::1/a?…"),
        ("", ""),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_urls_have_one_redacting_function_and_describe_means_a_body():
    from dlstore import http, sniff

    assert not hasattr(http, "describe")  # was an alias of redact_url
    assert sniff.describe(b"<html>") == "an HTML page of 6 bytes"


def test_redact_url_masks_and_shortens():
    shown = redact_url(f"https://u:{SECRET}@cdn.example/{'a' * 300}.m3u8?token={SECRET}")
    assert SECRET not in shown and len(shown) == 160 and shown.startswith("https://cdn.example/")


def test_library_messages_are_masked_too():
    text = f"Max retries exceeded with url: /v.m3u8?token={SECRET} (https://u:{SECRET}@h/x?a=1)"
    with pytest.raises(DownloadError) as broken, translate_errors("the playlist"):
        raise requests.exceptions.ConnectionError(text)
    assert SECRET not in str(broken.value)
    with pytest.raises(DownloadError) as info, translate_errors("the playlist"):
        raise requests.exceptions.InvalidURL(f"Invalid URL 'https://h/a?token={SECRET}': no host")
    assert SECRET not in str(info.value) and "(the URL could not be parsed)" in str(info.value)


def test_a_failed_download_does_not_show_the_urls_secrets(serve, tmp_path):
    server = serve()
    url = server.url(f"/gone.m3u8?token={SECRET}").replace("http://", f"http://user:{SECRET}@")
    with pytest.raises(DownloadError) as info:
        download(url, tmp_path / "o.ts", work_dir=tmp_path / "w", options=options_with())
    assert "HTTP 404" in str(info.value) and "/gone.m3u8?…" in str(info.value)
    assert SECRET not in str(info.value)


def test_a_servers_reason_phrase_is_never_shown(serve):
    """The standard phrase for the code stands in for the server's free text."""
    server = serve()
    server.routes["/v.m3u8"] = Route(
        403, b"no", reason=f"Forbidden {SECRET}\x1b[2J\x1b]0;owned\x07" + "x" * 200
    )
    options = options_with()
    with pytest.raises(DownloadError) as info:
        fetch(make_session(options, server.url("/")), server.url("/v.m3u8"), options)
    message = str(info.value)
    assert "(HTTP 403 Forbidden)" in message
    assert SECRET not in message and "x1b" not in message and "xxx" not in message
