"""Stopping `dlstore daemon` loses nothing (#9): SIGTERM lets the segments in flight finish
for ``shutdown_grace`` seconds, then aborts what still runs and releases the rows; a signal
lands at once, even while the database is locked.

A real subprocess, the Rust API's SQL and the local HLS server, as in tests/test_daemon.py
(whose harness this reuses). "Fetched twice" is what the server counted.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from dlstore.config import load_settings
from dlstore.daemon import SHUTDOWN_ABORT_SECONDS
from dlstore.errors import ConfigError
from dlstore.testing.media import decode_check, encode_source, write_hls

from .support.daemon import CONFIG, Harness, downloading_with, wait_until

pytestmark = pytest.mark.slow

LONG_SEGMENTS = 24

# the daemon harness (tests/support/daemon.py), on its media plus a longer stream


@pytest.fixture(scope="session")
def daemon_media(daemon_media: Path) -> Path:
    """The harness's media plus ``long/``: 24 one-second segments of 64x36."""
    source = encode_source(daemon_media / "_long.mp4", duration=LONG_SEGMENTS, width=64, height=36)
    write_hls(source, daemon_media / "long")
    return daemon_media


def configure(h: Harness, extra: str) -> None:
    (h.home / "downloader.yaml").write_text(CONFIG + extra)


def segment_files(h: Harness, task_id: str) -> int:
    return len(list(h.work_dir(task_id).glob("video-*.seg")))


# --------------------------------------------------------------------------- draining


def test_sigterm_lets_the_segments_in_flight_finish_and_none_is_fetched_twice(harness):
    h = harness
    h.server.latency = 0.8  # four threads: four segments in flight most of the time
    task_id = h.api.create("Drained", h.stream("long"))
    proc = h.start()
    wait_until(downloading_with(h, task_id, 4), 20, "4 segments")
    at_signal = segment_files(h, task_id)
    stop_at = time.monotonic()
    proc.send(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.text()
    assert time.monotonic() - stop_at < 10  # the grace (10 s) was not needed: ~0.8 s
    row = h.row(task_id)
    assert row["status"] == "pending" and row["attempts"] == 0, row
    assert segment_files(h, task_id) > at_signal  # what was in flight was finished, kept

    h.server.latency = 0
    h.run()
    row = h.row(task_id)
    assert row["status"] == "completed", row
    hits = h.segment_hits("long")
    assert len(hits) == LONG_SEGMENTS and set(hits.values()) == {1}, sorted(hits.items())
    assert decode_check(Path(row["output_path"])).errors == ()


def test_what_outlives_the_grace_is_aborted_and_released(harness):
    h = harness
    configure(h, "  shutdown_grace: 1\n")
    h.server.rate_limit_bps = 8000  # ~45 KB segments: ~5 s each
    task_id = h.api.create("Slow", h.stream(), {"profile": "serial"})
    proc = h.start()
    wait_until(lambda: h.segment_hits(), 20, "the first segment to be under way")
    stop_at = time.monotonic()
    proc.send(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.text()
    took = time.monotonic() - stop_at
    assert took < 1 + SHUTDOWN_ABORT_SECONDS + 3, took
    row = h.row(task_id)
    assert row["status"] == "pending" and row["worker_id"] is None, row
    assert "still fetching after shutdown_grace (1 s): aborting" in proc.text()


# --------------------------------------------------------------------------- signals land


class LockHolder:
    """An IMMEDIATE write transaction held by another connection (the API's, say)."""

    def __init__(self, h: Harness, seconds: float) -> None:
        self.api = h.api
        self.seconds = seconds
        self.released = threading.Event()

    def __enter__(self) -> LockHolder:
        self.api.execute("BEGIN IMMEDIATE")
        self.timer = threading.Timer(self.seconds, self.release)
        self.timer.start()
        return self

    def release(self) -> None:
        if not self.released.is_set():
            self.released.set()
            self.api.execute("ROLLBACK")

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()
        self.release()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_signal_lands_at_once_while_the_loop_waits_for_a_locked_database(harness):
    h = harness
    proc = h.start()  # idle, polling every 0.1 s: its next claim waits for the lock
    wait_until(lambda: "started" in proc.text(), 15, "the daemon to start")
    with LockHolder(h, 8) as lock:
        time.sleep(0.5)  # the loop is in its claim, in SQLite's busy handler
        stop_at = time.monotonic()
        proc.send(signal.SIGTERM)
        assert proc.wait(5) == 0, proc.text()
        took = time.monotonic() - stop_at
        assert not lock.released.is_set()
    assert took < 2, took
    assert "SIGTERM received" in proc.text()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_stop_that_cannot_release_its_row_exits_after_the_grace_and_is_taken_over(harness):
    h = harness
    configure(h, "  shutdown_grace: 1\n")
    h.server.latency = 0.3
    task_id = h.api.create("Locked out", h.stream(), {"profile": "serial"})
    proc = h.start()
    wait_until(downloading_with(h, task_id, 1), 15, "the first progress write")
    with LockHolder(h, 8) as lock:
        stop_at = time.monotonic()
        proc.send(signal.SIGTERM)
        assert proc.wait(15) == 0, proc.text()
        took = time.monotonic() - stop_at
        assert not lock.released.is_set()  # it left while the API still held the lock
    assert took < 1 + SHUTDOWN_ABORT_SECONDS + 2, took
    assert "did not release their rows in time" in proc.text()
    assert h.row(task_id)["status"] == "downloading"  # left for the next start on this host

    h.server.latency = 0
    started = time.monotonic()
    h.run("--lease", "60")  # its holder is gone: taken over at once, not after the lease
    assert time.monotonic() - started < 20
    row = h.row(task_id)
    assert row["status"] == "completed", row
    assert set(h.segment_hits().values()) == {1}  # the in-flight segment had finished


# --------------------------------------------------------------------------- the setting


@pytest.mark.parametrize("value", ["-1", "3601", "soon", ".nan"])
def test_shutdown_grace_is_checked(tmp_path, value):
    path = tmp_path / "downloader.yaml"
    path.write_text(f"downloader:\n  shutdown_grace: {value}\n")
    with pytest.raises(ConfigError, match="shutdown_grace"):
        load_settings(path, environ={})


def test_shutdown_grace_defaults_to_ten_seconds(tmp_path):
    path = tmp_path / "downloader.yaml"
    path.write_text("downloader:\n  log_file: null\n")
    assert load_settings(path, environ={}).shutdown_grace == 10.0
    path.write_text("downloader:\n  shutdown_grace: 0\n")
    assert load_settings(path, environ={}).shutdown_grace == 0.0
