"""The streams the real world serves (#12), end to end: encrypted init sections, audio
languages, subtitles. Real media from a local server, through ``engine.download``, the
``dlstore download`` command and the daemon; every output is decoded back."""

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
from dlstore.errors import DownloadError, InvalidInputError, UnsupportedStreamError
from dlstore.options import DownloadOptions
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.media import (
    FPS,
    MULTI_CUES,
    MultiLanguageStream,
    audio_tones,
    decode_check,
    first_frame_time,
    mov_text_cues,
    stream_tags,
    vtt_cues,
    write_multilanguage,
)
from dlstore.testing.rust_api import RustApi

from .support.checks import TONES, assert_cues_match
from .support.daemon import STREAMS_CONFIG

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def multi_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MultiLanguageStream]:
    root = tmp_path_factory.mktemp("multilanguage")
    return root, write_multilanguage(root)


@pytest.fixture
def multi(multi_root) -> MultiLanguageStream:
    return multi_root[1]


@pytest.fixture
def multi_server(multi_root) -> Iterator[HlsServer]:
    with HlsServer(multi_root[0]) as server:
        yield server


def assert_video_plays(path: Path, duration: float) -> None:
    decoded = decode_check(path)
    assert decoded.errors == ()
    assert decoded.video_frames == round(duration * FPS)
    assert (decoded.width, decoded.height) == (320, 180)


def run(
    server: HlsServer, path: str, tmp_path: Path, options: DownloadOptions, name: str = "video"
) -> DownloadResult:
    out = tmp_path / "out" / f"{name}.{options.output_format}"
    return download(server.url(path), out, work_dir=tmp_path / f"work-{name}", options=options)


# --------------------------------------------------------------------------- encrypted init


def test_an_encrypted_init_section_is_decrypted_and_key_rotation_keeps_working(
    hls_media, hls_server, fast_options, tmp_path
):
    facts = hls_media["aes_fmp4"]
    result = run(hls_server, facts.path, tmp_path, fast_options)
    decoded = decode_check(result.output_path)
    assert decoded.errors == ()
    assert decoded.video_frames == round(facts.duration * FPS)
    assert decoded.audio_seconds == pytest.approx(facts.duration, abs=0.3)
    assert hls_server.hits["/aes_fmp4/init.mp4"] == 1
    assert hls_server.hits["/aes_fmp4/key1.bin"] == hls_server.hits["/aes_fmp4/key2.bin"] == 1
    # the init section on the server really is encrypted: it is no MP4 box
    assert (hls_media.root / "aes_fmp4" / "init.mp4").read_bytes()[4:8] != b"ftyp"


def test_an_encrypted_init_section_without_iv_fails_before_any_fetch(
    hls_server, fast_options, tmp_path
):
    with pytest.raises(UnsupportedStreamError, match="has no IV, which RFC 8216 requires"):
        run(hls_server, "/aes_fmp4/noiv.m3u8", tmp_path, fast_options)
    assert set(hls_server.hits) == {"/aes_fmp4/noiv.m3u8"}


