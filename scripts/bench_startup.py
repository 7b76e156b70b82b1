#!/usr/bin/env python3
"""Time dlstore's start-up against the imports each command cannot do without (issue #10).

    python scripts/bench_startup.py [--runs 7] [--baseline DIR]

Rows, each a fresh process, timed from just before it is spawned:

- ``python -c pass``, ``python -c "import av, requests, m3u8"`` and
  ``python -c "import sqlmodel"``: the floors the targets are set against;
- ``dlstore --help`` (target: at most 0.3 s);
- ``dlstore status MISSING --db TMP.sqlite`` on a migrated database (it exits 1:
  no such task), target: at most 0.15 s above ``import sqlmodel``;
- ``dlstore download URL``, time to its first request: a local server answers a
  tiny playlist and records when the first request arrives, then the process is
  killed; target: at most 0.15 s above ``import av, requests, m3u8``.

dlstore runs as its console script does (``from dlstore.cli import main; main()``).
``--baseline DIR`` adds the same dlstore rows for the package found in DIR (e.g.
``git archive main | tar -x -C DIR``), for before and after in one run. The runs
are interleaved, one of each row per round, so a busy machine slows every row
alike; figures are medians (min and max beside).
Not a test: it prints.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HELP_TARGET_S = 0.3
ABOVE_IMPORTS_TARGET_S = 0.15
FIRST_REQUEST_TIMEOUT_S = 60.0
PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg-0.ts\n#EXT-X-ENDLIST\n"
#: What the ``dlstore`` console script runs (it works with --baseline's PYTHONPATH too).
CONSOLE_SCRIPT = "import sys; from dlstore.cli import main; sys.exit(main())"
FLOOR_AV = "import av, requests, m3u8"
FLOOR_SQLMODEL = "import sqlmodel"


@dataclass
class Row:
    label: str
    run: Callable[[], float]  # one measurement, in seconds
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


# --------------------------------------------------------------------------- measuring


def wall(argv: list[str], cwd: Path, env: dict[str, str], expect: tuple[int, ...] = (0,)) -> float:
    """Seconds from spawning ``argv`` to its exit."""
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if proc.returncode not in expect:
        err = proc.stderr.decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err}")
    return elapsed


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client is killed once it has asked: a broken pipe is expected


class FirstRequest:
    """A local HTTP server that notes when its first request arrives (perf_counter)."""

    def __init__(self) -> None:
        self.arrived: float | None = None
        self.event = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if owner.arrived is None:
                    owner.arrived = time.perf_counter()
                    owner.event.set()
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.apple.mpegurl")
                self.send_header("Content-Length", str(len(PLAYLIST)))
                self.end_headers()
                self.wfile.write(PLAYLIST)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/index.m3u8"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.arrived = None
        self.event.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def time_to_first_request(argv: list[str], cwd: Path, env: dict[str, str], server) -> float:
    """Seconds from spawning ``argv`` to its first request reaching ``server``."""
    server.reset()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = started + FIRST_REQUEST_TIMEOUT_S
        while not server.event.wait(0.01):
            if proc.poll() is not None or time.perf_counter() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"no request from {' '.join(argv)}: {err.strip()[-500:]}")
        assert server.arrived is not None
        return server.arrived - started
    finally:
        proc.kill()
        proc.communicate()


# --------------------------------------------------------------------------- rows


def clean_env(pythonpath: Path | None = None) -> dict[str, str]:
    """This environment less DOWNLOADER_* (the config must not differ between rows) and
    less PYTHONDONTWRITEBYTECODE: the warm-up run leaves the .pyc files an installed
    package has, instead of every run compiling dlstore's modules again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNLOADER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:  # PYTHONPATH wins over the editable install
        env["PYTHONPATH"] = str(pythonpath)
    return env


