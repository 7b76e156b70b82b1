"""DASH audio languages and WebVTT subtitles (#12), end to end: FFmpeg's dash muxer (and
WebVTT written here) → a local server → engine.download, the CLI and the daemon → the
output decoded back. The same choices as HLS (tests/test_streams.py), by the same code."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dlstore.cli.download  # noqa: F401 - registers the commands
from dlstore import migrate
from dlstore.cli import app
from dlstore.engine import DownloadResult, download
from dlstore.options import DownloadOptions
from dlstore.testing.dash_media import DashLanguages, write_dash_languages
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.media import (
    FPS,
    MULTI_CUES,
    audio_tones,
    decode_check,
    first_frame_time,
    mov_text_cues,
    stream_tags,
    vtt_cues,
)
from dlstore.testing.rust_api import RustApi

from .support.checks import TONES, assert_cues_match
from .support.daemon import STREAMS_CONFIG

pytestmark = pytest.mark.slow
runner = CliRunner()
ENGLISH = {"language": "eng", "name": "English", "codec": "aac", "channels": 1, "default": True}
FRENCH = {"language": "fre", "name": "Français", "codec": "aac", "channels": 1, "default": False}


@pytest.fixture(scope="module")
def languages_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DashLanguages]:
    root = tmp_path_factory.mktemp("dash-languages")
    return root, write_dash_languages(root)


@pytest.fixture
def stream(languages_root) -> DashLanguages:
    return languages_root[1]


@pytest.fixture
def server(languages_root) -> Iterator[HlsServer]:
    with HlsServer(languages_root[0]) as server:
        yield server


def run(server: HlsServer, stream: DashLanguages, tmp_path: Path, options: DownloadOptions,
        name: str = "video") -> DownloadResult:  # fmt: skip
    out = tmp_path / "out" / f"{name}.mp4"
    return download(server.url(stream.path), out, work_dir=tmp_path / "work", options=options)


def assert_video_plays(path: Path, duration: float) -> None:
    decoded = decode_check(path)
    assert decoded.errors == ()
    assert decoded.video_frames == round(duration * FPS)
    assert (decoded.width, decoded.height) == (320, 180)


def expected_cues(language: str, offset: float):
    """DASH cue times count from the period's start: the media time the video starts at."""
    return [(start + offset, end + offset, text) for start, end, text in MULTI_CUES[language]]


def cue_offset(output: Path) -> float:
    """Where media time 0 (the video's first frame: the dash muxer starts its PTS at 0)
    lands in the output: the remux puts the earliest timestamp (a DTS before it) at 0."""
    return first_frame_time(output)


# --------------------------------------------------------------------------- audio


def test_audio_all_muxes_every_set_the_main_one_first_and_flagged(
    stream, server, fast_options, tmp_path
):
    options = dataclasses.replace(fast_options, audio="all", subtitles="none")
    result = run(server, stream, tmp_path, options)
    assert_video_plays(result.output_path, stream.duration)
    tags = [(t.language, t.default) for t in stream_tags(result.output_path) if t.kind == "audio"]
    assert tags == [("eng", True), ("fra", False)]  # English has Role main, listed second
    tones = audio_tones(result.output_path)
    assert tones == [pytest.approx(TONES["en"], rel=0.03), pytest.approx(TONES["fr"], rel=0.03)]
    assert result.tracks_metadata()["audio_tracks"] == [ENGLISH, FRENCH]
    every = stream.video_paths + stream.audio_paths["en"] + stream.audio_paths["fr"]
    assert all(server.hits[p] == 1 for p in every)
    assert result.segments == len(every) - 3  # init sections are not segments


@pytest.mark.parametrize(
    ("wanted", "language"),
    [(("fr",), "fr"), (("de", "fr", "en"), "fr"), (("de",), "en"), ("default", "en")],
)
def test_audio_languages_in_order_of_preference(
    wanted, language, stream, server, fast_options, tmp_path
):
    options = dataclasses.replace(fast_options, audio=wanted, subtitles="none")
    result = run(server, stream, tmp_path, options)
    tags = [(t.language, t.default) for t in stream_tags(result.output_path) if t.kind == "audio"]
    assert tags == [({"en": "eng", "fr": "fra"}[language], True)]
    assert audio_tones(result.output_path) == [pytest.approx(TONES[language], rel=0.03)]
    other = "en" if language == "fr" else "fr"
    assert server.fetched(stream.audio_paths[other]) == set()  # never fetched
    metadata = result.tracks_metadata()["audio_tracks"]
    assert metadata == [{**(FRENCH if language == "fr" else ENGLISH), "default": True}]


# --------------------------------------------------------------------------- subtitles


