"""README.md is kept true by tests (in the style of sqlite-utils' tests/test_docs.py).

Every command and every configuration key appears in README, and the DDL that
README shows the Rust team is the models' table, column for column and index for
index: README's ``sql`` block is run on an empty SQLite database and compared
with the table the models create.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path

import pytest
import typer.main
from sqlalchemy import create_engine

from dlstore.cli import app
from dlstore.config import ENV_VARS, Profile, Settings
from dlstore.models import SQLModel

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _command_names() -> list[str]:
    names = []

    def walk(group, prefix: str) -> None:  # type: ignore[no-untyped-def]
        for name, command in sorted(group.commands.items()):
            full = f"{prefix}{name}"
            if hasattr(command, "commands"):
                walk(command, f"{full} ")
            else:
                names.append(full)

    walk(typer.main.get_command(app), "")
    return names


def _config_keys() -> list[str]:
    keys = {f.name for f in dataclasses.fields(Settings)}
    keys |= {f.name for f in dataclasses.fields(Profile)}
    return sorted(keys)


def test_the_command_list_is_not_empty():
    assert {"add", "list", "status", "daemon", "download", "db upgrade"} <= set(_command_names())


@pytest.mark.parametrize("name", _command_names())
def test_every_command_is_in_readme(name: str):
    assert f"dlstore {name}" in README, f"README does not show `dlstore {name}`"


@pytest.mark.parametrize("key", _config_keys())
def test_every_config_key_is_in_readme(key: str):
    shown = f"`{key}`" in README or re.search(rf"^\s+{re.escape(key)}:", README, re.MULTILINE)
    assert shown, f"README does not document the config key {key!r}"


@pytest.mark.parametrize("variable", sorted(ENV_VARS))
def test_every_environment_variable_is_in_readme(variable: str):
    assert f"`{variable}`" in README


def _readme_ddl() -> str:
    blocks = re.findall(r"```sql\n(.*?)```", README, re.DOTALL)
    ddl = [b for b in blocks if "CREATE TABLE download_tasks" in b]
    assert len(ddl) == 1, "README must show the download_tasks DDL in exactly one sql block"
    return ddl[0]


def _schema(conn: sqlite3.Connection) -> dict:
    columns = [
        (name, type_.upper(), bool(notnull), _norm(default), bool(pk))
        for _, name, type_, notnull, default, pk in conn.execute(
            "PRAGMA table_info(download_tasks)"
        )
    ]
    indexes = {}
    for _, name, unique, origin, partial in conn.execute("PRAGMA index_list(download_tasks)"):
        if origin != "c":  # the primary key's own index
            continue
        cols = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
        where = _norm(sql.split(" WHERE ", 1)[1]) if partial else None
        indexes[name] = (cols, bool(unique), where)
    return {"columns": columns, "indexes": indexes}


def _norm(text: str | None) -> str | None:
    return None if text is None else re.sub(r"\s+", " ", text).strip()


def test_readme_ddl_is_the_models_table(tmp_path):
    shown = sqlite3.connect(":memory:")
    shown.executescript(_readme_ddl())
    engine = create_engine(f"sqlite:///{tmp_path / 'models.sqlite'}")
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    made = sqlite3.connect(tmp_path / "models.sqlite")
    assert _schema(shown) == _schema(made)
