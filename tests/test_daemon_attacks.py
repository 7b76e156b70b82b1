"""Hostile rows against the real daemon (issue #8): each attack fails its row with a
sentence, leaks nothing, and the same daemon then completes a good row.

One daemon subprocess (SQLite, rows inserted with the Rust API's SQL) takes every
attack in one run, served from loopback by the test servers; each test below checks
one attack's outcome. What an attacker wants is marked: ``SECRET`` in what servers
send (an internal service's reply, a token, a Cookie), ``LOCAL`` in a file of the
daemon's host. Neither may reach the columns dlstore writes, its logs or what
``dlstore list`` and ``dlstore status`` print.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlstore import migrate
from dlstore.cli import app
from dlstore.testing.hls_server import Body, HlsServer, RawServer
from dlstore.testing.media import decode_check, encode_source, write_hls
from dlstore.testing.rust_api import RustApi

from .support.daemon import CONFIG, Harness, Proc
from .support.hostile import ffconcat_script, own_udp_sockets, sdp_description

pytestmark = pytest.mark.slow

SECRET = "SECRET-6d1e0b"
LOCAL = "LOCAL-FILE-93c2aa"
DENIED = "127.0.0.2"
#: Transient failures fail at once (task_retries 0); 127.0.0.2 is off limits.
ATTACK_CONFIG = CONFIG.replace("task_retries: 1", "task_retries: 0") + (
    f'  deny_networks: ["{DENIED}/32"]\n'
)
#: The columns dlstore writes (url, name and metadata are the caller's).
WRITTEN = ("status", "error_message", "message", "current_file", "output_path", "worker_id")
CALLER_KEYS = ("headers", "quality", "output_dir", "format", "profile")
SDP_PORT_HEX = f"{45678:04X}"  # the port sdp_description() names
RAW_REPLIES = {
    "status line": f"{SECRET}-STATUS-LINE redis\r\n\r\n".encode(),
    "chunk length": f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{SECRET}\r\n".encode(),
    "header": f"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{SECRET}\r\n\r\nok".encode(),
}
runner = CliRunner()


@dataclass
class Attack:
    """The run: the harness, the extra servers, each row's id by name, what was seen."""

    h: Harness
    other: HlsServer  # another origin (same host, other port)
    denied: HlsServer  # listening on 127.0.0.2
    raw: dict[str, RawServer]
    ids: dict[str, str] = field(default_factory=dict)
    udp_seen: list[int] = field(default_factory=list)
    sdp_port_seen: bool = False
    proc: Proc | None = None

    def row(self, name: str) -> dict:
        return self.h.row(self.ids[name])

    def logs(self) -> str:
        assert self.proc is not None
        return self.proc.text() + (self.h.home / "logs" / "daemon.log").read_text()


def hostile_stream(server: HlsServer, name: str, segment: bytes) -> str:
    """A one-segment playlist at /atk/<name>.m3u8 whose segment is ``segment``."""
    server.bodies[f"/atk/{name}.ts"] = Body(segment, "video/mp2t")
    server.bodies[f"/atk/{name}.m3u8"] = Body(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{name}.ts\n#EXT-X-ENDLIST\n".encode(),
        "application/vnd.apple.mpegurl",
    )
    return server.url(f"/atk/{name}.m3u8")


