"""Parse and plan a playlist of ``max_segments`` segments: time and peak memory, medians of 3.

    .venv/bin/python scripts/bench_plan.py [plain|aes|ranges ...]

``parse_playlist`` then ``jobs_for``, as the engine runs them before fetching anything;
peak memory is tracemalloc's (Python allocations), in a separate run from the timing.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import tracemalloc

from dlstore.fetch import jobs_for
from dlstore.options import DownloadOptions
from dlstore.playlist import parse_playlist
from dlstore.workfolder import Track

COUNT = DownloadOptions().max_segments
URL = "https://cdn.example/show/1080p/index.m3u8?token=abc"
KEY = '#EXT-X-KEY:METHOD=AES-128,URI="key.bin",IV=0x00000000000000000000000000000001'


def playlist(kind: str) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:4", "#EXT-X-TARGETDURATION:6"]
    if kind == "aes":
        lines.append(KEY)
    for i in range(COUNT):
        lines.append("#EXTINF:6.006,")
        if kind == "ranges":
            lines += [f"#EXT-X-BYTERANGE:100000@{i * 100000}", "media.ts"]
        else:
            lines.append(f"seg-{i:06d}.ts")
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


def plan_once(text: str, trace: bool) -> tuple[float, int]:
    gc.collect()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    jobs = jobs_for(Track("video", parse_playlist(text, URL, max_segments=COUNT)))
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.stop()
    assert len(jobs) == COUNT
    return elapsed, peak


def main(kinds: list[str]) -> None:
    for kind in kinds or ["plain", "aes", "ranges"]:
        text = playlist(kind)
        seconds = statistics.median(plan_once(text, False)[0] for _ in range(3))
        peak = statistics.median(plan_once(text, True)[1] for _ in range(3))
        print(f"{kind:7s} {COUNT} segments: {seconds:.2f} s, peak {peak / 1e6:.0f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
