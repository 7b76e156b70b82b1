#!/usr/bin/env python3
"""Benchmark dlstore's HLS engine against ffmpeg, yt-dlp and aria2c on a local server.

    python scripts/bench_engine.py [--size-mb 256] [--runs 3] [--cap-mib 1] [--latency 0.05]
                                   [--baseline DIR]

Two scenarios, the same stream (H.264 + AAC in MPEG-TS, 1 s segments of ~2 MB):

- ``cap``:     every connection capped at --cap-mib MiB/s (like a CDN's per-connection limit)
- ``latency``: every request answered after --latency seconds, no bandwidth cap

The stream is made once (cached under --media-dir): an 8 s 720p lossless clip is
encoded, then copied (with shifted timestamps, no re-encoding) until it is
--size-mb long, so a big stream takes seconds to make and start-up costs don't
dominate "per GB" figures.

Each peer runs as a child process under GNU time (``apt-get install time``), which
reports wall seconds, CPU seconds (user + system, children included) and peak RSS;
without it wait4() is used, whose peak RSS cannot go below this script's own (a
forked child inherits its parent's high-water mark). dlstore also reports its own
split: CPU spent in the remux (PyAV joining the segments into MP4, whichever thread
runs it) and before its first line runs (interpreter start and imports), so its
CPU per GB can be set beside aria2c's (which only fetches) like for like.
``--baseline DIR`` adds a "dlstore@base" row running the dlstore package found in
DIR (e.g. ``git archive HEAD | tar -x -C DIR``), for before/after in one run.
Figures are medians of --runs runs. The media is generated in a subprocess so that
this process stays small. Peers that are not installed are skipped, with a line
saying so. Not a test: it prints. Start-up (``dlstore --help``, ``status``, the
download's time to first request, against the imports they need) has a benchmark
of its own: ``scripts/bench_startup.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from dlstore.testing.hls_server import HlsServer  # stdlib only: keeps RSS low

MIB = 1 << 20
MAX_FFMPEG_CAP_SECONDS = 90
REPORT_NAME = ".dlstore-report.json"
CLIP_SECONDS = 8
DLSTORE_RUNNER = """
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
startup = cpu()
from pathlib import Path
import dlstore.engine as engine
from dlstore.options import DownloadOptions
imported = cpu()
remux_cpu = []
def timed(step):
    def run(*args, **kwargs):
        started = time.thread_time()
        try:
            return step(*args, **kwargs)
        finally:
            remux_cpu.append(time.thread_time() - started)
    return run
