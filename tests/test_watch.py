"""`dlstore list --watch`: the live table, its escaping, Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console
from typer.testing import CliRunner

from dlstore.cli import app, watch
from dlstore.store import ProgressUpdate, QueueState
from dlstore.testing.rust_api import RustApi

runner = CliRunner()


def shown(table) -> str:  # type: ignore[no-untyped-def]
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(table)
    return console.file.getvalue()


def test_a_downloading_row_shows_its_bar_speed_and_eta(store):
    task = store.create(name="Holiday [bold]clip[/bold] \x1b[2J", url="https://e/a.m3u8")
    _, claim = store.claim("host:1:a")
    store.report_progress(
        claim, ProgressUpdate(40, 12, 30, 5_000_000, 1_048_576, 135, "seg-00012.ts", "Fetching")
    )
    store.create(name="Later", url="https://e/b.m3u8")
    text = shown(watch.render(store.list(), QueueState(False)))
    assert "dlstore: 2 task(s)" in text
    lines = text.splitlines()
    number = next(n for n, line in enumerate(lines) if task.id[:8] in line)
    line = lines[number]
    assert "downloading" in line and "40%" in line
    assert "1.0 MB/s" in line and "2m15s" in line and "Fetching" in lines[number + 1]
    assert "━" in line  # the bar
    assert "[bold]clip[/bold]" in line and "\\x1b[2J" in line  # literal, escaped
    assert "\x1b" not in text
    pending = next(line for line in text.splitlines() if "Later" in line)
    assert "pending" in pending and "MB/s" not in pending


def test_a_paused_queue_is_in_the_caption(store):
    state = store.set_paused(True, "disk full")
    text = shown(watch.render([], state))
    assert "Queue paused since" in text and "disk full" in text


def test_watch_redraws_until_ctrl_c_and_exits_0(migrated_url, monkeypatch):
    api = RustApi(migrated_url)
    api.create("First", "https://e/a.m3u8")
    calls = []

    def fake_sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 1:
            api.create("Second", "https://e/b.m3u8")
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(watch, "sleep", fake_sleep)
    result = runner.invoke(app, ["list", "--watch", "--db", migrated_url])
    api.close()
    assert result.exit_code == 0, result.output
    assert calls == [1.0, 1.0]
    assert "First" in result.stdout and "Second" in result.stdout  # the last frame


def test_watch_and_json_do_not_mix(migrated_url):
    result = runner.invoke(app, ["list", "--watch", "--json", "--db", migrated_url])
    assert result.exit_code == 1 and "--watch" in result.stderr


@pytest.mark.slow
def test_ctrl_c_ends_the_live_view_with_exit_code_0(migrated_url):
    api = RustApi(migrated_url)
    api.create("Watched", "https://e/a.m3u8")
    api.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlstore", "list", "--watch", "--db", migrated_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "160"},
    )
    time.sleep(3.0)  # start-up and a redraw or two
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Watched" in out and "Traceback" not in err
