"""Live DASH (#12): which segments a dynamic MPD offers by the clock (pure, a fake clock),
then real recordings of a dynamic MPD that advances in real time
(:class:`dlstore.testing.live.LiveDash`), through engine.download, the CLI and the daemon.
Every output is decoded; the server's hit counts show nothing is fetched twice."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlstore.cli import app
from dlstore.dash import live_segments, parse_mpd
from dlstore.dash_live import Clock, available, clock_offset, numbered_window
from dlstore.engine import download
from dlstore.errors import CancelledError, UnsupportedStreamError
from dlstore.live import JOURNAL_NAME
from dlstore.options import DownloadOptions
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.live import LiveDash, make_dash_pool
from dlstore.testing.media import FPS, decode_check
from dlstore.testing.rust_api import RustApi

from .support.daemon import LIVE_CONFIG, start_daemon, watch

DATA = Path(__file__).parent / "data" / "mpd"
AST = 1_767_225_600.0  # dynamic.mpd's availabilityStartTime, 2026-01-01T00:00:00Z


def at(seconds: float, depth: float | None = 30.0, period: float = 0) -> Clock:
    return Clock(now=AST + seconds, availability_start=AST, period_start=Fraction(period),
                 depth=depth)  # fmt: skip


# --------------------------------------------------------------------------- pure parts


def test_a_duration_template_offers_the_segments_complete_within_the_buffer():
    window = numbered_window(at(10.5, depth=4), ticks=2, timescale=1, start_number=1)
    assert [n for n, _, _ in window] == [4, 5]  # ends 8, 10 within 6.5..10.5 (3 ends at 6)
    assert numbered_window(at(1.9), ticks=2, timescale=1) == []  # none complete yet
    assert numbered_window(at(2.0), ticks=2, timescale=1) == [(1, 0, 2)]
    late = numbered_window(at(100, period=90), ticks=2, timescale=1, start_number=7, offset=50)
    assert late == [(7, 50, 2), (8, 52, 2), (9, 54, 2), (10, 56, 2), (11, 58, 2)]
    far = numbered_window(at(900_000_000, depth=None), ticks=1, timescale=1, limit=5)
    assert [n for n, _, _ in far] == list(range(900_000_000 - 4, 900_000_001))  # the newest


def test_an_end_number_stops_the_window():
    window = numbered_window(at(20), ticks=2, timescale=1, start_number=1, end_number=6)
    assert [n for n, _, _ in window] == [1, 2, 3, 4, 5, 6]


def test_the_clock_never_goes_past_the_periods_end():
    window = numbered_window(at(20), ticks=2, timescale=1, period_seconds=Fraction(7))
    assert [n for n, _, _ in window] == [1, 2, 3, 4]  # 4 holds 6..7 (cut): none after it
    exact = numbered_window(at(20), ticks=2, timescale=1, period_seconds=Fraction(8))
    assert [n for n, _, _ in exact] == [1, 2, 3, 4]


def dynamic_mpd(extra: str = "", timeline: bool = False) -> str:
    text = (DATA / "dynamic.mpd").read_text().replace('type="dynamic"', f'type="dynamic" {extra}')
    if timeline:
        text = text.replace(
            'duration="2" initialization="init.mp4" media="$Number$.m4s"/>',
            'initialization="init.mp4" media="t$Time$.m4s"><SegmentTimeline>'
            '<S t="0" d="2" r="-1"/></SegmentTimeline></SegmentTemplate>',
        )
    return text


@pytest.mark.parametrize("timeline", [False, True], ids=["duration", "timeline"])
def test_a_dynamic_mpd_with_a_duration_lists_no_segment_past_it(timeline):
    text = dynamic_mpd('mediaPresentationDuration="PT10S"', timeline)
    rep = parse_mpd(text.encode(), "https://c.example/l.mpd", live=True).periods[0].video[0]
    numbers = [s.media_sequence for s in live_segments(rep, at(41, depth=None), 1000)]
    assert numbers == [1, 2, 3, 4, 5]  # the clock says 20 are out: the period holds 5
    assert [s.media_sequence for s in live_segments(rep, at(6.5), 1000)] == [1, 2, 3]


def test_a_window_takes_only_what_a_fetched_manifest_showed(fast_options):
    """Between two fetches the clock brings a segment: the manifest is fetched again before
    it is taken; it turned static meanwhile, so the recording ends with what it lists."""
    from dlstore.dash_tracks import DashWindows

    url, wall = "https://c.example/l.mpd", [AST + 41.0]
    manifest = parse_mpd(dynamic_mpd().encode(), url, live=True)  # minimumUpdatePeriod 2 s
    windows = DashWindows(None, manifest, replace(fast_options, record_live=True),
                          wall=lambda: wall[0])  # fmt: skip
    assert windows.first.tracks[0].segments[-1].media_sequence == 20  # ends at 40
    wall[0] = AST + 41.9  # nothing new by the clock, the update period not over: no fetch
    windows._fetch = lambda: pytest.fail("fetched")
    assert windows.load().tracks[0].segments[-1].media_sequence == 20
    static = (
        (DATA / "dynamic.mpd")
        .read_text()
        .replace('type="dynamic"', 'type="static" mediaPresentationDuration="PT40S"')
    )  # it ended with segment 20, before 21 (ends at 42) came out
    windows._fetch = lambda: parse_mpd(static.encode(), url)
    wall[0] = AST + 42.5  # 21 is out by the clock: fetched again first
    ended = windows.load()
    assert ended.ended and ended.tracks[0].segments[-1].media_sequence == 20


def test_a_timeline_is_cut_to_what_the_clock_says_exists():
    entries = [(5, 100, 10), (6, 110, 10), (7, 120, 10), (8, 130, 10)]  # media times from 90
    offered = available(entries, at(3.5, depth=2.0), timescale=10, offset=90)
    assert [n for n, _, _ in offered] == [5, 6]  # ends 2, 3, 4, 5 s: 1.5 ≤ end ≤ 3.5


def test_dynamic_mpd_segments_by_number_and_by_timeline():
    manifest = parse_mpd((DATA / "dynamic.mpd").read_bytes(), "https://c.example/l.mpd", live=True)
    rep = manifest.periods[0].video[0]
    segments = live_segments(rep, at(41), 1000)
    assert [s.media_sequence for s in segments] == list(range(6, 21))  # 30 s back: 12..40
    assert segments[0].uri == "https://c.example/6.m4s" and segments[0].duration == 2
    assert segments[0].init.uri == "https://c.example/init.mp4"
    text = (
        (DATA / "dynamic.mpd")
        .read_text()
        .replace(
            'duration="2" initialization="init.mp4" media="$Number$.m4s"/>',
            'initialization="init.mp4" media="t$Time$.m4s" startNumber="3"><SegmentTimeline>'
            '<S t="0" d="2" r="-1"/></SegmentTimeline></SegmentTemplate>',
        )
    )
    timeline = parse_mpd(text.encode(), "https://c.example/l.mpd", live=True)
    rep = timeline.periods[0].video[0]
    offered = live_segments(rep, at(9, depth=4), 1000)
    assert [(s.media_sequence, s.uri.rsplit("/", 1)[1]) for s in offered] == [
        (5, "t4.m4s"), (6, "t6.m4s")
    ]  # ends 6 and 8 within 5..9 (t8 ends at 10: not out yet)  # fmt: skip


def test_utc_timing_offsets_and_what_is_not_believed():
    assert clock_offset("2026-01-01T00:00:03.500Z", AST) == pytest.approx(3.5)
    assert clock_offset("garbage", AST) is None
    assert clock_offset("2030-01-01T00:00:00Z", AST) is None  # years off: the local clock


def test_a_dynamic_segment_list_is_refused_with_a_sentence():
    text = (
        (DATA / "dynamic.mpd")
        .read_text()
        .replace(
            '<SegmentTemplate timescale="1" duration="2" initialization="init.mp4" '
            'media="$Number$.m4s"/>',
            '<SegmentList duration="2"><SegmentURL media="a.m4s"/></SegmentList>',
        )
    )
    rep = parse_mpd(text.encode(), "https://c.example/l.mpd", live=True).periods[0].video[0]
    with pytest.raises(UnsupportedStreamError, match="records live DASH streams with a Segm"):
        live_segments(rep, at(10), 100)


# --------------------------------------------------------------------------- recordings


@pytest.fixture(scope="session")
def dash_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dash_pool(tmp_path_factory.mktemp("live-dash-pool"))


@pytest.fixture
def server():
    with HlsServer() as server:
        yield server


@pytest.fixture
def options(fast_options: DownloadOptions) -> DownloadOptions:
    return replace(fast_options, record_live=True)


def hits(server: HlsServer, track: int = 0) -> dict[int, int]:
    prefix = f"/dlive/chunk-stream{track}-"
    return {int(p[len(prefix) : -4]): n for p, n in server.hits.items() if p.startswith(prefix)}


def record(live: LiveDash, tmp_path: Path, options: DownloadOptions, **kwargs):
    return download(live.url, tmp_path / "out.mp4", work_dir=tmp_path / "work", options=options,
                    **kwargs)  # fmt: skip


def recorded_numbers(work: Path) -> list[int]:
    """The video segment numbers a recording's journal holds."""
    lines = (work / JOURNAL_NAME).read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    return [e["sequence"] for e in entries if "segment" in e and "track" not in e]


def wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def assert_plays(path: Path, seconds: float) -> None:
    decoded = decode_check(path)
    assert decoded.errors == () and decoded.streams == 2 and decoded.width == 96
    assert decoded.duration == pytest.approx(seconds, abs=1)
    assert decoded.video_frames == pytest.approx(FPS * seconds, abs=FPS)
    assert decoded.audio_seconds == pytest.approx(seconds, abs=1)


@pytest.mark.slow
def test_a_dynamic_mpd_is_recorded_until_it_becomes_static(dash_pool, server, options, tmp_path):
    live = LiveDash(server, dash_pool)  # segments 1 and 2 are out already
    offered = set(live.available())
    worker = ThreadPoolExecutor(1)
    future = worker.submit(record, live, tmp_path, options)
    wait_for(lambda: server.hits[live.segment_path(5)])
    offered |= set(live.available())
    last = live.end()  # static now, exactly as long as what came out: the rest, then the end
    result = future.result(timeout=30)
    worker.shutdown()
    video = hits(server)
    assert video == {n: 1 for n in range(1, last + 1)}  # in order, none twice, none skipped,
    assert hits(server, 1) == video  # and none past the static MPD's end
    assert offered <= set(video) and min(offered) == 1
    assert result.live_gaps == []
    assert_plays(result.output_path, last)
    assert 3 <= server.hits[live.path] <= 12  # about one load a second (minimumUpdatePeriod)
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_a_stopped_dash_recording_resumes_at_the_live_edge_with_a_gap(
    dash_pool, server, options, tmp_path
):
    live = LiveDash(server, dash_pool, depth=2.0)
    cancel = threading.Event()
    worker = ThreadPoolExecutor(1)
    first = worker.submit(record, live, tmp_path, options, cancel=cancel)
    wait_for(lambda: server.hits[live.segment_path(3)])
    cancel.set()
    with pytest.raises(CancelledError):
        first.result(timeout=30)
    kept = recorded_numbers(tmp_path / "work")
    in_flight = set(hits(server)) - set(kept)  # fetched when the cancel came: not kept
    assert kept == list(range(1, len(kept) + 1)) and in_flight <= {len(kept) + 1}
    time.sleep(3.5)  # the window (2 s deep) moves past what was recorded
    second = worker.submit(record, live, tmp_path, options, stop_recording=None)
    wait_for(lambda: any(n >= 8 for n in hits(server)))
    last = live.end()
    result = second.result(timeout=30)
    worker.shutdown()
    video = hits(server)
    assert set(video.values()) == {1}  # nothing fetched twice across the two attempts
    gaps = [g for g in result.live_gaps if "track" not in g]
    assert [g["reason"] for g in gaps] == ["resumed"] and gaps[0]["missing"] >= 1
    assert gaps[0]["after_sequence"] == len(kept)
    recorded = sorted(set(video) - in_flight)
    missing = gaps[0]["missing"]
    assert recorded == [
        n
        for n in range(1, last + 1)
        if not gaps[0]["after_sequence"] < n <= gaps[0]["after_sequence"] + missing
    ]
    decoded = decode_check(result.output_path)
    assert decoded.errors == () and decoded.video_frames == pytest.approx(
        FPS * len(recorded), abs=FPS)  # fmt: skip


