"""``dlstore download`` (one URL to one file, no database) and ``dlstore batch`` (a JSON list).

Both call :func:`dlstore.engine.download`; ``batch --enqueue`` inserts rows through
:class:`dlstore.store.TaskStore` instead, for the daemon to fetch.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dlstore.cli import ConfigOption, DbOption, command, fail, load_env
from dlstore.cli.format import format_bytes, format_speed
from dlstore.errors import DlstoreError, InvalidInputError
from dlstore.options import (
    BatchTask,
    Job,
    batch_task,
    format_from_suffix,
    live_options,
    live_request,
    output_file,
    parse_headers,
)
from dlstore.redact import escape_controls
from dlstore.validate import check_url

if TYPE_CHECKING:  # the engine (PyAV, requests, m3u8) is imported when a download starts
    from dlstore.config import Settings
    from dlstore.engine import DownloadResult, Progress

INTERRUPTED_EXIT = 130

Quality = Annotated[
    str | None,
    typer.Option(
        help='"1080p", "720p", …: that height or the nearest lower; "best" (default) or "worst".'
    ),  # fmt: skip
]
Threads = Annotated[
    int | None, typer.Option(help="Parallel segment downloads (default: the profile's).")
]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", help="fast, stable or low_bandwidth (or the config's).")
]
Header = Annotated[
    list[str] | None,
    typer.Option("--header", help="Extra HTTP header 'Name: value' (repeatable)."),
]
Format = Annotated[
    str | None,
    typer.Option("--format", help='"mp4" (default) or "ts"; default follows -o\'s suffix.'),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")]
Audio = Annotated[
    str | None,
    typer.Option(
        "--audio",
        help='"default" (the playlist\'s default audio), "all" (every language, muxed), or '
        "languages in order of preference, e.g. fr,en.",
    ),
]
Subs = Annotated[
    str | None,
    typer.Option(
        "--subs",
        help='Subtitles to save beside the video as <name>.<lang>.vtt: "all" (default), '
        '"none", or languages, e.g. en,fr.',
    ),
]
EmbedSubs = Annotated[
    bool, typer.Option("--embed-subs", help="Also put the subtitles into the MP4 (mov_text).")
]
LiveFlag = Annotated[
    bool,
    typer.Option(
        "--live",
        help="Record a live stream (a playlist without #EXT-X-ENDLIST) until it ends or "
        "--record-limit; without it a live stream is refused.",
    ),
]
RecordLimit = Annotated[
    str | None,
    typer.Option(
        "--record-limit",
        help="With --live: stop after this much recorded media: 90, 90s, 30m, 1.5h (max 24h).",
    ),
]


@command(name="download")
def download_command(
    url: Annotated[str, typer.Argument(help="M3U8 playlist URL (http or https).")],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="File to write, or an existing folder to write into."),
    ],
    quality: Quality = None,
    threads: Threads = None,
    profile: ProfileOpt = None,
    header: Header = None,
    output_format: Format = None,
    overwrite: Overwrite = False,
    audio: Audio = None,
    subs: Subs = None,
    embed_subs: EmbedSubs = False,
    live: LiveFlag = False,
    record_limit: RecordLimit = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            "--work-dir",
            help="Folder for the segments (default: beside the output). Running the same "
            "command again resumes from it.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    config: ConfigOption = None,
) -> None:
    """Download one HLS stream to a file (no database involved).

    With --live, a live stream is recorded until it ends, --record-limit, or Ctrl-C
    (which keeps what was recorded; a second Ctrl-C abandons it).
    """
    url = check_url(url)
    headers = parse_headers(header)
    from dlstore.options import check_task_metadata, stream_flags, stream_options

    streams = check_task_metadata(stream_flags(audio, subs, embed_subs))
    live_key, limit = live_request(live, record_limit)
    fmt = output_format or format_from_suffix(output)
    target = output_file(output, url, fmt)
    with load_env(config) as env:
        options = env.settings.download_options(
            profile=profile, quality=quality, headers=headers, output_format=fmt, threads=threads
        )
    options = live_options(stream_options(options, streams), live_key, limit)
    work = work_dir or target.parent / f".{target.name}.parts"
    result = _run(Job(url, target, work, options), overwrite=overwrite, quiet=quiet)
    typer.echo(_summary(result))


@command()
def batch(
    tasks_file: Annotated[
        Path, typer.Argument(metavar="TASKS.json", help="JSON array of tasks.", dir_okay=False)
    ],
    enqueue: Annotated[
        bool, typer.Option("--enqueue", help="Insert pending rows for the daemon instead.")
    ] = False,
    overwrite: Overwrite = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    database: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Download every task in TASKS.json into the output folder, or queue them (--enqueue).

    Each task is {"name", "url", "quality"?, "output_dir"?, "headers"?, "format"?,
    "profile"?, "audio"?, "subtitles"?, "embed_subtitles"?, "live"?, "record_limit"?,
    "priority"?}; priority (-1000..1000) orders the --enqueue'd rows. The whole file is
    checked before anything starts.
    """
    with load_env(config, database) as env:
        tasks = read_batch(tasks_file, env.settings)
        if enqueue:
            store = env.store()
            for task in tasks:
                row = store.create(
                    name=task.name, url=task.url, metadata=task.metadata, priority=task.priority
                )
                typer.echo(f"{row.id}\t{task.name}")
            return
        settings = env.settings
    failures = 0
    for number, task in enumerate(tasks, 1):
        prefix = f"[{number}/{len(tasks)}] {task.name}"
        try:
            result = _run(task.job(settings, overwrite=overwrite), overwrite=overwrite, quiet=quiet)
        except DlstoreError as exc:
            failures += 1
            typer.echo(f"{prefix}: failed: {escape_controls(' '.join(str(exc).split()))}", err=True)
            continue
        typer.echo(f"{prefix}: {_summary(result)}")
    if failures:
        fail(f"{failures} of {len(tasks)} downloads failed.")


