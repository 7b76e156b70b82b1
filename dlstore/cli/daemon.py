"""``dlstore daemon``: run pending downloads until stopped (or, with --exit-when-idle, done)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from dlstore.cli import ConfigOption, DbOption, command, load_env

MaxConcurrentOption = Annotated[
    int | None,
    typer.Option(
        "--max-concurrent",
        min=1,
        show_default=False,
        help="Downloads at once. Default: $DOWNLOADER_MAX_CONCURRENT, then the "
        "config's max_concurrent_tasks (3).",
    ),
]
PollIntervalOption = Annotated[
    float | None,
    typer.Option(
        "--poll-interval",
        min=0.01,
        show_default=False,
        help="Seconds between looks for pending rows. Default: the config's poll_interval (2).",
    ),
]
LeaseOption = Annotated[
    float | None,
    typer.Option(
        "--lease",
        show_default=False,
        help="Seconds without a heartbeat after which a downloading row counts "
        "as orphaned and is taken over. Default: the config's lease_seconds (30).",
    ),
]
MetricsListenOption = Annotated[
    str | None,
    typer.Option(
        "--metrics-listen",
        metavar="HOST:PORT",
        show_default=False,
        help="Serve Prometheus metrics on http://HOST:PORT/metrics and a health check on "
        "/healthz. Default: the config's metrics_listen (off).",
    ),
]
ExitWhenIdleOption = Annotated[
    bool,
    typer.Option(
        "--exit-when-idle",
        help="Exit once nothing runs and no pending row is due (batch runs, tests).",
    ),
]


@command(name="daemon")
def daemon_command(
    max_concurrent: MaxConcurrentOption = None,
    poll_interval: PollIntervalOption = None,
    lease: LeaseOption = None,
    exit_when_idle: ExitWhenIdleOption = False,
    metrics_listen: MetricsListenOption = None,
    database: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Download pending tasks: claim, download, report progress; stop cleanly on SIGTERM."""
    from dlstore import logs
    from dlstore.daemon import Daemon
    from dlstore.sdnotify import Notifier

    with load_env(
        config,
        database,
        max_concurrent_tasks=max_concurrent,
        poll_interval=poll_interval,
        lease_seconds=lease,
        metrics_listen=metrics_listen,
    ) as env:
        settings = env.settings
        if not settings.enabled:
            typer.echo(
                "dlstore daemon: downloads are disabled (DOWNLOADER_ENABLED=false); not starting.",
                err=True,
            )
            return
        logger = logs.setup(
            settings.log_level, settings.log_file, journald=bool(os.environ.get("JOURNAL_STREAM"))
        )
        store = env.store()
        daemon = Daemon(
            store,
            settings,
            notifier=Notifier.from_environ(os.environ),
            exit_when_idle=exit_when_idle,
            logger=logger.getChild("daemon"),
        )
        daemon.install_signal_handlers()
        daemon.run()
