#!/usr/bin/env python3
"""Benchmark dlstore's HLS engine against ffmpeg, yt-dlp and aria2c on a local server.

    python scripts/bench_engine.py [--size-mb 48] [--runs 3] [--cap-mib 1] [--latency 0.05]

Two scenarios, the same stream (H.264 + AAC in MPEG-TS, 1 s segments):

- ``cap``:     every connection capped at --cap-mib MiB/s (like a CDN's per-connection limit)
- ``latency``: every request answered after --latency seconds, no bandwidth cap

Each peer runs as a child process under GNU time (``apt-get install time``), which
reports wall seconds, CPU seconds (user + system, children included) and peak RSS;
without it wait4() is used, whose peak RSS cannot go below this script's own (a
forked child inherits its parent's high-water mark). Figures are medians of --runs runs.
The media is generated in a subprocess so that this process stays small.
Peers that are not installed are skipped, with a line saying so. Not a test: it prints.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.hls_server import HlsServer  # noqa: E402  (stdlib only: keeps RSS low)

MIB = 1 << 20
DLSTORE_RUNNER = """
import sys
from pathlib import Path
from dlstore.engine import download
from dlstore.options import DownloadOptions
url, out, work, threads = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
download(url, out, work_dir=work, options=DownloadOptions(threads=threads, retry_delay=0.2))
"""


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mb: float


@dataclass
class Row:
    tool: str
    threads: int | None
    samples: list[Sample]
    note: str = ""

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)


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
    """A ~size_mb MB HLS stream (640x360 lossless H.264, ~0.5 MB/s, 1 s segments)."""
    import av

    from tests.support.media import write_hls

    folder.mkdir(parents=True, exist_ok=True)
    seconds = max(8, size_mb * 2)
    source = folder / "source.mp4"
    out = av.open(str(source), "w", format="mp4")
    video = out.add_stream(
        "libx264",
        rate=25,
        options={"preset": "ultrafast", "qp": "0", "g": "25", "keyint_min": "25",
                 "sc_threshold": "0"},
    )  # fmt: skip
    video.width, video.height, video.pix_fmt = 640, 360, "yuv420p"
    audio = out.add_stream("aac", rate=48000, layout="stereo")
    with av.open(f"testsrc2=size=640x360:rate=25:duration={seconds}", format="lavfi") as src:
        for frame in src.decode(video=0):
            out.mux(video.encode(frame.reformat(format="yuv420p")))
    out.mux(video.encode(None))
    with av.open(f"sine=frequency=440:sample_rate=48000:duration={seconds}", format="lavfi") as src:
        for frame in src.decode(audio=0):
            frame.pts = None
            out.mux(audio.encode(frame))
    out.mux(audio.encode(None))
    out.close()
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


def peers(url: str, urls_file: Path, out_dir: Path, threads: list[int]):
    """(tool, threads, argv factory) for every installed peer; prints what is skipped."""
    python = sys.executable
    found = []
    for n in threads:
        found.append(("dlstore", n, lambda run, n=n: [
            python, "-c", DLSTORE_RUNNER, url, str(out_dir / f"dl-{n}-{run}.mp4"),
            str(out_dir / f"work-{n}-{run}"), str(n)]))  # fmt: skip
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


def run_scenario(name, server, playlist_path, media_root, args) -> list[Row]:
    url = server.url(playlist_path)
    text = (media_root / playlist_path.lstrip("/")).read_text()
    base = url.rsplit("/", 1)[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        tmp_path = Path(tmp)
        urls_file = tmp_path / "urls.txt"
        urls_file.write_text("\n".join(f"{base}/{u}" for u in segment_uris(text)) + "\n")
        for tool, threads, argv in peers(url, urls_file, tmp_path, args.threads):
            runs = args.runs
            note = ""
            if tool == "ffmpeg" and name == "cap":
                runs, note = 1, "1 run (one connection: slow)"
            samples = []
            for run in range(runs):
                samples.append(measure(argv(run), tmp_path))
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
    print(f"{'tool':22s}{'N':>4s}{'wall s':>9s}{'CPU s':>8s}{'CPU s/GB':>10s}{'RSS MB':>8s}  note")
    for row in rows:
        print(
            f"{row.tool:22s}{row.threads or '':>4}{row.median('wall'):9.2f}"
            f"{row.median('cpu'):8.2f}{row.median('cpu') / gb:10.1f}"
            f"{row.median('rss_mb'):8.1f}  {row.note}"
        )
    by = {(r.tool, r.threads): r for r in rows}
    aria = [r for r in rows if r.tool.startswith("aria2c")]
    for n in args.threads:
        ours = by.get(("dlstore", n))
        if ours is None:
            continue
        if name == "cap":
            limit = total_bytes / (args.cap_mib * MIB * n)
            print(f"dlstore N={n}: wall / physical limit ({limit:.2f} s) = "
                  f"{ours.median('wall') / limit:.3f} (target ≤ 1.15)")  # fmt: skip
        peer = by.get(("yt-dlp", n))
        if peer is not None:
            print(f"dlstore N={n}: wall / yt-dlp -N {n} = "
                  f"{ours.median('wall') / peer.median('wall'):.3f} (target ≤ 1.0)")  # fmt: skip
        same_aria = next((r for r in aria if r.threads == n), None)
        if same_aria is not None:
            print(f"dlstore N={n}: CPU / aria2c CPU = "
                  f"{ours.median('cpu') / max(same_aria.median('cpu'), 1e-3):.2f} "
                  "(target ≤ 2; aria2c only fetches, dlstore also remuxes to MP4)")  # fmt: skip
        print(f"dlstore N={n}: peak RSS {ours.median('rss_mb'):.0f} MB (target < 150)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--size-mb", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cap-mib", type=float, default=1.0, help="per-connection cap, MiB/s")
    parser.add_argument("--latency", type=float, default=0.05, help="per-request delay, s")
    parser.add_argument("--threads", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--media-dir", type=Path, default=Path(tempfile.gettempdir()) /
                        "dlstore-bench-media")  # fmt: skip
    parser.add_argument("--scenario", choices=["cap", "latency", "both"], default="both")
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
            rows = run_scenario(name, server, "/hls/index.m3u8", folder, args)
        report(name, rows, total, args)


if __name__ == "__main__":
    main()