def test_webvtt_sets_become_aligned_vtt_files_beside_the_video(
    stream, server, fast_options, tmp_path
):
    result = run(server, stream, tmp_path, fast_options, name="Show")
    assert_video_plays(result.output_path, stream.duration)
    out = tmp_path / "out"
    en, fr = out / "Show.en.vtt", out / "Show.fr.vtt"
    assert sorted(p.name for p in out.iterdir()) == ["Show.en.vtt", "Show.fr.vtt", "Show.mp4"]
    offset = cue_offset(result.output_path)
    assert_cues_match(vtt_cues(en), expected_cues("en", offset))  # one whole file
    assert_cues_match(vtt_cues(fr), expected_cues("fr", offset))  # segments, copies merged
    assert result.tracks_metadata()["subtitle_tracks"] == [
        {"language": "en", "name": "English", "path": str(en), "default": True, "forced": False},
        {"language": "fr", "name": "Français", "path": str(fr), "default": False,
         "forced": False},
    ]  # fmt: skip
    texts = stream.subtitle_paths["en"] + stream.subtitle_paths["fr"]
    assert all(server.hits[p] == 1 for p in texts)
    assert server.fetched(stream.subtitle_paths["wvtt"]) == set()  # WebVTT in MP4: left out
    media = stream.video_paths + stream.audio_paths["en"]
    assert result.segments == len(media) - 2  # subtitles are not counted
    assert [t.kind for t in stream_tags(result.output_path)] == ["video", "audio"]


def test_subtitles_by_language_and_embedded(stream, server, fast_options, tmp_path):
    options = dataclasses.replace(fast_options, subtitles=("fr",), embed_subtitles=True)
    result = run(server, stream, tmp_path, options)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["video.fr.vtt", "video.mp4"]
    assert server.fetched(stream.subtitle_paths["en"]) == set()
    tags = [(t.kind, t.codec, t.language) for t in stream_tags(result.output_path)]
    assert tags == [("video", "h264", "und"), ("audio", "aac", "eng"),
                    ("subtitle", "mov_text", "fra")]  # fmt: skip
    expected = [(s, e, t) for s, e, t in expected_cues("fr", cue_offset(result.output_path))]
    assert_cues_match(mov_text_cues(result.output_path, 0), expected)


def test_cli_download_with_audio_and_subtitles(stream, server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "Show.mp4"
    args = ["download", server.url(stream.path), "-o", str(out), "-q"]
    result = runner.invoke(app, [*args, "--audio", "all", "--subs", "en", "--embed-subs"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["Show.en.vtt", "Show.mp4"]
    tags = [(t.kind, t.language) for t in stream_tags(out)]
    assert tags == [("video", "und"), ("audio", "eng"), ("audio", "fra"), ("subtitle", "eng")]
    assert_cues_match(vtt_cues(tmp_path / "Show.en.vtt"), expected_cues("en", cue_offset(out)))


def test_a_dash_row_by_the_apis_sql_completes_with_its_tracks(stream, server, sqlite_url, tmp_path):
    migrate.upgrade(sqlite_url)
    (tmp_path / "downloader.yaml").write_text(STREAMS_CONFIG)
    api = RustApi(sqlite_url)
    caller = {"audio": ["fr"], "subtitles": "all", "embed_subtitles": True}
    try:
        task_id = api.create("Pilot", server.url(stream.path), caller)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DOWNLOADER_")}
        command = [sys.executable, "-m", "dlstore", "daemon", "--exit-when-idle",
                   "--db", sqlite_url, "--config", str(tmp_path / "downloader.yaml")]  # fmt: skip
        done = subprocess.run(command, cwd=tmp_path, env=environ, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        row = api.status(task_id)
    finally:
        api.close()
    assert row is not None and row["status"] == "completed", row
    videos = (tmp_path / "videos").resolve()
    metadata = json.loads(row["metadata"])
    assert {k: metadata[k] for k in caller} == caller
    assert metadata["audio_tracks"] == [{**FRENCH, "default": True}]
    assert [(t["language"], t["path"]) for t in metadata["subtitle_tracks"]] == [
        ("en", str(videos / "Pilot.en.vtt")), ("fr", str(videos / "Pilot.fr.vtt"))
    ]  # fmt: skip
    media = stream.video_paths + stream.audio_paths["fr"]
    assert row["total_segments"] == row["downloaded_segments"] == len(media) - 2
    output = Path(row["output_path"])
    assert_video_plays(output, stream.duration)
    kinds = [(t.kind, t.language) for t in stream_tags(output)]
    assert kinds == [("video", "und"), ("audio", "fra"), ("subtitle", "eng"), ("subtitle", "fra")]
    offset = cue_offset(output)
    for lang in ("en", "fr"):
        assert_cues_match(vtt_cues(videos / f"Pilot.{lang}.vtt"), expected_cues(lang, offset))
