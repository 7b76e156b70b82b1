#!/usr/bin/env python3
"""Benchmark dlstore's HLS engine against ffmpeg, yt-dlp and aria2c on a local server.

    python scripts/bench_engine.py [--shape small|large] [--scenario loopback cap latency aes]
                                   [--runs 3] [--threads 16] [--cap-mib 1] [--latency 0.04]
                                   [--server nginx|builtin] [--tools dlstore ffmpeg …]
                                   [--size-mb 256] [--baseline DIR]

Two stream shapes, H.264 + AAC in MPEG-TS, 1 s segments:

- ``small`` (the default): 300 segments of ~180 KB (~53 MiB, 640x360): per-segment
  costs dominate;
- ``large``: --size-mb MB of ~2 MB segments (1280x720 lossless): per-byte costs do.

Four scenarios, served by nginx on 127.0.0.1 (``scripts/nginx_server.py``; apt-get
install nginx-light libnginx-mod-http-echo), else by dlstore's own test server
(``dlstore.testing.hls_server``, with a line saying so):

- ``loopback``: no limit;
- ``cap``:      every connection capped at --cap-mib MiB/s (like a CDN's per-connection limit);
- ``latency``:  every request answered after --latency seconds, no bandwidth cap;
- ``aes``:      loopback, the same segments AES-128 encrypted.

Each ends with target lines, ratios against peers measured in the same run:
``MISS``/``met``, wall and CPU against ``ffmpeg -c copy``, wall against the
physical limit, aria2c and yt-dlp, peak RSS, and AES-128's extra CPU over loopback.

The stream is made once (cached under --media-dir): an 8 s clip is encoded, then
copied (with shifted timestamps, no re-encoding) until it is long enough, so a big
stream takes seconds to make. dlstore's bytecode is compiled first (as an install
does), so no run pays for compiling it.

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
saying so (yt-dlp is looked for on PATH and beside this Python: install it into a
separate venv, not the project's). Not a test: it prints. Start-up (``dlstore
--help``, ``status``, the download's time to first request, against the imports
they need) has a benchmark of its own: ``scripts/bench_startup.py``.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from dlstore.testing.hls_server import HlsServer  # stdlib only: keeps RSS low

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nginx_server import NginxServer, nginx_missing  # noqa: E402

MIB = 1 << 20
MAX_FFMPEG_CAP_SECONDS = 90
REPORT_NAME = ".dlstore-report.json"
CLIP_SECONDS = 8
SCENARIOS = ("loopback", "cap", "latency", "aes")
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


@dataclass(frozen=True)
class Shape:
    """How the stream is made: an 8 s clip, copied (stream copy) to ``seconds`` long (or
    to ``size_mb`` MB when ``seconds`` is 0), cut into 1 s segments."""

    name: str
    width: int
    height: int
    qp: int  # H.264 quantiser: 0 is lossless (~2 MB/s at 720p)
    seconds: int = 0

    def folder_name(self, size_mb: int) -> str:
        return f"{size_mb}mb" if self.name == "large" else self.name


SHAPES = {
    "large": Shape("large", 1280, 720, 0),  # --size-mb MB of ~2 MB segments
    "small": Shape("small", 640, 360, 41, seconds=300),  # 300 × 1 s segments, ~55 MB
}


def make_stream(folder: Path, shape: Shape, size_mb: int) -> Path:
    """The stream's clear playlist (hls/index.m3u8), and its AES-128 copy in aes/."""
    playlist = folder / "hls" / "index.m3u8"
    if not (folder / "aes" / "index.m3u8").exists():
        subprocess.run(
            [sys.executable, __file__, "--make-media", str(folder), "--size-mb", str(size_mb),
             "--shape", shape.name],
            check=True,
        )  # fmt: skip
    return playlist


