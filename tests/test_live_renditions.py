"""Live HLS with separate audio renditions (#12): a master playlist whose variant's audio
is a live media playlist of its own. Pure parts (how tracks are aligned, how a load of
several playlists becomes one window), then real recordings of a master, a video and two
audio windows the local server advances together in real time
(:class:`dlstore.testing.live.LiveRenditions`), through ``dlstore download --live`` and
through the daemon. Every output is decoded; the hit counts show nothing is fetched twice."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from dlstore.cli import app
from dlstore.live import HlsWindows, aligned_start
from dlstore.playlist import MediaPlan, Segment, parse_playlist
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.live import LiveRenditions, RenditionPools, make_rendition_pools
from dlstore.testing.media import audio_tones, decode_check, first_frame_time
from dlstore.testing.rust_api import RustApi

from .support.daemon import LIVE_CONFIG, start_daemon, watch


def segment(sequence: int, start: float | None = None, duration: float = 2.0) -> Segment:
    return Segment(uri=f"https://c.example/{sequence}.ts", duration=duration,
                   media_sequence=sequence, start=start)  # fmt: skip


# --------------------------------------------------------------------------- pure parts


def test_another_track_starts_at_the_first_ones_media_sequence():
    audio = [segment(n) for n in (4, 5, 6, 7)]
    assert aligned_start(segment(6), audio) == 2
    assert aligned_start(segment(2), audio) == 0  # its window begins later: as early as it can
    assert aligned_start(segment(9), audio) == 4  # not there yet: it waits for the next load


def test_another_track_starts_by_program_date_time_when_both_have_one():
    audio = [segment(n, start=100.0 + 2 * (n - 40)) for n in (40, 41, 42, 43)]  # numbered apart
    assert aligned_start(segment(6, start=104.05), audio) == 2  # 42 starts at 104
    assert aligned_start(segment(6, start=103.0), audio) == 1  # 41 covers 102..104
    assert aligned_start(segment(6, start=109.0), audio) == 4  # 43 ends at 108: wait
    assert aligned_start(segment(6, start=90.0), audio) == 0


def test_program_date_times_are_parsed_and_carried_forward():
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.500Z\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n"
    )
    plan = parse_playlist(text, "https://c.example/a.m3u8", live=True)
    assert [s.start for s in plan.segments] == [1_767_225_600.5, 1_767_225_602.5]
    bare = parse_playlist(text.replace("#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.500Z\n",
                                       ""), "https://c.example/a.m3u8", live=True)  # fmt: skip
    assert [s.start for s in bare.segments] == [None, None]


def test_a_window_of_several_playlists_ends_when_all_have_and_reloads_on_the_shortest():
    live = MediaPlan("https://c.example/v.m3u8", (segment(1),), target_duration=4, ended=False)
    done = MediaPlan("https://c.example/a.m3u8", (segment(1),), target_duration=2, ended=True)
    window = HlsWindows.window([live, done])
    assert len(window.tracks) == 2 and not window.ended and window.target == 2
    assert HlsWindows.window([done, done]).ended


# --------------------------------------------------------------------------- recordings


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> RenditionPools:
    return make_rendition_pools(tmp_path_factory.mktemp("live-renditions"))


@pytest.fixture
def server():
    with HlsServer() as server:
        yield server


def hits(server: HlsServer, prefix: str) -> dict[int, int]:
    """Segment number → fetches, of the live playlist at ``/<prefix>/``."""
    start = f"/{prefix}/s"
    return {int(p[len(start) : -3]): n for p, n in server.hits.items() if p.startswith(start)}


def stream_starts(path: Path) -> tuple[float, float]:
    """When the output's first video frame and its first audio frame are shown."""
    with av.open(str(path)) as container:
        audio = next(container.decode(audio=0)).time
    return first_frame_time(path), audio


