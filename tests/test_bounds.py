"""Bounded in every dimension (#8): segment size, playlist size, stalls, deadlines, cancel.

Against the real local server (dribbling and never-ending bodies), except the
playlist pre-scan, which is pure, and the settings.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dlstore.config import load_settings
from dlstore.engine import download
from dlstore.errors import (
    CancelledError,
    ConfigError,
    PlaylistError,
    SegmentTooLargeError,
    SlowServerError,
    TransientDownloadError,
)
from dlstore.options import DownloadOptions
from dlstore.playlist import parse_playlist
from dlstore.segment_checks import LengthCheck
from dlstore.testing.hls_server import Body, Endless, HlsServer
from dlstore.testing.media import decode_check

MIB = 1 << 20
M3U8 = "application/vnd.apple.mpegurl"


@pytest.fixture
def options(fast_options: DownloadOptions) -> DownloadOptions:
    return dataclasses.replace(fast_options, max_retries=1, stall_timeout=1.0)


def start(server: HlsServer, path: str, tmp_path: Path, options: DownloadOptions, **kwargs):
    """engine.download in a thread: (thread, box) where box gets "result" or "error" and
    "elapsed"; a watchdog cancels it after 20 s, so a broken bound fails instead of hanging."""
    box: dict[str, object] = {}
    cancel = kwargs.pop("cancel", None) or threading.Event()
    watchdog = threading.Timer(20, cancel.set)

    def target() -> None:
        started = time.monotonic()
        try:
            box["result"] = download(
                server.url(path),
                tmp_path / "out" / "video.mp4",
                work_dir=tmp_path / "work",
                options=options,
                cancel=cancel,
                **kwargs,
            )
        except BaseException as exc:
            box["error"] = exc
        box["elapsed"] = time.monotonic() - started
        watchdog.cancel()

    thread = threading.Thread(target=target, name="test-download", daemon=True)
    watchdog.start()
    thread.start()
    return thread, box


def run(server: HlsServer, path: str, tmp_path: Path, options: DownloadOptions, **kwargs):
    thread, box = start(server, path, tmp_path, options, **kwargs)
    thread.join(30)
    assert not thread.is_alive()
    return box


def three_segments(server: HlsServer, middle: str) -> str:
    """A playlist of plain's first and third segments around ``middle``."""
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n/plain/seg-000.ts\n"
        f"#EXTINF:1,\n{middle}\n#EXTINF:1,\n/plain/seg-002.ts\n#EXT-X-ENDLIST\n"
    )
    server.bodies["/three.m3u8"] = Body(text.encode(), M3U8)
    return "/three.m3u8"


def wait_until(condition, seconds: float = 2.0) -> bool:
    ends = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > ends:
            return False
        time.sleep(0.02)
    return True


# --------------------------------------------------------------------------- segment size


def test_oversize_segment_is_refused_while_it_streams(hls_server, options, tmp_path):
    hls_server.bodies["/big/seg-001.ts"] = Endless()  # no Content-Length, never ends
    path = three_segments(hls_server, "/big/seg-001.ts")
    box = run(hls_server, path, tmp_path, dataclasses.replace(options, max_segment_bytes=MIB))
    error = box["error"]
    assert isinstance(error, SegmentTooLargeError), error
    assert (
        "video segment 2 of 3 (seg-001.ts) (it is larger than max_segment_bytes, "
        "1048576 bytes (1.0 MB)"
    ) in str(error)
    assert not error.transient
    assert hls_server.hits["/big/seg-001.ts"] == 1  # permanent: not retried
    assert box["elapsed"] < 5
    assert hls_server.bytes_sent < 16 * MIB  # the limit, the other segments, socket buffers
    assert wait_until(lambda: hls_server.disconnects["/big/seg-001.ts"] >= 1)
    assert not (tmp_path / "out" / "video.mp4").exists()


