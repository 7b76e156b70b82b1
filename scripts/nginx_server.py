#!/usr/bin/env python3
"""Serve a folder with nginx on 127.0.0.1, for benchmarks (not tests).

    python scripts/nginx_server.py DIR [--scenario loopback|cap|latency] [--cap-mib 1]
                                       [--latency 0.04] [--port 0]

Writes an nginx config into a temporary folder and runs nginx as a child (``daemon
off``), serving DIR at ``/``. Scenarios:

- ``loopback``: no limit;
- ``cap``: every connection capped at --cap-mib MiB/s. nginx's ``limit_rate`` lets
  the first second's worth of each request through at once (its budget is
  ``rate × (seconds + 1)``), so a file under 1 MiB would not be slowed at all: each
  file is instead answered after ``size / rate`` seconds (``echo_sleep``, one
  location per file), which is what a capped connection takes for it, and
  ``limit_rate`` still holds anything longer (a Range of a bigger file);
- ``latency``: every request answered after --latency seconds (the echo module's
  ``echo_sleep``, then an internal redirect to the file). Needs
  ``apt-get install nginx-light libnginx-mod-http-echo`` (Debian's packages).

As a module: ``with NginxServer(root, scenario="cap") as server: server.url("/a")``.
:func:`nginx_missing` says why nginx cannot be used here, or None.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ECHO_MODULE_PATHS = (
    "/usr/lib/nginx/modules/ngx_http_echo_module.so",
    "/usr/share/nginx/modules/ngx_http_echo_module.so",
)
SCENARIOS = ("loopback", "cap", "latency")
START_TIMEOUT = 5.0
MIB = 1 << 20


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def echo_module() -> str | None:
    return next((p for p in ECHO_MODULE_PATHS if Path(p).exists()), None)


def nginx_missing(scenario: str = "loopback") -> str | None:
    """Why nginx cannot serve ``scenario`` here (a sentence), or None."""
    if nginx_binary() is None:
        return "nginx is not installed (apt-get install nginx-light)"
    if scenario != "loopback" and echo_module() is None:
        return "nginx's echo module is not installed (apt-get install libnginx-mod-http-echo)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_text(
    root: Path, port: int, folder: Path, scenario: str, cap_mib: float, latency: float
) -> str:
    """The whole nginx.conf for ``scenario``, everything it writes kept in ``folder``."""
    module = f"load_module {echo_module()};\n" if scenario != "loopback" else ""
    limit = f"limit_rate {int(cap_mib * MIB)};" if scenario == "cap" else ""
    if scenario == "latency":
        location = f"location / {{ echo_sleep {latency}; echo_exec @file; }}"
    elif scenario == "cap":
        location = "\n    ".join(_capped_files(root, cap_mib * MIB))
    else:
        location = "location / { }"
    location += f"\n    location @file {{ {limit} }}"
    temps = "\n".join(
        f"  {name}_temp_path {folder / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""{module}{user}worker_processes 1;
daemon off;
master_process on;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
{temps}
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 100000;
  keepalive_timeout 60s;
  types {{
    application/vnd.apple.mpegurl m3u8;
    video/mp2t ts;
    video/iso.segment m4s;
    video/mp4 mp4;
    application/octet-stream bin;
  }}
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    {limit}
    {location}
  }}
}}
"""


def _capped_files(root: Path, rate: float) -> list[str]:
    """One exact location per file under ``root``: answered after ``size / rate`` s."""
    locations = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        uri = "/" + path.relative_to(root).as_posix()
        if any(c in uri for c in " ;{}\"'\\"):  # not worth quoting: left to limit_rate
            continue
        seconds = max(0.001, path.stat().st_size / rate)  # echo_sleep: whole ms
        locations.append(f"location = {uri} {{ echo_sleep {seconds:.3f}; echo_exec @file; }}")
    return locations


class NginxServer:
    """nginx serving ``root`` on 127.0.0.1 for one scenario, as a child process."""

    def __init__(
        self, root: Path, scenario: str = "loopback", cap_mib: float = 1.0, latency: float = 0.04
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}")
        self.root = Path(root).resolve()
        self.scenario, self.cap_mib, self.latency = scenario, cap_mib, latency
        self.port = 0
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}" + (path if path.startswith("/") else "/" + path)

    def start(self) -> NginxServer:
        why = nginx_missing(self.scenario)
        if why is not None:
            raise RuntimeError(why)
        self._folder = tempfile.TemporaryDirectory(prefix="dlstore-nginx-")
        folder = Path(self._folder.name)
        self.port = free_port()
        conf = folder / "nginx.conf"
        conf.write_text(
            config_text(self.root, self.port, folder, self.scenario, self.cap_mib, self.latency)
        )
        self._proc = subprocess.Popen(
            [nginx_binary() or "nginx", "-c", str(conf), "-p", str(folder), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_listening(folder)
        return self

    def _wait_listening(self, folder: Path) -> None:
        ends = time.monotonic() + START_TIMEOUT
        while time.monotonic() < ends:
            if self._proc is not None and self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"nginx exited {self._proc.returncode}: {err.strip()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"nginx did not listen on port {self.port} within {START_TIMEOUT} s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("root", type=Path)
    parser.add_argument("--scenario", choices=SCENARIOS, default="loopback")
    parser.add_argument("--cap-mib", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.04)
    args = parser.parse_args()
    with NginxServer(args.root, args.scenario, args.cap_mib, args.latency) as server:
        print(f"serving {args.root} at {server.url('/')} ({args.scenario}); Ctrl-C stops")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
