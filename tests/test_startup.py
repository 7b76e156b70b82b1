"""Start-up stays light: each command imports only what it uses (issue #10).

Each check runs the CLI in a fresh interpreter (this process has imported everything
already) and looks at ``sys.modules`` when it is done. No timings here: machines are
noisy; ``scripts/bench_startup.py`` times start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from dlstore import migrate
from dlstore.cli import app

DATABASE_LIBRARIES = {"sqlalchemy", "sqlmodel", "alembic"}
ENGINE_LIBRARIES = {"av", "requests", "m3u8"}

#: Runs ``dlstore ARGS…`` as the console script does, then writes the top-level
#: modules imported (and the exit code) as JSON to the file named first.
PROBE = """
import json, sys
report, sys.argv = sys.argv[1], ["dlstore", *sys.argv[2:]]
code = 0
if len(sys.argv) > 1:
    from dlstore.cli import main
    try:
        main()
    except SystemExit as exc:
        code = exc.code
else:
    import dlstore.cli
modules = sorted({name.partition(".")[0] for name in sys.modules})
with open(report, "w") as out:
    json.dump({"code": code, "modules": modules}, out)
"""


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    modules: set[str]


def run_cli(cwd: Path, *args: str) -> Run:
    report = cwd / ".modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOWNLOADER_")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.exists(), proc.stderr
    found = json.loads(report.read_text())
    report.unlink()
    return Run(found["code"], proc.stdout, proc.stderr, set(found["modules"]))


def test_importing_the_cli_imports_neither_database_nor_engine(tmp_path):
    run = run_cli(tmp_path)
    assert run.code == 0, run.stderr
    assert not run.modules & DATABASE_LIBRARIES
    assert not run.modules & (ENGINE_LIBRARIES | {"cryptography", "tqdm"})


def test_help_lists_every_command(tmp_path):
    run = run_cli(tmp_path, "--help")
    assert run.code == 0, run.stderr
    group = typer.main.get_command(app)
    names = sorted(group.commands)  # type: ignore[attr-defined]
    assert {"download", "status", "db", "daemon"} <= set(names)
    listed = run.stdout.split("Commands:", 1)[1].split()
    assert [name for name in names if name not in listed] == []
    db_run = run_cli(tmp_path, "db", "--help")
    assert {"upgrade", "current"} <= set(db_run.stdout.split())


@pytest.mark.parametrize(
    "args", [["--help"], ["db", "--help"], ["download", "--help"], ["status", "--help"]]
)
def test_help_imports_no_database_and_no_pyav(tmp_path, args):
    run = run_cli(tmp_path, *args)
    assert run.code == 0 and "Usage" in run.stdout, run.stderr
    assert not run.modules & DATABASE_LIBRARIES
    assert "av" not in run.modules


def test_download_imports_no_database_library(hls_server, tmp_path):
    out = tmp_path / "out.mp4"
    run = run_cli(tmp_path, "download", hls_server.url("/plain/index.m3u8"), "-o", out, "-q")
    assert run.code == 0, run.stderr
    assert f"saved {out}" in run.stdout
    assert run.modules >= ENGINE_LIBRARIES  # the whole download ran in that process
    assert not run.modules & DATABASE_LIBRARIES


def test_status_imports_no_alembic(tmp_path):
    database = tmp_path / "tasks.sqlite"
    migrate.upgrade(str(database))
    run = run_cli(tmp_path, "status", "no-such-task", "--db", database)
    assert run.code == 1 and "no-such-task" in run.stderr
    assert {"sqlalchemy", "sqlmodel"} <= run.modules
    assert "alembic" not in run.modules  # the migration check reads the scripts instead


# --- the head revision, read without Alembic -------------------------------------------


def test_head_revision_is_alembics():
    assert migrate.head_revision() == migrate.alembic_head_revision()


def write_script(folder: Path, revision: str, down: object) -> None:
    (folder / f"{revision}_step.py").write_text(
        f'"""Step {revision}."""\n\nfrom alembic import op\n\n'
        f"revision: str = {revision!r}\ndown_revision = {down!r}\n\n\n"
        "def upgrade() -> None:\n    op.execute('SELECT 1')\n"
    )


def test_script_heads_follow_down_revisions(tmp_path):
    write_script(tmp_path, "0001", None)
    write_script(tmp_path, "0002", "0001")
    assert migrate.script_heads(tmp_path) == ["0002"]
    write_script(tmp_path, "0003", "0001")  # a branch: two heads, Alembic decides
    assert migrate.script_heads(tmp_path) == ["0002", "0003"]
    write_script(tmp_path, "0004", ("0002", "0003"))  # the merge
    assert migrate.script_heads(tmp_path) == ["0004"]


def test_script_heads_give_up_on_what_they_cannot_read(tmp_path):
    write_script(tmp_path, "0001", None)
    (tmp_path / "0002_odd.py").write_text("revision = make_id()\ndown_revision = '0001'\n")
    assert migrate.script_heads(tmp_path) == []
