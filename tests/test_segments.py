"""Pure parts of fetching and joining: TS and length checks, bandwidth cap, work folder, progress,
the decryptor and the concatenating reader."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from dlstore.crypto import Decryptor, KeyStore, parse_key
from dlstore.errors import (
    CancelledError,
    CorruptSegmentError,
    DownloadError,
    HttpError,
    SegmentError,
)
from dlstore.fetch import Arrivals, TokenBucket, jobs_for
from dlstore.playlist import ByteRange, parse_playlist
from dlstore.progress import ProgressTracker, Throttle
from dlstore.remux import ConcatReader, FollowReader
from dlstore.segment_checks import LengthCheck, TsChecker
from dlstore.testing.media import aes_encrypt
from dlstore.workfolder import Track, WorkFolder, track_files


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingStop(threading.Event):
    """A stop event whose wait() records the delay and advances the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        self.clock.now += timeout
        return self.is_set()


def packets(n: int) -> bytes:
    return (b"\x47" + b"\x11" * 187) * n


# --------------------------------------------------------------------------- TS check


def test_ts_checker_accepts_packets_split_anywhere():
    data = packets(10)
    for cut in (1, 100, 188, 189, 1000):
        checker = TsChecker()
        assert checker.feed(data[:cut]) and checker.feed(data[cut:])
        assert checker.whole()


def test_ts_checker_spots_a_lost_sync_byte_and_a_partial_packet():
    bad = bytearray(packets(5))
    bad[188 * 3] = 0x00
    checker = TsChecker()
    assert not checker.feed(bytes(bad[:600])) or not checker.feed(bytes(bad[600:]))
    partial = TsChecker()
    assert partial.feed(packets(2)[:-5]) and not partial.whole()


# --------------------------------------------------------------------------- lengths


def test_length_check_cuts_the_range_out_of_a_whole_file_answer():
    check = LengthCheck(ByteRange(length=4, offset=3), 200, 10, "the segment")
    assert check.cut(b"abcde") == b"de" and not check.full
    assert check.cut(b"fghij") == b"fg" and check.full
    check.finish()  # the rest of the body is not needed


def test_length_check_spots_a_wrong_range_answer_truncation_and_emptiness():
    with pytest.raises(DownloadError, match="with 9 bytes instead of the 4 asked for"):
        LengthCheck(ByteRange(length=4, offset=3), 206, 9, "the segment")
    short = LengthCheck(None, 200, 5, "the segment")
    short.cut(b"abc")
    with pytest.raises(HttpError, match=r"The segment arrived truncated \(3 of 5 bytes\)"):
        short.finish()
    with pytest.raises(CorruptSegmentError, match="is empty"):
        LengthCheck(None, 200, None, "the segment").finish()


# --------------------------------------------------------------------------- bandwidth cap


def test_token_bucket_makes_threads_wait_for_their_share():
    clock = FakeClock()
    stop = RecordingStop(clock)
    bucket = TokenBucket(1000, clock=clock)
    bucket.take(1000, stop)  # the first second's burst is free
    assert stop.waits == []
    bucket.take(500, stop)
    assert stop.waits == [pytest.approx(0.5)]
    bucket.take(2000, stop)
    assert stop.waits[-1] == pytest.approx(2.0)


def test_token_bucket_wait_is_cancellable():
    clock = FakeClock()
    stop = RecordingStop(clock)
    stop.set()
    bucket = TokenBucket(10, clock=clock)
    with pytest.raises(CancelledError):
        bucket.take(100, stop)


# --------------------------------------------------------------------------- work folder


def test_work_folder_keeps_files_of_the_same_download_and_wipes_others(tmp_path):
    work = WorkFolder(tmp_path / "w")
    assert work.prepare({"url": "https://a/x.m3u8", "segments": [3]}) is False
    work.path("video-000000.seg").write_bytes(b"x")
    assert WorkFolder(tmp_path / "w").prepare({"url": "https://a/x.m3u8", "segments": [3]})
    assert work.path("video-000000.seg").exists()
    assert WorkFolder(tmp_path / "w").prepare({"url": "https://b/y.m3u8", "segments": [3]}) is False
    assert not work.path("video-000000.seg").exists()
    manifest = json.loads(work.path("manifest.json").read_text())
    assert manifest["url"] == "https://b/y.m3u8"


