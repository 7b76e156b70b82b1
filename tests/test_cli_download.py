"""`dlstore download` and `dlstore batch` as a user runs them, against the local server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dlstore.cli.download  # noqa: F401 - registers the commands (if cli/__init__ has not)
from dlstore.cli import app
from dlstore.store import TaskStore
from dlstore.testing.media import decode_check

runner = CliRunner()
SAMPLE = Path(__file__).parent.parent / "scripts" / "tasks.sample.json"


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A working directory with a config that keeps downloads in tmp_path and retries fast."""
    monkeypatch.chdir(tmp_path)
    for var in ("DOWNLOADER_OUTPUT_DIR", "DOWNLOADER_TEMP_DIR", "DOWNLOADER_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "downloader.yaml").write_text(
        "downloader:\n"
        "  output_dir: ./downloads\n"
        "  temp_dir: ./temp\n"
        "  default_threads: 4\n"
        "  retry_delay: 0.01\n"
        "  connect_timeout: 5\n"
        "  read_timeout: 5\n"
        "  profiles:\n"
        "    stable: {threads: 4, max_retries: 3, retry_delay: 0.01}\n"
    )
    return tmp_path


def run(*args: str, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def test_commands_have_help():
    assert "--quality" in run("download", "--help").stdout
    assert "--enqueue" in run("batch", "--help").stdout


def test_download_to_a_file(hls_server, workdir):
    out = workdir / "clips" / "plain.mp4"
    result = run("download", hls_server.url("/plain/index.m3u8"), "-o", out, "-q")
    assert f"saved {out}" in result.stdout and "320x180" in result.stdout
    decoded = decode_check(out)
    assert decoded.errors == () and decoded.duration == pytest.approx(8.0, abs=0.35)
    assert not (out.parent / ".plain.mp4.parts").exists()


def test_download_options_reach_the_engine(hls_server, workdir):
    hls_server.required_headers = {"Referer": "https://site/"}
    out = workdir / "m.ts"  # the suffix picks the format
    run(
        "download", hls_server.url("/master/master.m3u8"), "-o", out, "--quality", "144p",
        "--threads", "2", "--profile", "fast", "--header", "Referer: https://site/", "-q",
    )  # fmt: skip
    decoded = decode_check(out)
    assert out.read_bytes()[0] == 0x47
    assert (decoded.width, decoded.height, decoded.streams) == (256, 144, 2)


def test_download_into_a_folder_names_the_file_from_the_url(hls_server, workdir):
    run("download", hls_server.url("/fmp4/index.m3u8"), "-o", workdir, "-q")
    assert (workdir / "index.mp4").is_file()


def test_download_refuses_to_overwrite(hls_server, workdir):
    out = workdir / "v.mp4"
    out.write_bytes(b"keep")
    result = run("download", hls_server.url("/plain/index.m3u8"), "-o", out, "-q", code=1)
    assert "already exists" in result.stderr
    assert out.read_bytes() == b"keep"
    run("download", hls_server.url("/plain/index.m3u8"), "-o", out, "-q", "--overwrite")
    assert decode_check(out).errors == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["file:///etc/passwd"], "Only http:// and https://"),
        (["ftp://127.0.0.1/x.m3u8"], "Only http:// and https://"),
        (["https://127.0.0.1:9/x.m3u8", "--header", "no colon"], "Name: value"),
        (["https://127.0.0.1:9/x.m3u8", "--profile", "turbo"], "Unknown profile"),
        (["https://127.0.0.1:9/x.m3u8", "--threads", "99"], "max_threads"),
        (["https://127.0.0.1:9/x.m3u8", "--format", "avi"], "Unknown format"),
    ],
)
def test_download_bad_arguments(args, message, workdir):
    result = run("download", *args, "-o", workdir / "x.mp4", code=1)
    assert message in result.stderr
    assert result.stderr.startswith("dlstore: error:") and result.stderr.count("\n") == 1


def test_download_errors_are_one_line(hls_server, workdir):
    hls_server.fail_always["/plain/seg-002.ts"] = 404
    result = run("download", hls_server.url("/plain/index.m3u8"), "-o", workdir / "x.mp4", "-q",
                 code=1)  # fmt: skip
    assert "seg-002.ts" in result.stderr and "HTTP 404" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (workdir / "x.mp4").exists()
    # the work folder (and whatever segments finished) is kept beside the output
    assert (workdir / ".x.mp4.parts" / "manifest.json").is_file()


