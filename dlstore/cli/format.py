"""Text for people: the task table and one task's details. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlstore.timeutil import parse_ts

if TYPE_CHECKING:
    from dlstore.models import DownloadTask


def format_bytes(count: int | None) -> str:
    if count is None:
        return "-"
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


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
    rows = [(t.id, t.status, format_progress(t), format_when(t.created_at), t.name) for t in tasks]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths)] + [str(row[-1])]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def format_task(task: DownloadTask) -> str:
    lines = [
        ("id", task.id),
        ("name", task.name),
        ("url", task.url),
        ("status", task.status),
        ("progress", format_progress(task)),
    ]
    if task.status == "downloading":
        speed = f"{format_bytes(task.speed_bps)}/s" if task.speed_bps is not None else "-"
        lines += [
            ("downloaded", format_bytes(task.downloaded_bytes)),
            ("speed", speed),
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
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)