def test_content_length_over_the_limit_is_refused_before_the_body(hls_server, options, tmp_path):
    # announced 10 GiB, then a byte a second: only the headers can make this fail fast
    hls_server.bodies["/big/seg-001.ts"] = Endless(content_length=10 << 30, interval=1.0, step=1)
    path = three_segments(hls_server, "/big/seg-001.ts")
    box = run(hls_server, path, tmp_path, options)  # the default limit, 256 MiB
    error = box["error"]
    assert isinstance(error, SegmentTooLargeError), error
    assert (
        "larger than max_segment_bytes, 268435456 bytes (268.4 MB): the server announces "
        "10737418240 bytes (10.7 GB)"
    ) in str(error)
    assert box["elapsed"] < 0.9  # before the first byte of the body was due
    assert hls_server.hits["/big/seg-001.ts"] == 1


def test_length_check_counts_against_the_limit():
    with pytest.raises(SegmentTooLargeError, match="announces 2049 bytes"):
        LengthCheck(None, 200, 2049, "the segment", max_bytes=2048)
    check = LengthCheck(None, 200, None, "the segment", max_bytes=2048)
    check.cut(b"x" * 2048)  # exactly the limit is fine
    with pytest.raises(SegmentTooLargeError, match="the server sent more than that"):
        check.cut(b"x")
    unlimited = LengthCheck(None, 200, 10 << 30, "the segment")
    assert unlimited.cut(b"abc") == b"abc"


# --------------------------------------------------------------------------- stalls


def test_dribbling_segment_is_aborted_and_retried_within_the_stall_window(
    hls_media, hls_server, options, tmp_path
):
    hls_server.dribble_interval = 0.05  # 20 bytes a second: ~40 minutes for this segment
    hls_server.fail_times("/plain/seg-003.ts", 1, "dribble")
    box = run(hls_server, "/plain/index.m3u8", tmp_path, options)
    assert "error" not in box, box.get("error")
    assert hls_server.hits["/plain/seg-003.ts"] == 2  # aborted once, then fetched whole
    assert box["elapsed"] < 1.0 + 4  # the stall window, plus the download itself
    assert decode_check(box["result"].output_path).errors == ()
    assert hls_media["plain"].segments == box["result"].segments


def test_segment_that_keeps_dribbling_is_a_transient_failure(hls_server, options, tmp_path):
    hls_server.dribble_interval = 0.05
    hls_server.fail_always["/plain/seg-003.ts"] = "dribble"
    box = run(hls_server, "/plain/index.m3u8", tmp_path, options)
    error = box["error"]
    assert isinstance(error, TransientDownloadError) and error.transient, error
    assert "segment 4 of 8 (seg-003.ts) (after 2 attempts: the server stalled" in str(error)
    assert "stalled" in str(error) and "less than 1 KiB in 1 s" in str(error)
    assert box["elapsed"] < 2 * 1.0 + 3


def test_silent_segment_waits_only_the_stall_timeout(hls_server, options, tmp_path):
    hls_server.bodies["/big/seg-001.ts"] = Endless(content_length=1000, interval=60)
    path = three_segments(hls_server, "/big/seg-001.ts")
    slow_reads = dataclasses.replace(options, read_timeout=60.0, max_retries=0)
    box = run(hls_server, path, tmp_path, slow_reads)
    error = box["error"]
    assert isinstance(error, TransientDownloadError), error
    assert (
        "segment 2 of 3 (seg-001.ts) (after 1 attempt: the server sent nothing of it for 1 s"
        in str(error)
    )
    assert box["elapsed"] < 3