engine.remux, engine.concat = timed(engine.remux), timed(engine.concat)
url, out, work, threads, report = sys.argv[1:6]
options = DownloadOptions(threads=int(threads), retry_delay=0.2)
engine.download(url, Path(out), work_dir=Path(work), options=options)
split = {"startup": startup, "imports": imported - startup, "remux": sum(remux_cpu)}
Path(report).write_text(json.dumps(split))
"""


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mb: float
    remux: float | None = None  # dlstore only: CPU s in the remux step
    startup: float | None = None  # dlstore only: CPU s before its first line (interpreter)
    imports: float | None = None  # dlstore only: CPU s importing dlstore


@dataclass
class Row:
    tool: str
    threads: int | None
    samples: list[Sample]
    note: str = ""

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    def has(self, attr: str) -> bool:
        return all(getattr(s, attr) is not None for s in self.samples)


# --------------------------------------------------------------------------- media


def segment_uris(playlist_text: str) -> list[str]:
    return [line for line in playlist_text.splitlines() if line and not line.startswith("#")]


def make_stream(folder: Path, size_mb: int) -> Path:
    playlist = folder / "hls" / "index.m3u8"
    if not playlist.exists():
        subprocess.run(
            [sys.executable, __file__, "--make-media", str(folder), "--size-mb", str(size_mb)],
            check=True,
        )
    return playlist


def _make_stream(folder: Path, size_mb: int) -> None:
    """A ~size_mb MB HLS stream: an 8 s 1280x720 lossless H.264 + AAC clip (~2 MB/s),
    repeated with shifted timestamps (stream copy) and cut into 1 s segments."""
    import av

    from dlstore.testing.media import write_hls

    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / "clip.mp4"
    out = av.open(str(clip), "w", format="mp4")
    video = out.add_stream(
        "libx264",
        rate=25,
        options={"preset": "ultrafast", "qp": "0", "g": "25", "keyint_min": "25",
                 "sc_threshold": "0"},
    )  # fmt: skip
    video.width, video.height, video.pix_fmt = 1280, 720, "yuv420p"
    audio = out.add_stream("aac", rate=48000, layout="stereo")
    with av.open(f"testsrc2=size=1280x720:rate=25:duration={CLIP_SECONDS}", format="lavfi") as src:
        for frame in src.decode(video=0):
            out.mux(video.encode(frame.reformat(format="yuv420p")))
    out.mux(video.encode(None))
    with av.open(f"sine=frequency=440:sample_rate=48000:duration={CLIP_SECONDS}", "r",
                 format="lavfi") as src:  # fmt: skip
        for frame in src.decode(audio=0):
            frame.pts = None
            out.mux(audio.encode(frame))
    out.mux(audio.encode(None))
    out.close()
    repeats = max(1, -(-size_mb * 1_000_000 // clip.stat().st_size))
    with av.open(str(clip)) as src:
        # one period, in seconds, that every stream's packets fit in: no overlap between copies
        period = max(float(s.duration * s.time_base) for s in src.streams)
    period = Fraction(period).limit_denominator(25) + Fraction(1, 25)
    source = folder / "source.ts"
    with av.open(str(source), "w", format="mpegts") as dest:
        with av.open(str(clip)) as src:
            mapping = {s.index: dest.add_stream_from_template(s) for s in src.streams}
        for copy in range(repeats):
            with av.open(str(clip)) as src:
                for packet in src.demux():
                    if packet.dts is None:
                        continue
                    shift = int(copy * period / packet.time_base)
                    packet.dts += shift
                    packet.pts += shift
                    packet.stream = mapping[packet.stream_index]
                    dest.mux(packet)
    clip.unlink()
    write_hls(source, folder / "hls")
    source.unlink()


# --------------------------------------------------------------------------- running


def measure(argv: list[str], cwd: Path) -> Sample:
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if gnu_time:
        report_file = cwd / ".time.txt"
        proc = subprocess.run(
            [gnu_time, "-f", "%e %U %S %M", "-o", str(report_file), *argv],
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()[-500:]
            raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err}")
        wall, user, system, rss_kb = report_file.read_text().split()[-4:]
        report_file.unlink()
        return Sample(float(wall), float(user) + float(system), int(rss_kb) / 1024)
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {err.strip()[-500:]}")
    return Sample(wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024)


def peers(url: str, urls_file: Path, out_dir: Path, threads: list[int], baseline: Path | None):
    """(tool, threads, argv factory) for every installed peer; prints what is skipped."""
    python = sys.executable
    found = []
    dlstores = [("dlstore", [python])]
    if baseline is not None:  # PYTHONPATH wins over the editable install
        dlstores.append(("dlstore@base", ["env", f"PYTHONPATH={baseline}", python]))
    for n in threads:
        for name, prefix in dlstores:
            found.append((name, n, lambda run, n=n, prefix=prefix: [
                *prefix, "-c", DLSTORE_RUNNER, url, str(out_dir / f"dl-{n}-{run}.mp4"),
                str(out_dir / f"work-{n}-{run}"), str(n), str(out_dir / REPORT_NAME)]))  # fmt: skip
    ytdlp = shutil.which("yt-dlp") or _venv_tool("yt-dlp")
    if ytdlp:
        for n in (8, 16):
            found.append(("yt-dlp", n, lambda run, n=n: [
                ytdlp, "-q", "--no-warnings", "--no-part", "--no-mtime", "-N", str(n),
                "--fixup", "never", "-o", str(out_dir / f"yt-{n}-{run}.mp4"), url]))  # fmt: skip
    else:
        print("skip: yt-dlp is not installed (pip install yt-dlp, for measuring only)")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        found.append(("ffmpeg", 1, lambda run: [
            ffmpeg, "-v", "error", "-y", "-i", url, "-c", "copy",
            str(out_dir / f"ff-{run}.mp4")]))  # fmt: skip
    else:
        print("skip: ffmpeg is not installed")
    aria2c = shutil.which("aria2c")
    if aria2c:
        for n in sorted(set(threads)):
            found.append(("aria2c (fetch only)", n, lambda run, n=n: [
                aria2c, "-q", "-j", str(n), "-x", "1", "--max-connection-per-server", "16",
                "--allow-overwrite=true", "--auto-file-renaming=false", "-i", str(urls_file),
                "-d", str(out_dir / f"aria-{n}-{run}")]))  # fmt: skip
    else:
        print("skip: aria2c is not installed")
    return found


def _venv_tool(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


def run_scenario(name, server, playlist_path, media_root, total_bytes, args) -> list[Row]:
    url = server.url(playlist_path)
    text = (media_root / playlist_path.lstrip("/")).read_text()
    base = url.rsplit("/", 1)[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        tmp_path = Path(tmp)
        urls_file = tmp_path / "urls.txt"
        urls_file.write_text("\n".join(f"{base}/{u}" for u in segment_uris(text)) + "\n")
        for tool, threads, argv in peers(url, urls_file, tmp_path, args.threads, args.baseline):
            runs = args.runs
            note = ""
            if tool == "ffmpeg" and name == "cap":
                seconds = total_bytes / (args.cap_mib * MIB)
                if seconds > MAX_FFMPEG_CAP_SECONDS:
                    print(f"  {name:8s} skip ffmpeg: one connection would take {seconds:.0f} s")
                    continue
                runs, note = 1, "1 run (one connection: slow)"
            samples = []
            for run in range(runs):
                sample = measure(argv(run), tmp_path)
                report_file = tmp_path / REPORT_NAME
                if report_file.exists():
                    split = json.loads(report_file.read_text())
                    sample.remux, sample.startup = split["remux"], split["startup"]
                    sample.imports = split["imports"]
                samples.append(sample)
                for leftover in tmp_path.iterdir():  # keep the disk tidy between runs
                    if leftover.name not in ("urls.txt", ".time.txt"):
                        if leftover.is_dir():
                            shutil.rmtree(leftover)
                        else:
                            leftover.unlink()
            rows.append(Row(tool, threads, samples, note))
            print(f"  {name:8s} {tool:20s} N={threads:<3} wall {rows[-1].median('wall'):6.2f} s")
    return rows


# --------------------------------------------------------------------------- report


def report(name: str, rows: list[Row], total_bytes: int, args) -> None:
    gb = total_bytes / 1e9
    print(f"\n== {name}: {total_bytes / MIB:.1f} MiB, medians of {args.runs} runs ==")
    print(
        f"{'tool':22s}{'N':>4s}{'wall s':>9s}{'CPU s':>8s}{'CPU s/GB':>10s}"
        f"{'fetch':>7s}{'remux':>7s}{'start':>7s}{'RSS MB':>8s}  note"
    )
    for row in rows:
        split = ""
        if row.has("remux"):
            remux = row.median("remux") / gb
            start = (row.median("startup") + row.median("imports")) / gb
            fetch = row.median("cpu") / gb - remux - start
            split = f"{fetch:7.1f}{remux:7.1f}{start:7.1f}"
        print(
            f"{row.tool:22s}{row.threads or '':>4}{row.median('wall'):9.2f}"
            f"{row.median('cpu'):8.2f}{row.median('cpu') / gb:10.1f}{split:21s}"
            f"{row.median('rss_mb'):8.1f}  {row.note}"
        )
    print("(fetch / remux / start: dlstore's CPU s per GB split into fetching, the remux, and "
          "interpreter start-up + imports)")  # fmt: skip
    by = {(r.tool, r.threads): r for r in rows}
    aria = [r for r in rows if r.tool.startswith("aria2c")]
    for tool, n in ((t, n) for n in args.threads for t in ("dlstore", "dlstore@base")):
        ours = by.get((tool, n))
        if ours is None:
            continue
        if name == "cap":
            limit = total_bytes / (args.cap_mib * MIB * n)
            print(f"{tool} N={n}: wall / physical limit ({limit:.2f} s) = "
                  f"{ours.median('wall') / limit:.3f} (target ≤ 1.15)")  # fmt: skip
        peer = by.get(("yt-dlp", n))
        if peer is not None:
            print(f"{tool} N={n}: wall / yt-dlp -N {n} = "
                  f"{ours.median('wall') / peer.median('wall'):.3f} (target ≤ 1.0)")  # fmt: skip
        same_aria = next((r for r in aria if r.threads == n), None)
        if same_aria is not None:
            theirs = max(same_aria.median("cpu"), 1e-3)
            print(f"{tool} N={n}: CPU / aria2c CPU = {ours.median('cpu') / theirs:.2f} "
                  "(target ≤ 2; aria2c only fetches, dlstore also remuxes to MP4)")  # fmt: skip
            if ours.has("remux"):
                fetch_only = ours.median("cpu") - ours.median("remux")
                print(f"{tool} N={n}: CPU without the remux / aria2c CPU = "
                      f"{fetch_only / theirs:.2f} (like for like)")  # fmt: skip
        print(f"{tool} N={n}: peak RSS {ours.median('rss_mb'):.0f} MB (target < 150)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cap-mib", type=float, default=1.0, help="per-connection cap, MiB/s")
    parser.add_argument("--latency", type=float, default=0.05, help="per-request delay, s")
    parser.add_argument("--threads", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--media-dir", type=Path, default=Path(tempfile.gettempdir()) /
                        "dlstore-bench-media")  # fmt: skip
    parser.add_argument("--scenario", choices=["cap", "latency", "both"], default="both")
    parser.add_argument("--baseline", type=Path, help="also run the dlstore package in DIR")
    parser.add_argument("--make-media", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_media:
        _make_stream(args.make_media, args.size_mb)
        return

    folder = args.media_dir / f"{args.size_mb}mb"
    playlist = make_stream(folder, args.size_mb)
    text = playlist.read_text()
    total = sum((playlist.parent / u).stat().st_size for u in segment_uris(text))
    print(f"stream: {len(segment_uris(text))} segments, {total / MIB:.1f} MiB in {playlist.parent}")
    scenarios = ["cap", "latency"] if args.scenario == "both" else [args.scenario]
    for name in scenarios:
        with HlsServer(folder) as server:
            if name == "cap":
                server.rate_limit_bps = int(args.cap_mib * MIB)
            else:
                server.latency = args.latency
            rows = run_scenario(name, server, "/hls/index.m3u8", folder, total, args)
        report(name, rows, total, args)


if __name__ == "__main__":
    main()
