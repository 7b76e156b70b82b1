"""Language tags (dlstore.languages) and the caller's language choices (options)."""

from __future__ import annotations

import pytest

from dlstore.errors import InvalidInputError
from dlstore.languages import best_match, iso639_2, matches_any, same_language
from dlstore.options import (
    DownloadOptions,
    caller_metadata,
    check_audio,
    merge_metadata,
    parse_languages,
    stream_flags,
    stream_options,
)


@pytest.mark.parametrize(
    ("tag", "code"),
    [("en", "eng"), ("EN-us", "eng"), ("fr-CA", "fra"), ("fre", "fra"), ("ger", "deu"),
     ("de", "deu"), ("zh-Hans", "zho"), ("pt_BR", "por"), ("iw", "heb"), ("eng", "eng"),
     ("und", "und"), ("xx", None), ("", None), (None, None), ("english", None), ("1a", None)],
)  # fmt: skip
def test_iso639_2_is_the_terminology_code_ffmpeg_stores(tag, code):
    assert iso639_2(tag) == code


def test_same_language_and_best_match():
    assert same_language("en", "eng-GB") and same_language("fre", "fr")
    assert not same_language("en", "fr") and not same_language(None, "en")
    offered = ["pt-PT", "pt-BR", "en"]
    assert best_match(["pt-BR"], offered, str) == "pt-BR"
    assert best_match(["pt"], offered, str) == "pt-PT"
    assert best_match(["de", "eng"], offered, str) == "en"
    assert best_match(["de"], offered, str) is None
    assert matches_any("en-US", ["fr", "en"]) and not matches_any(None, ["en"])


@pytest.mark.parametrize(
    ("value", "checked"),
    [
        ("default", "default"),
        ("ALL", "all"),
        (["fr", " en "], ["fr", "en"]),
        (["pt-BR"], ["pt-BR"]),
    ],
)
def test_check_audio_accepts(value, checked):
    assert check_audio(value) == checked


@pytest.mark.parametrize(
    ("value", "match"),
    [("none", "not 'none'"), ([], "audio must be"), (["fr", 3], "int is not a language code"),
     (["english!"], "'english!' is not a language code"), (["en"] * 21, "at most 20"),
     ({"en": 1}, "audio must be"), (True, "audio must be")],
)  # fmt: skip
def test_check_audio_refuses(value, match):
    with pytest.raises(InvalidInputError, match=match):
        check_audio(value)


def test_flags_become_the_metadata_keys_and_options():
    assert parse_languages("all") == "all"
    assert parse_languages("fr, en") == ["fr", "en"]
    assert parse_languages("fr") == ["fr"]
    assert parse_languages(None) is None
    metadata = caller_metadata({"audio": ["fr", "en"]}, {})
    assert metadata == {"audio": ["fr", "en"]}
    assert stream_options(DownloadOptions(), metadata).audio == ("fr", "en")
    assert stream_options(DownloadOptions(), {}).audio == "default"


def test_learned_keys_never_replace_the_callers_audio():
    merged = merge_metadata({"audio": ["fr"]}, {"audio": "x", "audio_tracks": [{"language": "fr"}]})
    assert merged == {"audio": ["fr"], "audio_tracks": [{"language": "fr"}]}


def test_subtitle_keys_are_checked_and_become_options():
    checked = caller_metadata(
        {"subtitles": ["en", "fr"], "embed_subtitles": True, "audio": "all"}, {}
    )
    options = stream_options(DownloadOptions(), checked)
    assert (options.subtitles, options.embed_subtitles, options.audio) == (
        ("en", "fr"),
        True,
        "all",
    )
    assert stream_options(
        DownloadOptions(), caller_metadata({"subtitles": "NONE"}, {})
    ).subtitles == ("none")
    assert DownloadOptions().subtitles == "all" and not DownloadOptions().embed_subtitles
    with pytest.raises(InvalidInputError, match='subtitles must be "all" or "none"'):
        caller_metadata({"subtitles": "default"}, {})
    with pytest.raises(InvalidInputError, match="embed_subtitles must be true or false"):
        caller_metadata({"embed_subtitles": "yes"}, {})


def test_cli_flags_as_metadata():
    assert stream_flags("fr,en", "none", True) == {
        "audio": ["fr", "en"], "subtitles": "none", "embed_subtitles": True
    }  # fmt: skip
    assert stream_flags() == {"audio": None, "subtitles": None, "embed_subtitles": None}
