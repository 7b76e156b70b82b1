"""End to end: real HLS from a local server → engine.download → a file that decodes cleanly."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from dlstore.engine import DownloadResult, Progress, download, make_poster
from dlstore.errors import (
    CancelledError,
    DownloadError,
    PlaylistError,
    QualityNotFoundError,
    SegmentError,
    TransientDownloadError,
    UnsupportedStreamError,
)
from dlstore.options import DownloadOptions
from dlstore.testing.hls_server import Body, Faults, HlsServer
from dlstore.testing.media import decode_check

from .support.checks import assert_plays

pytestmark = pytest.mark.slow


def run(
    server: HlsServer,
    path: str,
    tmp_path: Path,
    options: DownloadOptions,
    name: str = "video",
    **kwargs,
) -> DownloadResult:
    out = tmp_path / "out" / f"{name}.{options.output_format}"
    return download(
        server.url(path), out, work_dir=tmp_path / f"work-{name}", options=options, **kwargs
    )


def assert_faststart(path: Path) -> None:
    head = path.read_bytes()
    assert head[4:8] == b"ftyp"
    assert 0 < head.index(b"moov") < head.index(b"mdat")


@pytest.mark.parametrize(
    "stream", ["plain", "fmp4", "aes_iv", "aes_seq", "aes_fmp4", "byterange", "discontinuity"]
)
def test_streams_download_to_a_playable_mp4(stream, hls_media, hls_server, fast_options, tmp_path):
    facts = hls_media[stream]
    seen: list[Progress] = []
    result = run(hls_server, facts.path, tmp_path, fast_options, on_progress=seen.append)
    assert_plays(result, facts)
    assert_faststart(result.output_path)
    assert result.output_path == tmp_path / "out" / "video.mp4"
    assert result.variant is None
    assert not (tmp_path / "work-video").exists()  # removed on success
    assert [p.name for p in result.output_path.parent.iterdir()] == ["video.mp4"]  # no temp left
    # each segment file fetched once (byte ranges: once per range)
    for path in facts.segment_paths:
        expected = facts.segments if stream == "byterange" else 1
        assert hls_server.hits[path] == expected, path
    last = seen[-1]
    assert last.segments_done == last.segments_total == result.segments
    assert last.bytes_done > 0 and last.eta_seconds == 0 and last.message.startswith("Done")
    dones = [p.segments_done for p in seen]
    assert dones == sorted(dones)


def test_aes_key_is_fetched_once(hls_server, fast_options, tmp_path):
    run(hls_server, "/aes_seq/index.m3u8", tmp_path, fast_options)
    assert hls_server.hits["/aes_seq/key.bin"] == 1


def test_wrong_aes_key_is_reported(hls_server, fast_options, tmp_path):
    hls_server.bodies["/aes_iv/key.bin"] = Body(b"\x01" * 16)
    with pytest.raises(SegmentError, match="key is probably wrong"):
        run(hls_server, "/aes_iv/index.m3u8", tmp_path, fast_options)


def test_key_that_is_an_html_page(hls_server, fast_options, tmp_path):
    hls_server.bodies["/aes_iv/key.bin"] = Body(b"<html><body>login</body></html>", "text/html")
    with pytest.raises(DownloadError, match="not 16.*HTML page"):
        run(hls_server, "/aes_iv/index.m3u8", tmp_path, fast_options)


@pytest.mark.parametrize(("quality", "height"), [("180p", 180), ("best", 270), ("1080p", 270),
                                                 ("worst", 144), ("200p", 180)])  # fmt: skip
def test_master_playlist_picks_a_variant_and_muxes_the_audio_rendition(
    quality, height, hls_media, hls_server, fast_options, tmp_path
):
    facts = hls_media[f"master_{height}p"]
    options = dataclasses.replace(fast_options, quality=quality)
    result = run(hls_server, facts.path, tmp_path, options)
    assert_plays(result, facts)
    assert result.variant is not None
    assert result.variant["resolution"] == f"{facts.width}x{facts.height}"
    assert result.variant["audio"]["name"] == "English"
    assert result.segments == facts.segments
    fetched = {p for p, n in hls_server.hits.items() if p.endswith(".ts")}
    assert fetched == set(facts.segment_paths)  # nothing of the other variants


def test_missing_quality_lists_the_offered_ones(hls_server, fast_options, tmp_path):
    options = dataclasses.replace(fast_options, quality="120p")
    with pytest.raises(QualityNotFoundError, match="270p, 180p, 144p"):
        run(hls_server, "/master/master.m3u8", tmp_path, options)


@pytest.mark.parametrize("stream", ["plain", "master_180p", "fmp4"])
def test_ts_output(stream, hls_media, hls_server, fast_options, tmp_path):
    facts = hls_media[stream]
    options = dataclasses.replace(fast_options, output_format="ts", quality="180p")
    result = run(hls_server, facts.path, tmp_path, options)
    assert result.output_path.suffix == ".ts"
    assert result.output_path.read_bytes()[0] == 0x47
    assert_plays(result, facts)


def test_redirected_playlist_resolves_segments_against_the_final_url(
    hls_media, hls_server, fast_options, tmp_path
):
    hls_server.redirects["/elsewhere/stream.m3u8"] = "/plain/index.m3u8"
    result = run(hls_server, "/elsewhere/stream.m3u8", tmp_path, fast_options)
    assert_plays(result, hls_media["plain"])
    assert hls_server.hits["/elsewhere/seg-000.ts"] == 0


def test_required_header(hls_media, hls_server, fast_options, tmp_path):
    hls_server.required_headers = {"Referer": "https://site.example/watch"}
    with pytest.raises(DownloadError, match="Referer") as info:
        run(hls_server, "/aes_seq/index.m3u8", tmp_path, fast_options, name="a")
    assert not isinstance(info.value, TransientDownloadError)
    assert hls_server.hits["/aes_seq/index.m3u8"] == 1  # not retried
    hls_server.reset_counters()
    options = dataclasses.replace(
        fast_options, headers={"Referer": "https://site.example/watch", "Cookie": "sid=1"}
    )
    result = run(hls_server, "/aes_seq/index.m3u8", tmp_path, options, name="b")
    assert_plays(result, hls_media["aes_seq"])
    assert hls_server.request_headers  # playlist, key and segments all carried both
    for headers in hls_server.request_headers:
        assert headers["Referer"] == "https://site.example/watch"
        assert headers["Cookie"] == "sid=1"


def test_cookie_survives_a_redirect(hls_media, hls_server, fast_options, tmp_path):
    hls_server.required_headers = {"Cookie": "sid=1"}
    hls_server.redirects["/r.m3u8"] = "/plain/index.m3u8"
    options = dataclasses.replace(fast_options, headers={"Cookie": "sid=1"})
    assert_plays(run(hls_server, "/r.m3u8", tmp_path, options), hls_media["plain"])


@pytest.mark.parametrize("stream", ["plain", "aes_seq", "master_180p", "byterange"])
def test_faults_on_a_fifth_of_requests_still_give_a_correct_file(
    stream, hls_media, hls_server, fast_options, tmp_path
):
    facts = hls_media[stream]
    hls_server.faults = Faults(rate=0.2, seed=7)
    options = dataclasses.replace(fast_options, quality="180p", max_retries=8)
    result = run(hls_server, facts.path, tmp_path, options)
    assert_plays(result, facts)
    assert sum(hls_server.faults.injected.values()) > 0


def test_all_fault_kinds_are_survived(hls_media, hls_server, fast_options, tmp_path):
    for number, kind in enumerate(["503", "reset", "truncate", "429"]):
        hls_server.fail_times(f"/plain/seg-00{number}.ts", 2, kind)
    result = run(hls_server, "/plain/index.m3u8", tmp_path, fast_options)
    assert_plays(result, hls_media["plain"])
    for number in range(4):
        assert hls_server.hits[f"/plain/seg-00{number}.ts"] == 3


def test_permanently_missing_segment_fails_clearly_and_leaves_no_file(
    hls_server, fast_options, tmp_path
):
    hls_server.fail_always["/plain/seg-003.ts"] = 404
    with pytest.raises(SegmentError, match=r"segment 4 of 8 \(seg-003.ts\).*HTTP 404"):
        run(hls_server, "/plain/index.m3u8", tmp_path, fast_options)
    assert hls_server.hits["/plain/seg-003.ts"] == 1  # 404 is not retried
    assert not (tmp_path / "out" / "video.mp4").exists()
    assert (tmp_path / "work-video").is_dir()  # kept for a later resume
    assert not list((tmp_path / "work-video").glob("*.part"))
    assert not list((tmp_path / "out").glob("*.part"))
    assert not [t for t in threading.enumerate() if t.name == "dlstore-remux"]


def test_single_ts_track_is_remuxed_while_it_downloads(
    hls_media, hls_server, fast_options, tmp_path
):
    hls_server.latency = 0.05
    options = dataclasses.replace(fast_options, threads=1)
    remuxing = []

    def on_progress(progress: Progress) -> None:
        if progress.message.startswith("Downloading"):
            remuxing.append(any(t.name == "dlstore-remux" for t in threading.enumerate()))

    result = run(hls_server, "/plain/index.m3u8", tmp_path, options, on_progress=on_progress)
    assert_plays(result, hls_media["plain"])
    assert remuxing and all(remuxing)


def test_segment_that_keeps_failing_is_a_transient_error_naming_it(
    hls_server, fast_options, tmp_path
):
    hls_server.fail_always["/plain/seg-005.ts"] = 503
    with pytest.raises(TransientDownloadError, match=r"seg-005.ts.*after 5 attempts.*HTTP 503"):
        run(hls_server, "/plain/index.m3u8", tmp_path, fast_options)
    assert hls_server.hits["/plain/seg-005.ts"] == 5


def test_corrupt_segment_is_refetched_then_reported(hls_media, hls_server, fast_options, tmp_path):
    good = (hls_media.root / "plain" / "seg-002.ts").read_bytes()
    hls_server.bodies["/plain/seg-002.ts"] = Body(b"\x00" * 188 + good[188:], "video/mp2t")
    with pytest.raises(SegmentError, match="seg-002.ts.*corrupt.*MPEG-TS"):
        run(hls_server, "/plain/index.m3u8", tmp_path, fast_options)
    assert hls_server.hits["/plain/seg-002.ts"] == 5


def test_failed_download_resumes_without_refetching(hls_media, hls_server, fast_options, tmp_path):
    hls_server.fail_always["/plain/seg-006.ts"] = 404
    options = dataclasses.replace(fast_options, threads=1)
    with pytest.raises(SegmentError):
        run(hls_server, "/plain/index.m3u8", tmp_path, options)
    finished = sorted(p.name for p in (tmp_path / "work-video").glob("video-*.seg"))
    # one thread, in order: everything before the missing segment was finished
    assert finished[:6] == [f"video-{n:06d}.seg" for n in range(6)]
    del hls_server.fail_always["/plain/seg-006.ts"]
    result = run(hls_server, "/plain/index.m3u8", tmp_path, options)
    assert_plays(result, hls_media["plain"])
    assert hls_server.hits["/plain/seg-006.ts"] == 2
    for name in finished:
        path = f"/plain/seg-{int(name[6:12]):03d}.ts"
        assert hls_server.hits[path] == 1, path  # finished before: not fetched again


def test_cancel_stops_quickly_and_a_rerun_resumes(hls_media, hls_server, fast_options, tmp_path):
    facts = hls_media["plain"]
    hls_server.latency = 0.25
    options = dataclasses.replace(fast_options, threads=2)
    cancel = threading.Event()

    def on_progress(progress: Progress) -> None:
        if progress.segments_done >= 1:
            cancel.set()

    with pytest.raises(CancelledError):
        run(hls_server, facts.path, tmp_path, options, on_progress=on_progress, cancel=cancel)
    for thread in threading.enumerate():
        if thread.name.startswith(("dlstore-fetch", "dlstore-remux")):
            thread.join(timeout=5)
            assert not thread.is_alive()
    work = tmp_path / "work-video"
    assert not list((tmp_path / "out").glob("*.part"))  # the remux's temp file is gone
    finished = sorted(work.glob("video-*.seg"))
    assert 1 <= len(finished) < facts.segments
    assert not (tmp_path / "out" / "video.mp4").exists()
    finished_paths = {f"/plain/seg-{int(p.stem.split('-')[1]):03d}.ts" for p in finished}

    hls_server.latency = 0.0
    result = run(hls_server, facts.path, tmp_path, options)
    assert_plays(result, facts)
    for path in facts.segment_paths:
        if path in finished_paths:
            assert hls_server.hits[path] == 1, path  # not fetched again
        else:
            assert hls_server.hits[path] >= 1, path


def test_a_different_download_in_the_same_work_folder_starts_over(
    hls_media, hls_server, fast_options, tmp_path
):
    hls_server.fail_always["/aes_seq/seg-007.ts"] = 404
    with pytest.raises(SegmentError):
        run(hls_server, "/aes_seq/index.m3u8", tmp_path, fast_options)
    assert list((tmp_path / "work-video").glob("video-*.seg"))
    # same work folder, another stream: the aes_seq files must not be reused
    result = run(hls_server, "/plain/index.m3u8", tmp_path, fast_options)
    assert_plays(result, hls_media["plain"])
    assert all(hls_server.hits[p] == 1 for p in hls_media["plain"].segment_paths)


def test_existing_output_is_not_overwritten_silently(hls_media, hls_server, fast_options, tmp_path):
    out = tmp_path / "out" / "video.mp4"
    out.parent.mkdir()
    out.write_bytes(b"precious")
    with pytest.raises(DownloadError, match="already exists"):
        run(hls_server, "/plain/index.m3u8", tmp_path, fast_options)
    assert out.read_bytes() == b"precious"
    assert hls_server.hits["/plain/index.m3u8"] == 0  # refused before any download
    result = run(hls_server, "/plain/index.m3u8", tmp_path, fast_options, overwrite=True)
    assert_plays(result, hls_media["plain"])


def test_segment_limit_from_options(hls_server, fast_options, tmp_path):
    options = dataclasses.replace(fast_options, max_segments=5)
    with pytest.raises(PlaylistError, match="8 segments, more than the limit of 5"):
        run(hls_server, "/plain/index.m3u8", tmp_path, options)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("body", "ctype", "error", "match"),
    [
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html", PlaylistError,
         "HTML page"),
        (b'{"message": "expired token"}', "application/json", PlaylistError, "JSON document"),
        (b"", "application/vnd.apple.mpegurl", PlaylistError, "empty body"),
        (b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-ENDLIST\n", "application/x-mpegurl",
         PlaylistError, "no segments"),
        (b"#EXTM3U\n#EXTINF:four,\na.ts\n#EXT-X-ENDLIST\n", "application/x-mpegurl",
         PlaylistError, "malformed"),
        (b"#EXTM3U\n#EXTINF:4,\nlive1.ts\n", "application/x-mpegurl", UnsupportedStreamError,
         "live stream"),
    ],
)  # fmt: skip
def test_bad_playlists(body, ctype, error, match, hls_server, fast_options, tmp_path):
    hls_server.bodies["/bad.m3u8"] = Body(body, ctype)
    with pytest.raises(error, match=match):
        run(hls_server, "/bad.m3u8", tmp_path, fast_options)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_404_playlist(hls_server, fast_options, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        run(hls_server, "/nope/index.m3u8", tmp_path, fast_options)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.m3u8", "x.m3u8"])
def test_non_http_urls_are_refused(url, fast_options, tmp_path):
    with pytest.raises(UnsupportedStreamError, match="Only http:// and https://"):
        download(url, tmp_path / "o.mp4", work_dir=tmp_path / "w", options=fast_options)
    assert not (tmp_path / "w").exists()


def test_unknown_output_format(hls_server, fast_options, tmp_path):
    options = dataclasses.replace(fast_options, output_format="avi")
    with pytest.raises(DownloadError, match="Unknown output format"):
        run(hls_server, "/plain/index.m3u8", tmp_path, options)


def test_poster_frame(hls_server, fast_options, tmp_path):
    result = run(hls_server, "/plain/index.m3u8", tmp_path, fast_options)
    poster = make_poster(result.output_path, tmp_path / "poster.jpg")
    assert poster.read_bytes()[:2] == b"\xff\xd8"
    decoded = decode_check(poster)
    assert (decoded.width, decoded.height) == (320, 180)
    assert decoded.errors == ()
    metadata = result.as_metadata()
    assert metadata["media"]["resolution"] == "320x180"
    assert metadata["media"]["duration"] == pytest.approx(8.0, abs=0.35)
