"""Lose nothing (#9): no byte that reached us is fetched twice, whatever stops the download.

The segment counts are the media segments the web UI shows. Every output is decoded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dlstore.engine import DownloadResult, Progress, download
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


# --------------------------------------------------------------------------- counts


def test_init_sections_are_not_counted_as_segments():
    tracker = ProgressTracker(total=2)
    tracker.already_done(100, counted=False)
    tracker.started("seg", "seg-000.m4s")
    tracker.received("seg", 50)
    assert tracker.snapshot("").bytes_done == 150 and tracker.done == 0
    tracker.finished("seg", 70)
    snap = tracker.snapshot("")
    assert (snap.segments_done, snap.segments_total, snap.bytes_done) == (1, 2, 170)


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