def add_rows(a: Attack) -> None:
    h, main = a.h, a.h.server
    secret_file = h.home / "secret.txt"
    main.bodies["/internal/config"] = Body(
        json.dumps({"db_password": SECRET}).encode(), "application/json"
    )
    main.bodies["/internal/admin"] = Body(f"<html><p>{SECRET}</p></html>".encode(), "text/html")
    main.redirects["/atk/to-denied.m3u8"] = a.denied.url("/tiny/index.m3u8")
    main.redirects["/atk/cookie.m3u8"] = a.other.url("/tiny/index.m3u8")
    rows = {
        "ffconcat video": hostile_stream(main, "concat-mp4", ffconcat_script(secret_file)),
        "ffconcat text": hostile_stream(
            main, "concat-txt", f"ffconcat version 1.0\nfile '{secret_file.name}'\n".encode()
        ),
        "sdp": hostile_stream(main, "sdp", sdp_description()),
        "internal json": main.url("/internal/config"),
        "internal html": main.url("/internal/admin"),
        "denied": a.denied.url("/tiny/index.m3u8"),
        "denied by redirect": main.url("/atk/to-denied.m3u8"),
        "cookie": main.url("/atk/cookie.m3u8"),
        "token 404": main.url(f"/gone/index.m3u8?token={SECRET}").replace(
            "http://", f"http://user:{SECRET}@"
        ),
        **{f"raw {kind}": server.url("/v.m3u8") for kind, server in a.raw.items()},
        "url with ESC": main.url("/tiny/index.m3u8\x1b[2J"),
    }
    cookie = {"headers": {"Cookie": f"session={SECRET}", "Authorization": f"Bearer {SECRET}",
                          "Referer": "https://site.example/"}}  # fmt: skip
    for name, url in rows.items():
        a.ids[name] = h.api.create(name, url, cookie if name == "cookie" else None)
    a.ids["name with ESC"] = h.api.create("Holiday\x1b[2J\n[task x] forged", main.url("/esc.m3u8"))
    a.ids["good"] = h.api.create("Good", main.url("/tiny/index.m3u8"))  # the newest: claimed last


def watch_udp(a: Attack, pid: int, done: threading.Event) -> None:
    """Until ``done``: the daemon's own UDP sockets, and whether anyone bound the SDP port."""
    while not done.wait(0.02):
        try:
            a.udp_seen.append(own_udp_sockets(pid))
            with open(f"/proc/{pid}/net/udp") as table:
                ports = [line.split()[1].rpartition(":")[2] for line in list(table)[1:]]
        except OSError:  # the daemon has exited
            return
        a.sdp_port_seen = a.sdp_port_seen or SDP_PORT_HEX in ports


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    served = tmp_path_factory.mktemp("attack-media")
    write_hls(encode_source(served / "_tiny.mp4", duration=2, width=64, height=36), served / "tiny")
    home = tmp_path_factory.mktemp("attack-home")
    (home / "downloader.yaml").write_text(ATTACK_CONFIG)
    encode_source(home / "secret.mp4", duration=1, width=80, height=48)  # the host's video
    (home / "secret.txt").write_text(f"root:x:0:0:{LOCAL}:/root:/bin/sh\n" * 50)
    url = str(home / "manager.sqlite")
    migrate.upgrade(url)
    servers = [HlsServer(served).start() for _ in range(2)] + [HlsServer(served, DENIED).start()]
    raw = {kind: RawServer(reply).start() for kind, reply in RAW_REPLIES.items()}
    a = Attack(Harness(url, home, RustApi(url), servers[0]), servers[1], servers[2], raw)
    try:
        add_rows(a)
        a.proc = a.h.start("--exit-when-idle")
        done = threading.Event()
        watcher = threading.Thread(target=watch_udp, args=(a, a.proc.popen.pid, done))
        watcher.start()
        try:
            assert a.proc.wait(120) == 0, a.logs()
        finally:
            done.set()
            watcher.join()
        yield a
    finally:
        if a.proc is not None and a.proc.popen.poll() is None:
            a.proc.popen.kill()
            a.proc.popen.wait()
        for server in [*servers, *raw.values()]:
            server.stop()
        a.h.api.close()


def failed_saying(a: Attack, name: str, *phrases: str) -> str:
    row = a.row(name)
    assert row["status"] == "failed", row
    for phrase in phrases:
        assert phrase in row["error_message"], (phrase, row["error_message"])
    assert not list(a.h.videos.rglob(f"{name}*"))  # nothing in the output folder
    return row["error_message"]


# --------------------------------------------------------------------------- the attacks


def test_a_segment_that_is_an_ffconcat_script_fails_and_reads_no_local_file(attack):
    for name in ("ffconcat video", "ffconcat text"):
        failed_saying(attack, name, "is not MPEG-TS video but an ffconcat script")
    written = [p.read_bytes() for p in attack.h.videos.rglob("*") if p.is_file()]
    assert not any(LOCAL.encode() in data for data in written)
    assert LOCAL not in attack.logs()


