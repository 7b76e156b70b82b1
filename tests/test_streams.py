"""The streams the real world serves (#12), end to end: encrypted init sections, audio
languages, subtitles. Real media from a local server, through ``engine.download``, the
``dlstore download`` command and the daemon; every output is decoded back."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import dlstore.cli.download  # noqa: F401 - registers the commands
from dlstore.cli import app
from dlstore.engine import DownloadResult, download
from dlstore.errors import UnsupportedStreamError
from dlstore.options import DownloadOptions
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.media import FPS, decode_check

pytestmark = pytest.mark.slow
runner = CliRunner()


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
