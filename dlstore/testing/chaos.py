"""A chaos soak for ``dlstore daemon``: several daemons on one database, one of them
SIGKILLed every few seconds and restarted, while rows come in and a few are cancelled.

    report = Soak(folder, db_url, SoakPlan(seconds=45)).run()
    report.problems    # the promises that did not hold (empty: all held)
    report.figures()   # rows, kills, completions, bytes fetched twice, recovery p50/max

What must hold (issue #9): every row not cancelled is completed exactly once (one
``completed`` history entry, one file, no ``name (2).mp4``), cancelled rows stay
cancelled, the output folder ends up holding exactly the finished videos and their
posters (no ``.part`` file, no reservation), no work folder is left, and the segment
bytes the server sent twice stay within what was in flight at the kills (each row the
victim held, its threads times its largest segment). "Recovery" is the time from a
kill to a row of the victim's downloading again under a new holder.

The daemons are real subprocesses; with ``SoakPlan.hosts`` each runs in a UTS namespace
of its own (``unshare --uts``, root only) under its own host name, as on several hosts.
Rows come in and are cancelled through the Rust API's SQL; each row has a stream of its
own on the local HLS server, whose byte counters decide what was fetched twice.
Used by tests/test_chaos.py (which asserts) and scripts/bench_daemon.py (which prints).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dlstore import migrate
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.media import decode_check, encode_source, write_hls
from dlstore.testing.rust_api import RustApi
from dlstore.workerid import WorkerId

CONFIG = """\
downloader:
  temp_dir: ./work
  output_dir: ./videos
  log_file: null
  log_level: INFO
  default_profile: quad
  poll_interval: 0.2
  lease_seconds: 6
  task_retries: 3
  task_retry_delay: 1
  connect_timeout: 5
  read_timeout: 10
  max_concurrent_tasks: 2
  profiles:
    quad:   {threads: 4, max_retries: 2, retry_delay: 0.1}
    serial: {threads: 1, max_retries: 2, retry_delay: 0.1}
"""
THREADS = {"quad": 4, "serial": 1}
#: The streams rows are cut from: (name, seconds, width, height); one segment a second.
TEMPLATES = (("small", 4, 64, 36), ("medium", 6, 96, 54), ("long", 12, 64, 36))
WATCH_EVERY = 0.05


@dataclass(frozen=True)
class SoakPlan:
    rows: int = 20
    daemons: int = 3
    seconds: float = 45.0  # killing goes on this long; rows come in over its first 75 %
    kill_every: tuple[float, float] = (3.0, 5.0)
    cancels: int = 3
    hosts: bool = False  # each daemon in a UTS namespace of its own, with its own host name
    seed: int = 1
    latency: float = 0.4  # per request, on the server
    rate_bps: int = 80_000  # per connection, on the server
    settle_seconds: float = 60.0  # after the killing: for every row to end and be swept


@dataclass(frozen=True)
class Kill:
    at: float  # time.monotonic()
    pid: int
    held: dict[str, str]  # task id → the worker id that held it
    bound: int  # bytes that may be fetched again: threads × largest segment, per row held


@dataclass
class SoakReport:
    rows: int = 0
    kills: list[Kill] = field(default_factory=list)
    completions: int = 0
    cancelled: int = 0
    refetched_bytes: int = 0  # segment bytes the server sent beyond each segment's size
    refetch_bound: int = 0
    recovery: list[float] = field(default_factory=list)  # seconds, kill → downloading again
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def figures(self) -> dict[str, str]:
        rec = sorted(self.recovery)
        return {
            "rows": f"{self.rows} ({self.cancelled} cancelled by the API)",
            "kills": f"{len(self.kills)} SIGKILLs in {self.seconds:.0f} s",
            "completions": f"{self.completions} (each row once)",
            "bytes fetched twice": f"{self.refetched_bytes} (in flight at the kills: "
            f"at most {self.refetch_bound})",
            "recovery": (
                f"p50 {statistics.median(rec):.2f} s, max {rec[-1]:.2f} s (n={len(rec)})"
                if rec
                else "no row was held at a kill"
            ),
            "problems": "; ".join(self.problems) or "none",
        }


def make_streams(folder: Path, rows: int) -> list[tuple[str, str, int]]:
    """A stream folder per row under ``folder``; each row's (path prefix, profile, largest
    segment in bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    built = {}
    for name, seconds, width, height in TEMPLATES:
        source = encode_source(
            folder / f"_{name}.mp4", duration=seconds, width=width, height=height
        )
        write_hls(source, folder / f"_{name}")
        built[name] = max(p.stat().st_size for p in (folder / f"_{name}").glob("*.ts"))
    streams = []
    for number in range(rows):
        template = TEMPLATES[number % len(TEMPLATES)][0]
        shutil.copytree(folder / f"_{template}", folder / f"r{number:02d}")
        profile = "serial" if number % 2 == 0 else "quad"
        streams.append((f"/r{number:02d}/", profile, built[template]))
    return streams


