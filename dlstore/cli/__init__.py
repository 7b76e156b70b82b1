"""The ``dlstore`` command line: typer commands, a few lines each.

The library raises :class:`~dlstore.errors.DlstoreError`; only this package turns
one into an exit code (1) and one line on stderr. Settings are built here, once
per command, from ``--config``/``config/downloader.yaml``, ``DOWNLOADER_*`` and
flags, and passed down.

Command modules register themselves on :data:`app` (or :data:`db_app`) with the
:func:`command` decorator and are imported at the bottom of this file.

Start-up is part of the interface: importing this package (what ``dlstore --help``
and ``dlstore download`` pay for) imports neither SQLAlchemy, SQLModel nor Alembic,
nor the engine's libraries (PyAV, requests, m3u8). Commands import what they use
inside their bodies; option types stay cheap to import, and :class:`Env` imports the
database modules when a command first asks for the engine or the store.
``tests/test_startup.py`` keeps it so; ``scripts/bench_startup.py`` times it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from dlstore.config import DEFAULT_DATABASE_PATH, load_settings
from dlstore.errors import DlstoreError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from dlstore.config import Settings
    from dlstore.store import TaskStore

# rich_markup_mode=None: plain (click) help and usage errors. Typer's rich rendering
# imports rich for every --help or usage error, which costs more than the rest of
# `dlstore --help` together (scripts/bench_startup.py).
app = typer.Typer(
    name="dlstore",
    help="Download HLS videos for the video manager's download_tasks table.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(
    help="Database schema (Alembic migrations).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(db_app, name="db")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy URL or SQLite file path. Default: $DOWNLOADER_DATABASE_URL, "
        f"then the config's database_url, then {DEFAULT_DATABASE_PATH}.",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file. Default: config/downloader.yaml if it exists.",
        show_default=False,
        dir_okay=False,
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def command(
    typer_app: typer.Typer = app, name: str | None = None, **kwargs: Any
) -> Callable[[F], F]:
    """Register a command whose DlstoreErrors become one stderr line and exit code 1."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return func(*args, **kw)
            except DlstoreError as exc:
                fail(str(exc))

        typer_app.command(name=name, **kwargs)(wrapper)
        return func

    return decorate


def fail(message: str, code: int = 1) -> None:
    from dlstore.redact import escape_controls  # a message may quote a row's own text

    typer.echo(f"dlstore: error: {escape_controls(' '.join(message.split()))}", err=True)
    raise typer.Exit(code)


class Env:
    """What a command works with: settings, and on demand the database.

    A context manager: the engine it opened is disposed of on exit.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None

    def __enter__(self) -> Env:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def database_url(self) -> str:
        return self.settings.resolved_database_url()

    def engine(self) -> Engine:
        from dlstore import db

        if self._engine is None:
            if self.settings.database_url is None:
                # The embedded default: create its folder, zero set-up.
                DEFAULT_DATABASE_PATH.parent.mkdir(parents=True, exist_ok=True)
            self._engine = db.make_engine(self.database_url)
        return self._engine

    def store(self) -> TaskStore:
        """The task store of a migrated database (NotMigratedError otherwise)."""
        from dlstore import migrate
        from dlstore.store import TaskStore

        engine = self.engine()
        migrate.ensure_migrated(engine)
        return TaskStore(engine)


def load_env(config: Path | None = None, database: str | None = None, **flags: Any) -> Env:
    settings = load_settings(config)
    return Env(settings.replace(database_url=database, **flags))


def main() -> None:
    app(prog_name="dlstore")


# Command modules register on import; keep these imports last.
from dlstore.cli import admin, daemon, download  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
