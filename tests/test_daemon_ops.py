"""The daemon for operators (issue 11): pause honoured, instant start, max_per_host,
Prometheus metrics and /healthz. Daemons run as real subprocesses (tests/support/daemon.py's
harness), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlstore import db
from dlstore.cli import app
from dlstore.testing.hls_server import HlsServer
from dlstore.workerid import WorkerId

from .support.daemon import Harness, downloading_with, wait_until
from .support.metrics import get, parsed

pytestmark = pytest.mark.slow

cli = CliRunner()


def run_cli(*args: str) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


class NotifySocket:
    """A $NOTIFY_SOCKET stand-in: collects every datagram the daemons send."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._done.is_set():
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def statuses(self) -> list[str]:
        return [
            line.removeprefix("STATUS=")
            for message in list(self.messages)
            for line in message.splitlines()
            if line.startswith("STATUS=")
        ]

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def notify(tmp_path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def holder_pid(h: Harness, task_id: str) -> int:
    holder = WorkerId.parse(h.row(task_id)["worker_id"])
    assert holder is not None
    return holder.pid


# --------------------------------------------------------------------------- pause


def test_two_daemons_honour_pause_and_resume(harness, notify):
    h = harness
    h.server.latency = 0.25  # 'short' with one thread: ~2.5 s per download
    db = ["--db", h.url]
    env = {"NOTIFY_SOCKET": str(notify.path)}
    daemons = [h.start("--max-concurrent", "1", env=env) for _ in range(2)]
    for proc in daemons:
        wait_until(lambda p=proc: "started" in p.text(), 30, "the daemons to start")

    running = h.api.create("Running", h.stream(), {"profile": "serial"})
    wait_until(lambda: h.row(running)["status"] == "downloading", 10, "the first claim")
    run_cli("pause", "--reason", "maintenance", *db)
    waiting = [h.api.create(f"Waiting {n}", h.stream(), {"profile": "serial"}) for n in range(2)]
    wait_until(
        lambda: any(s.startswith("Paused (since ") and s.endswith(": 1 running") for s in
                    notify.statuses()),
        10,
        "a daemon's STATUS to say it is paused",
    )  # fmt: skip
    # The running download finishes; for many polls (0.1 s each) nothing new starts.
    wait_until(lambda: h.row(running)["status"] == "completed", 30, "the running download")
    time.sleep(1.0)
    assert [h.row(t)["status"] for t in waiting] == ["pending", "pending"]
    assert any(s.endswith(": 0 running") for s in notify.statuses())
    assert all("Queue paused since" in p.text() for p in daemons)

    run_cli("resume", *db)
    wait_until(lambda: all(h.row(t)["status"] == "downloading" for t in waiting), 10, "both claims")
    # One download each (--max-concurrent 1): both daemons claim again after resume.
    assert {holder_pid(h, t) for t in waiting} == {p.popen.pid for p in daemons}
    wait_until(lambda: all(h.row(t)["status"] == "completed" for t in waiting), 60, "the rest")
    for proc in daemons:
        proc.send(15)
        assert proc.wait(20) == 0, proc.text()


def test_exit_when_idle_leaves_a_paused_queue(harness):
    h = harness
    task_id = h.api.create("Waits", h.stream("tiny"))
    run_cli("pause", "--db", h.url)
    proc = h.run()
    assert "Queue paused since" in proc.text()
    assert h.row(task_id)["status"] == "pending"


# --------------------------------------------------------------------------- instant start


def claimed_within(h: Harness, task_id: str, timeout: float = 10.0) -> float:
    started = time.monotonic()
    wait_until(lambda: h.row(task_id)["status"] != "pending", timeout, "the claim", every=0.01)
    return time.monotonic() - started


def test_a_new_row_and_a_resume_start_long_before_the_poll_interval(harness):
    h = harness
    proc = h.start("--poll-interval", "5")
    wait_until(lambda: "started" in proc.text(), 30, "the daemon to start")
    time.sleep(1.0)  # well inside its first 5 s wait
    first = h.api.create("Instant", h.stream("tiny"))
    assert claimed_within(h, first) < 2.0
    wait_until(lambda: h.row(first)["status"] == "completed", 30, "the download")

    run_cli("pause", "--db", h.url)
    time.sleep(0.5)
    held = h.api.create("Held", h.stream("tiny"))
    time.sleep(1.0)
    assert h.row(held)["status"] == "pending"
    run_cli("resume", "--db", h.url)
    assert claimed_within(h, held) < 2.0
    wait_until(lambda: h.row(held)["status"] == "completed", 30, "the second download")
    proc.send(15)
    assert proc.wait(20) == 0, proc.text()


# --------------------------------------------------------------------------- max_per_host


def test_max_per_host_limits_each_host_and_claims_other_hosts_meanwhile(harness, daemon_media):
    h = harness
    with (h.home / "downloader.yaml").open("a") as config:
        config.write("  max_per_host: 1\n")
    other = HlsServer(daemon_media).start()  # a second origin, named "localhost"
    try:
        h.server.latency = other.latency = 0.15
        urls = {
            "127.0.0.1": h.stream(),
            "localhost": f"http://localhost:{other.port}/short/index.m3u8",
        }
        ids = {
            host: [h.api.create(f"{host} {n}", url, {"profile": "serial"}) for n in range(2)]
            for host, url in urls.items()
        }  # 127.0.0.1's rows are older: without the limit both would start first
        proc = h.start("--max-concurrent", "3")
        every = [task for tasks in ids.values() for task in tasks]
        seen: list[dict[str, int]] = []

        def all_done() -> bool:
            rows = {t: h.row(t) for t in every}
            running = {host: 0 for host in ids}
            for host, tasks in ids.items():
                running[host] = sum(rows[t]["status"] == "downloading" for t in tasks)
            seen.append(running)
            return all(r["status"] == "completed" for r in rows.values())

        wait_until(all_done, 90, "every download", every=0.05)
    finally:
        other.stop()
    assert max(max(s.values()) for s in seen) == 1  # never two from one host at once
    assert {"127.0.0.1": 1, "localhost": 1} in seen  # both hosts ran side by side
    assert other.hits["/short/index.m3u8"] == 2
    proc.send(15)
    assert proc.wait(20) == 0, proc.text()


# --------------------------------------------------------------------------- metrics


def metrics_base(proc) -> str:  # type: ignore[no-untyped-def]
    found = wait_until(
        lambda: re.search(r"Metrics on (http://[^/\s]+)/metrics", proc.text()), 30, "metrics"
    )
    return found.group(1)


def scrape(base: str) -> dict[tuple[str, tuple], float]:
    status, text = get(base + "/metrics")
    assert status == 200, text
    return parsed(text)


def test_metrics_during_a_download_and_healthz_when_the_database_goes(harness):
    h = harness
    h.server.latency = 0.4  # ~3.5 s with one thread
    h.server.fail_times("/short/seg-003.ts", 1, "503")
    proc = h.start("--metrics-listen", "127.0.0.1:0")
    base = metrics_base(proc)
    assert get(base + "/healthz") == (200, "ok\n")
    task_id = h.api.create("Measured", h.stream(), {"profile": "serial"})
    h.api.create("Broken", h.server.url("/missing/index.m3u8"))
    DOWNLOADING = ("dlstore_tasks", (("status", "downloading"),))
    BYTES = ("dlstore_downloaded_bytes_total", ())
    wait_until(downloading_with(h, task_id, 1), 20, "a segment")
    during = scrape(base)  # the first scrape: the counts are read now, then kept 5 s
    assert during[DOWNLOADING] == 1 and during[BYTES] > 0
    assert during[("dlstore_downloads_running", ())] == 1
    wait_until(lambda: h.row(task_id)["status"] == "completed", 30, "the download")
    after = wait_until(
        lambda: (v := scrape(base)).get(("dlstore_tasks", (("status", "completed"),))) and v,
        15,
        "the completed count (cached up to 5 s)",
    )
    assert after[BYTES] > during[BYTES] >= 0
    assert after[("dlstore_segments_fetched_total", ())] >= 8
    assert after[("dlstore_segment_retries_total", (("cause", "http_503"),))] == 1
    assert after[("dlstore_task_failures_total", (("kind", "DownloadError"),))] == 1
    assert after[("dlstore_claim_latency_seconds_count", ())] == 2
    assert after[("dlstore_task_duration_seconds_count", (("outcome", "complete"),))] == 1
    assert after[("dlstore_downloads_running", ())] == 0

    make_the_database_go_away(h.url)
    status, why = get(base + "/healthz")
    assert status == 503, why
    proc.send(15)
    proc.wait(30)


def make_the_database_go_away(url: str) -> None:
    """SQLite: the file is renamed; PostgreSQL: the schema dropped (and made again, empty)."""
    if not url.startswith("postgresql"):
        os.rename(url, url + ".moved")
        return
    engine = db.make_engine(url)
    with engine.begin() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()
