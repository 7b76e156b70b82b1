"""Lose nothing (#9): no byte that reached us is fetched twice, whatever stops the download.

The server's own byte counters (``HlsServer.sent``, per path) decide what was fetched
twice, not dlstore's account. Interrupted segments keep their bytes in the work
folder and continue with ``Range``; one missing segment does not waste the others;
the segment counts are the media segments the web UI shows. Every output is decoded.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from requests.structures import CaseInsensitiveDict

from dlstore.engine import DownloadResult, Progress, download
from dlstore.errors import (
    CancelledError,
    PartialBusyError,
    SegmentError,
    TransientDownloadError,
)
from dlstore.fetch import FetchJob, Missing, missing_error
from dlstore.options import DownloadOptions
from dlstore.playlist import ByteRange, parse_playlist
from dlstore.progress import ProgressTracker
from dlstore.segment_checks import Source
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.media import StreamFacts, decode_check, encode_source, segment_uris, write_hls
from dlstore.workfolder import PartialFile, WorkFolder

from .support.checks import assert_plays

CUT = 30_000  # where a dropped body stops


def run(
    server: HlsServer, path: str, tmp_path: Path, options: DownloadOptions, **kwargs
) -> DownloadResult:
    out = tmp_path / "out" / "video.mp4"
    return download(server.url(path), out, work_dir=tmp_path / "work", options=options, **kwargs)


def size_of(server: HlsServer, path: str) -> int:
    assert server.root is not None
    return (server.root / path.lstrip("/")).stat().st_size


def ranges_asked(server: HlsServer, path: str, since: int = 0) -> list[str | None]:
    """The Range header of each request for ``path`` (None: the whole file)."""
    return [headers.get("Range") for p, headers in server.requests[since:] if p == path]


def served_twice(server: HlsServer, paths: tuple[str, ...]) -> int:
    """Body bytes the server sent beyond one copy of each file."""
    return sum(server.sent[path] - size_of(server, path) for path in set(paths))


def kept_partials(work: Path) -> dict[int, int]:
    """Segment index → bytes kept, for each partial file of the video track."""
    return {
        int(p.name.split("-")[1].split(".")[0]): p.stat().st_size
        for p in work.glob("video-*.seg.partial")
    }


def join_fetch_threads() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith(("dlstore-fetch", "dlstore-remux")):
            thread.join(timeout=5)
            assert not thread.is_alive()


def wait_until(condition, seconds: float = 20.0) -> None:
    ends = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < ends, "timed out"
        time.sleep(0.02)


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


def headers(**values: str) -> CaseInsensitiveDict:
    return CaseInsensitiveDict({name.replace("_", "-"): value for name, value in values.items()})


def test_a_source_continues_only_a_matching_206():
    whole = Source.of("http://h/s.ts", None, 200, headers(ETag='"a"', Content_Length="1000"))
    assert whole.resumable and whole.length == 1000 and whole.holds(1000)
    assert whole.rest_request(400) == {"Range": "bytes=400-", "If-Range": '"a"'}
    good = headers(ETag='"a"', Content_Range="bytes 400-999/1000", Content_Length="600")
    assert whole.continuation(400, 206, good) == ByteRange(length=600, offset=400)
    assert whole.continuation(400, 200, good) is None  # the whole file: start over
    assert whole.continuation(300, 206, good) is None  # not where the kept bytes end
    changed = headers(ETag='"b"', Content_Range="bytes 400-999/1000")
    longer = headers(ETag='"a"', Content_Range="bytes 400-1999/2000")
    unproven = headers(Content_Range="bytes 400-999/1000")
    for answer in (changed, longer, unproven):
        assert whole.continuation(400, 206, answer) is None


def test_a_byte_range_source_asks_for_the_rest_of_its_range():
    span = ByteRange(length=500, offset=2000)
    source = Source.of("http://h/all.ts", span, 206,
                       headers(Last_Modified="Mon, 01 Jan 2024 00:00:00 GMT",
                               Content_Range="bytes 2000-2499/9000"))  # fmt: skip
    assert source.total == 9000 and source.length == 500 and source.etag is None
    assert source.rest_request(120)["Range"] == "bytes=2120-2499"
    answer = headers(Last_Modified="Mon, 01 Jan 2024 00:00:00 GMT",
                     Content_Range="bytes 2120-2499/9000")  # fmt: skip
    assert source.continuation(120, 206, answer) == ByteRange(length=380, offset=2120)
    assert Source.from_record(source.as_record()) == source


@pytest.mark.parametrize(
    "answer",
    [
        headers(),  # no validator: nothing proves a later answer is the same file
        headers(ETag='W/"weak"'),  # weak ETags may not be used for ranges
        headers(ETag='"a"', Content_Encoding="gzip"),  # ranges of the encoded bytes
        headers(ETag='"a"', Accept_Ranges="none"),
        headers(ETag='"' + "x" * 300 + '"'),  # too long to keep
    ],
)
def test_sources_that_cannot_be_continued(answer):
    assert not Source.of("http://h/s.ts", None, 200, answer).resumable


@pytest.mark.parametrize(
    "record",
    [None, [], {"uri": 1}, {"uri": "u", "range": [1]}, {"uri": "u", "range": [-1, 2]},
     {"uri": "u", "total": "9"}, {"uri": "u", "etag": 5}, {"uri": "u", "total": True}],
)  # fmt: skip
def test_a_broken_record_is_no_source(record):
    assert Source.from_record(record) is None


@pytest.mark.parametrize("xattrs", [True, False])
def test_a_partial_file_appends_places_and_discards(xattrs, tmp_path, monkeypatch):
    if not xattrs:  # a filesystem without extended attributes: the record goes in a sidecar

        def unsupported(*args, **kwargs):
            raise OSError(errno.ENOTSUP, "Operation not supported")

        monkeypatch.setattr(os, "setxattr", unsupported)
    work = WorkFolder(tmp_path / "w")
    work.claim()
    partial = PartialFile(work, "video-000001.seg")
    assert partial.open() is None and partial.size == 0
    partial.start({"uri": "u"})
    partial.write(b"abc")
    with pytest.raises(PartialBusyError, match="Another dlstore process is fetching"):
        PartialFile(work, "video-000001.seg").open()  # locked while an attempt holds it
    partial.close()
    assert partial.record_path.exists() is not xattrs
    again = PartialFile(work, "video-000001.seg")
    assert again.open() == {"uri": "u"} and again.size == 3
    again.write(b"def")
    again.place(work.path("video-000001.seg"))
    assert work.path("video-000001.seg").read_bytes() == b"abcdef"
    assert sorted(p.name for p in work.root.iterdir()) == [".dlstore-work", "video-000001.seg"]
    other = PartialFile(work, "video-000002.seg")
    other.open()
    other.start({"uri": "v"})
    other.write(b"x")
    other.start(None)  # started over without a validator: the old record must not stay
    other.write(b"y")
    other.close()
    other = PartialFile(work, "video-000002.seg")
    assert other.open() is None and other.size == 1
    other.discard()
    assert not other.path.exists() and not other.record_path.exists()


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
    tracker.started("seg", "seg-000.m4s", kept=50)
    assert tracker.snapshot("").bytes_done == 150 and tracker.done == 0
    tracker.finished("seg", 70)
    snap = tracker.snapshot("")
    assert (snap.segments_done, snap.segments_total, snap.bytes_done) == (1, 2, 170)


# --------------------------------------------------------------------------- interrupted


@pytest.mark.slow
def test_cancel_mid_segment_then_a_rerun_asks_only_for_the_rest(
    hls_media, hls_server, fast_options, tmp_path
):
    facts = hls_media["plain"]
    hls_server.rate_limit_bps = 100_000  # per connection: ~0.9 s a segment
    options = dataclasses.replace(fast_options, threads=3, chunk_size=16 * 1024)
    cancel = threading.Event()

    def on_progress(progress: Progress) -> None:
        if progress.bytes_done >= 120_000:  # the first three segments about half there
            cancel.set()

    with pytest.raises(CancelledError):
        run(hls_server, facts.path, tmp_path, options, on_progress=on_progress, cancel=cancel)
    join_fetch_threads()
    kept = kept_partials(tmp_path / "work")
    assert kept and all(size > 0 for size in kept.values()), kept
    mark = len(hls_server.requests)
    hls_server.rate_limit_bps = None
    result = run(hls_server, facts.path, tmp_path, options)
    assert_plays(result, facts)
    for index, size in kept.items():
        assert ranges_asked(hls_server, f"/plain/seg-{index:03d}.ts", mark) == [f"bytes={size}-"]
    twice = served_twice(hls_server, facts.segment_paths)
    assert 0 <= twice <= len(kept) * options.chunk_size, (twice, kept)
    print(f"cancel: {len(kept)} segments in flight, {twice} bytes served twice")


@pytest.mark.slow
def test_sigkill_mid_segment_then_a_rerun_resumes_with_range(
    hls_media, hls_server, fast_options, tmp_path
):
    facts = hls_media["plain"]
    hls_server.rate_limit_bps = 60_000
    out, work = tmp_path / "out" / "video.mp4", tmp_path / "work"
    command = [sys.executable, "-m", "dlstore", "download", hls_server.url(facts.path),
               "-o", str(out), "--work-dir", str(work), "--threads", "2", "-q"]  # fmt: skip
    child = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: sum(kept_partials(work).values()) >= 40_000)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    kept = kept_partials(work)
    mark = len(hls_server.requests)
    hls_server.rate_limit_bps = None
    result = download(hls_server.url(facts.path), out, work_dir=work, options=fast_options)
    assert_plays(result, facts)
    for index, size in kept.items():
        assert ranges_asked(hls_server, f"/plain/seg-{index:03d}.ts", mark) == [f"bytes={size}-"]
    twice = served_twice(hls_server, facts.segment_paths)
    assert 0 <= twice <= len(kept) * DownloadOptions().chunk_size, (twice, kept)
    print(f"SIGKILL: {len(kept)} segments in flight, {twice} bytes served twice")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stream", "cut", "resumed"),
    [("plain", CUT, CUT), ("plain", CUT + 7, CUT + 7),
     ("aes_iv", CUT, CUT),  # whole AES blocks: decrypted, kept, continued
     ("aes_iv", CUT + 7, CUT)],  # the 7 bytes of an incomplete block are fetched again
)  # fmt: skip
def test_a_dropped_connection_resumes_with_range_in_the_same_run(
    stream, cut, resumed, hls_media, hls_server, fast_options, tmp_path
):
    facts = hls_media[stream]
    path = f"/{stream}/seg-003.ts"
    hls_server.drop_after(path, cut)
    result = run(hls_server, facts.path, tmp_path, fast_options)
    assert_plays(result, facts)
    assert ranges_asked(hls_server, path) == [None, f"bytes={resumed}-"]
    assert served_twice(hls_server, facts.segment_paths) == cut - resumed
    assert not (tmp_path / "work").exists()  # partial files and all, once the video is placed


@pytest.mark.slow
def test_a_stalled_segment_keeps_what_came_and_resumes(
    hls_media, hls_server, fast_options, tmp_path
):
    facts = hls_media["plain"]
    path = "/plain/seg-003.ts"
    hls_server.dribble_interval = 0.05  # 20 bytes a second: aborted after the stall window
    hls_server.fail_times(path, 1, "dribble")
    options = dataclasses.replace(fast_options, stall_timeout=0.5)
    result = run(hls_server, facts.path, tmp_path, options)
    assert_plays(result, facts)
    first, second = ranges_asked(hls_server, path)
    assert first is None and second is not None and second != "bytes=0-"
    # at most the one byte the server wrote after the client had gone, before it noticed
    assert served_twice(hls_server, facts.segment_paths) <= 1


@pytest.mark.slow
def test_a_byte_range_segment_resumes_within_its_range(
    hls_media, hls_server, fast_options, tmp_path
):
    facts = hls_media["byterange"]
    plan = parse_playlist((hls_media.root / "byterange" / "index.m3u8").read_text(),
                          hls_server.url(facts.path))  # fmt: skip
    span = plan.segments[3].byte_range
    assert span is not None and span.offset > 0
    hls_server.drop_after("/byterange/all.ts", CUT, skip=3)  # one thread: the 4th segment
    options = dataclasses.replace(fast_options, threads=1)
    result = run(hls_server, facts.path, tmp_path, options)
    assert_plays(result, facts)
    asked = ranges_asked(hls_server, "/byterange/all.ts")
    assert asked[3:5] == [f"bytes={span.offset}-{span.last}",
                          f"bytes={span.offset + CUT}-{span.last}"]  # fmt: skip
    total = sum(seg.byte_range.length for seg in plan.segments if seg.byte_range)
    assert hls_server.sent["/byterange/all.ts"] == total  # every byte of every range once


@pytest.mark.slow
@pytest.mark.parametrize("server_change", ["no ranges", "etag changed", "no validators"])
def test_a_segment_starts_over_when_its_bytes_cannot_be_continued(
    server_change, hls_media, hls_server, fast_options, tmp_path
):
    facts = hls_media["plain"]
    path = "/plain/seg-003.ts"
    options = dataclasses.replace(fast_options, max_retries=0)
    hls_server.validators = server_change != "no validators"
    hls_server.drop_after(path, CUT)
    with pytest.raises(TransientDownloadError, match=r"1 of 8 segments.*\(seg-003.ts\)"):
        run(hls_server, facts.path, tmp_path, options)
    assert kept_partials(tmp_path / "work") == {3: CUT}
    if server_change == "no ranges":
        hls_server.ranges = False
    elif server_change == "etag changed":
        hls_server.etags[path] = '"changed"'
    result = run(hls_server, facts.path, tmp_path, options)
    assert_plays(result, facts)
    expected = [None, None] if server_change == "no validators" else [None, f"bytes={CUT}-"]
    assert ranges_asked(hls_server, path) == expected
    assert hls_server.hits[path] == 2  # the whole file came in the answer to the Range request
    assert hls_server.sent[path] == CUT + size_of(hls_server, path)
    assert not kept_partials(tmp_path / "work")


@pytest.mark.slow
def test_without_extended_attributes_the_sidecar_keeps_the_record(
    hls_media, hls_server, fast_options, tmp_path, monkeypatch
):
    def unsupported(*args, **kwargs):
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    facts = hls_media["plain"]
    path = "/plain/seg-003.ts"
    hls_server.drop_after(path, CUT)
    with pytest.raises(TransientDownloadError):
        run(hls_server, facts.path, tmp_path, dataclasses.replace(fast_options, max_retries=0))
    assert (tmp_path / "work" / "video-000003.seg.partial.json").is_file()
    result = run(hls_server, facts.path, tmp_path, fast_options)
    assert_plays(result, facts)
    assert ranges_asked(hls_server, path) == [None, f"bytes={CUT}-"]
    assert served_twice(hls_server, facts.segment_paths) == 0


@pytest.mark.slow
def test_bytes_kept_whole_are_placed_without_a_request(
    hls_media, hls_server, fast_options, tmp_path
):
    facts = hls_media["plain"]
    path = "/plain/seg-003.ts"
    hls_server.drop_after(path, CUT)
    with pytest.raises(TransientDownloadError):
        run(hls_server, facts.path, tmp_path, dataclasses.replace(fast_options, max_retries=0))
    partial = tmp_path / "work" / "video-000003.seg.partial"
    with open(partial, "ab") as out:  # the rest came, then the process died before the rename
        out.write((hls_media.root / path.lstrip("/")).read_bytes()[CUT:])
    hls_server.reset_counters()
    result = run(hls_server, facts.path, tmp_path, fast_options)
    assert_plays(result, facts)
    assert hls_server.hits[path] == 0
    assert sum(n for p, n in hls_server.sent.items() if p.endswith(".ts")) == 0


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
