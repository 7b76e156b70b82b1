"""Run dlstore's Alembic migrations from the installed package.

The migration scripts live at the repository's top level (``alembic/``) and ship
inside the wheel as ``dlstore/_alembic``, so ``dlstore db upgrade`` needs neither
a checkout nor an ini file and works from any directory.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError as SADBAPIError

from alembic import command
from dlstore import db
from dlstore.errors import DatabaseError
from dlstore.models import DLSTORE_TABLES

_PACKAGE_DIR = Path(__file__).resolve().parent


def include_name(name, type_, parent_names):  # type: ignore[no-untyped-def]
    """Alembic filter: dlstore's tables and what hangs off them, nothing of the Rust app's.

    The view ``download_status`` is dlstore's too, but no model: revision 0002 creates
    it and drops it on downgrade, so autogenerate must not see it (it is not listed).
    """
    if type_ == "table":
        return name in DLSTORE_TABLES
    if type_ in ("index", "column", "unique_constraint", "foreign_key_constraint"):
        return parent_names.get("table_name") in DLSTORE_TABLES
    return True


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    if type_ == "table":
        return name in DLSTORE_TABLES
    table = getattr(obj, "table", None)
    return table is None or table.name in DLSTORE_TABLES


def script_location() -> Path:
    for candidate in (_PACKAGE_DIR / "_alembic", _PACKAGE_DIR.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError("dlstore's migration scripts are missing from this installation.")


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if url is not None:
        config.attributes["dlstore_url"] = url
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "dlstore ships at least one migration"
    return head


def upgrade(url: str, revision: str = "head") -> None:
    _run(command.upgrade, url, revision)


def downgrade(url: str, revision: str) -> None:
    _run(command.downgrade, url, revision)


def ensure_migrated(engine: Engine) -> None:
    db.ensure_migrated(engine, head_revision())


def _run(action, url: str, revision: str) -> None:  # type: ignore[no-untyped-def]
    full = db.normalize_url(url)
    engine = db.make_engine(full)
    try:
        db.check_connection(engine)
    finally:
        engine.dispose()
    try:
        action(alembic_config(full), revision)
    except SADBAPIError as exc:
        raise DatabaseError(
            f"Migrating {db.describe(full)} failed: {db.first_line(exc.orig)}"
        ) from exc
