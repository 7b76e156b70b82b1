"""Run dlstore's Alembic migrations from the installed package.

The migration scripts live at the repository's top level (``alembic/``) and ship
inside the wheel as ``dlstore/_alembic``, so ``dlstore db upgrade`` needs neither
a checkout nor an ini file and works from any directory.

Alembic itself is imported only to migrate: every command that opens the store
checks the database is at :func:`head_revision`, which reads the scripts' own
``revision``/``down_revision`` lines and so spares ``dlstore status`` the import.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError as SADBAPIError

from dlstore import db
from dlstore.errors import DatabaseError
from dlstore.models import DLSTORE_TABLES

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

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
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if url is not None:
        config.attributes["dlstore_url"] = url
    return config


def head_revision() -> str:
    """The newest migration: the one revision no script revises (else Alembic's answer)."""
    heads = script_heads(script_location() / "versions")
    return heads[0] if len(heads) == 1 else alembic_head_revision()


def alembic_head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "dlstore ships at least one migration"
    return head


def script_heads(versions: Path) -> list[str]:
    """Revisions of the scripts in ``versions`` that no other script names as its
    ``down_revision``; empty if a script's lines are not plain literals (ask Alembic)."""
    revisions: list[str] = []
    revised: set[str] = set()
    for script in sorted(versions.glob("*.py")):
        found = _literals(script, ("revision", "down_revision"))
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str) or not (down is None or isinstance(down, (str, tuple))):
            return []
        revisions.append(revision)
        revised.update((down,) if isinstance(down, str) else down or ())
    return [revision for revision in revisions if revision not in revised]


def _literals(path: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of the module-level assignments to ``names`` in ``path``, if literals."""
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                return {}
    return found


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    _run(command.upgrade, url, revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

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