# --------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize(
    ("stream", "dribbled", "what"),
    [("plain", "/plain/index.m3u8", "the playlist"), ("aes_iv", "/aes_iv/key.bin", "the AES key")],
)
def test_dribbling_playlist_or_key_hits_the_deadline(
    stream, dribbled, what, hls_server, options, tmp_path
):
    hls_server.dribble_interval = 0.2  # never silent for a read timeout, never stalled
    hls_server.fail_always[dribbled] = "dribble"
    patient = dataclasses.replace(
        options, connect_timeout=0.5, read_timeout=1.0, stall_timeout=30.0
    )
    box = run(hls_server, f"/{stream}/index.m3u8", tmp_path, patient)
    error = box["error"]
    assert isinstance(error, TransientDownloadError), error
    assert f"The server took over 1.5 s to send {what}" in str(error)
    assert hls_server.hits[dribbled] >= 2  # max_retries=1 (a key: per fetch thread)
    assert box["elapsed"] < 2 * 1.5 + 2
    assert wait_until(lambda: hls_server.disconnects[dribbled] >= 2)  # each socket closed


@pytest.mark.parametrize(
    ("stream", "dribbled", "what"),
    [("plain", "/plain/index.m3u8", "the playlist"), ("aes_iv", "/aes_iv/key.bin", "the AES key")],
)
def test_headers_dribbled_hit_the_deadline_and_their_socket_closes_then(
    stream, dribbled, what, hls_server, options, tmp_path
):
    hls_server.dribble_interval = 0.2  # ~30 s of headers, never silent for a read timeout
    hls_server.fail_always[dribbled] = "dribble-head"
    patient = dataclasses.replace(
        options, connect_timeout=0.5, read_timeout=1.0, stall_timeout=30.0, max_retries=0
    )
    box = run(hls_server, f"/{stream}/index.m3u8", tmp_path, patient)
    error = box["error"]
    assert isinstance(error, TransientDownloadError), error
    assert f"The server took over 1.5 s to send {what}" in str(error)
    # closed when the deadline fired, not when the headers would have ended
    assert wait_until(lambda: hls_server.disconnects[dribbled] >= 1, 2)


def test_cancel_closes_a_request_whose_headers_are_dribbled(hls_server, options, tmp_path):
    hls_server.dribble_interval = 0.2
    hls_server.fail_always["/plain/seg-001.ts"] = "dribble-head"
    cancel = threading.Event()
    patient = dataclasses.replace(options, stall_timeout=60.0, read_timeout=60.0)
    path = three_segments(hls_server, "/plain/seg-001.ts")
    thread, box = start(hls_server, path, tmp_path, patient, cancel=cancel)
    assert wait_until(lambda: hls_server.hits["/plain/seg-001.ts"] >= 1, 5)
    time.sleep(0.5)  # its headers are coming
    cancel.set()
    thread.join(2)
    assert not thread.is_alive() and isinstance(box["error"], CancelledError), box["error"]
    assert wait_until(lambda: hls_server.disconnects["/plain/seg-001.ts"] >= 1, 2)


def header_deadline_options(options: DownloadOptions, **changes) -> DownloadOptions:
    """A 1 s header deadline (read_timeout) that a byte per 0.2 s never trips otherwise."""
    return dataclasses.replace(
        options, connect_timeout=0.5, read_timeout=1.0, stall_timeout=30.0, **changes
    )


def test_segment_headers_dribbled_hit_the_header_deadline(hls_server, options, tmp_path):
    hls_server.dribble_interval = 0.2  # ~30 s of headers, never silent for a read timeout
    hls_server.fail_always["/plain/seg-001.ts"] = "dribble-head"
    path = three_segments(hls_server, "/plain/seg-001.ts")
    thread, box = start(hls_server, path, tmp_path, header_deadline_options(options))
    assert wait_until(lambda: hls_server.hits["/plain/seg-001.ts"] >= 1, 5)
    asked = time.monotonic()
    assert wait_until(lambda: hls_server.disconnects["/plain/seg-001.ts"] >= 1, 1.0 + 2)
    closed = time.monotonic() - asked  # the deadline (1 s), then the server's next write
    thread.join(10)
    error = box["error"]
    assert isinstance(error, TransientDownloadError) and error.transient, error
    assert (
        "1 of 3 segments could not be downloaded: video segment 2 of 3 (seg-001.ts) (after "
        "2 attempts: the server sent its headers too slowly for it: not all of them within 1 s"
    ) in str(error)
    assert hls_server.hits["/plain/seg-001.ts"] == 2  # max_retries=1
    assert box["elapsed"] < 2 * 1.0 + 3
    assert wait_until(lambda: hls_server.disconnects["/plain/seg-001.ts"] >= 2, 2)
    assert closed < 1.0 + 1.0, closed
    kept = sorted(p.name for p in (tmp_path / "work").rglob("*.seg"))
    assert kept == ["video-000000.seg", "video-000002.seg"], kept  # in place for a retry


