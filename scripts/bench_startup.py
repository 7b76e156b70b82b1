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
alike; figures are medians of wall seconds (min and max beside), and of the CPU
seconds each process had used (at its exit, or when its first request arrived:
Linux /proc, 10 ms ticks), which a machine shared with other work disturbs less.
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


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds from spawning the process
    cpu: float  # CPU seconds (user + system) the process had used by then


@dataclass
class Row:
    label: str
    run: Callable[[], Sample]
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str = "wall") -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    def span(self) -> tuple[float, float]:
        walls = [s.wall for s in self.samples]
        return min(walls), max(walls)


# --------------------------------------------------------------------------- measuring


def to_exit(
    argv: list[str], cwd: Path, env: dict[str, str], expect: tuple[int, ...] = (0,)
) -> Sample:
    """``argv`` run to its exit."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in expect:
            err.seek(0)
            text = err.read().decode(errors="replace").strip()[-500:]
            raise RuntimeError(f"{' '.join(argv)} exited {code}: {text}")
    return Sample(elapsed, usage.ru_utime + usage.ru_stime)


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds used so far by process ``pid`` (Linux /proc; clock-tick resolution)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client is killed once it has asked: a broken pipe is expected


class FirstRequest:
    """A local HTTP server that notes when its first request arrives, and the CPU time
    the process it waits for (``pid``) had used by then."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.arrived: Sample | None = None
        self.started = 0.0
        self.event = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if owner.arrived is None:
                    now = time.perf_counter()
                    owner.arrived = Sample(now - owner.started, cpu_seconds(owner.pid))
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

    def expect(self, started: float) -> None:
        self.pid, self.arrived, self.started = None, None, started
        self.event.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def to_first_request(
    argv: list[str], cwd: Path, env: dict[str, str], server: FirstRequest
) -> Sample:
    """``argv`` run until its first request reaches ``server``, then killed."""
    started = time.perf_counter()
    server.expect(started)
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    server.pid = proc.pid  # long before its first request: the imports come first
    try:
        while not server.event.wait(0.01):
            if proc.poll() is not None or time.perf_counter() > started + FIRST_REQUEST_TIMEOUT_S:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"no request from {' '.join(argv)}: {err.strip()[-500:]}")
        assert server.arrived is not None
        return server.arrived
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
    subprocess.run(
        [*dlstore, "db", "upgrade", "--db", str(database)],
        cwd=work,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    status = [*dlstore, "status", "no-such-task", "--db", str(database)]
    download = [*dlstore, "download", server.url, "-o", str(work / "out.mp4"), "--overwrite"]
    return [
        Row(f"{name} --help", lambda: to_exit([*dlstore, "--help"], work, env)),
        Row(f"{name} status MISSING", lambda: to_exit(status, work, env, expect=(1,))),
        Row(
            f"{name} download: 1st request",
            lambda: to_first_request(download, work, env, server),
        ),
    ]


def floor_rows(tmp: Path) -> list[Row]:
    env = clean_env()
    python = sys.executable
    return [
        Row("python -c pass", lambda: to_exit([python, "-c", "pass"], tmp, env)),
        Row(f"python -c '{FLOOR_AV}'", lambda: to_exit([python, "-c", FLOOR_AV], tmp, env)),
        Row(
            f"python -c '{FLOOR_SQLMODEL}'",
            lambda: to_exit([python, "-c", FLOOR_SQLMODEL], tmp, env),
        ),
        Row(
            "python -c 'import dlstore.cli'",
            lambda: to_exit([python, "-c", "import dlstore.cli"], tmp, env),
        ),
    ]


# --------------------------------------------------------------------------- report


def verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISSED"


def report(rows: list[Row], names: list[str], runs: int) -> None:
    by = {row.label: row for row in rows}
    print(f"\n== start-up, medians of {runs} runs (wall seconds; CPU seconds beside) ==")
    print(f"{'row':44s}{'wall':>8s}{'min':>8s}{'max':>8s}{'CPU':>8s}")
    for row in rows:
        low, high = row.span()
        print(f"{row.label:44s}{row.median():8.3f}{low:8.3f}{high:8.3f}{row.median('cpu'):8.3f}")
    print()
    for name in names:
        helped = by[f"{name} --help"]
        print(
            f"{name} --help: {helped.median():.3f} s (CPU {helped.median('cpu'):.3f} s) = "
            f"{helped.median() / HELP_TARGET_S:.2f} × the target of {HELP_TARGET_S} s: "
            f"{verdict(helped.median(), HELP_TARGET_S)}"
        )
        for label, floor in (
            ("status MISSING", FLOOR_SQLMODEL),
            ("download: 1st request", FLOOR_AV),
        ):
            ours, theirs = by[f"{name} {label}"], by[f"python -c '{floor}'"]
            above = ours.median() - theirs.median()
            cpu = ours.median("cpu") - theirs.median("cpu")
            print(
                f"{name} {label}: {above:+.3f} s above '{floor}' (CPU {cpu:+.3f} s); "
                f"target ≤ +{ABOVE_IMPORTS_TARGET_S} s: "
                f"{verdict(above, ABOVE_IMPORTS_TARGET_S)}"
            )


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