def test_a_segment_that_is_an_sdp_description_fails_and_opens_no_socket(attack):
    failed_saying(attack, "sdp", "(sdp.ts) (it is not MPEG-TS video but an SDP description")
    assert attack.udp_seen and max(attack.udp_seen) == 0  # sampled every 20 ms meanwhile
    assert not attack.sdp_port_seen


@pytest.mark.parametrize(("name", "kind"), [("internal json", "a JSON document"),
                                            ("internal html", "an HTML page")])  # fmt: skip
def test_an_internal_service_is_described_never_echoed(attack, name, kind):
    failed_saying(attack, name, "did not return an HLS playlist", kind)
    assert SECRET not in (attack.row(name)["message"] or "")


def test_deny_networks_holds_for_the_url_and_a_redirect_and_nothing_reaches_it(attack):
    for name in ("denied", "denied by redirect"):
        failed_saying(attack, name, "network policy (deny_networks)", DENIED)
    assert attack.denied.request_headers == [] and not attack.denied.hits


def test_cookie_and_authorization_never_reach_another_origin(attack):
    assert attack.row("cookie")["status"] == "completed"
    first = [h for h in attack.h.server.request_headers if "Cookie" in h]
    assert first and first[0]["Authorization"] == f"Bearer {SECRET}"  # the row's own origin
    seen = attack.other.request_headers
    assert seen and all("Cookie" not in h and "Authorization" not in h for h in seen)
    assert all(h.get("Referer") == "https://site.example/" for h in seen)  # others go along


def test_a_token_in_a_url_that_404s_is_masked(attack):
    message = failed_saying(attack, "token 404", "HTTP 404 Not Found", "/gone/index.m3u8?…")
    assert "user" not in message
    assert "/gone/index.m3u8?…" in attack.logs() and SECRET not in attack.logs()


@pytest.mark.parametrize(
    ("kind", "said"),
    [("status line", "the server's response was not valid HTTP"),
     ("chunk length", "the response's chunked encoding was broken"),
     ("header", "it returned plain text of 2 bytes")],
)  # fmt: skip
def test_a_non_http_reply_is_named_never_quoted(attack, kind, said):
    failed_saying(attack, f"raw {kind}", said)
    assert attack.raw[kind].connections >= 1


def test_a_name_or_url_with_control_characters_is_refused(attack):
    failed_saying(attack, "name with ESC", "The task's name contains U+001B (escape) at position 8")
    failed_saying(attack, "url with ESC", "contains U+001B (escape)")
    assert attack.h.server.hits["/esc.m3u8"] == 0
    for args in (["list"], ["status", attack.ids["name with ESC"]]):
        out = runner.invoke(app, [*args, "--db", attack.h.url]).stdout
        assert "\x1b" not in out and "\n[task x]" not in out and "Holiday\\x1b[2J" in out
    assert "\x1b" not in attack.logs() and "\n[task x]" not in attack.logs()


# --------------------------------------------------------------------------- afterwards


def test_the_same_daemon_then_completes_a_good_row(attack):
    row = attack.row("good")
    assert row["status"] == "completed" and row["progress"] == 100
    decoded = decode_check(Path(row["output_path"]))
    assert decoded.errors == () and (decoded.width, decoded.height) == (64, 36)
    assert sorted(p.name for p in attack.h.videos.rglob("*.mp4")) == ["Good.mp4", "cookie.mp4"]


def test_no_secret_in_any_column_log_or_listing(attack):
    shown = [attack.logs(), runner.invoke(app, ["list", "--db", attack.h.url]).stdout]
    for row in attack.h.api.list():
        shown += [str(row[column]) for column in WRITTEN]
        learned = {k: v for k, v in json.loads(row["metadata"] or "{}").items()
                   if k not in CALLER_KEYS}  # fmt: skip
        shown.append(json.dumps(learned))
        shown.append(runner.invoke(app, ["status", row["id"], "--db", attack.h.url]).stdout)
    text = "\n".join(shown)
    assert SECRET not in text
    assert LOCAL not in text
    home = {p.name for p in attack.h.home.iterdir()}
    assert home <= {"downloader.yaml", "manager.sqlite", "manager.sqlite-wal",
                    "manager.sqlite-shm", "logs", "work", "videos", "daemon-0.log",
                    "secret.mp4", "secret.txt"}, home  # fmt: skip
