"""No server's bytes in a sentence, no secret in a log, no control character on a terminal
(issue #8).

A failure is named by its kind, never by the HTTP library's text (which quotes the
status line, the chunk length or the header the server sent); a status by its
standard phrase, never the server's; a URL without its user-info and query string.
A name with control characters is refused, and what ``list`` and ``status`` print
is escaped.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import random
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from dlstore import logs
from dlstore.cli import app
from dlstore.cli.format import format_table, format_task
from dlstore.crypto import parse_key
from dlstore.errors import DownloadError, UnsafePathError
from dlstore.http import Fetched, Retry, check_status, fetch_small, make_session, translate_errors
from dlstore.models import DownloadTask
from dlstore.options import DownloadOptions
from dlstore.paths import check_name
from dlstore.playlist import decode_playlist, parse_playlist
from dlstore.redact import MAX_SHOWN_CHARS, redact_url
from dlstore.testing.hls_server import RawServer
from dlstore.testing.rust_api import RustApi

SECRET = "SECRET-7f3a9c"
TOKEN_URL = f"https://user:{SECRET}@cdn.example/v.m3u8?token={SECRET}"
CONTROLS = "\x1b[2J\x1b]0;owned\x07\n[task forged] line\r\u202e"
runner = CliRunner()


def fetch_from(url: str) -> Fetched:
    options = DownloadOptions(max_retries=0, connect_timeout=5, read_timeout=5)
    retry = Retry(attempts=1, base_delay=0, wait=lambda _: False, rng=random.Random(0))
    with make_session(options, url) as session:
        return fetch_small(session, url, options=options, what="the playlist", max_bytes=10_000,
                    retry=retry)  # fmt: skip


# --------------------------------------------------------------------------- failure kinds


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (f"{SECRET}-STATUS-LINE redis\r\n\r\n".encode(),
         "the server's response was not valid HTTP"),
        (f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{SECRET}\r\n".encode(),
         "the response's chunked encoding was broken"),
        (f"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{SECRET}".encode(),
         "the response ended early"),
        (b"", "the server closed the connection without answering"),
        (f"HTTP/1.1 200 {'S' * 70000}{SECRET}\r\n\r\n".encode(),
         "the server's response was not valid HTTP"),
    ],
)  # fmt: skip
def test_a_broken_response_is_named_by_its_kind_not_quoted(reply, kind):
    with RawServer(reply) as raw, pytest.raises(DownloadError) as info:
        fetch_from(raw.url("/v.m3u8"))
    message = str(info.value)
    assert f"({kind})" in message, message
    assert SECRET not in message and "SSSS" not in message


def test_a_refused_connection_and_an_unknown_name_are_named(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=r"\(connection refused\)"):
        fetch_from(f"http://127.0.0.1:{port}/v.m3u8")

    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known {SECRET}")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    with pytest.raises(DownloadError) as info:
        fetch_from("http://cdn.invalid/v.m3u8")
    assert "(name not resolved)" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        (TimeoutError(f"timed out {SECRET}"), "timed out"),
        (ConnectionResetError(errno.ECONNRESET, SECRET), "connection reset"),
        (OSError(errno.EHOSTUNREACH, SECRET), "host unreachable"),
        (OSError(errno.EIO, SECRET), "input/output error"),
        (ValueError(SECRET), "ValueError"),  # no kind known: the type's name, never the text
    ],
)
def test_chained_causes_give_the_kind(cause, kind):
    with pytest.raises(DownloadError) as info, translate_errors("the playlist"):
        raise requests.exceptions.ConnectionError(f"wrapped {SECRET}") from cause
    assert f"({kind})" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("status", "shown"),
    [(403, "HTTP 403 Forbidden"), (404, "HTTP 404 Not Found"), (503, "HTTP 503 Service "
     "Unavailable"), (418, "HTTP 418 I'm a Teapot"), (599, "HTTP 599)")],
)  # fmt: skip
def test_a_status_gets_its_standard_phrase_not_the_servers(status, shown):
    response = requests.Response()
    response.status_code, response.reason = status, f"{SECRET}\x1b[2J"
    with pytest.raises(DownloadError) as info:
        check_status(response, "the playlist")
    assert shown in str(info.value) and SECRET not in str(info.value)


# --------------------------------------------------------------------------- URLs in sentences


@pytest.mark.parametrize(
    "body",
    [
        b"not a playlist",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-ENDLIST\n",  # no segments
        b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns.ts\n",  # live
        b'#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0xZZ\n#EXTINF:2,\ns.ts\n#EXT-X-ENDLIST\n',
        b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nftp://h/s.ts\n#EXT-X-ENDLIST\n",
    ],
)
def test_playlist_errors_show_the_url_redacted(body):
    with pytest.raises(DownloadError) as info:
        parse_playlist(decode_playlist(body, TOKEN_URL), TOKEN_URL)
    assert SECRET not in str(info.value) and "https://cdn.example/v.m3u8?…" in str(info.value)


def test_a_bad_key_names_its_url_redacted():
    with pytest.raises(DownloadError) as info:
        parse_key(f'{{"password": "{SECRET}"}}'.encode(), TOKEN_URL)
    assert SECRET not in str(info.value) and "https://cdn.example/v.m3u8?…" in str(info.value)
    assert "a JSON document" in str(info.value)


def test_a_long_url_is_shown_cut():
    shown = redact_url(f"https://cdn.example/{'a' * 1000}\x1b")
    assert len(shown) == MAX_SHOWN_CHARS and shown.endswith("...")


# --------------------------------------------------------------------------- names


#: Characters a name must not hold, by the name the refusal gives them.
REFUSED_IN_NAMES = {
    "\x1b": "U+001B (escape)",
    "\n": "U+000A (line feed)",
    "\t": "U+0009 (tab)",
    "\x00": "U+0000 (nul)",
    "\u202e": "U+202E (right-to-left override)",
    "\u2029": "U+2029 (paragraph separator)",
}


@pytest.mark.parametrize("char", REFUSED_IN_NAMES)
def test_a_name_with_control_characters_is_refused_naming_the_character(char):
    name = f"Holiday{char}[2J"
    with pytest.raises(UnsafePathError) as info:
        check_name(name)
    message = str(info.value)
    assert f"{REFUSED_IN_NAMES[char]} at position 8" in message
    assert "must not hold control characters" in message and char not in message


@pytest.mark.parametrize("name", ["My Video", "Café ☕ 2025", "no\u00a0break"])
def test_names_with_spaces_are_fine(name):
    check_name(name)


def test_add_and_batch_refuse_such_a_name(migrated_url, tmp_path):
    result = runner.invoke(app, ["add", "https://e/a.m3u8", "--name", "a\x1b[2Jb",
                                 "--db", migrated_url])  # fmt: skip
    assert result.exit_code == 1
    assert "contains U+001B (escape) at position 2" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"name": "one\ntwo", "url": "https://e/a.m3u8"}]))
    result = runner.invoke(app, ["batch", str(tasks), "--enqueue", "--db", migrated_url])
    assert result.exit_code == 1 and "U+000A (line feed)" in result.stderr
    assert result.stderr.count("\n") == 1
    api = RustApi(migrated_url)
    assert api.list() == []
    api.close()


# --------------------------------------------------------------------------- the terminal


def hostile_task() -> DownloadTask:
    return DownloadTask(
        id="t1", name=f"name{CONTROLS}", url=f"https://e/{CONTROLS}", status="downloading",
        created_at="2025-01-13T10:00:00Z", message=f"msg{CONTROLS}",
        error_message=f"err{CONTROLS}", current_file=f"seg{CONTROLS}.ts",
        worker_id=f"w{CONTROLS}", output_path=f"/v/{CONTROLS}",
    )  # fmt: skip


def no_raw_controls(text: str) -> bool:
    return not any(c in text for c in "\x1b\x07\r\u202e")


def test_table_and_details_escape_control_characters():
    table = format_table([hostile_task()])
    assert no_raw_controls(table) and len(table.splitlines()) == 2
    assert "name\\x1b[2J" in table
    details = format_task(hostile_task())
    assert no_raw_controls(details) and "[task forged]" not in details.split("\n", 1)[0]
    assert all(line.split()[0] != "[task" for line in details.splitlines())
    assert "seg\\x1b[2J" in details and "err\\x1b[2J" in details and "\\u202e" in details


def test_list_and_status_of_an_api_row_print_no_control_characters(migrated_url):
    api = RustApi(migrated_url)
    task_id = api.create(f"From the web{CONTROLS}", f"https://e/x.m3u8?{CONTROLS}",
                         {"quality": "best", "note": CONTROLS})  # fmt: skip
    api.execute("UPDATE download_tasks SET error_message = ?, status = 'failed' WHERE id = ?",
                (f"bad{CONTROLS}", task_id))  # fmt: skip
    api.close()
    for args in (["list"], ["status", task_id]):
        out = runner.invoke(app, [*args, "--db", migrated_url]).stdout
        assert no_raw_controls(out) and "\n[task forged]" not in out, out
        raw = runner.invoke(app, [*args, "--json", "--db", migrated_url]).stdout
        assert no_raw_controls(raw) and "\n[task forged]" not in raw
        parsed = json.loads(raw)
        row = parsed[0] if isinstance(parsed, list) else parsed
        assert row["name"] == f"From the web{CONTROLS}"  # escaped on the wire, intact inside


# --------------------------------------------------------------------------- logs


@pytest.fixture
def daemon_logging(tmp_path: Path, monkeypatch) -> Iterator[tuple[Path, io.StringIO]]:
    """logs.setup as the daemon runs it: the log file and what went to stderr. Undone
    afterwards (it changes global loggers)."""
    log_file, stderr = tmp_path / "daemon.log", io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    logger = logs.setup("INFO", log_file)
    yield log_file, stderr
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)
    for name in logs.QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_a_log_line_stays_one_line(daemon_logging):
    log_file, stderr = daemon_logging
    log = logs.TaskLog(logging.getLogger(logs.LOGGER_NAME), f"id{CONTROLS}")
    log.warning("Failed: %s", f"the server said{CONTROLS}")
    for text in (log_file.read_text(), stderr.getvalue()):
        assert text.count("\n") == 1 and no_raw_controls(text), text
        assert "said\\x1b[2J" in text


def test_a_traceback_is_logged_redacted_on_its_records_line(daemon_logging):
    log_file, stderr = daemon_logging
    log = logs.TaskLog(logging.getLogger(logs.LOGGER_NAME), "t1")
    try:
        try:
            raise OSError(f"with url: /v.m3u8?token={SECRET}")
        except OSError as cause:
            raise ValueError(f"cannot fetch {TOKEN_URL}{CONTROLS}") from cause
    except ValueError:
        log.exception("Crashed")
    log.error("Stack", stack_info=True)
    for text in (log_file.read_text(), stderr.getvalue()):
        assert text.count("\n") == 2 and no_raw_controls(text), text
        assert SECRET not in text and "user:" not in text, text
        assert "[task t1] Crashed\\nTraceback (most recent call last):" in text
        assert "ValueError: cannot fetch https://cdn.example/v.m3u8?…\\x1b[2J" in text
        assert "OSError: with url: /v.m3u8?…" in text


def test_urllib3_warnings_quoting_a_peers_headers_are_held_back(daemon_logging, caplog):
    reply = f"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{SECRET}-NO-COLON\r\n\r\nok".encode()
    with caplog.at_level(logging.DEBUG), RawServer(reply) as raw:
        fetched = fetch_from(raw.url(f"/v.m3u8?token={SECRET}"))
    assert fetched.body == b"ok"
    log_file, stderr = daemon_logging
    assert SECRET not in caplog.text + log_file.read_text() + stderr.getvalue()
    assert not [r for r in caplog.records if r.name.startswith("urllib3")]


def test_the_work_folder_manifest_keeps_no_token_of_the_url():
    from dlstore.engine import DownloadPlan
    from dlstore.playlist import MediaPlan

    url = "https://cdn.example/v.m3u8?token=SECRET-9d2e"
    video = MediaPlan(url=url, segments=())
    identity = DownloadPlan(url=url, video=video).identity()
    assert "SECRET-9d2e" not in json.dumps(identity)
    other = DownloadPlan(url=url.replace("9d2e", "0000"), video=video).identity()
    assert identity != other  # still tells two URLs apart: no wrong resume


def test_escape_controls_finds_exactly_the_characters_unsafe_character_names():
    import unicodedata

    from dlstore.redact import escape_controls, unsafe_character

    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) == "Cs":
            continue  # a lone surrogate is an undecodable byte: shown as U+FFFD
        unsafe = char != " " and unsafe_character(char) is not None
        assert (escape_controls(char) != char) == unsafe, hex(code)
