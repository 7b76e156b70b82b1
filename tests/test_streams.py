"""The streams the real world serves (#12), end to end: encrypted init sections, audio
languages, subtitles. Real media from a local server, through ``engine.download``, the
``dlstore download`` command and the daemon; every output is decoded back."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dlstore.cli.download  # noqa: F401 - registers the commands
from dlstore.cli import app
from dlstore.engine import DownloadResult, download
from dlstore.errors import UnsupportedStreamError
from dlstore.options import DownloadOptions
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.media import (
    FPS,
    MultiLanguageStream,
    audio_tones,
    decode_check,
    stream_tags,
    write_multilanguage,
)

pytestmark = pytest.mark.slow
runner = CliRunner()


TONES = {"en": 440, "fr": 660}


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


def fetched(server: HlsServer, paths) -> set[str]:
    return {p for p in paths if server.hits[p]}


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
    assert fetched(multi_server, multi.audio_paths[other]) == set()  # never fetched
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
