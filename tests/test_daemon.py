"""`dlstore daemon` end to end: a real subprocess, a real database, a local HLS server.

Rows are created and changed with the Rust API's exact SQL (dlstore.testing.rust_api);
"mid-download" is made deterministic by slowing the server (latency per request)
and a one-thread profile, never by sleeping; every wait polls a condition with a
deadline. The contract's §2 promises are the assertions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dlstore import db
from dlstore.cli import app
from dlstore.config import Settings
from dlstore.daemon import SHUTDOWN_ABORT_SECONDS, Daemon
from dlstore.options import free_output_path, work_dir_for
from dlstore.store import TaskStore
from dlstore.testing.media import decode_check
from dlstore.testing.rust_api import RustApi, rfc3339_now
from dlstore.timeutil import parse_ts
from dlstore.workerid import WorkerId, pid_alive, process_start

from .support.daemon import SHORT_SEGMENTS, TINY_ROWS, downloading_with, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
UNIT_FILE = ROOT / "scripts" / "dlstore.service"


def ts(text: str | None):
    assert text and text.endswith("Z"), text
    return parse_ts(text)


# --------------------------------------------------------------------------- the happy path


def test_row_completes_with_every_field_as_the_contract_says(harness):
    h = harness
    h.server.latency = 0.25  # ~2 s of fetching with one thread: progress writes happen
    caller = {
        "quality": "best",
        "output_dir": "shows/s1",
        "format": "mp4",
        "profile": "serial",
        "headers": {"Referer": "http://site.example/"},
        "ui_note": "kept",
    }
    task_id = h.api.create("Pilot: part 1", h.stream(), caller)
    proc = h.start("--exit-when-idle")

    seen: list[dict[str, Any]] = []
    while proc.popen.poll() is None:
        row = h.row(task_id)
        if row["status"] == "downloading":
            seen.append(row)
        time.sleep(0.05)
    assert proc.wait() == 0, proc.text()

    row = h.row(task_id)
    assert row["status"] == "completed", row
    assert row["progress"] == 100
    assert row["total_segments"] == row["downloaded_segments"] == SHORT_SEGMENTS
    assert row["error_message"] is None
    assert row["attempts"] == 1 and row["auto_retries"] == 0
    assert row["heartbeat_at"] is None and row["speed_bps"] is None
    assert row["message"] == "Download complete"
    assert ts(row["created_at"]) <= ts(row["started_at"]) <= ts(row["completed_at"])
    assert ts(row["updated_at"]) == ts(row["completed_at"])
    host = socket.gethostname()
    assert row["worker_id"].startswith(f"{host}:{proc.popen.pid}:")

    output = Path(row["output_path"])
    assert output == (h.videos / "shows" / "s1" / "Pilot_ part 1.mp4").resolve()
    decoded = decode_check(output)
    assert decoded.errors == ()
    assert decoded.width == 96 and decoded.height == 54 and decoded.streams == 2
    assert abs(decoded.duration - SHORT_SEGMENTS) < 0.5
    assert decoded.video_frames >= 25 * SHORT_SEGMENTS - 2

    metadata = json.loads(row["metadata"])
    assert {k: metadata[k] for k in caller} == caller  # the caller's keys, untouched
    assert metadata["width"] == 96 and metadata["height"] == 54
    assert metadata["resolution"] == "96x54"
    assert metadata["video_codec"] == "h264" and metadata["audio_codec"] == "aac"
    assert metadata["size_bytes"] == output.stat().st_size
    assert abs(metadata["duration"] - SHORT_SEGMENTS) < 0.5
    poster = Path(metadata["poster"])
    assert poster == output.with_suffix(".jpg")
    assert poster.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    assert not h.work_dir(task_id).exists()
    assert sorted(p.name for p in output.parent.iterdir()) == sorted([output.name, poster.name])

    # the per-row headers went out with every request
    assert all(hdrs.get("Referer") == "http://site.example/" for hdrs in h.server.request_headers)

    # while downloading: the progress columns were filled, about once a second, no more
    progressed = [r for r in seen if 0 < (r["progress"] or 0) < 100]
    assert progressed, seen
    assert any(r["total_segments"] == SHORT_SEGMENTS for r in progressed)
    assert any(r["current_file"] and r["current_file"].endswith(".ts") for r in progressed)
    assert all(r["heartbeat_at"] and r["worker_id"] == row["worker_id"] for r in seen)
    writes = sorted({ts(r["updated_at"]) for r in seen})
    gaps = [(b - a).total_seconds() for a, b in zip(writes, writes[1:])]
    assert gaps and min(gaps) >= 0.9, gaps

    # every task line of the log names its task; the log file has them too
    lines = [ln for ln in proc.text().splitlines() if task_id in ln]
    assert any("Completed" in ln for ln in lines), proc.text()
    assert f"[task {task_id}] Completed" in (h.home / "logs" / "daemon.log").read_text()


# --------------------------------------------------------------------------- cancel, retry


def test_cancel_mid_download_is_noticed_and_cleaned_up(harness):
    h = harness
    h.server.latency = 0.5  # one thread: ~4 s of fetching
    task_id = h.api.create("Cancelled", h.stream(), {"profile": "serial"})
    proc = h.start("--exit-when-idle")
    wait_until(downloading_with(h, task_id, 1), 15, "the first progress write")
    assert h.work_dir(task_id).is_dir()

    assert h.api.cancel(task_id) == 1
    cancelled_at = time.monotonic()
    snapshot = h.row(task_id)
    wait_until(lambda: not h.work_dir(task_id).exists(), 5, "the work folder to go")
    assert time.monotonic() - cancelled_at < 2.5
    assert proc.wait(15) == 0, proc.text()

    assert h.row(task_id) == snapshot  # never written again: still cancelled, as we left it
    assert snapshot["status"] == "cancelled"
    assert sum(h.segment_hits().values()) < SHORT_SEGMENTS  # it stopped fetching
    leftovers = [p for p in h.videos.rglob("*") if p.is_file()] if h.videos.exists() else []
    assert leftovers == []
    assert f"[task {task_id}] Cancelled" in proc.text()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cancel_then_retry_at_once_resumes_without_two_runs_colliding(harness):
    h = harness
    h.server.latency = 0.3
    task_id = h.api.create("Changed mind", h.stream(), {"profile": "serial"})
    proc = h.start("--exit-when-idle")
    wait_until(downloading_with(h, task_id, 1), 15, "the first progress write")
    assert h.api.cancel(task_id) == 1
    assert h.api.retry(task_id) == 1  # before the daemon can notice the cancel
    assert proc.wait(30) == 0, proc.text()
    row = h.row(task_id)
    assert row["status"] == "completed" and row["attempts"] == 2, row
    assert decode_check(Path(row["output_path"])).errors == ()
    assert sum(h.segment_hits().values()) <= SHORT_SEGMENTS + 1


def test_retry_after_a_permanent_failure_resumes_without_refetching(harness):
    h = harness
    h.server.fail_always["/short/seg-005.ts"] = 404
    task_id = h.api.create("Gap", h.stream(), {"profile": "serial"})
    h.run()
    row = h.row(task_id)
    assert row["status"] == "failed", row
    assert "HTTP 404" in row["error_message"] and "seg-005.ts" in row["error_message"]
    assert row["auto_retries"] == 0  # permanent: no automatic retry
    kept = sorted(int(p.stem.split("-")[1]) for p in h.work_dir(task_id).glob("video-*.seg"))
    assert kept[:5] == [0, 1, 2, 3, 4]  # what was fetched stays for the retry

    del h.server.fail_always["/short/seg-005.ts"]
    assert h.api.retry(task_id) == 1
    h.run()
    row = h.row(task_id)
    assert row["status"] == "completed", row
    assert row["attempts"] == 2
    hits = h.segment_hits()
    assert all(hits[f"/short/seg-{n:03d}.ts"] == 1 for n in kept), sorted(hits.items())
    assert hits["/short/seg-005.ts"] == 2
    # one thread: besides seg-005, at most the segment in flight when it failed is fetched again
    assert sum(hits.values()) <= SHORT_SEGMENTS + 2, sorted(hits.items())
    assert decode_check(Path(row["output_path"])).errors == ()


def test_transient_failures_requeue_with_delay_then_give_up(harness):
    h = harness
    h.server.fail_always["/short/index.m3u8"] = 503
    task_id = h.api.create("Flaky", h.stream())
    h.run()  # a row waiting for its automatic retry does not keep --exit-when-idle alive
    row = h.row(task_id)
    assert row["status"] == "pending" and row["auto_retries"] == 1, row
    assert "Will retry after" in row["message"] and "HTTP 503" in row["message"]
    delay = (ts(row["run_after"]) - ts(row["updated_at"])).total_seconds()
    assert 55 < delay <= 61  # task_retry_delay (60) × 2**0

    # the retry falls due (as if a minute passed): the budget (task_retries: 1) is spent
    h.api.execute(
        "UPDATE download_tasks SET run_after = ? WHERE id = ?",
        ("2000-01-01T00:00:00.000000Z", task_id),
    )
    h.run()
    row = h.row(task_id)
    assert row["status"] == "failed", row
    assert row["error_message"].startswith("Gave up after 2 attempts.")
    assert "HTTP 503" in row["error_message"]
    assert row["attempts"] == 2 and row["auto_retries"] == 0
    assert h.server.hits["/short/index.m3u8"] == 4  # 2 attempts × (1 + max_retries 1)


# --------------------------------------------------------------------------- crashes, stops


def test_sigkill_mid_download_then_restart_resumes(harness):
    h = harness
    h.server.latency = 0.4
    task_id = h.api.create("Crash", h.stream(), {"profile": "serial"})
    first = h.start("--lease", "60")
    wait_until(downloading_with(h, task_id, 3), 15, "3 segments")
    first.send(signal.SIGKILL)
    first.wait()
    row = h.row(task_id)
    assert row["status"] == "downloading" and row["worker_id"].split(":")[1] == str(first.popen.pid)

    h.server.latency = 0
    started = time.monotonic()
    h.run("--lease", "60")  # a dead pid of this host: taken over at once, not after 60 s
    assert time.monotonic() - started < 20
    row = h.row(task_id)
    assert row["status"] == "completed", row
    assert row["attempts"] == 2
    hits = h.segment_hits()
    assert sum(hits.values()) <= SHORT_SEGMENTS + 1, hits  # at most the one in flight again
    assert decode_check(Path(row["output_path"])).errors == ()


def test_orphan_of_another_host_is_taken_over_after_the_lease(harness):
    h = harness
    task_id = h.api.create("Orphan", h.stream())
    heartbeat = rfc3339_now()
    h.api.execute(
        "UPDATE download_tasks SET status = 'downloading', worker_id = 'elsewhere:4242:dead', "
        "attempts = 1, heartbeat_at = ? WHERE id = ?",
        (heartbeat, task_id),
    )
    proc = h.start()  # lease 3 s (config)
    row = wait_until(lambda: (r := h.row(task_id))["status"] == "completed" and r, 20, "completion")
    proc.send(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert (ts(row["started_at"]) - ts(heartbeat)).total_seconds() >= 3  # not before the lease
    assert row["attempts"] == 2
    assert f"[task {task_id}] Its daemon sent no heartbeat" in proc.text()


def test_sigterm_releases_the_row_and_a_restart_completes_it(harness):
    h = harness
    h.server.latency = 0.4
    task_id = h.api.create("Stopped", h.stream(), {"profile": "serial"})
    proc = h.start()
    wait_until(downloading_with(h, task_id, 2), 15, "2 segments")
    stop_at = time.monotonic()
    proc.send(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.text()
    assert time.monotonic() - stop_at < 5
    row = h.row(task_id)
    assert row["status"] == "pending", row
    assert row["downloaded_segments"] >= 2 and row["progress"] > 0  # progress kept
    assert row["total_segments"] == SHORT_SEGMENTS
    assert row["attempts"] == 0 and row["worker_id"] is None  # the attempt does not count
    assert "Daemon stopped" in row["message"]

    h.server.latency = 0
    h.run()
    row = h.row(task_id)
    assert row["status"] == "completed" and row["attempts"] == 1, row
    assert sum(h.segment_hits().values()) <= SHORT_SEGMENTS + 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_second_signal_exits_at_once(harness):
    h = harness
    h.server.latency = 0.5
    task_id = h.api.create("Slow", h.stream(), {"profile": "serial"})
    proc = h.start()
    wait_until(lambda: h.row(task_id)["status"] == "downloading", 10, "the claim")
    h.api.execute("BEGIN IMMEDIATE")  # the clean stop's release() now waits for the lock
    try:
        proc.send(signal.SIGINT)
        wait_until(lambda: "SIGINT received" in proc.text(), 5, "the first signal to land")
        proc.send(signal.SIGINT)
        assert proc.wait(3) == 128 + signal.SIGINT
    finally:
        h.api.execute("ROLLBACK")
    assert "second SIGINT: exiting at once" in proc.text()
    assert h.row(task_id)["status"] == "downloading"  # taken over at the next start


# --------------------------------------------------------------------------- many daemons


def test_three_daemons_thirty_rows_each_downloaded_once(harness):
    h = harness
    ids = [h.api.create(f"Clip {n:02d}", h.stream(f"tiny{n:02d}")) for n in range(TINY_ROWS)]
    procs = [h.start("--exit-when-idle", "--max-concurrent", "3") for _ in range(3)]
    for proc in procs:
        assert proc.wait(90) == 0, proc.text()
    rows = [h.row(i) for i in ids]
    assert [r["status"] for r in rows] == ["completed"] * TINY_ROWS, [r["message"] for r in rows]
    assert all(r["attempts"] == 1 for r in rows)
    assert len({r["output_path"] for r in rows}) == TINY_ROWS
    for n in range(TINY_ROWS):
        assert h.server.hits[f"/tiny{n:02d}/index.m3u8"] == 1
        assert set(h.segment_hits(f"tiny{n:02d}").values()) == {1}
    workers = {r["worker_id"] for r in rows}
    assert workers <= {w for w in workers if w.split(":")[1] in {str(p.popen.pid) for p in procs}}


# --------------------------------------------------------------------------- bad rows


BAD_ROWS = [
    # (name, url path or URL, metadata, what error_message says)
    ("Not JSON", "/short/index.m3u8", "{quality: 720p", "not valid JSON"),
    ("Not an object", "/short/index.m3u8", "[1, 2]", "must be a JSON object"),
    ("Bad quality", "/short/index.m3u8", {"quality": "ultra"}, "Unknown quality 'ultra'"),
    ("../../escape", "/short/index.m3u8", None, "tries to leave the output folder"),
    ("Dir up", "/short/index.m3u8", {"output_dir": "../../etc"}, "tries to leave the output root"),
    ("Dir abs", "/short/index.m3u8", {"output_dir": "/etc"}, "is absolute"),
    ("File URL", "file:///etc/passwd", None, "Only http:// and https://"),
    ("No host", "http:///x.m3u8", None, "has no host name"),
    ("Bad profile", "/short/index.m3u8", {"profile": "turbo"}, "Unknown profile 'turbo'"),
    ("Bad format", "/short/index.m3u8", {"format": "mkv"}, "Unknown format 'mkv'"),
]


def test_bad_rows_fail_with_their_reason_and_the_daemon_goes_on(harness):
    h = harness
    bad = {}
    for name, where, metadata, expected in BAD_ROWS:
        url = h.server.url(where) if where.startswith("/") else where
        bad[h.api.create(name, url, metadata)] = expected
    paused = h.api.create("Paused", h.stream())
    h.api.execute("UPDATE download_tasks SET status = 'paused' WHERE id = ?", (paused,))
    bad[paused] = "The status 'paused' is not one dlstore knows"
    good = h.api.create("Good", h.stream("tiny"))  # the newest: claimed after all the bad ones

    proc = h.run()
    for task_id, expected in bad.items():
        row = h.row(task_id)
        assert row["status"] == "failed", row
        assert expected in row["error_message"], (expected, row["error_message"])
        assert f"[task {task_id}]" in proc.text()
    assert h.row(good)["status"] == "completed"
    assert sum(h.segment_hits().values()) == 0  # nothing fetched for a bad row
    assert [p.name for p in h.videos.rglob("*.mp4")] == ["Good.mp4"]


# --------------------------------------------------------------------------- the API meanwhile


def test_api_statements_never_see_database_is_locked_while_downloading(harness):
    h = harness
    h.server.latency = 0.3
    ids = [h.api.create(f"Busy {n}", h.stream(), {"profile": "serial"}) for n in range(3)]
    proc = h.start("--max-concurrent", "3")
    wait_until(lambda: all(h.row(i)["status"] == "downloading" for i in ids), 15, "3 downloads")

    api = RustApi(h.url)  # another connection, as another of the API's pooled ones
    errors: list[str] = []
    latencies: list[float] = []
    statements = 0
    try:
        while statements < 300:
            extra = f"api-{statements}"
            for action, params in (
                (api.create, ("Queued then cancelled", h.stream("tiny"), None, extra)),
                (api.status, (extra,)),
                (api.list, ()),
                (api.cancel, (extra,)),
                (api.status, (ids[statements % 3],)),
            ):
                started = time.perf_counter()
                try:
                    action(*params)
                except Exception as exc:  # noqa: BLE001 - every failure is the finding
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - started)
                statements += 1
        still = [h.row(i)["status"] for i in ids]
    finally:
        api.close()
    assert errors == []
    assert "downloading" in still  # the statements ran while downloads did
    assert max(latencies) < 5.0

    wait_until(lambda: all(h.row(i)["status"] == "completed" for i in ids), 30, "completion")
    proc.send(signal.SIGTERM)
    assert proc.wait(15) == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_idle_daemon_holds_no_read_transaction(harness):
    h = harness
    proc = h.start()
    wait_until(lambda: "started" in proc.text(), 15, "the daemon to start")
    for _ in range(3):
        # TRUNCATE waits for every reader to let go of the WAL; a reader that never does
        # makes it give up (busy = 1) after the 5 s busy timeout.
        busy, _, _ = h.api.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        time.sleep(0.15)  # a different point of the poll cycle each time
    proc.send(signal.SIGTERM)
    assert proc.wait(15) == 0


# --------------------------------------------------------------------------- systemd


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sd_notify_messages_reach_the_socket(harness, tmp_path):
    h = harness
    h.server.latency = 0.2
    address = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(address))
    messages: list[str] = []

    def receive() -> None:
        sock.settimeout(0.2)
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                if done.is_set():
                    return
            except OSError:
                return

    done = threading.Event()
    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    try:
        h.api.create("Notified", h.stream(), {"profile": "serial"})
        proc = h.start(
            "--exit-when-idle", env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "400000"}
        )
        assert proc.wait(30) == 0, proc.text()
    finally:
        done.set()
        reader.join(5)
        sock.close()

    assert messages[0].splitlines()[0] == "READY=1", messages
    assert messages[0].splitlines()[1].startswith("STATUS=")
    assert any(m.startswith("STATUS=Downloading 1 of at most 3") for m in messages), messages
    assert messages.count("WATCHDOG=1") >= 3  # every 0.2 s over a ~2 s download
    assert messages[-1].splitlines()[0] == "STOPPING=1"


def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        # Not a failure even under CI=true: container images (CI's included) have no
        # systemd to install it from. test_unit_file_has_the_required_settings runs anyway.
        pytest.skip("systemd-analyze is not installed (no systemd in this image)")
    text = UNIT_FILE.read_text()
    # verify checks that ExecStart exists: point it at this environment's dlstore
    dlstore = Path(sys.executable).parent / "dlstore"
    unit = tmp_path / "dlstore.service"
    unit.write_text(
        text.replace("/opt/video-manager/.venv/bin/dlstore", str(dlstore)).replace(
            "WorkingDirectory=/opt/video-manager", f"WorkingDirectory={tmp_path}"
        )
    )
    result = subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    problems = [
        ln for ln in (result.stdout + result.stderr).splitlines() if "dlstore.service" in ln
    ]
    assert result.returncode == 0 and problems == [], result.stdout + result.stderr


def test_unit_file_has_the_required_settings():
    text = UNIT_FILE.read_text()
    for key in (
        "Type=notify",
        "Restart=on-failure",
        "WorkingDirectory=",
        "TimeoutStopSec=",
        "WatchdogSec=",
        "ExecStart=",
    ):
        assert f"\n{key}" in text
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"
    )
    # systemd must wait for the clean stop (grace, abort, release) before it kills
    clean_stop = Settings().shutdown_grace + SHUTDOWN_ABORT_SECONDS
    assert float(settings["TimeoutStopSec"]) >= clean_stop + 5


def test_disabled_by_environment_exits_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["daemon", "--db", str(tmp_path / "none.sqlite")], env={"DOWNLOADER_ENABLED": "false"}
    )
    assert result.exit_code == 0
    assert "downloads are disabled (DOWNLOADER_ENABLED=false)" in result.stderr
    assert not (tmp_path / "none.sqlite").exists()


def test_daemon_help():
    result = CliRunner().invoke(app, ["daemon", "--help"])
    assert result.exit_code == 0
    for flag in ("--max-concurrent", "--poll-interval", "--exit-when-idle", "--db", "--config"):
        assert flag in result.stdout


def test_the_demo_runs_offline_to_a_decoded_video(tmp_path):
    """README's "run it" (scripts/demo.sh runs this after installing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNLOADER_")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--folder", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"status": "completed"' in result.stdout
    assert "errors:     0" in result.stdout
    assert list((tmp_path / "demo").rglob("Sample video.mp4"))