def dlstore_rows(name: str, env: dict[str, str], tmp: Path, server: FirstRequest) -> list[Row]:
    dlstore = [sys.executable, "-c", CONSOLE_SCRIPT]
    work = tmp / name.replace("@", "-")
    work.mkdir()
    database = work / "bench.sqlite"
    subprocess.run([*dlstore, "db", "upgrade", "--db", str(database)], cwd=work, env=env,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    status = [*dlstore, "status", "no-such-task", "--db", str(database)]
    download = [*dlstore, "download", server.url, "-o", str(work / "out.mp4"), "-q", "--overwrite"]
    return [
        Row(f"{name} --help", lambda: wall([*dlstore, "--help"], work, env)),
        Row(f"{name} status MISSING", lambda: wall(status, work, env, expect=(1,))),
        Row(
            f"{name} download: 1st request",
            lambda: time_to_first_request(download, work, env, server),
        ),  # fmt: skip
    ]


def floor_rows(tmp: Path) -> list[Row]:
    env = clean_env()
    python = sys.executable
    return [
        Row("python -c pass", lambda: wall([python, "-c", "pass"], tmp, env)),
        Row(f"python -c '{FLOOR_AV}'", lambda: wall([python, "-c", FLOOR_AV], tmp, env)),
        Row(
            f"python -c '{FLOOR_SQLMODEL}'", lambda: wall([python, "-c", FLOOR_SQLMODEL], tmp, env)
        ),
        Row(
            "python -c 'import dlstore.cli'",
            lambda: wall([python, "-c", "import dlstore.cli"], tmp, env),
        ),  # fmt: skip
    ]


# --------------------------------------------------------------------------- report


def verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISSED"


def report(rows: list[Row], names: list[str], runs: int) -> None:
    by = {row.label: row for row in rows}
    print(f"\n== start-up, medians of {runs} runs (seconds) ==")
    print(f"{'row':44s}{'median':>8s}{'min':>8s}{'max':>8s}")
    for row in rows:
        print(f"{row.label:44s}{row.median:8.3f}{min(row.samples):8.3f}{max(row.samples):8.3f}")
    floor_av = by[f"python -c '{FLOOR_AV}'"].median
    floor_sql = by[f"python -c '{FLOOR_SQLMODEL}'"].median
    print()
    for name in names:
        helped = by[f"{name} --help"].median
        status = by[f"{name} status MISSING"].median - floor_sql
        first = by[f"{name} download: 1st request"].median - floor_av
        print(f"{name} --help: {helped:.3f} s = {helped / HELP_TARGET_S:.2f} × the target "
              f"(≤ {HELP_TARGET_S} s): {verdict(helped, HELP_TARGET_S)}")  # fmt: skip
        print(f"{name} status: {status:+.3f} s above '{FLOOR_SQLMODEL}' "
              f"(target ≤ +{ABOVE_IMPORTS_TARGET_S} s): "
              f"{verdict(status, ABOVE_IMPORTS_TARGET_S)}")  # fmt: skip
        print(f"{name} download, first request: {first:+.3f} s above '{FLOOR_AV}' "
              f"(target ≤ +{ABOVE_IMPORTS_TARGET_S} s): "
              f"{verdict(first, ABOVE_IMPORTS_TARGET_S)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="also run the dlstore package in DIR")
    args = parser.parse_args()
    server = FirstRequest()
    names = ["dlstore"] + (["dlstore@base"] if args.baseline else [])
    try:
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            tmp_path = Path(tmp)
            rows = floor_rows(tmp_path) + dlstore_rows("dlstore", clean_env(), tmp_path, server)
            if args.baseline:
                base_env = clean_env(args.baseline.resolve())
                rows += dlstore_rows("dlstore@base", base_env, tmp_path, server)
            for row in rows:  # warm the file cache; not counted
                row.run()
            for _ in range(args.runs):
                for row in rows:
                    row.samples.append(row.run())
    finally:
        server.close()
    report(rows, names, args.runs)


if __name__ == "__main__":
    main()
