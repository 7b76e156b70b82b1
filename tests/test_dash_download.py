"""DASH end to end: FFmpeg's dash muxer → a local server → engine.download (and the CLI,
and the daemon) → an MP4 that decodes to the source's duration with video and audio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dlstore.cli.download  # noqa: F401 - registers the commands
from dlstore import migrate
from dlstore.cli import app
from dlstore.engine import DownloadResult, download
from dlstore.errors import SegmentError, UnsupportedStreamError
from dlstore.options import DownloadOptions
from dlstore.testing.dash_media import build_dash_library
from dlstore.testing.hls_server import Body, HlsServer
from dlstore.testing.media import FPS, MediaLibrary, StreamFacts, decode_check
from dlstore.testing.rust_api import RustApi

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data" / "mpd"


@pytest.fixture(scope="session")
def dash_media(tmp_path_factory: pytest.TempPathFactory) -> MediaLibrary:
    return build_dash_library(tmp_path_factory.mktemp("dash-media"))


@pytest.fixture
def dash_server(dash_media: MediaLibrary, hls_server_factory) -> HlsServer:
    return hls_server_factory(dash_media.root)


def fetch(server: HlsServer, path: str, tmp_path: Path, options: DownloadOptions,
          name: str = "video") -> DownloadResult:  # fmt: skip
    out = tmp_path / "out" / f"{name}.mp4"
    return download(server.url(path), out, work_dir=tmp_path / f"work-{name}", options=options)


def assert_plays(result: DownloadResult, facts: StreamFacts) -> None:
    decoded = decode_check(result.output_path)
    assert decoded.errors == ()
    assert decoded.streams == facts.streams == 2
    assert decoded.codecs == ("h264", "aac")
    assert decoded.duration == pytest.approx(facts.duration, abs=0.1)
    assert (decoded.width, decoded.height) == (facts.width, facts.height)
    assert decoded.video_frames == round(int(facts.duration) * FPS)
    assert decoded.audio_seconds == pytest.approx(facts.duration, abs=0.1)
    assert result.media.duration == pytest.approx(decoded.duration, abs=0.01)


@pytest.mark.parametrize("layout", ["timeline", "number", "list", "base"])
def test_dash_downloads_to_a_playable_mp4(layout, dash_media, dash_server, fast_options, tmp_path):
    facts = dash_media[layout]
    result = fetch(dash_server, facts.path, tmp_path, fast_options)
    assert_plays(result, facts)
    assert result.segments == facts.segments  # media segments: init sections are not counted
    assert result.variant["resolution"] == "320x180"
    assert not (tmp_path / "work-video").exists()
    media_hits = {p: n for p, n in dash_server.hits.items() if not p.endswith(".mpd")}
    if layout == "base":  # one file per track: its index, its header, then each subsegment
        per_track = {
            "/base/manifest-stream0.mp4": 1 + 1 + 4,
            "/base/manifest-stream1.mp4": 1 + 1 + 5,
        }
        assert media_hits == per_track
    elif layout == "list":
        assert media_hits == {
            "/list/manifest-stream0.mp4": 1 + 4,
            "/list/manifest-stream1.mp4": 1 + 5,
        }
    else:  # every file once
        assert set(media_hits.values()) == {1}
        assert len(media_hits) == facts.segments + 2


@pytest.mark.parametrize(
    ("quality", "height"),
    [("best", 180), ("worst", 144), ("144p", 144), ("170p", 144), ("720p", 180)],
)
def test_quality_picks_the_representation(quality, height, dash_media, dash_server, tmp_path):
    facts = dash_media[f"multi_{height}p"]
    options = DownloadOptions(quality=quality, threads=4, retry_delay=0.01)
    result = fetch(dash_server, facts.path, tmp_path, options)
    assert_plays(result, facts)
    assert result.variant["resolution"] == f"{facts.width}x{facts.height}"
    other = "1" if height == 180 else "0"  # the representation not chosen
    assert not [p for p in dash_server.hits if f"stream{other}" in p]


def test_two_periods_are_joined_in_order(dash_media, dash_server, fast_options, tmp_path):
    facts = dash_media["periods"]
    result = fetch(dash_server, facts.path, tmp_path, fast_options)
    decoded = decode_check(result.output_path)
    assert decoded.errors == () and decoded.streams == 2
    assert decoded.duration == pytest.approx(facts.duration, abs=0.1)
    assert decoded.video_frames == 7 * FPS
    assert result.segments == facts.segments  # media segments: init sections are not counted
    assert {p.split("/")[2] for p in dash_server.hits if p.endswith(".m4s")} == {"a", "b"}


def test_an_mpd_is_recognised_by_its_content(dash_media, dash_server, fast_options, tmp_path):
    mpd = (dash_media.root / "timeline" / "manifest.mpd").read_bytes()
    dash_server.bodies["/timeline/watch"] = Body(mpd, "application/dash+xml")
    result = fetch(dash_server, "/timeline/watch", tmp_path, fast_options)
    assert_plays(result, dash_media["timeline"])


def test_drm_and_live_are_refused_before_any_media_is_fetched(dash_server, fast_options, tmp_path):
    dash_server.bodies["/drm.mpd"] = Body((DATA / "drm.mpd").read_bytes(), "application/dash+xml")
    dash_server.bodies["/live.mpd"] = Body((DATA / "dynamic.mpd").read_bytes())
    with pytest.raises(UnsupportedStreamError) as caught:
        fetch(dash_server, "/drm.mpd", tmp_path, fast_options)
    assert str(caught.value) == (
        "This stream is protected by DRM (Widevine); dlstore cannot download it."
    )
    with pytest.raises(UnsupportedStreamError, match="live stream"):
        fetch(dash_server, "/live.mpd", tmp_path, fast_options, name="live")
    assert set(dash_server.hits) == {"/drm.mpd", "/live.mpd"}


def test_a_failed_dash_download_resumes_fetching_only_what_is_missing(
    dash_media, dash_server, tmp_path
):
    facts = dash_media["timeline"]
    options = DownloadOptions(threads=1, max_retries=1, retry_delay=0.01)  # files in plan order
    dash_server.fail_always["/timeline/chunk-stream0-00003.m4s"] = 404
    with pytest.raises(SegmentError, match="404"):
        fetch(dash_server, facts.path, tmp_path, options)
    kept = sorted(p.name for p in (tmp_path / "work-video").iterdir() if p.suffix == ".seg")
    assert len(kept) == facts.segments + 2 - 1  # every file but the missing one (Lose nothing #9)
    assert "video-init-0.seg" in kept
    del dash_server.fail_always["/timeline/chunk-stream0-00003.m4s"]
    dash_server.reset_counters()
    result = fetch(dash_server, facts.path, tmp_path, options)
    assert_plays(result, facts)
    fetched = [p for p, n in dash_server.hits.items() if p.endswith(".m4s") for _ in range(n)]
    assert fetched == ["/timeline/chunk-stream0-00003.m4s"]


def test_the_cli_downloads_an_mpd(dash_media, dash_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "clip.mp4"
    result = CliRunner().invoke(app, ["download", dash_server.url("/base/manifest.mpd"),
                                      "-o", str(out), "-q"])  # fmt: skip
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert_decodes_like(out, dash_media["base"])


def assert_decodes_like(path: Path, facts: StreamFacts) -> None:
    decoded = decode_check(path)
    assert decoded.errors == () and decoded.streams == 2
    assert decoded.duration == pytest.approx(facts.duration, abs=0.1)
    assert (decoded.width, decoded.height) == (facts.width, facts.height)


def test_the_daemon_completes_a_row_the_api_inserted(db_url, dash_media, dash_server, tmp_path):
    migrate.upgrade(db_url)
    (tmp_path / "downloader.yaml").write_text(
        "downloader:\n  temp_dir: ./work\n  output_dir: ./videos\n  poll_interval: 0.1\n"
        "  retry_delay: 0.01\n  connect_timeout: 5\n  read_timeout: 5\n"
    )
    api = RustApi(db_url)
    try:
        task_id = api.create(
            "Dash show", dash_server.url("/multi/manifest.mpd"), {"quality": "144p"}
        )
        done = subprocess.run(
            [sys.executable, "-m", "dlstore", "daemon", "--db", db_url, "--config",
             str(tmp_path / "downloader.yaml"), "--exit-when-idle"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        row = api.status(task_id)
    finally:
        api.close()
    assert row["status"] == "completed", row
    assert row["total_segments"] == row["downloaded_segments"] == dash_media["multi_144p"].segments
    assert_decodes_like(Path(row["output_path"]), dash_media["multi_144p"])
    metadata = json.loads(row["metadata"])
    assert metadata["quality"] == "144p" and metadata["resolution"] == "256x144"