def test_work_folder_with_a_corrupt_manifest_starts_over(tmp_path):
    work = WorkFolder(tmp_path / "w")
    work.prepare({"url": "u"})
    work.path("manifest.json").write_text("{not json")
    work.path("video-000001.seg").write_bytes(b"x")
    assert work.prepare({"url": "u"}) is False
    assert not work.path("video-000001.seg").exists()


def test_jobs_and_files_with_init_sections(tmp_path):
    text = (
        '#EXTM3U\n#EXT-X-MAP:URI="i1.mp4"\n#EXTINF:2,\na.m4s\n#EXTINF:2,\nb.m4s\n'
        '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="i2.mp4"\n#EXTINF:2,\nc.m4s\n#EXT-X-ENDLIST\n'
    )
    track = Track("video", parse_playlist(text, "https://h/p/index.m3u8"))
    jobs = jobs_for(track)
    assert [j.filename for j in jobs] == [
        "video-init-0.seg", "video-init-1.seg",
        "video-000000.seg", "video-000001.seg", "video-000002.seg",
    ]  # fmt: skip
    assert all(j.ts_check == "none" for j in jobs)
    assert jobs[3].label == "video segment 2 of 3 (b.m4s)"
    files = [p.name for p in track_files(WorkFolder(tmp_path), track)]
    assert files == [
        "video-init-0.seg", "video-000000.seg", "video-000001.seg",
        "video-init-1.seg", "video-000002.seg",
    ]  # fmt: skip


def test_ts_check_mode_follows_the_segment_suffix():
    text = "#EXTM3U\n" + "".join(
        f"#EXTINF:2,\n{name}\n" for name in ("a.ts", "b.aac", "c.php?id=1", "d.TS")
    ) + "#EXT-X-ENDLIST\n"  # fmt: skip
    jobs = jobs_for(Track("audio", parse_playlist(text, "https://h/index.m3u8")))
    assert [j.ts_check for j in jobs] == ["require", "none", "sniff", "require"]


# --------------------------------------------------------------------------- progress


def test_progress_speed_eta_and_retries():
    clock = FakeClock()
    tracker = ProgressTracker(total=4, clock=clock)
    tracker.already_done(1000)  # from an earlier run: counts as done, not as speed
    first = tracker.snapshot("go")
    assert first.segments_done == 1 and first.speed_bps is None and first.eta_seconds is None
    tracker.started("a", "seg-1.ts")
    tracker.received("a", 400)
    tracker.attempt_failed("a")  # a failed attempt's bytes are not progress
    tracker.received("a", 1000)
    tracker.finished("a", 1000)
    clock.now += 2
    snap = tracker.snapshot("go")
    assert snap.segments_done == 2 and snap.bytes_done == 2000
    assert snap.speed_bps == 700  # 1400 bytes on the wire in 2 s
    assert snap.current_file == "seg-1.ts"
    # 2 more segments of ~1000 bytes at 700 B/s
    assert snap.eta_seconds == 3
    assert snap.percent == 50


def test_throttle_limits_callbacks():
    clock = FakeClock()
    seen = []
    throttle = Throttle(seen.append, interval=0.25, clock=clock)
    for _ in range(10):
        throttle("x")
        clock.now += 0.1
    assert len(seen) == 4  # at 0, 0.3, 0.6, 0.9
    throttle("end", force=True)
    assert seen[-1] == "end"


# --------------------------------------------------------------------------- crypto


def test_decryptor_streams_in_odd_chunks():
    key, iv = bytes(range(16)), bytes(16)
    plain = packets(7)
    encrypted = aes_encrypt(plain, key, iv)
    for size in (1, 15, 16, 100, 4096):
        d = Decryptor(key, iv, "s.ts")
        out = b"".join(d.update(encrypted[i : i + size]) for i in range(0, len(encrypted), size))
        assert out + d.finalize() == plain


def test_decryptor_reports_a_wrong_key_and_truncation():
    key, iv = bytes(range(16)), bytes(16)
    encrypted = aes_encrypt(b"hello world" * 10, key, iv)
    wrong = Decryptor(b"\x00" * 16, iv, "s.ts")
    wrong.update(encrypted)
    with pytest.raises(SegmentError, match="key is probably wrong"):
        # one chance in ~256 that garbage padding looks valid: this key/data pair does not
        wrong.finalize()
    short = Decryptor(key, iv, "s.ts")
    short.update(encrypted[:-3])
    with pytest.raises(SegmentError, match="AES blocks"):
        short.finalize()