def test_cli_downloads_an_encrypted_init_section(hls_media, hls_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "enc.mp4"
    result = runner.invoke(
        app, ["download", hls_server.url("/aes_fmp4/index.m3u8"), "-o", str(out), "-q"]
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    decoded = decode_check(out)
    assert decoded.errors == () and decoded.video_frames == 8 * FPS
    noiv = runner.invoke(
        app, ["download", hls_server.url("/aes_fmp4/noiv.m3u8"), "-o", str(tmp_path / "x.mp4")]
    )
    assert noiv.exit_code == 1
    assert "has no IV, which RFC 8216 requires" in " ".join(noiv.stderr.split())


# --------------------------------------------------------------------------- audio languages


def test_audio_all_muxes_every_language_the_default_first_and_flagged(
    multi, multi_server, fast_options, tmp_path
):
    options = dataclasses.replace(fast_options, audio="all")
    result = run(multi_server, multi.path, tmp_path, options)
    assert_video_plays(result.output_path, multi.duration)
    tags = stream_tags(result.output_path)
    audio = [(t.language, t.default) for t in tags if t.kind == "audio"]
    assert audio == [("eng", True), ("fra", False)]  # English is DEFAULT=YES, listed second
    tones = audio_tones(result.output_path)
    assert tones == [pytest.approx(TONES["en"], rel=0.03), pytest.approx(TONES["fr"], rel=0.03)]
    assert result.tracks_metadata()["audio_tracks"] == [
        {"language": "en", "name": "English", "codec": "aac", "channels": 1, "default": True},
        {"language": "fr", "name": "Français", "codec": "aac", "channels": 1, "default": False},
    ]
    every = multi.video_paths + multi.audio_paths["en"] + multi.audio_paths["fr"]
    assert result.segments == len(every)  # video and both audio tracks, no subtitles
    assert all(multi_server.hits[p] == 1 for p in every)


@pytest.mark.parametrize(
    ("wanted", "language"), [(("fr",), "fr"), (("de", "fr", "en"), "fr"), (("de",), "en"),
                             ("default", "en"), (("fr-CA",), "fr")]
)  # fmt: skip
def test_audio_languages_in_order_of_preference(
    wanted, language, multi, multi_server, fast_options, tmp_path
):
    options = dataclasses.replace(fast_options, audio=wanted)
    result = run(multi_server, multi.path, tmp_path, options)
    assert_video_plays(result.output_path, multi.duration)
    tags = [t for t in stream_tags(result.output_path) if t.kind == "audio"]
    assert [(t.language, t.default) for t in tags] == [({"en": "eng", "fr": "fra"}[language], True)]
    assert audio_tones(result.output_path) == [pytest.approx(TONES[language], rel=0.03)]
    other = "en" if language == "fr" else "fr"
    assert multi_server.fetched(multi.audio_paths[other]) == set()  # never fetched
    assert [t["language"] for t in result.tracks_metadata()["audio_tracks"]] == [language]


def test_cli_download_with_audio_all(multi, multi_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "Show.mp4"
    args = ["download", multi_server.url(multi.path), "-o", str(out), "-q", "--audio", "all"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert_video_plays(out, multi.duration)
    assert [t.language for t in stream_tags(out) if t.kind == "audio"] == ["eng", "fra"]
    bad = runner.invoke(app, [*args[:4], "--audio", "english!"])
    assert bad.exit_code == 1 and "is not a language code" in bad.stderr


# --------------------------------------------------------------------------- subtitles


def expected_cues(language: str, offset: float) -> list[tuple[float, float, str]]:
    return [(start + offset, end + offset, text) for start, end, text in MULTI_CUES[language]]


def test_subtitles_all_are_joined_into_one_aligned_vtt_per_language(
    multi, multi_server, fast_options, tmp_path
):
    result = run(multi_server, multi.path, tmp_path, fast_options, name="Show (2)")
    assert_video_plays(result.output_path, multi.duration)
    out = tmp_path / "out"
    en, fr = out / "Show (2).en.vtt", out / "Show (2).fr.vtt"
    assert sorted(p.name for p in out.iterdir()) == ["Show (2).en.vtt", "Show (2).fr.vtt",
                                                     "Show (2).mp4"]  # fmt: skip
    offset = first_frame_time(result.output_path)  # 0.08 s: B-frames, the audio starts first
    assert 0.05 < offset < 0.2
    # Both X-TIMESTAMP-MAP styles land on the video's clock; the cues written into two
    # segments (across a boundary) are there once.
    assert_cues_match(vtt_cues(en), expected_cues("en", offset))
    assert_cues_match(vtt_cues(fr), expected_cues("fr", offset))
    assert en.read_text(encoding="utf-8").startswith("WEBVTT\n\n")
    assert "X-TIMESTAMP-MAP" not in en.read_text(encoding="utf-8")
    assert result.tracks_metadata()["subtitle_tracks"] == [
        {"language": "en", "name": "English", "path": str(en), "default": True, "forced": False},
        {"language": "fr", "name": "Français", "path": str(fr), "default": False,
         "forced": False},
    ]  # fmt: skip
    subtitle_segments = multi.subtitle_paths["en"] + multi.subtitle_paths["fr"]
    assert all(multi_server.hits[p] == 1 for p in subtitle_segments)
    assert result.segments == len(multi.video_paths) + len(multi.audio_paths["en"])  # not counted
    assert [s.kind for s in stream_tags(result.output_path)] == ["video", "audio"]  # not embedded


@pytest.mark.parametrize(("wanted", "files"), [("none", []), (("fr",), ["video.fr.vtt"])])
def test_only_the_subtitles_asked_for_are_fetched(
    wanted, files, multi, multi_server, fast_options, tmp_path
):
    options = dataclasses.replace(fast_options, subtitles=wanted)
    result = run(multi_server, multi.path, tmp_path, options)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(["video.mp4", *files])
    hit = {p for p in multi_server.hits if "/subs/" in p}
    assert hit == {f"/multi/subs/fr/{name}" for name in ("index.m3u8", "seg-000.vtt",
                   "seg-001.vtt", "seg-002.vtt")} if files else hit == set()  # fmt: skip
    assert [t["language"] for t in result.tracks_metadata()["subtitle_tracks"]] == (
        ["fr"] if files else []
    )


def test_embedded_subtitles_are_mov_text_streams_with_languages(
    multi, multi_server, fast_options, tmp_path
):
    options = dataclasses.replace(fast_options, embed_subtitles=True, audio="all")
    result = run(multi_server, multi.path, tmp_path, options)
    assert_video_plays(result.output_path, multi.duration)
    tags = [(t.kind, t.codec, t.language, t.default) for t in stream_tags(result.output_path)]
    assert tags == [
        ("video", "h264", "und", True),
        ("audio", "aac", "eng", True),
        ("audio", "aac", "fra", False),
        ("subtitle", "mov_text", "eng", True),
        ("subtitle", "mov_text", "fra", False),
    ]
    offset = first_frame_time(result.output_path)
    for number, language in enumerate(("en", "fr")):
        # as mov_text decodes back to ASS: \N for a new line, italics to the end of the line
        expected = [(s, e, t.replace("\n", "\\N").replace("<i>", "{\\i1}")
                     .replace("</i>", "").replace("&amp;", "&"))
                    for s, e, t in expected_cues(language, offset)]  # fmt: skip
        assert_cues_match(mov_text_cues(result.output_path, number), expected)
    assert (tmp_path / "out" / "video.en.vtt").is_file()  # the sidecars are written too


def test_embedding_needs_mp4(multi_server, multi, fast_options, tmp_path):
    options = dataclasses.replace(fast_options, embed_subtitles=True, output_format="ts")
    with pytest.raises(InvalidInputError, match="embed_subtitles needs the mp4 format"):
        run(multi_server, multi.path, tmp_path, options)
    assert not multi_server.hits


def test_an_existing_subtitle_file_is_not_overwritten(multi, multi_server, fast_options, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "video.fr.vtt").write_text("mine")
    with pytest.raises(DownloadError, match="video.fr.vtt already exists"):
        run(multi_server, multi.path, tmp_path, fast_options)
    assert not any("seg-" in p for p in multi_server.hits)  # refused before any segment
    assert (tmp_path / "out" / "video.fr.vtt").read_text() == "mine"


def test_cli_download_with_subtitles(multi, multi_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "Show.mp4"
    args = ["download", multi_server.url(multi.path), "-o", str(out), "-q"]
    result = runner.invoke(app, [*args, "--subs", "en", "--embed-subs"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "subtitles: Show.en.vtt" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["Show.en.vtt", "Show.mp4"]
    tags = [(t.codec, t.language) for t in stream_tags(out) if t.kind == "subtitle"]
    assert tags == [("mov_text", "eng")]
    assert_cues_match(
        vtt_cues(tmp_path / "Show.en.vtt"), expected_cues("en", first_frame_time(out))
    )


# --------------------------------------------------------------------------- the daemon


def test_a_row_by_the_apis_sql_completes_with_its_audio_and_subtitle_tracks(
    multi, multi_server, sqlite_url, tmp_path
):
    migrate.upgrade(sqlite_url)
    (tmp_path / "downloader.yaml").write_text(STREAMS_CONFIG)
    api = RustApi(sqlite_url)
    caller = {"audio": "all", "subtitles": ["fr", "en"], "embed_subtitles": True, "note": "kept"}
    try:
        task_id = api.create("Pilot", multi_server.url(multi.path), caller)
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
    assert {k: metadata[k] for k in caller} == caller  # the caller's keys, as given
    assert metadata["audio_tracks"] == [
        {"language": "en", "name": "English", "codec": "aac", "channels": 1, "default": True},
        {"language": "fr", "name": "Français", "codec": "aac", "channels": 1, "default": False},
    ]
    assert metadata["subtitle_tracks"] == [
        {"language": lang, "name": name, "path": str(videos / f"Pilot.{lang}.vtt"),
         "default": lang == "en", "forced": False}
        for lang, name in (("en", "English"), ("fr", "Français"))
    ]  # fmt: skip
    segments = len(multi.video_paths) + len(multi.audio_paths["en"]) + len(multi.audio_paths["fr"])
    assert row["total_segments"] == row["downloaded_segments"] == segments
    output = Path(row["output_path"])
    assert_video_plays(output, multi.duration)
    kinds = [(t.kind, t.language) for t in stream_tags(output)]
    assert kinds == [("video", "und"), ("audio", "eng"), ("audio", "fra"),
                     ("subtitle", "eng"), ("subtitle", "fra")]  # fmt: skip
    offset = first_frame_time(output)
    for lang in ("en", "fr"):
        assert_cues_match(vtt_cues(videos / f"Pilot.{lang}.vtt"), expected_cues(lang, offset))
    assert sorted(p.name for p in videos.iterdir()) == [
        "Pilot.en.vtt", "Pilot.fr.vtt", "Pilot.jpg", "Pilot.mp4"
    ]  # fmt: skip


def test_add_stores_the_stream_flags_as_the_callers_keys(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    migrate.upgrade(sqlite_url)
    db = ["--db", sqlite_url]
    add = ["add", "https://e.example/a.m3u8", "--name", "Show", *db]
    result = runner.invoke(app, [*add, "--audio", "fr,en", "--subs", "none", "--embed-subs"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    api = RustApi(sqlite_url)
    try:
        row = api.status(result.stdout.strip())
    finally:
        api.close()
    assert row is not None
    assert json.loads(row["metadata"]) == {
        "audio": ["fr", "en"], "subtitles": "none", "embed_subtitles": True
    }  # fmt: skip
    bad = runner.invoke(app, [*add, "--subs", "en,?"])
    assert bad.exit_code == 1 and "'?' is not a language code" in bad.stderr