# --------------------------------------------------------------------------- small parts


def test_work_dir_is_per_task_and_never_escapes(tmp_path):
    assert work_dir_for(tmp_path, "abc-123") == tmp_path.resolve() / "abc-123"
    for task_id in ("../../etc", "/abs", "..", "a/b", ""):
        folder = work_dir_for(tmp_path, task_id)
        assert folder.parent == tmp_path.resolve() and folder.name.startswith("task-")
    assert work_dir_for(tmp_path, "../x") == work_dir_for(tmp_path, "../x")  # stable: resumes


def test_another_video_of_the_same_name_gets_a_numbered_file(tmp_path):
    first = free_output_path(tmp_path, "d", "Clip", "mp4")
    assert first == tmp_path.resolve() / "d" / "Clip.mp4"
    first.parent.mkdir()
    first.write_bytes(b"x")
    assert free_output_path(tmp_path, "d", "Clip", "mp4").name == "Clip (2).mp4"


def test_complete_records_the_segment_count_of_a_download_too_fast_for_progress(store):
    store.create(name="Quick", url="http://e/a.m3u8", task_id="quick")
    _, claim = store.claim("here:1:x")
    assert store.complete(claim, output_path="/v/Quick.mp4", learned={}, total_segments=7)
    row = store.get("quick")
    assert (row.total_segments, row.downloaded_segments, row.progress) == (7, 7, 100)


def test_dead_holders_are_recognised(sqlite_url):
    daemon = Daemon(TaskStore(db.make_engine(sqlite_url)), Settings(), host="here")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_until(lambda: not _running(zombie.pid), 10, "the child to exit")
    assert not pid_alive(zombie.pid)  # a zombie (not yet reaped) counts as dead
    zombie.wait()
    me = daemon.worker_id
    assert daemon._holder_is_dead(dataclasses.replace(me, pid=dead.pid, token="x"))
    assert daemon._holder_is_dead(dataclasses.replace(me, token="an-earlier-life"))
    assert not daemon._holder_is_dead(me)  # ourselves, now
    parent = os.getppid()  # alive, started at its own time (not ours)
    alive = dataclasses.replace(me, pid=parent, token="x", start=process_start(parent))
    assert not daemon._holder_is_dead(alive)
    # the same pid, but a process that started at another time: the pid was reused
    assert daemon._holder_is_dead(dataclasses.replace(alive, start=alive.start + 1))
    elsewhere = dataclasses.replace(me, host="elsewhere", pid=dead.pid)
    assert not daemon._holder_is_dead(elsewhere)  # another host
    assert not daemon._holder_is_dead(WorkerId("here", dead.pid, "x"))  # an old id: the lease


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
