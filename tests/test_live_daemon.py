"""Live recording (#12) through `dlstore daemon`: rows inserted and read with the Rust
API's SQL (dlstore.testing.rust_api), a real daemon subprocess, a live stream that the
local server advances in real time (dlstore.testing.live)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlstore import migrate
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.live import LivePlaylist, Pool, make_pool
from dlstore.testing.media import decode_check
from dlstore.testing.rust_api import RustApi

from .support.daemon import LIVE_CONFIG, start_daemon, watch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Pool:
    return make_pool(tmp_path_factory.mktemp("live-daemon-pool"))


@pytest.fixture
def api(sqlite_url: str, tmp_path: Path) -> Iterator[RustApi]:
    migrate.upgrade(sqlite_url)
    (tmp_path / "downloader.yaml").write_text(LIVE_CONFIG)
    api = RustApi(sqlite_url)
    yield api
    api.close()


@pytest.fixture
def server() -> Iterator[HlsServer]:
    with HlsServer() as server:
        yield server


def recording(row: dict, segments: int = 1) -> bool:
    return row["status"] == "downloading" and (row["downloaded_segments"] or 0) >= segments


def segment_hits(server: HlsServer) -> dict[str, int]:
    return {p: n for p, n in server.hits.items() if p.endswith(".ts")}


def test_the_daemon_records_a_live_row_to_its_limit(api, sqlite_url, tmp_path, server, pool):
    with LivePlaylist(server, pool, window=3) as live:
        live.start()  # never ends: the limit ends the recording
        task_id = api.create("Match", live.url, {"live": "record", "record_limit": 5})
        proc = start_daemon(sqlite_url, tmp_path, "--exit-when-idle")
        seen = watch(api, task_id, proc)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    row = api.status(task_id)
    assert row["status"] == "completed", (row, output)
    downloading = [r for r in seen if r["status"] == "downloading" and r["message"]]
    live_rows = [r for r in downloading if r["message"].startswith("Recording live: ")]
    assert live_rows, [r["message"] for r in downloading]
    assert all(r["total_segments"] is None for r in downloading)  # NULL until the end
    assert live_rows[-1]["message"].endswith(" of 00:00:05 recorded")
    shares = [r["progress"] for r in live_rows]
    assert shares == sorted(shares) and shares[-1] >= 60 and max(shares) <= 99
    assert row["total_segments"] == row["downloaded_segments"] == 5 and row["progress"] == 100
    metadata = json.loads(row["metadata"])
    assert metadata["live"] == "record" and metadata["record_limit"] == 5  # the caller's, kept
    assert metadata["live_gaps"] == []
    assert set(segment_hits(server).values()) == {1}
    decoded = decode_check(Path(row["output_path"]))
    assert decoded.errors == () and decoded.duration == pytest.approx(5, abs=1)


def test_sigterm_releases_a_recording_and_the_resume_records_the_gap(
    api, sqlite_url, tmp_path, server, pool
):
    with LivePlaylist(server, pool, window=3) as live:
        live.start()
        task_id = api.create("Concert", live.url, {"live": "record"})
        first = start_daemon(sqlite_url, tmp_path)
        seen = watch(api, task_id, first, until=lambda row: recording(row, 4))
        assert recording(seen[-1], 4), seen[-1]
        first.send_signal(signal.SIGTERM)
        output = first.communicate(timeout=30)[0]
        assert first.returncode == 0, output
        released = api.status(task_id)
        assert released["status"] == "pending" and released["total_segments"] is None
        assert json.loads(released["history"])[-1]["event"] == "released"
        recorded = released["downloaded_segments"]
        live.advance(4)  # the window moves past what was recorded while no daemon runs
        second = start_daemon(sqlite_url, tmp_path, "--exit-when-idle")
        watch(api, task_id, second, until=lambda row: recording(row, recorded + 2))
        live.end()
        output = second.communicate(timeout=60)[0]
    assert second.returncode == 0, output
    row = api.status(task_id)
    assert row["status"] == "completed", (row, output)
    gaps = json.loads(row["metadata"])["live_gaps"]
    assert [g["reason"] for g in gaps] == ["resumed"] and gaps[0]["missing"] >= 1, gaps
    assert f"[task {task_id}] Resuming a live recording: 00:00:" in output
    assert f"[task {task_id}] Gap: {gaps[0]['missing']} segment" in output  # logged
    hits = segment_hits(server)
    assert set(hits.values()) == {1}  # nothing fetched twice, across the two daemons
    assert row["total_segments"] == row["downloaded_segments"] == len(hits)
    decoded = decode_check(Path(row["output_path"]))
    assert decoded.errors == () and decoded.audio_seconds == pytest.approx(len(hits), abs=1)
