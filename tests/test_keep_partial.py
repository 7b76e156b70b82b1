"""Lose nothing (#9): no byte that reached us is fetched twice, whatever stops the download.

One missing segment does not waste the others; the segment counts are the media
segments the web UI shows. Every output is decoded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dlstore.engine import DownloadResult, Progress, download
from dlstore.errors import SegmentError, TransientDownloadError
from dlstore.fetch import FetchJob, Missing, missing_error
from dlstore.options import DownloadOptions
from dlstore.progress import ProgressTracker
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.media import StreamFacts, decode_check, encode_source, segment_uris, write_hls


def run(
    server: HlsServer, path: str, tmp_path: Path, options: DownloadOptions, **kwargs
) -> DownloadResult:
    out = tmp_path / "out" / "video.mp4"
    return download(server.url(path), out, work_dir=tmp_path / "work", options=options, **kwargs)


def size_of(server: HlsServer, path: str) -> int:
    assert server.root is not None
    return (server.root / path.lstrip("/")).stat().st_size


@pytest.fixture(scope="module")
def long_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, StreamFacts]:
    """Small-frame streams with many segments: 20 of MPEG-TS, 12 of fMP4."""
    root = tmp_path_factory.mktemp("long-media")
    made = {}
    for name, seconds, kind in (("twenty", 20, "mpegts"), ("fmp4_12", 12, "fmp4")):
        source = encode_source(root / f"{name}.mp4", duration=seconds, width=160, height=90)
        playlist = write_hls(source, root / name, kind=kind)
        uris = segment_uris(playlist.read_text())
        made[name] = StreamFacts(
            path=f"/{name}/index.m3u8", duration=seconds, width=160, height=90, streams=2,
            segments=len(uris), segment_paths=tuple(f"/{name}/{uri}" for uri in uris),
        )  # fmt: skip
    made["root"] = root  # type: ignore[assignment]
    return made


@pytest.fixture
def long_server(long_media, hls_server_factory) -> HlsServer:
    return hls_server_factory(long_media["root"])


def plays_like(result: DownloadResult, facts: StreamFacts) -> None:
    decoded = decode_check(result.output_path)
    assert decoded.errors == ()
    assert decoded.duration == pytest.approx(facts.duration, abs=0.35)
    assert (decoded.width, decoded.height) == (facts.width, facts.height)


# --------------------------------------------------------------------------- pure parts


def job(number: int, total: int = 40, segment: bool = True) -> FetchJob:
    label = f"video segment {number + 1} of {total} (seg-{number:03d}.ts)"
    if not segment:
        label = "video init section 1"
    return FetchJob("video", f"f{number}", f"http://h/{number}", label, "x", is_segment=segment)


def test_missing_error_names_the_first_few_and_is_transient_if_any_is():
    jobs = [job(n) for n in range(40)]
    gone = SegmentError("gone")
    missing = [Missing(jobs[n], gone, "HTTP 404 Not Found") for n in (6, 9, 20, 30)]
    error = missing_error(missing, jobs)
    assert isinstance(error, SegmentError) and not error.transient
    assert str(error) == (
        "4 of 40 segments could not be downloaded: video segment 7 of 40 (seg-006.ts) "
        "(HTTP 404 Not Found), video segment 10 of 40 (seg-009.ts) (HTTP 404 Not Found), "
        "video segment 21 of 40 (seg-020.ts) (HTTP 404 Not Found), and 1 more; the others "
        "are kept, and a retry fetches only these."
    )
    busy = Missing(jobs[7], TransientDownloadError("busy"), "after 5 attempts: HTTP 503")
    mixed = missing_error([missing[0], busy], jobs)
    assert isinstance(mixed, TransientDownloadError) and mixed.transient
    alone = missing_error([missing[0]], [jobs[6]])
    assert str(alone).startswith("1 of 1 segment could not be downloaded: video segment 7")
    assert str(alone).endswith("(HTTP 404 Not Found); a retry fetches only these.")
    init = Missing(job(0, segment=False), gone, "HTTP 404 Not Found")
    assert str(missing_error([init], [init.job, *jobs])).startswith("1 of 41 files could not")


def test_init_sections_are_not_counted_as_segments():
    tracker = ProgressTracker(total=2)
    tracker.already_done(100, counted=False)
    tracker.started("seg", "seg-000.m4s")
    tracker.received("seg", 50)
    assert tracker.snapshot("").bytes_done == 150 and tracker.done == 0
    tracker.finished("seg", 70)
    snap = tracker.snapshot("")
    assert (snap.segments_done, snap.segments_total, snap.bytes_done) == (1, 2, 170)


# --------------------------------------------------------------------------- missing segments


@pytest.mark.slow
def test_one_missing_segment_among_20_wastes_none_of_the_others(
    long_media, long_server, fast_options, tmp_path
):
    facts = long_media["twenty"]
    gone = "/twenty/seg-007.ts"
    long_server.fail_always[gone] = 404
    with pytest.raises(SegmentError) as caught:
        run(long_server, facts.path, tmp_path, fast_options)
    assert str(caught.value) == (
        "1 of 20 segments could not be downloaded: video segment 8 of 20 (seg-007.ts) "
        "(HTTP 404 Not Found); the others are kept, and a retry fetches only these."
    )
    assert not caught.value.transient
    assert all(long_server.hits[p] == 1 for p in facts.segment_paths)  # 19 fetched, 1 asked
    assert len(list((tmp_path / "work").glob("video-*.seg"))) == 19
    del long_server.fail_always[gone]
    long_server.reset_counters()
    result = run(long_server, facts.path, tmp_path, fast_options)
    plays_like(result, facts)
    assert {p: n for p, n in long_server.hits.items() if p.endswith(".ts")} == {gone: 1}


@pytest.mark.slow
def test_a_missing_segment_that_may_come_later_makes_the_error_transient(
    hls_media, hls_server, fast_options, tmp_path
):
    hls_server.fail_always["/plain/seg-001.ts"] = 404
    hls_server.fail_always["/plain/seg-005.ts"] = 503
    with pytest.raises(TransientDownloadError) as caught:
        run(hls_server, "/plain/index.m3u8", tmp_path, fast_options)
    assert str(caught.value) == (
        "2 of 8 segments could not be downloaded: video segment 2 of 8 (seg-001.ts) "
        "(HTTP 404 Not Found), video segment 6 of 8 (seg-005.ts) (after 5 attempts: "
        "HTTP 503 Service Unavailable); the others are kept, and a retry fetches only these."
    )
    assert len(list((tmp_path / "work").glob("video-*.seg"))) == 6


# --------------------------------------------------------------------------- counts


@pytest.mark.slow
def test_an_fmp4_stream_of_12_segments_counts_12(long_media, long_server, fast_options, tmp_path):
    facts = long_media["fmp4_12"]
    assert facts.segments == 12
    seen: list[Progress] = []
    result = run(long_server, facts.path, tmp_path, fast_options, on_progress=seen.append)
    plays_like(result, facts)
    assert result.segments == 12
    assert {p.segments_total for p in seen if p.segments_total} == {12}
    assert seen[-1].segments_done == 12
    files = [*facts.segment_paths, "/fmp4_12/init.mp4"]
    assert long_server.hits["/fmp4_12/init.mp4"] == 1
    assert seen[-1].bytes_done == sum(size_of(long_server, p) for p in files)  # bytes: all