def test_keystore_fetches_each_uri_once_across_threads():
    calls = []
    gate = threading.Event()

    def fetch(uri):
        calls.append(uri)
        gate.wait(1)
        return b"k" * 16

    store = KeyStore(fetch)
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.get("https://k/1")))
               for _ in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert calls == ["https://k/1"] and results == [b"k" * 16] * 8
    assert store.get("data:text/plain;base64,AAECAwQFBgcICQoLDA0ODw==") == bytes(range(16))


def test_parse_key_accepts_hex_and_rejects_odd_sizes():
    assert parse_key(b"000102030405060708090a0b0c0d0e0f\n", "u") == bytes(range(16))
    with pytest.raises(DownloadError, match="is 3 bytes long"):
        parse_key(b"abc", "https://k/1")


# --------------------------------------------------------------------------- concat reader


def test_concat_reader_reads_and_seeks_across_files(tmp_path):
    parts = [b"abc", b"", b"defgh", b"ij"]
    paths = []
    for n, data in enumerate(parts):
        path = tmp_path / f"{n}.bin"
        path.write_bytes(data)
        paths.append(path)
    reader = ConcatReader(paths)
    assert reader.size == 10
    assert reader.read(4) == b"abc"  # a short read at a file boundary, like a pipe
    assert reader.read() == b"defghij"
    assert reader.read(5) == b""
    reader.seek(-3, 2)
    assert reader.read(2) == b"h" and reader.read(2) == b"ij"
    reader.seek(2)
    buffer = bytearray(5)
    assert reader.readinto(buffer) == 5 and bytes(buffer) == b"cdefg"  # readinto fills
    assert reader.tell() == 7
    reader.seek(1)
    assert reader.read(1) == b"b"
    reader.close()


def test_follow_reader_reads_files_as_they_arrive(tmp_path):
    paths = [tmp_path / f"{n}.bin" for n in range(3)]
    arrivals = Arrivals()
    reader = FollowReader(paths, arrivals.wait)

    def fetch() -> None:  # out of order, like parallel fetch threads
        for n, data in ((2, b"gh"), (0, b"abc"), (1, b"def")):
            time.sleep(0.05)
            part = paths[n].with_suffix(".part")
            part.write_bytes(data)
            os.replace(part, paths[n])  # complete files are renamed into place
            arrivals.arrived()

    writer = threading.Thread(target=fetch)
    writer.start()
    assert reader.read() == b"abcdefgh"
    assert reader.read(4) == b""
    assert not reader.seekable()
    writer.join()
    reader.close()


def test_arrivals_stop_wakes_a_waiting_reader_with_the_error(tmp_path):
    arrivals = Arrivals()
    reader = FollowReader([tmp_path / "never.bin"], arrivals.wait)
    threading.Timer(0.05, arrivals.stop, args=(CancelledError(),)).start()
    started = time.monotonic()
    with pytest.raises(CancelledError):
        reader.read(10)
    assert time.monotonic() - started < 1
    reader.close()


def test_jobs_for_reads_the_plans_whole_segment_properties_once(monkeypatch):
    """is_fmp4 and container scan every segment: per job, a long playlist was quadratic."""
    from dlstore.playlist import MediaPlan

    text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n" + "#EXTINF:1,\ns.ts\n" * 500 + "#EXT-X-ENDLIST\n"
    plan = parse_playlist(text, "https://h/p.m3u8")
    calls = []
    real = MediaPlan.is_fmp4.fget
    monkeypatch.setattr(MediaPlan, "is_fmp4", property(lambda p: calls.append(1) or real(p)))
    jobs = jobs_for(Track("video", plan))
    assert len(jobs) == 500 and {j.ts_check for j in jobs} == {"require"}
    assert len(calls) <= 2  # once for the track's shape (container asks it once more)


def test_jobs_for_parses_each_segments_uri_for_its_name_once(monkeypatch):
    """The guard on planning's cost: one display_name per file, not one per use of it."""
    from dlstore import fetch, playlist
    from dlstore.playlist import MediaPlan, Segment

    calls = []
    real = fetch.display_name
    for module in (fetch, playlist):  # Segment.name calls playlist's
        monkeypatch.setattr(module, "display_name", lambda uri: calls.append(uri) or real(uri))
    segments = tuple(Segment(f"https://h/seg-{i}.ts", 6.0, i) for i in range(500))
    jobs = fetch.jobs_for(Track("video", MediaPlan(url="https://h/v.m3u8", segments=segments)))
    assert len(calls) == 500 and jobs[499].label == "video segment 500 of 500 (seg-499.ts)"