class Daemons:
    """``count`` daemon slots; each slot's life is a subprocess, restarted after a kill."""

    def __init__(self, home: Path, db_url: str, count: int, hosts: bool) -> None:
        self.home, self.db_url, self.hosts = home, db_url, hosts
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.lives = 0
        (home / "logs").mkdir(exist_ok=True)

    def host(self, slot: int) -> str:
        return f"soak-host-{slot}" if self.hosts else socket.gethostname()

    def start(self, slot: int) -> None:
        command = [sys.executable, "-m", "dlstore", "daemon", "--db", self.db_url,
                   "--config", str(self.home / "downloader.yaml")]  # fmt: skip
        if self.hosts:
            script = 'hostname "$0" && exec "$@"'
            command = ["unshare", "--uts", "sh", "-c", script, self.host(slot), *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOWNLOADER_", "NOTIFY_"))}
        self.lives += 1
        with open(self.home / "logs" / f"daemon-{slot}-{self.lives}.log", "wb") as log:
            self.procs[slot] = subprocess.Popen(
                command, cwd=self.home, stdout=log, stderr=subprocess.STDOUT, env=env
            )

    def kill(self, slot: int) -> int:
        proc = self.procs[slot]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return proc.pid

    def stop_all(self, timeout: float = 30.0) -> list[int | None]:
        """SIGTERM to every daemon; their exit codes (None: had to be killed)."""
        live = [p for p in self.procs if p is not None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for proc in live:
            try:
                codes.append(proc.wait(timeout))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)
        return codes


class Watcher(threading.Thread):
    """Polls every row on a connection of its own: when each (status, holder) was first
    seen; cancels the rows in ``to_cancel`` the first time they are seen downloading."""

    def __init__(self, db_url: str, to_cancel: set[str]) -> None:
        super().__init__(name="soak-watcher", daemon=True)
        self.api = RustApi(db_url)
        self.to_cancel = set(to_cancel)
        self.cancelled: set[str] = set()
        self.seen: dict[str, list[tuple[float, str, str | None]]] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.wait(WATCH_EVERY):
                self._look()
        finally:
            self.api.close()

    def _look(self) -> None:
        now = time.monotonic()
        rows = self.api.execute("SELECT id, status, worker_id FROM download_tasks").fetchall()
        for row in rows:
            task_id, status, worker = row["id"], row["status"], row["worker_id"]
            states = self.seen.setdefault(task_id, [])
            if not states or states[-1][1:] != (status, worker):
                states.append((now, status, worker))
            if task_id not in self.to_cancel or status == "pending":
                continue
            self.to_cancel.discard(task_id)  # seen downloading (or ended already)
            if status == "downloading" and self.api.cancel(task_id) == 1:
                self.cancelled.add(task_id)

    def recovered_after(self, kill: Kill, task_id: str) -> float | None:
        """Seconds from ``kill`` until ``task_id`` was downloading under another holder;
        None if it ended (or was cancelled) first."""
        for at, status, worker in self.seen.get(task_id, []):
            if at < kill.at:
                continue
            if status == "downloading" and worker != kill.held[task_id]:
                return at - kill.at
            if status in ("completed", "cancelled", "failed"):
                return None
        return None


class Soak:
    def __init__(self, folder: Path, db_url: str | None = None, plan: SoakPlan = SoakPlan()):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or str(self.folder / "soak.sqlite")
        self.plan = plan
        self.rng = random.Random(plan.seed)

    def run(self) -> SoakReport:
        migrate.upgrade(self.db_url)
        (self.folder / "downloader.yaml").write_text(CONFIG)
        streams = make_streams(self.folder / "site", self.plan.rows)
        server = HlsServer(self.folder / "site").start()
        server.latency, server.rate_limit_bps = self.plan.latency, self.plan.rate_bps
        api = RustApi(self.db_url)
        daemons = Daemons(self.folder, self.db_url, self.plan.daemons, self.plan.hosts)
        try:
            return self._soak(api, server, daemons, streams)
        finally:
            daemons.stop_all()
            api.close()
            server.stop()

    def _soak(self, api, server, daemons, streams) -> SoakReport:  # type: ignore[no-untyped-def]
        plan, report = self.plan, SoakReport(rows=self.plan.rows)
        ids = [f"soak-{n:02d}" for n in range(plan.rows)]
        step = max(1, plan.rows // max(1, plan.cancels))
        to_cancel = {ids[n] for n in range(step // 2, plan.rows, step)[: plan.cancels]}
        watcher = Watcher(self.db_url, to_cancel)
        watcher.start()
        for slot in range(plan.daemons):
            daemons.start(slot)
        started = time.monotonic()
        self._chaos(api, server, daemons, streams, ids, report)
        report.seconds = time.monotonic() - started
        self._settle(api, ids, watcher)
        codes = daemons.stop_all()
        watcher.halt.set()
        watcher.join(5)
        if any(code != 0 for code in codes):
            report.problems.append(f"daemons exited {codes} on SIGTERM, not 0")
        self._check(api, server, ids, streams, watcher, report)
        return report

    def _chaos(self, api, server, daemons, streams, ids, report) -> None:  # type: ignore[no-untyped-def]
        """Insert the rows over 75 % of the time while killing a daemon every few seconds."""
        plan = self.plan
        start = time.monotonic()
        every = plan.seconds * 0.75 / max(1, plan.rows)
        next_kill = start + self.rng.uniform(*plan.kill_every)
        created = 0
        while (now := time.monotonic()) < start + plan.seconds:
            if created < plan.rows and now >= start + created * every:
                path, profile, _ = streams[created]
                url = server.url(path + "index.m3u8")
                api.create(f"Soak {created:02d}", url, {"profile": profile}, ids[created])
                created += 1
            if now >= next_kill:
                slot = self.rng.randrange(plan.daemons)
                report.kills.append(self._kill(api, daemons, slot, streams, ids))
                daemons.start(slot)
                next_kill = time.monotonic() + self.rng.uniform(*plan.kill_every)
            time.sleep(0.02)

    def _kill(self, api, daemons, slot, streams, ids) -> Kill:  # type: ignore[no-untyped-def]
        proc = daemons.procs[slot]
        held: dict[str, str] = {}
        query = "SELECT id, worker_id FROM download_tasks WHERE status = 'downloading'"
        for row in api.execute(query).fetchall():
            task_id, worker = row["id"], row["worker_id"]
            holder = WorkerId.parse(worker)
            if holder and holder.pid == proc.pid and holder.host == daemons.host(slot):
                held[task_id] = worker
        at = time.monotonic()
        daemons.kill(slot)
        bound = 0
        for task_id in held:
            _, profile, largest = streams[ids.index(task_id)]
            bound += THREADS[profile] * largest
        return Kill(at, proc.pid, held, bound)

    def _settle(self, api: RustApi, ids: list[str], watcher: Watcher) -> None:
        """Wait for every row to end and the output folder to be swept clean."""
        deadline = time.monotonic() + self.plan.settle_seconds
        while time.monotonic() < deadline:
            statuses = [api.status(i)["status"] for i in ids]  # type: ignore[index]
            ended = all(s in ("completed", "cancelled") for s in statuses)
            if ended and not self._leftovers(api, ids) and not watcher.to_cancel:
                return
            time.sleep(0.2)

    def _expected_files(self, api: RustApi, ids: list[str]) -> set[str]:
        expected = set()
        for task_id in ids:
            row = api.status(task_id)
            if row and row["status"] == "completed" and row["output_path"]:
                video = Path(row["output_path"])
                expected |= {video.name, video.with_suffix(".jpg").name}
        return expected

    def _leftovers(self, api: RustApi, ids: list[str]) -> list[str]:
        """What is in the output and work folders beyond the finished videos and posters."""
        videos, work = self.folder / "videos", self.folder / "work"
        present = {p.name for p in videos.iterdir()} if videos.exists() else set()
        extra = sorted(present - self._expected_files(api, ids))
        folders = sorted(p.name for p in work.iterdir()) if work.exists() else []
        return extra + [f"work/{name}" for name in folders]

    def _check(self, api, server, ids, streams, watcher, report) -> None:  # type: ignore[no-untyped-def]
        problems = report.problems
        report.cancelled = len(watcher.cancelled)
        for task_id in ids:
            problems += self._check_row(api.status(task_id), task_id in watcher.cancelled)
        report.completions = sum(api.status(i)["status"] == "completed" for i in ids)
        leftovers = self._leftovers(api, ids)
        if leftovers:
            problems.append(f"left behind: {', '.join(leftovers[:8])}")
        for path, _, _ in streams:
            folder = self.folder / "site" / path.strip("/")
            for segment in folder.glob("*.ts"):
                sent = server.sent[f"{path}{segment.name}"]
                report.refetched_bytes += max(0, sent - segment.stat().st_size)
        report.refetch_bound = sum(kill.bound for kill in report.kills)
        if report.refetched_bytes > report.refetch_bound:
            problems.append(
                f"{report.refetched_bytes} bytes fetched twice, more than the "
                f"{report.refetch_bound} in flight at the kills"
            )
        for kill in report.kills:
            for task_id in kill.held:
                seconds = watcher.recovered_after(kill, task_id)
                if seconds is not None:
                    report.recovery.append(seconds)

    @staticmethod
    def _check_row(row: dict | None, cancelled: bool) -> list[str]:
        if row is None:
            return ["a row vanished"]
        name, status = row["name"], row["status"]
        events = [e.get("event") for e in json.loads(row["history"] or "[]")]
        if cancelled:
            if status != "cancelled" or "completed" in events:
                return [f"{name}: cancelled, then {status} ({events})"]
            return []
        if status != "completed" or events.count("completed") != 1:
            return [f"{name}: {status}, completed {events.count('completed')} times"]
        video = Path(row["output_path"])
        if video.name != f"{name}.mp4":
            return [f"{name}: saved as {video.name}"]
        if decode_check(video).errors:
            return [f"{name}: {video.name} does not decode cleanly"]
        return []
