"""``dlstore list --watch``: the task table redrawn once a second until Ctrl-C.

Imported by the command's body only: rich (which typer brings) loads with it. Every
value from a row is shown as plain text (never as rich markup) with its control
characters escaped, since the web UI's users wrote it. On a terminal the table is
redrawn in place; piped elsewhere, the last one is printed when it stops.
"""

from __future__ import annotations

from time import sleep
from typing import TYPE_CHECKING

from dlstore.cli.format import format_queue, format_seconds, format_speed, format_when
from dlstore.errors import DlstoreError
from dlstore.redact import escape_controls
from dlstore.timeutil import format_ts, utcnow

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

    from dlstore.models import DownloadTask
    from dlstore.store import QueueState, TaskStore

REFRESH_SECONDS = 1.0
BAR_WIDTH = 12
RIGHT = ("", "SPEED", "ETA")
STATUS_STYLES = {
    "pending": "yellow",
    "downloading": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
}


def watch_tasks(
    store: TaskStore,
    *,
    status: str | None = None,
    limit: int | None = None,
    console: Console | None = None,
) -> None:
    """Show the tasks (as ``dlstore list`` selects them) until Ctrl-C, which returns."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    frame = render(store.list(status=status, limit=limit), store.queue_state())
    try:
        with Live(frame, console=console, auto_refresh=False) as live:
            while True:
                sleep(REFRESH_SECONDS)
                try:
                    frame = render(store.list(status=status, limit=limit), store.queue_state())
                except DlstoreError as exc:  # shown, and tried again a second later
                    frame = _problem(frame, exc)
                live.update(frame, refresh=True)
    except KeyboardInterrupt:
        return


def render(tasks: list[DownloadTask], queue: QueueState) -> Table:
    """The table of ``tasks``, with the pause switch's state in its caption."""
    from rich import box
    from rich.table import Table

    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"dlstore: {len(tasks)} task(s), {format_when(format_ts(utcnow()))} UTC",
        caption=format_queue(queue.paused, queue.reason, queue.since) if queue.paused else None,
        expand=False,
    )
    for header in ("ID", "NAME", "STATUS", "PROGRESS", "", "SPEED", "ETA"):
        if header == "NAME":  # with the message below; it wraps, the others keep their width
            table.add_column(header, overflow="fold", min_width=12, ratio=1)
        else:
            table.add_column(header, no_wrap=True, justify="right" if header in RIGHT else "left")
    for task in tasks:
        table.add_row(*_cells(task))
    return table


def _cells(task: DownloadTask) -> list[RenderableType]:
    from rich.progress_bar import ProgressBar

    downloading = task.status == "downloading"
    percent = max(0, min(100, task.progress or 0))
    speed = format_speed(task.speed_bps) if downloading and task.speed_bps else ""
    eta = format_seconds(task.eta_seconds) if downloading and task.eta_seconds is not None else ""
    message = task.error_message if task.status == "failed" else task.message
    name = _plain(task.name)
    if message:
        name.append("\n")
        name.append_text(_plain(message, "dim"))
    return [
        _plain(task.id[:8]),
        name,
        _plain(task.status, STATUS_STYLES.get(task.status, "")),
        ProgressBar(total=100, completed=percent, width=BAR_WIDTH),
        _plain(f"{percent}%"),
        _plain(speed),
        _plain(eta),
    ]


def _plain(value: object, style: str = "") -> Text:
    """A row's value as literal text: no markup, control characters escaped."""
    from rich.text import Text

    return Text(escape_controls(str(value)), style=style)


def _problem(frame: Table, exc: DlstoreError) -> Table:
    """The last table, captioned with why it could not be refreshed."""
    frame.caption = f"Not refreshed: {escape_controls(str(exc))}"
    return frame
