#!/usr/bin/env python3
"""dlstore from a row to a video, on one machine, with no internet.

    python scripts/demo.py [--folder DIR]        (scripts/demo.sh installs dlstore first)

1. makes a 6-second sample video with PyAV and cuts it into HLS segments;
2. serves them on 127.0.0.1, like a video site would;
3. lays out a video manager's root in DIR (a new temporary folder by default) and
   migrates its embedded SQLite database with `dlstore db upgrade`;
4. inserts a pending row with the Rust API's exact INSERT;
5. runs `dlstore daemon --exit-when-idle` until the row is done, showing the row's
   progress as the web UI would see it;
6. prints the row and the facts of the downloaded file, decoded with PyAV.

The folder is kept so you can play the video and look around.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from dlstore.testing import rust_api  # the Rust API's SQL, word for word (CONTRACT.md §2)
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.media import decode_check, encode_source, write_hls

CONFIG = """\
# The video manager's config/downloader.yaml, trimmed to what the demo changes.
downloader:
  poll_interval: 0.5
  max_concurrent_tasks: 3
  log_level: INFO
"""
DEADLINE_SECONDS = 120


_print_lock = threading.Lock()


def say(text: str) -> None:
    """One whole line at a time: the daemon's log and the row's progress interleave."""
    with _print_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def step(text: str) -> None:
    say(f"\n== {text}")


def dlstore(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dlstore", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--folder", type=Path, help="where to put everything (default: a new temporary folder)"
    )
    args = parser.parse_args()
    folder = (args.folder or Path(tempfile.mkdtemp(prefix="dlstore-demo-"))).resolve()
    site, manager = folder / "site", folder / "video-manager"
    manager.mkdir(parents=True, exist_ok=True)

    step("1. A sample video (6 s, 640x360, H.264 + AAC), cut into 1-second HLS segments")
    source = encode_source(folder / "source.mp4", duration=6, width=640, height=360)
    playlist = write_hls(source, site / "sample")
    print(f"   {playlist}")

    with HlsServer(site) as server:
        server.latency = 0.6  # a slowish site, so the progress is worth watching
        url = server.url("/sample/index.m3u8")
        step(f"2. Served at {url}")

        step(f"3. A video manager's root: {manager}")
        (manager / "config").mkdir(exist_ok=True)
        (manager / "config" / "downloader.yaml").write_text(CONFIG)
        print("   $ dlstore db upgrade")
        print("   " + dlstore("db", "upgrade", cwd=manager).stdout.strip())
        database = manager / "data" / "dlstore.sqlite"

        step("4. The Rust API queues a download")
        task_id = str(uuid.uuid4())
        created = rust_api.rfc3339_now()
        # low_bandwidth: two segments at a time (config profiles), to see progress move
        metadata = json.dumps({"quality": "best", "output_dir": "demo", "profile": "low_bandwidth"})
        with sqlite3.connect(database, timeout=rust_api.BUSY_TIMEOUT_S) as conn:
            conn.execute(rust_api.CREATE, (task_id, "Sample video", url, created, metadata))
        print(f"   {rust_api.CREATE}\n   id = {task_id}")

        step("5. $ dlstore daemon --exit-when-idle")
        row = run_daemon(manager, database, task_id)

    step("6. The row, as GET /api/download/status/:id returns it")
    shown = dict(row)
    shown["metadata"] = json.loads(shown["metadata"])
    print(json.dumps(shown, indent=2))
    if row["status"] != "completed":
        print(f"\nThe download did not complete: {row['error_message'] or row['message']}")
        return 1

    output = Path(row["output_path"])
    facts = decode_check(output)
    step("7. The file, decoded frame by frame with PyAV")
    print(f"   file:       {output} ({output.stat().st_size:,} bytes)")
    print(f"   duration:   {facts.duration:.2f} s")
    print(f"   video:      {facts.width}x{facts.height}, {facts.video_frames} frames decoded")
    print(f"   audio:      {facts.audio_seconds:.2f} s at {facts.audio_rate} Hz")
    print(f"   codecs:     {', '.join(facts.codecs)}")
    print(f"   errors:     {len(facts.errors)}")
    print(f"   poster:     {shown['metadata'].get('poster')}")
    print(f"\nEverything is in {folder}")
    return 0 if not facts.errors else 1


def run_daemon(manager: Path, database: Path, task_id: str) -> sqlite3.Row:
    """Run the daemon until it exits, printing its log and the row's progress."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlstore", "daemon", "--exit-when-idle"],
        cwd=manager,
        stderr=subprocess.PIPE,
        text=True,
    )

    def relay() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            say(f"   daemon | {line.rstrip()}")

    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    conn = sqlite3.connect(database, timeout=rust_api.BUSY_TIMEOUT_S)
    conn.row_factory = sqlite3.Row
    last = None
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            row = conn.execute(rust_api.STATUS, (task_id,)).fetchone()
            seen = (row["status"], row["progress"], row["downloaded_segments"], row["message"])
            if seen != last:
                last = seen
                total = row["total_segments"] or "?"
                say(
                    f"   row    | {row['status']:<11} {row['progress'] or 0:>3}%  "
                    f"{row['downloaded_segments'] or 0}/{total} segments  {row['message'] or ''}"
                )
            time.sleep(0.2)
        if proc.poll() is None:
            proc.terminate()
        proc.wait(30)
        relay_thread.join(5)
        return conn.execute(rust_api.STATUS, (task_id,)).fetchone()
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
