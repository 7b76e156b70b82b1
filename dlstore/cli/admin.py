"""Admin commands: db upgrade|current, add, list, status, retry, cancel, pause, resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dlstore.cli import ConfigOption, DbOption, command, db_app, load_env
from dlstore.cli.download import (
    Audio,
    EmbedSubs,
    Header,
    LiveFlag,
    ProfileOpt,
    Quality,
    RecordLimit,
    Subs,
)
from dlstore.cli.format import format_queue, format_table, format_task
from dlstore.errors import DlstoreError
from dlstore.options import (
    PRIORITY_RANGE,
    caller_metadata,
    check_priority,
    live_request,
    parse_headers,
)
from dlstore.validate import check_url

if TYPE_CHECKING:  # imported inside the commands: `dlstore --help` needs no database
    from dlstore.models import DownloadTask
    from dlstore.store import QueueState, TaskStore

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@command(db_app, name="upgrade")
def db_upgrade(database: DbOption = None, config: ConfigOption = None) -> None:
    """Create or update the download_tasks schema (idempotent; adopts the app's table)."""
    from dlstore import db, migrate

    with load_env(config, database) as env:
        env.engine()  # creates the default database's folder
        migrate.upgrade(env.database_url)
    typer.echo(
        f"{db.describe(db.normalize_url(env.database_url))}: at schema "
        f"{migrate.head_revision()} (head)"
    )


@command(db_app, name="current")
def db_current(database: DbOption = None, config: ConfigOption = None) -> None:
    """Print the database's dlstore schema revision."""
    from dlstore import db, migrate

    with load_env(config, database) as env:
        revision = db.current_revision(env.engine())
    head = migrate.head_revision()
    if revision is None:
        typer.echo("none (not migrated: run `dlstore db upgrade`)")
    else:
        typer.echo(f"{revision}{' (head)' if revision == head else f' (head is {head})'}")


@command()
def add(
    url: Annotated[str, typer.Argument(help="M3U8 playlist URL (http or https).")],
    name: Annotated[str, typer.Option("--name", help="Name of the video (and its file).")],
    quality: Quality = None,
    output_dir: Annotated[
        str | None, typer.Option("--output-dir", help="Folder under the output root.")
    ] = None,
    header: Header = None,
    output_format: Annotated[
        str | None, typer.Option("--format", help='"mp4" (default) or "ts".')
    ] = None,
    profile: ProfileOpt = None,
    priority: Annotated[
        int,
        typer.Option(help=f"{PRIORITY_RANGE[0]}..{PRIORITY_RANGE[1]}; higher is claimed sooner."),
    ] = 0,
    audio: Audio = None,
    subs: Subs = None,
    embed_subs: EmbedSubs = False,
    live: LiveFlag = False,
    record_limit: RecordLimit = None,
    database: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Queue a download (a pending row); prints its id."""
    from dlstore.options import stream_flags

    live_key, limit = live_request(live, record_limit)
    metadata: dict[str, Any] = {
        "quality": quality,
        "output_dir": output_dir,
        "headers": parse_headers(header),
        "format": output_format,
        "profile": profile,
        **stream_flags(audio, subs, embed_subs),
        "live": live_key,
        "record_limit": limit,
    }
    from dlstore.paths import check_name  # the daemon refuses what this refuses

    if not name.strip():
        raise DlstoreError("--name must not be empty.")
    check_name(name)
    check_priority(priority)
    with load_env(config, database) as env:
        metadata = caller_metadata(metadata, env.settings.profiles)
        task = env.store().create(
            name=name, url=check_url(url), metadata=metadata, priority=priority
        )
    typer.echo(task.id)


@command(name="list")
def list_tasks(
    status: Annotated[str | None, typer.Option(help="Only tasks with this status.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many, newest first.")] = None,
    as_json: JsonOption = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Redraw the table once a second until Ctrl-C.")
    ] = False,
    database: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """List tasks, newest first."""
    from dlstore.models import Status

    if status is not None and status not in {s.value for s in Status}:
        raise DlstoreError(
            f"Unknown status {status!r}; use one of {', '.join(s.value for s in Status)}."
        )
    if watch:
        if as_json:
            raise DlstoreError("--watch draws a table: leave out --json.")
        from dlstore.cli.watch import watch_tasks

        with load_env(config, database) as env:
            watch_tasks(env.store(), status=status, limit=limit)
        return
    with load_env(config, database) as env:
        store = env.store()
        tasks = store.list(status=status, limit=limit)
        queue = None if as_json else store.queue_state()
    if as_json:
        typer.echo(json.dumps([t.to_json() for t in tasks], indent=2))
        return
    _print_paused(queue)
    if tasks:
        typer.echo(format_table(tasks))
    else:
        typer.echo("No tasks." if status is None else f"No {status} tasks.")


@command()
def status(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: JsonOption = False,
    database: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Show one task: status, progress, speed, ETA, error, history."""
    with load_env(config, database) as env:
        store = env.store()
        task = store.get(task_id)
        queue = None if as_json else store.queue_state()
    _print_paused(queue)
    _print(task, as_json)


@command()
def retry(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    database: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Put a failed or cancelled task back in the queue; it resumes where it stopped."""
    from dlstore.store import TaskStore

    _transition(TaskStore.retry, task_id, database, config)


@command()
def cancel(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    database: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Cancel a pending or downloading task."""
    from dlstore.store import TaskStore

    _transition(TaskStore.cancel, task_id, database, config)


@command()
def pause(
    reason: Annotated[
        str | None, typer.Option(help="Why, shown by list and status.", show_default=False)
    ] = None,
    database: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Pause the queue: every daemon on this database finishes what runs, starts nothing."""
    _set_paused(True, reason, database, config)


@command()
def resume(database: DbOption = None, config: ConfigOption = None) -> None:
    """Resume the queue after `dlstore pause`: daemons start pending downloads again."""
    _set_paused(False, None, database, config)


def _set_paused(
    paused: bool, reason: str | None, database: str | None, config: Path | None
) -> None:
    with load_env(config, database) as env:
        state = env.store().set_paused(paused, reason)
    typer.echo(format_queue(state.paused, state.reason, state.since))


def _print_paused(queue: QueueState | None) -> None:
    """The header line of `list` and `status` while the queue is paused."""
    if queue is not None and queue.paused:
        typer.echo(format_queue(queue.paused, queue.reason, queue.since))


def _transition(
    change: Callable[[TaskStore, str], DownloadTask],
    task_id: str,
    database: str | None,
    config: Path | None,
) -> None:
    """One user transition of the store (retry, cancel); prints the row's new status."""
    with load_env(config, database) as env:
        task = change(env.store(), task_id)
    typer.echo(f"{task.id}: {task.status}")


def _print(task: DownloadTask, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(task.to_json(), indent=2))
    else:
        typer.echo(format_task(task))
