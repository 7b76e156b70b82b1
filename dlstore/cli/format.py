"""Text for people: the task table, one task's details and history, the pause state. Pure.

Every value printed comes from a row that strangers wrote (through the web UI) or
that servers shaped (a message naming a segment), so each one is shown through
:func:`~dlstore.redact.escape_controls`: an ESC, a newline or a bidi mark is
printed as an escape (``\\x1b``), never sent to the terminal as it is. The URL is
shown as :func:`~dlstore.redact.redact_url` shows it (no user-info or query string).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dlstore.redact import escape_controls, redact_url
from dlstore.sizes import format_rate, format_size
from dlstore.timeutil import parse_ts

if TYPE_CHECKING:
    from dlstore.models import DownloadTask


def format_bytes(count: int | None) -> str:
    """A size as :func:`~dlstore.sizes.format_size` writes it; "-" when unknown."""
    return "-" if count is None else format_size(count)


def format_speed(bytes_per_second: int | None) -> str:
    """A speed as :func:`~dlstore.sizes.format_rate` (and the status view) writes it;
    "-" when unknown."""
    return "-" if bytes_per_second is None else format_rate(bytes_per_second)


def format_seconds(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_when(text: str | None) -> str:
    try:
        moment = parse_ts(text)
    except ValueError:
        return text or "-"
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def format_progress(task: DownloadTask) -> str:
    done, total = task.downloaded_segments or 0, task.total_segments
    segments = f" ({done}/{total})" if total else ""
    return f"{task.progress or 0}%{segments}"


def format_table(tasks: list[DownloadTask]) -> str:
    header = ("ID", "STATUS", "PROGRESS", "CREATED (UTC)", "NAME")
    rows = [_row(t) for t in tasks]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _row(task: DownloadTask) -> tuple[str, ...]:
    cells = (task.id, task.status, format_progress(task), format_when(task.created_at), task.name)
    return tuple(_shown(cell) for cell in cells)


def format_task(task: DownloadTask) -> str:
    lines = [
        ("id", task.id),
        ("name", task.name),
        ("url", redact_url(task.url)),  # redacted; `status --json` has it whole, token and all
        ("status", task.status),
        ("progress", format_progress(task)),
    ]
    if task.status == "downloading":
        lines += [
            ("downloaded", format_bytes(task.downloaded_bytes)),
            ("speed", format_speed(task.speed_bps)),
            ("eta", format_seconds(task.eta_seconds)),
            ("current file", task.current_file or "-"),
            ("worker", task.worker_id or "-"),
        ]
    elif task.downloaded_bytes:
        lines.append(("downloaded", format_bytes(task.downloaded_bytes)))
    if task.message:
        lines.append(("message", task.message))
    if task.error_message:
        lines.append(("error", task.error_message))
    if task.output_path:
        lines.append(("output", task.output_path))
    lines += [
        ("attempts", str(task.attempts or 0)),
        ("created", format_when(task.created_at)),
        ("started", format_when(task.started_at)),
        ("completed", format_when(task.completed_at)),
    ]
    if task.run_after:
        lines.append(("retry after", format_when(task.run_after)))
    if task.priority:
        lines.append(("priority", str(task.priority)))
    history = format_history(task.history_entries() or [])
    lines += [("history" if n == 0 else "", line) for n, line in enumerate(history)]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {_shown(v)}" for k, v in lines)


def format_history(entries: list[Any], last: int = 5) -> list[str]:
    """The last few history entries, oldest first, one line each."""
    lines = [f"({len(entries) - last} earlier)"] if len(entries) > last else []
    for entry in entries[-last:]:
        if not isinstance(entry, dict):
            lines.append(_shown(entry))
            continue
        attempt = entry.get("attempt")
        cells = (
            format_when(entry.get("at")),
            str(entry.get("event") or "?").ljust(9),
            f"attempt {attempt}" if attempt is not None else "",
            str(entry.get("worker") or ""),
            str(entry.get("message") or ""),
        )
        lines.append(_shown("  ".join(c for c in cells if c)))
    return lines


def format_queue(paused: bool, reason: str | None, since: str | None) -> str:
    """One line on the pause switch (``dlstore pause`` / ``resume``)."""
    if not paused:
        return "Queue running: daemons start pending downloads."
    why = f" ({_shown(reason)})" if reason else ""
    return (
        f"Queue paused since {format_when(since)} UTC{why}: running downloads finish, "
        "none start until `dlstore resume`."
    )


def _shown(value: object) -> str:
    return escape_controls(str(value))