@pytest.mark.slow
def test_the_cli_records_a_dynamic_mpd_to_its_limit(dash_pool, server, tmp_path):
    live = LiveDash(server, dash_pool)
    out = tmp_path / "rec.mp4"
    result = CliRunner().invoke(app, ["download", live.url, "-o", str(out), "-q", "--live",
                                      "--record-limit", "3"])  # fmt: skip
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert hits(server) == {1: 1, 2: 1, 3: 1}
    assert_plays(out, 3)
    refused = CliRunner().invoke(app, ["download", live.url, "-o", str(tmp_path / "x.mp4")])
    assert refused.exit_code == 1
    assert 'to record it, set "live": "record"' in " ".join(refused.stderr.split())


@pytest.mark.slow
def test_the_daemon_records_a_dynamic_row_and_refuses_one_without_live(
    dash_pool, server, sqlite_url, tmp_path
):
    from dlstore import migrate

    migrate.upgrade(sqlite_url)
    (tmp_path / "downloader.yaml").write_text(LIVE_CONFIG)
    live = LiveDash(server, dash_pool)
    api = RustApi(sqlite_url)
    try:
        task_id = api.create("Match", live.url, {"live": "record", "record_limit": 4})
        plain = api.create("Plain", live.url, {})
        proc = start_daemon(sqlite_url, tmp_path, "--exit-when-idle")
        seen = watch(api, task_id, proc)
        output = proc.communicate(timeout=60)[0]
        row, refused = api.status(task_id), api.status(plain)
    finally:
        api.close()
    assert proc.returncode == 0, output
    assert row["status"] == "completed", (row, output)
    messages = [r["message"] for r in seen if r["status"] == "downloading" and r["message"]]
    assert any(m.startswith("Recording live: ") for m in messages), messages
    assert all(r["total_segments"] is None for r in seen if r["status"] == "downloading")
    assert hits(server) == {n: 1 for n in range(1, 5)}
    audio = hits(server, 1)
    assert row["total_segments"] == row["downloaded_segments"] == 4 + len(audio)
    assert json.loads(row["metadata"])["live_gaps"] == []
    assert_plays(Path(row["output_path"]), 4)
    assert refused["status"] == "failed"
    assert 'is a live stream (type="dynamic"); to record it' in refused["error_message"]


def test_the_window_follows_the_servers_clock_from_utc_timing(fast_options):
    from dlstore.dash_tracks import DashWindows

    body = (
        (DATA / "dynamic.mpd")
        .read_text()
        .replace(
            "</MPD>",
            '<UTCTiming schemeIdUri="urn:mpeg:dash:utc:direct:2014" '
            'value="2026-01-01T00:00:41Z"/></MPD>',  # fmt: skip
        )
    )
    manifest = parse_mpd(body.encode(), "https://c.example/l.mpd", live=True)
    options = replace(fast_options, record_live=True)
    windows = DashWindows(None, manifest, options, wall=lambda: AST + 1)  # 40 s slow
    assert windows.offset == pytest.approx(40)
    (video,) = windows.first.tracks
    assert [s.media_sequence for s in video.segments] == list(range(6, 21))  # as at 41 s
    assert windows.first.target == 2 and not windows.first.ended
    local = parse_mpd((DATA / "dynamic.mpd").read_bytes(), "https://c.example/l.mpd", live=True)
    assert DashWindows(None, local, options, wall=lambda: AST + 41).offset == 0