def test_html_instead_of_a_playlist(hls_server, workdir):
    from dlstore.testing.hls_server import Body

    hls_server.bodies["/page"] = Body(b"<html><body>hi</body></html>", "text/html")
    result = run("download", hls_server.url("/page"), "-o", workdir / "x.mp4", "-q", code=1)
    assert "HTML page" in result.stderr


# --------------------------------------------------------------------------- batch


def write_tasks(path: Path, tasks) -> Path:
    path.write_text(json.dumps(tasks))
    return path


def test_batch_downloads_into_the_output_folder(hls_server, workdir):
    tasks = write_tasks(
        workdir / "tasks.json",
        [
            {"name": "First: plain", "url": hls_server.url("/plain/index.m3u8")},
            {"name": "Second", "url": hls_server.url("/master/master.m3u8"), "quality": "180p",
             "output_dir": "shows/s1", "format": "ts", "profile": "fast"},
        ],
    )  # fmt: skip
    result = run("batch", tasks, "-q")
    assert "[1/2] First: plain: saved" in result.stdout
    first = workdir / "downloads" / "First_ plain.mp4"
    second = workdir / "downloads" / "shows" / "s1" / "Second.ts"
    assert decode_check(first).errors == ()
    assert (decode_check(second).width, decode_check(second).height) == (320, 180)
    assert not list((workdir / "temp").glob("batch-*"))  # work folders removed


def test_batch_goes_on_after_a_failure_and_exits_nonzero(hls_server, workdir):
    tasks = write_tasks(
        workdir / "tasks.json",
        [
            {"name": "missing", "url": hls_server.url("/nope.m3u8")},
            {"name": "good", "url": hls_server.url("/plain/index.m3u8")},
        ],
    )
    result = run("batch", tasks, "-q", code=1)
    assert "[1/2] missing: failed:" in result.stderr and "HTTP 404" in result.stderr
    assert "1 of 2 downloads failed" in result.stderr
    assert (workdir / "downloads" / "good.mp4").is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"name": "x"}', "JSON array"),
        ("[]", "no tasks"),
        ('[{"name": "a"}]', '"url" is required'),
        ('[{"name": "a", "url": "file:///etc/passwd"}]', "Only http"),
        ('[{"name": "a", "url": "https://h/x", "qualty": "720p"}]', "unknown key 'qualty'"),
        ('[{"name": "a", "url": "https://h/x", "quality": "ultra"}]', "Unknown quality"),
        ('[{"name": "a", "url": "https://h/x", "output_dir": "../../etc"}]', "output root"),
        ('[{"name": "../../etc/passwd", "url": "https://h/x"}]', "leave the output folder"),
        ('[{"name": "a", "url": "https://h/x", "headers": ["Referer"]}]', "headers must be"),
        ('[{"name": "a", "url": "https://h/x", "profile": "turbo"}]', "Unknown profile"),
        ('[{"name": "a", "url": "https://h/x", "format": "avi"}]', "Unknown format"),
        ('[{"name": "ok", "url": "https://h/x"}, 7]', "task 2"),
    ],
)
def test_batch_file_errors_name_the_task(content, message, workdir):
    tasks = workdir / "tasks.json"
    tasks.write_text(content)
    result = run("batch", tasks, code=1)
    assert message in result.stderr
    assert not (workdir / "downloads").exists()  # nothing started


def test_batch_enqueue_inserts_pending_rows(workdir, sqlite_url):
    run("db", "upgrade", "--db", sqlite_url)
    result = run("batch", SAMPLE, "--enqueue", "--db", sqlite_url)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    from dlstore import db

    store = TaskStore(db.make_engine(sqlite_url))
    tasks = {t.name: t for t in store.list()}
    assert set(tasks) == {"Big Buck Bunny", "Episode 1", "Lecture (audio and video as TS)"}
    assert all(t.status == "pending" for t in tasks.values())
    meta = tasks["Episode 1"].metadata_dict()
    assert meta["output_dir"] == "shows/season 1"
    assert meta["headers"]["Referer"] == "https://www.example.com/watch/ep1"
    assert meta["quality"] == "best" and meta["profile"] == "stable"
    assert not (workdir / "downloads").exists()  # queued, not downloaded


def test_batch_enqueue_on_an_unmigrated_database_fails(workdir, sqlite_url):
    result = run("batch", SAMPLE, "--enqueue", "--db", sqlite_url, code=1)
    assert "dlstore db upgrade" in result.stderr
