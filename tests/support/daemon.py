"""The daemon harness of the end-to-end daemon tests: a daemon home with its config, the
Rust API's SQL on the test database, a local HLS server over generated media, and daemon
subprocesses that are killed if a test leaves them running.

Listed in ``tests/conftest.py`` as a plugin (``pytest_plugins``):

- ``daemon_media`` (session): ``short/`` (8 one-second segments, 96x54 with audio) and
  ``tinyNN/`` (2 segments each); a test module may extend it by overriding the fixture.
- ``harness``: a :class:`Harness` on ``db_url`` (SQLite and PostgreSQL).

Also :func:`start_daemon` and :func:`watch`, the plainer pair the live tests use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dlstore import migrate
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.media import encode_source, write_hls
from dlstore.testing.rust_api import RustApi

SHORT_SEGMENTS = 8
TINY_ROWS = 30

CONFIG = """\
downloader:
  temp_dir: ./work
  output_dir: ./videos
  log_file: ./logs/daemon.log
  log_level: INFO
  default_profile: test
  poll_interval: 0.1
  lease_seconds: 3
  task_retries: 1
  task_retry_delay: 60
  connect_timeout: 5
  read_timeout: 5
  profiles:
    test:   {threads: 4, max_retries: 1, retry_delay: 0.05}
    serial: {threads: 1, max_retries: 1, retry_delay: 0.05}
"""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def daemon_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``short/``: 8 one-second segments, 96x54 with audio; ``tinyNN/``: 2 segments each."""
    root = tmp_path_factory.mktemp("daemon-media")
    write_hls(
        encode_source(root / "_short.mp4", duration=SHORT_SEGMENTS, width=96, height=54),
        root / "short",
    )
    write_hls(encode_source(root / "_tiny.mp4", duration=2, width=64, height=36), root / "tiny")
    for number in range(TINY_ROWS):
        shutil.copytree(root / "tiny", root / f"tiny{number:02d}")
    segments = [n for n in os.listdir(root / "short") if n.endswith(".ts")]
    assert len(segments) == SHORT_SEGMENTS
    return root


@dataclass
class Proc:
    popen: subprocess.Popen
    log: Path

    def wait(self, timeout: float = 60) -> int:
        return self.popen.wait(timeout=timeout)

    def send(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Harness:
    url: str
    home: Path
    api: RustApi
    server: HlsServer
    procs: list[Proc] = field(default_factory=list)

    @property
    def videos(self) -> Path:
        return self.home / "videos"

    def work_dir(self, task_id: str) -> Path:
        return self.home / "work" / task_id

    def stream(self, name: str = "short") -> str:
        return self.server.url(f"/{name}/index.m3u8")

    def segment_hits(self, name: str = "short") -> dict[str, int]:
        return {
            p: n
            for p, n in self.server.hits.items()
            if p.startswith(f"/{name}/") and p.endswith(".ts")
        }

    def row(self, task_id: str) -> dict[str, Any]:
        row = self.api.status(task_id)
        assert row is not None
        return row

    def start(
        self, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> Proc:
        """A daemon; ``prefix`` runs it under another command (e.g. ``unshare``)."""
        log = self.home / f"daemon-{len(self.procs)}.log"
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DOWNLOADER_", "NOTIFY_", "WATCHDOG_", "JOURNAL_"))
        }
        environ.update(env or {})
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    "dlstore",
                    "daemon",
                    "--db",
                    self.url,
                    "--config",
                    str(self.home / "downloader.yaml"),
                    *args,
                ],
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
            )
        proc = Proc(popen, log)
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 60) -> Proc:
        """A daemon with --exit-when-idle, to the end; it must exit 0."""
        proc = self.start("--exit-when-idle", *args)
        code = proc.wait(timeout)
        assert code == 0, proc.text()
        return proc


@pytest.fixture
def harness(db_url, tmp_path, daemon_media) -> Iterator[Harness]:
    migrate.upgrade(db_url)
    (tmp_path / "downloader.yaml").write_text(CONFIG)
    api = RustApi(db_url)
    server = HlsServer(daemon_media).start()
    h = Harness(db_url, tmp_path, api, server)
    try:
        yield h
    finally:
        for proc in h.procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait()
        server.stop()
        api.close()


def downloading_with(h: Harness, task_id: str, segments: int) -> Callable[[], bool]:
    def check() -> bool:
        row = h.row(task_id)
        return row["status"] == "downloading" and (row["downloaded_segments"] or 0) >= segments

    return check


# --------------------------------------------------------------------------- live tests

LIVE_CONFIG = """\
downloader:
  temp_dir: ./work
  output_dir: ./videos
  poll_interval: 0.1
  retry_delay: 0.01
  connect_timeout: 5
  read_timeout: 5
"""


def start_daemon(sqlite_url: str, home: Path, *args: str) -> subprocess.Popen:
    """``dlstore daemon`` on ``home/downloader.yaml``, its output piped (text)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DOWNLOADER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "dlstore", "daemon", "--db", sqlite_url, "--config",
         str(home / "downloader.yaml"), *args],
        cwd=home, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def watch(api: RustApi, task_id: str, proc: subprocess.Popen, until=None) -> list[dict]:
    """The row's states while ``proc`` runs (until ``until(row)``), every 50 ms."""
    seen, deadline = [], time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        row = api.status(task_id)
        seen.append(row)
        if until is not None and until(row):
            break
        time.sleep(0.05)
    return seen


#: The streams tests' daemon config: no log file, one fast profile.
STREAMS_CONFIG = """\
downloader:
  temp_dir: ./work
  output_dir: ./videos
  log_file: null
  poll_interval: 0.1
  default_profile: test
  connect_timeout: 5
  read_timeout: 5
  profiles:
    test: {threads: 4, max_retries: 1, retry_delay: 0.05}
"""
