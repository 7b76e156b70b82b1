"""Live recording (#12): the pure parts, then real recordings of a live stream.

The stream is :class:`dlstore.testing.live.LivePlaylist`: a sliding window over real
one-second segments that the local server advances in real time (or that the test
advances by hand, to make a gap happen for certain). Every output is decoded, and the
server's hit counts show that no segment was fetched twice and none was skipped.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlstore.cli import app
from dlstore.dash import parse_mpd
from dlstore.engine import DownloadResult, download
from dlstore.errors import CancelledError, InvalidInputError, UnsupportedStreamError
from dlstore.live import (
    JOURNAL_NAME,
    Gap,
    Journal,
    LiveFiles,
    LiveWindow,
    clock_text,
    live_start,
    reload_delay,
)
from dlstore.options import (
    MAX_RECORD_SECONDS,
    DownloadOptions,
    check_live,
    check_record_limit,
    check_task_metadata,
    parse_record_limit,
)
from dlstore.playlist import MediaPlan, parse_playlist
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.live import LivePlaylist, Pool, make_pool
from dlstore.testing.media import FPS, decode_check
from dlstore.workfolder import WorkFolder

BASE = "https://cdn.example/live/index.m3u8"
SEGMENT = 1.0  # seconds per pool segment


def live_text(first: int, count: int, *, dseq: int = 0, tags=(), ended: bool = False) -> str:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first}",
             f"#EXT-X-DISCONTINUITY-SEQUENCE:{dseq}"]  # fmt: skip
    for sequence in range(first, first + count):
        if sequence in tags:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += ["#EXTINF:2.0,", f"s{sequence}.ts"]
    return "\n".join(lines + (["#EXT-X-ENDLIST"] if ended else [])) + "\n"


def live_plan(*args, **kwargs) -> MediaPlan:
    plan = parse_playlist(live_text(*args, **kwargs), BASE, live=True)
    assert isinstance(plan, MediaPlan)
    return plan


def take_all(window: LiveWindow, plan: MediaPlan) -> list[tuple[int, bool]]:
    fresh, _ = window.fresh(plan)
    return [(segment.media_sequence, window.take(segment, number)) for segment, number in fresh]


# --------------------------------------------------------------------------- pure parts


def test_a_live_playlist_is_refused_unless_asked_for_and_says_how():
    with pytest.raises(UnsupportedStreamError) as caught:
        parse_playlist(live_text(0, 3), BASE)
    message = str(caught.value)
    assert "is a live stream" in message
    assert 'set "live": "record" in the task\'s metadata (or --live)' in message
    assert '"record_limit" in seconds' in message


def test_a_live_window_parses_with_its_sequence_numbers():
    plan = live_plan(40, 3, dseq=2, tags={41})
    assert not plan.ended and plan.target_duration == 2.0
    assert [s.media_sequence for s in plan.segments] == [40, 41, 42]
    assert plan.discontinuity_sequence == 2
    assert live_plan(40, 3, ended=True).ended
    empty = live_plan(7, 0)  # a stream about to start: an empty window is not an error
    assert empty.segments == () and not empty.ended
    event = "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n"
    with pytest.raises(UnsupportedStreamError, match="live stream"):
        parse_playlist(event, BASE)


def test_each_segment_is_taken_once_in_media_sequence_order():
    window = LiveWindow()
    assert take_all(window, live_plan(10, 3)) == [(10, False), (11, False), (12, False)]
    assert take_all(window, live_plan(10, 3)) == []  # unchanged
    assert take_all(window, live_plan(8, 3)) == []  # stale (an older copy from a cache)
    assert take_all(window, live_plan(11, 3)) == [(13, False)]
    fresh, missing = window.fresh(live_plan(17, 3))  # 14, 15 and 16 left unseen
    assert [s.media_sequence for s, _ in fresh] == [17, 18, 19] and missing == 3


def test_discontinuities_come_from_tags_numbers_and_gaps():
    window = LiveWindow()
    take_all(window, live_plan(0, 3))
    assert take_all(window, live_plan(1, 3, tags={3})) == [(3, True)]  # the tag
    assert take_all(window, live_plan(2, 3, tags={3})) == [(4, False)]
    # 5..7 left with a tag on 6 that left too: the numbers tell (1 before, 2 after)
    assert take_all(window, live_plan(8, 2, dseq=2)) == [(8, True), (9, False)]
    window.lose(live_plan(10, 1).segments[0], 2)  # a segment that could not be fetched
    assert take_all(window, live_plan(10, 2, dseq=2)) == [(11, True)]


def test_a_new_recording_starts_at_most_two_minutes_back():
    assert live_start(list(live_plan(0, 5).segments)) == 0  # 10 s: all of it
    dvr = list(live_plan(0, 3600).segments)  # two hours of 2 s segments
    assert live_start(dvr) == 3600 - 60 and live_start(dvr[-1:]) == 0


def test_reloads_wait_the_target_duration_or_half_of_it():
    assert reload_delay(6.0, changed=True) == 6.0
    assert reload_delay(6.0, changed=False) == 3.0
    assert reload_delay(0.2, changed=False) == 0.5  # never hammering


def test_the_caller_keys_are_checked():
    assert check_live("record") == "record"
    for bad in ("yes", True, 1, "RECORD"):
        with pytest.raises(InvalidInputError, match='live must be "record"'):
            check_live(bad)
    assert check_record_limit(90) == 90 and check_record_limit(1.5) == 1.5
    assert check_record_limit(60.0) == 60 and isinstance(check_record_limit(60.0), int)
    for bad in (0, -5, True, "30m", float("nan"), MAX_RECORD_SECONDS + 1):
        with pytest.raises(InvalidInputError, match="record_limit must be a number of seconds"):
            check_record_limit(bad)
    checked = check_task_metadata({"live": "record", "record_limit": 30, "ui": "kept"})
    assert checked == {"live": "record", "record_limit": 30, "ui": "kept"}
    with pytest.raises(InvalidInputError):
        check_task_metadata({"live": "please"})


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("1.5h", 5400), (" 2M ", 120)]
)
def test_record_limit_flags_take_suffixes(text, seconds):
    assert parse_record_limit(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "30 minutes", "-5s", "1h30m", "25h", "0"])
def test_bad_record_limit_flags_say_what_is_accepted(text):
    with pytest.raises(InvalidInputError, match="record-limit|record_limit"):
        parse_record_limit(text)


def test_live_files_hand_out_paths_as_they_come_until_closed():
    files, seen = LiveFiles(), []
    reader = threading.Thread(target=lambda: seen.extend(files))
    reader.start()
    files.append(Path("a"))
    files.append(Path("b"))
    files.close()
    reader.join(5)
    assert seen == [Path("a"), Path("b")] and not reader.is_alive()
    stopped = LiveFiles()
    stopped.close(CancelledError())
    with pytest.raises(CancelledError):
        list(stopped)


def test_the_journal_drops_a_torn_last_line(tmp_path):
    work = WorkFolder(tmp_path / "w")
    work.claim()
    journal = Journal(work)
    journal.append({"gap": {"after_sequence": 1, "missing": 2, "reason": "window"}})
    with open(work.path(JOURNAL_NAME), "a") as out:
        out.write('{"segment": 0, "seq')  # a crash mid-write
    assert journal.read() == [{"gap": {"after_sequence": 1, "missing": 2, "reason": "window"}}]


def test_words_for_people():
    assert clock_text(750) == "00:12:30" and clock_text(90061) == "25:01:01"
    assert Gap(2, 3, "window").sentence() == (
        "Gap: 3 segments after media sequence 2 left the window before they could be fetched."
    )
    assert Gap(2, 3, "window").as_metadata() == {
        "after_sequence": 2, "missing": 3, "reason": "window"}  # fmt: skip


# --------------------------------------------------------------------------- recordings


@pytest.fixture(scope="session")
def live_pool(tmp_path_factory: pytest.TempPathFactory) -> Pool:
    return make_pool(tmp_path_factory.mktemp("live-pool"))


@pytest.fixture
def server():
    with HlsServer() as server:
        yield server


@pytest.fixture
def options(fast_options: DownloadOptions) -> DownloadOptions:
    return replace(fast_options, record_live=True)


def wait_until(predicate, timeout: float = 30, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def record(live: LivePlaylist, tmp_path: Path, options: DownloadOptions, **kwargs):
    out = kwargs.pop("out", tmp_path / "out.mp4")
    return download(live.url, out, work_dir=tmp_path / "work", options=options, **kwargs)


def in_background(*args, **kwargs) -> Future:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(record, *args, **kwargs)
    pool.shutdown(wait=False)
    return future


def segment_hits(server: HlsServer, live: LivePlaylist) -> dict[int, int]:
    prefix = f"/{live.name}/s"
    return {
        int(path[len(prefix) :].split(".")[0]): count
        for path, count in server.hits.items()
        if path.startswith(prefix)
    }


def fetched(server: HlsServer, live: LivePlaylist, *sequences: int):
    return lambda: all(server.hits[live.segment_path(n)] for n in sequences)


def timeline(live: LivePlaylist, sequences) -> float:
    """The seconds a recording of ``sequences`` plays: a gap keeps its place in the timeline
    (the remux keeps a forward jump under 10 s); where the pool starts over, the timestamps
    restart and the remux joins the two up."""
    count = len(live.pool.segments)
    cycles: dict[int, list[int]] = {}
    for n in sequences:
        cycles.setdefault(n // count, []).append(n % count)
    return sum(SEGMENT * (max(p) - min(p) + 1) for p in cycles.values())


def assert_plays(result: DownloadResult, seconds: float, content: float | None = None) -> None:
    """The output decodes, plays ``seconds`` and holds ``content`` seconds of media (the
    segments recorded: less than ``seconds`` when a gap left a hole)."""
    content = seconds if content is None else content
    decoded = decode_check(result.output_path)
    assert decoded.errors == () and decoded.streams == 2 and decoded.width == 96
    assert decoded.duration == pytest.approx(seconds, abs=SEGMENT)
    assert decoded.audio_seconds == pytest.approx(content, abs=SEGMENT)
    assert decoded.video_frames == pytest.approx(FPS * content, abs=FPS * SEGMENT)


def test_a_recording_takes_every_segment_once_until_endlist(live_pool, server, options, tmp_path):
    with LivePlaylist(server, live_pool, window=3) as live:
        live.start(advances=5)  # 0..2, then 3..7 one a second; the pool restarts at 6
        progress = []
        result = record(live, tmp_path, options, on_progress=progress.append)
    assert live.ended and sorted(live.offered) == list(range(8))
    assert segment_hits(server, live) == {n: 1 for n in range(8)}
    assert result.live_gaps == [] and result.segments == 8
    assert_plays(result, live.duration_of(live.offered))
    assert 5 <= server.hits[live.path] <= 15  # a reload about every second, not a flood
    recording = [p for p in progress if p.message.startswith("Recording live: ")]
    assert recording and all(p.segments_total == 0 and p.percent == 0 for p in recording)
    assert recording[-1].message == "Recording live: 00:00:08 recorded"
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("fmt", ["mp4", "ts"])
def test_a_recording_stops_at_its_limit(fmt, live_pool, server, options, tmp_path):
    with LivePlaylist(server, live_pool, window=3) as live:
        live.start()  # never ends
        progress = []
        result = record(live, tmp_path, replace(options, record_limit=4, output_format=fmt),
                        out=tmp_path / f"out.{fmt}", on_progress=progress.append)  # fmt: skip
    assert segment_hits(server, live) == {0: 1, 1: 1, 2: 1, 3: 1}
    assert result.live_gaps == [] and result.output_path.suffix == f".{fmt}"
    assert_plays(result, 4)
    recording = [p for p in progress if p.message.startswith("Recording live: ")]
    shares = [p.percent for p in recording]
    assert shares == sorted(shares) and shares[-1] == 100  # recorded time against the limit
    assert recording[-1].message == "Recording live: 00:00:04 of 00:00:04 recorded"
    assert recording[-1].eta_seconds == 0 and recording[-1].segments_total == 0


def test_segments_that_left_the_window_are_a_gap(live_pool, server, options, tmp_path):
    live = LivePlaylist(server, live_pool, window=3)  # advanced by hand
    future = in_background(live, tmp_path, options)
    wait_until(fetched(server, live, 0, 1, 2), what="the first window")
    live.advance(6)  # window 6..8: 3, 4 and 5 are gone before any reload saw them
    wait_until(fetched(server, live, 8), what="segment 8")
    live.end()
    result = future.result(timeout=30)
    assert result.live_gaps == [{"after_sequence": 2, "missing": 3, "reason": "window"}]
    assert segment_hits(server, live) == {n: 1 for n in (0, 1, 2, 6, 7, 8)}
    assert_plays(result, timeline(live, (0, 1, 2, 6, 7, 8)))


def test_a_reload_failing_past_its_retries_is_a_gap(live_pool, server, options, tmp_path):
    live = LivePlaylist(server, live_pool, window=3)
    future = in_background(live, tmp_path, options)
    wait_until(fetched(server, live, 0, 1, 2), what="the first window")
    loads = server.hits[live.path]
    server.fail_always[live.path] = 503
    live.advance(5)  # window 5..7 while the playlist fails
    attempts = options.max_retries + 1
    wait_until(lambda: server.hits[live.path] >= loads + attempts, what="a failed reload")
    del server.fail_always[live.path]
    wait_until(fetched(server, live, 7), what="segment 7")
    live.end()
    result = future.result(timeout=30)
    assert result.live_gaps == [{"after_sequence": 2, "missing": 2, "reason": "reload_failed"}]
    assert segment_hits(server, live) == {n: 1 for n in (0, 1, 2, 5, 6, 7)}
    assert_plays(result, timeline(live, (0, 1, 2, 5, 6, 7)), 6)  # 0-2, a 2 s hole, 5; 6-7


def test_a_segment_that_cannot_be_fetched_is_a_gap(live_pool, server, options, tmp_path):
    server.fail_always["/live/s4.ts"] = 404
    with LivePlaylist(server, live_pool, window=3) as live:
        live.start(advances=3)
        result = record(live, tmp_path, options)
    assert result.live_gaps == [{"after_sequence": 3, "missing": 1, "reason": "segment_failed"}]
    hits = segment_hits(server, live)
    assert {n: c for n, c in hits.items() if n != 4} == {n: 1 for n in (0, 1, 2, 3, 5)}
    assert_plays(result, timeline(live, (0, 1, 2, 3, 5)), 5)


def test_a_resumed_recording_continues_at_the_live_edge_and_records_the_gap(
    live_pool, server, options, tmp_path
):
    live = LivePlaylist(server, live_pool, window=3)
    cancel = threading.Event()
    first = in_background(live, tmp_path, options, cancel=cancel)
    journal = tmp_path / "work" / JOURNAL_NAME
    wait_until(lambda: journal.exists() and journal.read_text().count('"segment"') == 3,
               what="three recorded segments")  # fmt: skip
    cancel.set()
    with pytest.raises(CancelledError):
        first.result(timeout=30)
    assert (tmp_path / "work" / "video-000002.seg").is_file()  # kept for the resume
    live.advance(4)  # window 4..6: 3 went by while stopped
    progress = []
    second = in_background(live, tmp_path, options, on_progress=progress.append)
    wait_until(fetched(server, live, 6), what="segment 6")
    live.advance()
    wait_until(fetched(server, live, 7), what="segment 7")
    live.end()
    result = second.result(timeout=30)
    assert result.live_gaps == [{"after_sequence": 2, "missing": 1, "reason": "resumed"}]
    assert segment_hits(server, live) == {n: 1 for n in (0, 1, 2, 4, 5, 6, 7)}
    assert result.segments == 7
    assert_plays(result, timeline(live, (0, 1, 2, 4, 5, 6, 7)), 7)
    resumed = next(p for p in progress if p.message.startswith("Recording live"))
    assert resumed.message == "Recording live: 00:00:03 recorded" and resumed.segments_done == 3


def test_fmp4_live_streams_are_recorded_with_their_init_section(server, options, tmp_path):
    pool = make_pool(tmp_path / "pool", kind="fmp4")
    with LivePlaylist(server, pool, window=3) as live:
        live.start(advances=2)
        result = record(live, tmp_path, options)
    assert segment_hits(server, live) == {n: 1 for n in range(5)}
    assert server.hits["/live/init.mp4"] == 1
    assert result.live_gaps == []
    assert_plays(result, 5)


def test_without_live_a_live_stream_is_refused_before_any_segment(
    live_pool, server, fast_options, tmp_path
):
    live = LivePlaylist(server, live_pool, window=3)
    with pytest.raises(UnsupportedStreamError, match='set "live": "record"'):
        record(live, tmp_path, fast_options)
    assert segment_hits(server, live) == {}


def test_live_dash_is_refused_as_hls_is_unless_recording_is_asked_for():
    body = (Path(__file__).parent / "data" / "mpd" / "dynamic.mpd").read_bytes()
    with pytest.raises(UnsupportedStreamError) as caught:
        parse_mpd(body, "https://cdn.example/live.mpd")
    assert str(caught.value) == (
        'The DASH manifest at https://cdn.example/live.mpd is a live stream (type="dynamic"); '
        'to record it, set "live": "record" in the task\'s metadata (or --live), optionally '
        'with "record_limit" in seconds.'
    )
    manifest = parse_mpd(body, "https://cdn.example/live.mpd", live=True)
    assert manifest.live is not None and manifest.live.update_period == 2.0
    assert manifest.live.depth == 30.0 and manifest.live.availability_start == 1767225600.0


# --------------------------------------------------------------------------- the CLI

runner = CliRunner()


def test_the_cli_records_with_a_limit(live_pool, server, tmp_path):
    with LivePlaylist(server, live_pool, window=3) as live:
        live.start()
        out = tmp_path / "rec.mp4"
        result = runner.invoke(app, ["download", live.url, "-o", str(out), "-q", "--live",
                                     "--record-limit", "3s"])  # fmt: skip
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "recorded live with 0 gaps" in result.stdout
    assert decode_check(out).duration == pytest.approx(3, abs=SEGMENT)


def test_the_cli_refuses_a_live_stream_without_live_and_a_limit_without_live(
    live_pool, server, tmp_path
):
    live = LivePlaylist(server, live_pool, window=3)
    out = str(tmp_path / "rec.mp4")
    refused = runner.invoke(app, ["download", live.url, "-o", out, "-q"])
    assert refused.exit_code == 1 and "(or --live)" in refused.stderr
    alone = runner.invoke(app, ["download", live.url, "-o", out, "--record-limit", "3s"])
    assert alone.exit_code == 1 and "add --live" in alone.stderr
    bad = runner.invoke(app, ["download", live.url, "-o", out, "--live", "--record-limit", "3x"])
    assert bad.exit_code == 1 and "such as 90, 90s, 30m or 1.5h" in bad.stderr


def test_ctrl_c_ends_a_cli_recording_and_keeps_it(live_pool, server, tmp_path):
    with LivePlaylist(server, live_pool, window=3) as live:
        live.start()  # never ends
        timer = threading.Thread(target=_interrupt_after, args=(server, live, 4))
        timer.start()
        out = tmp_path / "rec.mp4"
        result = runner.invoke(app, ["download", live.url, "-o", str(out), "-q", "--live"])
        timer.join()
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "Stopping the recording" in result.stderr
    recorded = sorted(segment_hits(server, live))
    assert recorded == list(range(len(recorded))) and len(recorded) >= 5
    assert decode_check(out).duration == pytest.approx(len(recorded), abs=SEGMENT)


def _interrupt_after(server: HlsServer, live: LivePlaylist, sequence: int) -> None:
    wait_until(fetched(server, live, sequence), what=f"segment {sequence}")
    os.kill(os.getpid(), signal.SIGINT)


def test_add_queues_a_recording(tmp_path, sqlite_url):
    assert runner.invoke(app, ["db", "upgrade", "--db", sqlite_url]).exit_code == 0
    added = runner.invoke(app, ["add", "https://e/live.m3u8", "--name", "Match", "--live",
                                "--record-limit", "30m", "--db", sqlite_url])  # fmt: skip
    assert added.exit_code == 0, added.stderr
    shown = runner.invoke(app, ["status", added.stdout.strip(), "--json", "--db", sqlite_url])
    metadata = json.loads(shown.stdout)["metadata"]
    assert metadata == {"live": "record", "record_limit": 1800}