def assert_recorded(path: Path, video: dict[int, int], audio: dict[int, int]) -> None:
    """The output holds both tracks, starting together, each as long as what was taken."""
    decoded = decode_check(path)
    assert decoded.errors == () and decoded.streams == 2 and decoded.width == 320
    assert decoded.duration == pytest.approx(len(video), abs=1)
    assert decoded.audio_seconds == pytest.approx(len(audio), abs=1)
    assert abs(len(video) - len(audio)) <= 1
    video_start, audio_start = stream_starts(path)
    assert abs(video_start - audio_start) < 0.1, (video_start, audio_start)


@pytest.mark.slow
def test_the_cli_records_the_video_and_its_default_audio_rendition(pools, server, tmp_path, caplog):
    server.fail_always["/lmaster-en/s4.ts"] = 404  # an audio segment lost: a gap of that track
    out = tmp_path / "rec.mp4"
    with LiveRenditions(server, pools) as live:
        live.audio["en"].advance()  # its window a segment ahead: the video starts with it
        live.start()
        result = CliRunner().invoke(app, ["download", live.url, "-o", str(out), "-q", "--live",
                                          "--record-limit", "5"])  # fmt: skip
    assert result.exit_code == 0, (result.stdout, result.stderr)
    video, audio = hits(server, "lmaster-video"), hits(server, "lmaster-en")
    assert set(video.values()) == {1} and len(video) == 5  # each once, up to the limit
    assert sorted(video) == sorted(audio) and min(video) == 1  # the same stretch of the stream
    assert {n: c for n, c in audio.items() if n != 4} == {n: 1 for n in video if n != 4}
    assert hits(server, "lmaster-fr") == {}  # the other language is not fetched
    assert set(video) <= live.video.offered
    assert "Gap: 1 segment of the audio track after media sequence 3 could not" in caplog.text
    assert_recorded(out, video, {n: 1 for n in audio if n != 4})
    assert audio_tones(out) == [pytest.approx(440, rel=0.05)]  # English, the default


@pytest.mark.slow
def test_the_daemon_records_a_row_in_the_audio_languages_it_asks_for(
    pools, server, sqlite_url, tmp_path
):
    from dlstore import migrate

    migrate.upgrade(sqlite_url)
    (tmp_path / "downloader.yaml").write_text(LIVE_CONFIG)
    api = RustApi(sqlite_url)
    try:
        with LiveRenditions(server, pools) as live:
            live.start()
            caller = {"live": "record", "record_limit": 4, "audio": "all"}
            task_id = api.create("Match", live.url, caller)
            proc = start_daemon(sqlite_url, tmp_path, "--exit-when-idle")
            watch(api, task_id, proc)
            output = proc.communicate(timeout=60)[0]
        row = api.status(task_id)
    finally:
        api.close()
    assert proc.returncode == 0, output
    assert row["status"] == "completed", (row, output)
    video = hits(server, "lmaster-video")
    english, french = hits(server, "lmaster-en"), hits(server, "lmaster-fr")
    assert set(video.values()) == set(english.values()) == set(french.values()) == {1}
    assert sorted(video) == sorted(english) == sorted(french) and len(video) == 4
    assert row["total_segments"] == row["downloaded_segments"] == 3 * len(video)
    metadata = json.loads(row["metadata"])
    assert metadata["live_gaps"] == [] and metadata["audio"] == "all"
    assert [(t["language"], t["default"]) for t in metadata["audio_tracks"]] == [
        ("en", True), ("fr", False)
    ]  # fmt: skip
    path = Path(row["output_path"])
    decoded = decode_check(path)
    assert decoded.errors == () and decoded.streams == 3
    assert decoded.duration == pytest.approx(len(video), abs=1)
    assert audio_tones(path) == [pytest.approx(440, rel=0.05), pytest.approx(660, rel=0.05)]
    video_start, audio_start = stream_starts(path)
    assert abs(video_start - audio_start) < 0.1