# --------------------------------------------------------------------------- batch file


def read_batch(path: Path, settings: Settings) -> list[BatchTask]:
    """The tasks in ``path``, all checked; an InvalidInputError naming every bad entry."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"The tasks file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"The tasks file {path} cannot be read: {exc}.") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"The tasks file {path} is not valid JSON (line {exc.lineno}: {exc.msg})."
        ) from exc
    if not isinstance(raw, list):
        raise InvalidInputError(
            f"The tasks file {path} must hold a JSON array of tasks, not a {type(raw).__name__}."
        )
    if not raw:
        raise InvalidInputError(f"The tasks file {path} holds no tasks.")
    tasks, problems = [], []
    for number, entry in enumerate(raw, 1):
        try:
            tasks.append(batch_task(entry, settings))
        except DlstoreError as exc:
            label = entry.get("name") if isinstance(entry, Mapping) else None
            where = f"task {number}" + (f" ({label!r})" if isinstance(label, str) else "")
            problems.append(f"{where}: {exc}")
    if problems:
        raise InvalidInputError(f"{path}: " + " | ".join(problems))
    return tasks


# --------------------------------------------------------------------------- helpers


def _run(job: Job, *, overwrite: bool, quiet: bool) -> DownloadResult:
    from dlstore.engine import download

    bar = _Bar(job.output_path.name, disabled=quiet)
    cancel, stop = threading.Event(), threading.Event()
    try:
        with _first_interrupt_stops(stop, job.options.record_live):
            return download(
                job.url,
                job.output_path,
                work_dir=job.work_dir,
                options=job.options,
                on_progress=bar.update,
                cancel=cancel,
                overwrite=overwrite,
                stop_recording=stop,
            )
    except KeyboardInterrupt:
        cancel.set()
        bar.close()
        fail("Interrupted; run the same command again to resume.", INTERRUPTED_EXIT)
        raise AssertionError("unreachable") from None  # fail() raises typer.Exit
    finally:
        bar.close()


@contextlib.contextmanager
def _first_interrupt_stops(stop: threading.Event, live: bool) -> Iterator[None]:
    """While a live recording runs, the first Ctrl-C ends it and keeps what was recorded
    (it is joined into the output); a second one interrupts as usual."""
    if not live or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        typer.echo("\nStopping the recording; Ctrl-C again to abandon it.", err=True)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Bar:
    """A tqdm bar over segments, fed from engine Progress snapshots."""

    def __init__(self, label: str, disabled: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=0, unit="seg", desc=label[:40], disable=True if disabled else None, leave=False
        )

    def update(self, progress: Progress) -> None:
        bar = self._bar
        if progress.segments_total and bar.total != progress.segments_total:
            bar.total = progress.segments_total
        bar.n = progress.segments_done
        speed = format_speed(progress.speed_bps or None)
        postfix = f"{format_bytes(progress.bytes_done)} {speed}"
        if progress.fraction is not None:  # a live recording: say how much is recorded
            postfix = f"{progress.message}, {postfix}"
        bar.set_postfix_str(postfix, refresh=False)
        bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _summary(result: DownloadResult) -> str:
    media = result.media
    resolution = f"{media.width}x{media.height}, " if media.width and media.height else ""
    subtitles = ", ".join(path.name for path in result.subtitle_files)
    gaps = ""
    if result.live_gaps is not None:
        count = len(result.live_gaps)
        gaps = f", recorded live with {count} gap{'s' if count != 1 else ''}"
    return (
        f"saved {result.output_path} ({media.duration:.1f} s, {resolution}"
        f"{format_bytes(media.size_bytes)}{gaps})"
        + (f"; subtitles: {subtitles}" if subtitles else "")
    )