def _make_stream(folder: Path, shape: Shape, size_mb: int) -> None:
    """The stream of ``shape`` in folder/hls (and encrypted in folder/aes): an 8 s H.264 +
    AAC clip, repeated with shifted timestamps (stream copy) and cut into 1 s segments."""
    from dlstore.testing.media import write_aes, write_hls

    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "hls" / "index.m3u8").exists():
        clip = _make_clip(folder / "clip.mp4", shape)
        if shape.seconds:
            repeats = -(-shape.seconds // CLIP_SECONDS)
        else:
            repeats = max(1, -(-size_mb * 1_000_000 // clip.stat().st_size))
        source = _repeat(clip, folder / "source.ts", repeats)
        clip.unlink()
        write_hls(source, folder / "hls")
        source.unlink()
        if shape.seconds:
            _cut_playlist(folder / "hls" / "index.m3u8", shape.seconds)
    write_aes(folder / "hls", folder / "aes", with_iv=False, media_sequence=0)


def _make_clip(clip: Path, shape: Shape) -> Path:
    import av

    out = av.open(str(clip), "w", format="mp4")
    video = out.add_stream(
        "libx264",
        rate=25,
        options={"preset": "ultrafast", "qp": str(shape.qp), "g": "25", "keyint_min": "25",
                 "sc_threshold": "0"},
    )  # fmt: skip
    video.width, video.height, video.pix_fmt = shape.width, shape.height, "yuv420p"
    audio = out.add_stream("aac", rate=48000, layout="stereo")
    size = f"{shape.width}x{shape.height}"
    with av.open(f"testsrc2=size={size}:rate=25:duration={CLIP_SECONDS}", format="lavfi") as src:
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
    return clip


def _repeat(clip: Path, source: Path, repeats: int) -> Path:
    """``clip`` copied ``repeats`` times into one MPEG-TS file, timestamps shifted."""
    import av

    with av.open(str(clip)) as src:
        # one period, in seconds, that every stream's packets fit in: no overlap between copies
        period = max(float(s.duration * s.time_base) for s in src.streams)
    period = Fraction(period).limit_denominator(25) + Fraction(1, 25)
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
    return source


def _cut_playlist(playlist: Path, count: int) -> None:
    """Keep the first ``count`` segments of a VOD playlist (the others' files removed)."""
    lines = playlist.read_text().splitlines()
    kept, segments = [], 0
    for line in lines:
        if line and not line.startswith("#"):
            segments += 1
            if segments > count:
                (playlist.parent / line).unlink()
                continue
        elif line.startswith("#EXTINF") and segments >= count:
            continue
        kept.append(line)
    playlist.write_text("\n".join(kept) + "\n")


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


def compile_bytecode(baseline: Path | None) -> None:
    """Compile dlstore's modules (and the baseline's) once, as an install would: with
    PYTHONDONTWRITEBYTECODE set, every run would compile them again."""
    import compileall

    import dlstore

    for folder in (Path(dlstore.__file__).parent, baseline):
        if folder is not None:
            compileall.compile_dir(str(folder), quiet=1)


def _venv_tool(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


def run_scenario(name, url, urls, out_root, total_bytes, args) -> list[Row]:
    """Every installed peer (of ``args.tools``) on ``url``, ``args.runs`` times each."""
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-", dir=out_root) as tmp:
        tmp_path = Path(tmp)
        urls_file = tmp_path / "urls.txt"
        urls_file.write_text("\n".join(urls) + "\n")
        for tool, threads, argv in peers(url, urls_file, tmp_path, args.threads, args.baseline):
            if args.tools and not any(tool.startswith(t) for t in args.tools):
                continue
            runs, note = args.runs, ""
            if tool == "ffmpeg" and name == "cap":
                seconds = total_bytes / (args.cap_mib * MIB)
                if seconds > MAX_FFMPEG_CAP_SECONDS:
                    print(f"  {name:8s} skip ffmpeg: one connection would take {seconds:.0f} s")
                    continue
                runs, note = 1, "1 run (one connection: slow)"
            rows.append(Row(tool, threads, [_run_once(argv(run), tmp_path) for run in range(runs)],
                            note))  # fmt: skip
            print(f"  {name:8s} {tool:20s} N={threads:<3} wall {rows[-1].median('wall'):6.2f} s")
    return rows


def _run_once(argv: list[str], tmp_path: Path) -> Sample:
    sample = measure(argv, tmp_path)
    report_file = tmp_path / REPORT_NAME
    if report_file.exists():
        split = json.loads(report_file.read_text())
        sample.remux, sample.startup = split["remux"], split["startup"]
        sample.imports = split["imports"]
    for leftover in tmp_path.iterdir():  # keep the disk tidy between runs
        if leftover.name not in ("urls.txt", ".time.txt"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
    return sample


# --------------------------------------------------------------------------- servers


@contextmanager
def serve(name: str, folder: Path, args) -> Iterator[Callable[[str], str]]:
    """A server of ``folder`` for scenario ``name``; yields its ``url(path)``. nginx when
    it is there (and not --server builtin), else dlstore's own test server."""
    nginx_scenario = "loopback" if name == "aes" else name
    why = "--server builtin" if args.server == "builtin" else nginx_missing(nginx_scenario)
    if why is None:
        with NginxServer(folder, nginx_scenario, args.cap_mib, args.latency) as server:
            yield server.url
        return
    print(f"  {name:8s} server: dlstore.testing.hls_server.HlsServer, not nginx ({why})")
    with HlsServer(folder) as builtin:
        if name == "cap":
            builtin.rate_limit_bps = int(args.cap_mib * MIB)
        elif name == "latency":
            builtin.latency = args.latency
        yield builtin.url


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


def ratios(name: str, rows: list[Row], total_bytes: int, args) -> list[str]:
    """The target lines of scenario ``name``: each a ratio against a peer of the same run."""
    by = {(r.tool, r.threads): r for r in rows}
    lines = []
    for tool, n in ((t, n) for n in args.threads for t in ("dlstore", "dlstore@base")):
        ours = by.get((tool, n))
        if ours is None:
            continue
        me = f"{tool} N={n} [{name}]"
        wall, cpu = ours.median("wall"), ours.median("cpu")
        ffmpeg, aria = by.get(("ffmpeg", 1)), by.get(("aria2c (fetch only)", n))
        ytdlp = by.get(("yt-dlp", n))
        if name == "cap":
            limit = total_bytes / (args.cap_mib * MIB * n)
            lines.append(_target(f"{me}: wall / physical limit ({limit:.2f} s)", wall / limit,
                                 "≤", 1.15))  # fmt: skip
        if name in ("loopback", "aes") and ffmpeg is not None:
            lines.append(_target(f"{me}: wall / ffmpeg -c copy", wall / ffmpeg.median("wall"),
                                 "≤", 1.5))  # fmt: skip
            lines.append(_target(f"{me}: CPU / ffmpeg -c copy CPU", cpu / ffmpeg.median("cpu"),
                                 "≤", 2.0))  # fmt: skip
        if name == "latency" and aria is not None:
            lines.append(_target(f"{me}: wall / aria2c -j{n}", wall / aria.median("wall"),
                                 "≤", 1.2))  # fmt: skip
        if name in ("loopback", "latency") and ytdlp is not None:
            lines.append(_target(f"{me}: yt-dlp -N{n} wall / ours", ytdlp.median("wall") / wall,
                                 "≥", 3.0))  # fmt: skip
        lines.append(_target(f"{me}: peak RSS MB", ours.median("rss_mb"), "≤", 100))
    return lines


def aes_ratios(all_rows: dict[str, list[Row]], args) -> list[str]:
    """AES-128's extra CPU: dlstore on the encrypted copy against the clear stream."""
    lines = []
    for tool, n in ((t, n) for n in args.threads for t in ("dlstore", "dlstore@base")):
        clear = {(r.tool, r.threads): r for r in all_rows.get("loopback", [])}.get((tool, n))
        aes = {(r.tool, r.threads): r for r in all_rows.get("aes", [])}.get((tool, n))
        if clear is not None and aes is not None:
            extra = aes.median("cpu") / clear.median("cpu") - 1
            lines.append(_target(f"{tool} N={n}: AES-128 extra CPU (aes / loopback - 1)", extra,
                                 "≤", 0.10))  # fmt: skip
    return lines


def _target(what: str, value: float, sense: str, bound: float) -> str:
    met = value <= bound if sense == "≤" else value >= bound
    return f"{'met ' if met else 'MISS'}  {what} = {value:.3f} (target {sense} {bound:g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--size-mb", type=int, default=256, help="the large shape's size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cap-mib", type=float, default=1.0, help="per-connection cap, MiB/s")
    parser.add_argument("--latency", type=float, default=0.04, help="per-request delay, s")
    parser.add_argument("--threads", type=int, nargs="+", default=[16])
    parser.add_argument("--media-dir", type=Path, default=Path(tempfile.gettempdir()) /
                        "dlstore-bench-media")  # fmt: skip
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], nargs="+", default=["all"])
    parser.add_argument("--server", choices=["nginx", "builtin"], default="nginx")
    parser.add_argument("--tools", nargs="+", help="only these peers (dlstore, ffmpeg, …)")
    parser.add_argument("--baseline", type=Path, help="also run the dlstore package in DIR")
    parser.add_argument("--make-media", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = SHAPES[args.shape]
    if args.make_media:
        _make_stream(args.make_media, shape, args.size_mb)
        return

    compile_bytecode(args.baseline)
    folder = args.media_dir / shape.folder_name(args.size_mb)
    playlist = make_stream(folder, shape, args.size_mb)
    uris = segment_uris(playlist.read_text())
    total = sum((playlist.parent / u).stat().st_size for u in uris)
    print(f"stream: {len(uris)} segments, {total / MIB:.1f} MiB in {playlist.parent}")
    scenarios = list(SCENARIOS) if "all" in args.scenario else args.scenario
    all_rows, lines = {}, []
    for name in scenarios:
        media = "aes" if name == "aes" else "hls"
        with serve(name, folder, args) as url:
            segment_urls = [url(f"/{media}/{u}") for u in uris]
            rows = run_scenario(name, url(f"/{media}/index.m3u8"), segment_urls, args.media_dir,
                                total, args)  # fmt: skip
        all_rows[name] = rows
        report(name, rows, total, args)
        lines += ratios(name, rows, total, args)
    lines += aes_ratios(all_rows, args)
    print(f"\n== targets ({shape.name} shape, medians of {args.runs} runs) ==")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