def test_segment_headers_dribbled_once_are_retried_and_other_downloads_go_on(
    hls_media, hls_server, options, tmp_path
):
    hls_server.dribble_interval = 0.2
    hls_server.fail_times("/plain/seg-001.ts", 1, "dribble-head")
    patient = header_deadline_options(options)
    slow, slow_box = start(hls_server, "/plain/index.m3u8", tmp_path / "a", patient)
    assert wait_until(lambda: hls_server.hits["/plain/seg-001.ts"] >= 1, 5)
    other = run(hls_server, "/aes_iv/index.m3u8", tmp_path / "b", patient)  # meanwhile
    assert "error" not in other, other.get("error")
    assert other["elapsed"] < 5  # the shared watchdog cut nothing of it
    slow.join(10)
    assert "error" not in slow_box, slow_box.get("error")
    assert hls_server.hits["/plain/seg-001.ts"] == 2  # cut at the deadline, then fetched
    assert slow_box["elapsed"] < 1.0 + 3
    assert decode_check(slow_box["result"].output_path).errors == ()
    assert hls_media["plain"].segments == slow_box["result"].segments


def test_segment_body_just_under_the_stall_rate_is_bounded(hls_server, options, tmp_path):
    # 1000 bytes a second, a read every 0.1 s: never silent, never over max_segment_bytes
    hls_server.bodies["/big/seg-001.ts"] = Endless(content_length=10 << 20, interval=0.1, step=100)
    path = three_segments(hls_server, "/big/seg-001.ts")
    patient = dataclasses.replace(options, read_timeout=60.0, max_retries=0)
    box = run(hls_server, path, tmp_path, patient)
    error = box["error"]
    assert isinstance(error, TransientDownloadError), error
    assert "segment 2 of 3 (seg-001.ts) (after 1 attempt: the server stalled" in str(error)
    assert box["elapsed"] < 1.0 + 2
    assert wait_until(lambda: hls_server.disconnects["/big/seg-001.ts"] >= 1)


# --------------------------------------------------------------------------- cancel


@pytest.mark.parametrize(
    ("stream", "endless", "step"),
    [
        ("three", "/big/seg-001.ts", 188),
        ("plain", "/plain/index.m3u8", 188),
        ("aes_iv", "/aes_iv/key.bin", 1),  # under the 4 KiB a key may have, for a while
    ],
)
def test_cancel_closes_a_never_ending_response_at_once(
    stream, endless, step, hls_server, options, tmp_path
):
    # slow enough to never fill the buffers, and too slow to stall with stall_timeout 60
    hls_server.bodies[endless] = Endless(interval=0.01, step=step)
    path = three_segments(hls_server, endless) if stream == "three" else f"/{stream}/index.m3u8"
    cancel = threading.Event()
    patient = dataclasses.replace(options, stall_timeout=60.0, read_timeout=60.0)
    thread, box = start(hls_server, path, tmp_path, patient, cancel=cancel)
    assert wait_until(lambda: hls_server.hits[endless] >= 1, 5)
    time.sleep(0.3)  # the body is streaming
    cancelled = time.monotonic()
    cancel.set()
    thread.join(2)
    assert not thread.is_alive(), "the download did not stop within 2 s of the cancel"
    assert isinstance(box["error"], CancelledError), box["error"]
    assert time.monotonic() - cancelled < 2
    assert wait_until(lambda: hls_server.disconnects[endless] >= 1, 2)
    for other in threading.enumerate():
        if other.name.startswith(("dlstore-fetch", "dlstore-request")):
            other.join(2)
            assert not other.is_alive(), other.name


# --------------------------------------------------------------------------- playlist size


def tiny_segments(count: int) -> str:
    return (
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n"
        + "".join(f"#EXTINF:1,\n{i:08x}.ts\n" for i in range(count))
        + "#EXT-X-ENDLIST\n"
    )


def test_a_16_mib_playlist_of_700k_segments_is_refused_at_once():
    text = tiny_segments(700_000)
    assert 15 * MIB < len(text) <= 16 * MIB
    started = time.perf_counter()
    with pytest.raises(PlaylistError, match=r"700000 segments, more than the limit of 100000"):
        parse_playlist(text, "https://cdn.example/huge.m3u8")
    assert time.perf_counter() - started < 5  # measured: ~0.01 s; m3u8 alone takes > 10 s


def test_16_mib_of_blank_lines_is_refused_by_its_line_count():
    text = "#EXTM3U\n" + "\r\n" * (8 * MIB - 40) + "#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n"
    started = time.perf_counter()
    with pytest.raises(PlaylistError, match=r"lines, more than the 401000 allowed.*max_segments"):
        parse_playlist(text, "https://cdn.example/blank.m3u8")
    assert time.perf_counter() - started < 5  # m3u8 alone: ~25 s


def test_the_prescan_lets_a_playlist_at_the_limit_through():
    plan = parse_playlist(tiny_segments(5), "https://cdn.example/a.m3u8", max_segments=5)
    assert len(plan.segments) == 5
    with pytest.raises(PlaylistError, match="6 segments, more than the limit of 5"):
        parse_playlist(tiny_segments(6), "https://cdn.example/a.m3u8", max_segments=5)


# Peak RSS from the kernel's VmHWM: getrusage's ru_maxrss keeps the forking parent's peak
# across exec, and pytest's own is larger than the bound.
PEAK_RSS_CHILD = """
import re, sys, time
from dlstore.errors import PlaylistError
from dlstore.playlist import decode_playlist, parse_playlist
body = sys.stdin.buffer.read()
started = time.perf_counter()
try:
    parse_playlist(decode_playlist(body, "u"), "u")
except PlaylistError:
    pass
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    print(seconds, re.search(r"VmHWM:\\s*(\\d+) kB", status.read()).group(1))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_the_refusal_costs_little_memory():
    body = tiny_segments(700_000).encode()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_CHILD], input=body, capture_output=True, check=True
    )
    seconds, peak_kib = done.stdout.split()
    assert float(seconds) < 5
    assert int(peak_kib) < 150 * 1024  # measured: ~50 MB (imports, body and text)


# --------------------------------------------------------------------------- settings


def test_bounds_are_top_level_settings(tmp_path):
    config = tmp_path / "downloader.yaml"
    config.write_text("downloader:\n  max_segment_bytes: 1048576\n  stall_timeout: 5\n")
    options = load_settings(config, environ={}).download_options(profile="fast")
    assert (options.max_segment_bytes, options.stall_timeout) == (MIB, 5.0)
    assert options.read_wait == 5.0  # min(read_timeout, stall_timeout)
    assert options.small_fetch_deadline == options.connect_timeout + options.read_timeout
    for bad in ("max_segment_bytes: 0", "stall_timeout: -1", "max_segment_bytes: big"):
        config.write_text(f"downloader:\n  {bad}\n")
        with pytest.raises(ConfigError, match=bad.split(":")[0]):
            load_settings(config, environ={})
    config.write_text("downloader:\n  profiles:\n    fast: {stall_timeout: 5}\n")
    with pytest.raises(ConfigError, match="unknown key 'stall_timeout'"):
        load_settings(config, environ={})


def test_default_bounds():
    options = DownloadOptions()
    assert options.max_segment_bytes == 268435456 and options.stall_timeout == 30.0
    assert options.small_fetch_deadline == 75.0
    assert SlowServerError().transient  # aborted for being slow: retried, then re-queued
