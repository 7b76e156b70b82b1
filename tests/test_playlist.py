"""The pure playlist parser, on checked-in playlists and on arbitrary text."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlstore.errors import (
    DlstoreError,
    PlaylistError,
    QualityNotFoundError,
    UnsupportedStreamError,
)
from dlstore.playlist import (
    ByteRange,
    MasterPlaylist,
    MediaPlan,
    Variant,
    choose_audio,
    choose_audio_tracks,
    choose_subtitles,
    choose_variant,
    decode_playlist,
    parse_playlist,
)

DATA = Path(__file__).parent / "data" / "playlists"
BASE = "https://media.example.com/show/ep1/"


def load(name: str, url: str = BASE + "index.m3u8") -> MasterPlaylist | MediaPlan:
    return parse_playlist((DATA / name).read_text(), url)


# --------------------------------------------------------------------------- media playlists


def test_media_playlist_resolves_uris_against_the_final_url():
    plan = load("media_ts.m3u8")
    assert isinstance(plan, MediaPlan)
    assert [s.uri for s in plan.segments] == [
        BASE + "seg-100.ts",
        BASE + "sub/seg-101.ts?sig=xyz",
        "https://media.example.com/show/other/seg-102.ts",
        "https://cdn2.example.net/ad/seg-0.ts",
        "https://media.example.com/root/seg-104.ts",
    ]
    assert [s.media_sequence for s in plan.segments] == [100, 101, 102, 103, 104]
    assert [s.discontinuity for s in plan.segments] == [False, False, False, True, False]
    assert plan.duration == pytest.approx(6.006 * 2 + 5.5 + 4.0 + 2.488)
    assert plan.segments[1].name == "seg-101.ts"
    assert all(s.key is None and s.iv is None and s.byte_range is None for s in plan.segments)


def test_a_playlist_url_with_a_query_still_resolves_relative_segments():
    plan = load("media_ts.m3u8", url="https://h.example/a/b/list.m3u8?token=1")
    assert plan.segments[0].uri == "https://h.example/a/b/seg-100.ts"


def test_aes_keys_ivs_and_key_rotation():
    plan = load("aes.m3u8")
    s7, s8, s9, s10 = plan.segments
    assert s7.key is not None and s7.key.uri == BASE + "keys/k1.bin"
    assert s7.key.iv is None
    # no IV attribute: the media sequence number, big-endian, 16 bytes
    assert s7.iv == (7).to_bytes(16, "big")
    assert s8.iv == (8).to_bytes(16, "big")
    assert s9.key is not None and s9.key.uri == "https://keys.example.net/k2?id=2"
    assert s9.iv == bytes.fromhex("00000000000000000000000000000abc")
    assert s10.key is None and s10.iv is None


def test_fmp4_init_section_and_implicit_byte_ranges():
    plan = load("fmp4_byterange.m3u8")
    assert plan.is_fmp4
    init = plan.segments[0].init
    assert init is not None
    assert init.uri == BASE + "video.mp4"
    assert init.byte_range == ByteRange(length=720, offset=0)
    assert [s.byte_range for s in plan.segments] == [
        ByteRange(1000, 720),
        ByteRange(1500, 1720),  # implicit: continues the previous range of video.mp4
        ByteRange(900, 3220),
        ByteRange(300, 50),
        ByteRange(200, 350),  # implicit offsets are per file
    ]
    assert plan.init_sections == (init,)
    assert ByteRange(1000, 720).last == 1719


def test_byte_range_without_offset_and_nothing_to_continue_is_an_error():
    with pytest.raises(PlaylistError, match="without an offset"):
        load("bad_byterange.m3u8")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("sample_aes.m3u8", "DRM|SAMPLE-AES"),
        ("widevine.m3u8", "DRM"),
        ("live.m3u8", "live stream"),
        ("file_scheme.m3u8", "only http and https"),
    ],
)
def test_unsupported_streams_say_why(name, match):
    with pytest.raises(UnsupportedStreamError, match=match):
        load(name)


def test_sample_aes_without_keyformat_is_unsupported():
    text = '#EXTM3U\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI="k"\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n'
    with pytest.raises(UnsupportedStreamError, match="SAMPLE-AES"):
        parse_playlist(text, BASE + "x.m3u8")


def test_vod_playlist_type_without_endlist_is_accepted():
    text = "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:4,\na.ts\n"
    plan = parse_playlist(text, BASE + "x.m3u8")
    assert isinstance(plan, MediaPlan) and len(plan.segments) == 1


@pytest.mark.parametrize(
    ("name", "match"),
    [("empty_media.m3u8", "no segments"), ("bad_tags.m3u8", "malformed")],
)
def test_broken_playlists_are_playlist_errors(name, match):
    with pytest.raises(PlaylistError, match=match):
        load(name)


def test_segment_limit():
    text = "#EXTM3U\n" + "#EXTINF:1,\ns.ts\n" * 5 + "#EXT-X-ENDLIST\n"
    with pytest.raises(PlaylistError, match="5 segments, more than the limit of 4"):
        parse_playlist(text, BASE + "x.m3u8", max_segments=4)
    assert len(parse_playlist(text, BASE + "x.m3u8", max_segments=5).segments) == 5


def test_malformed_iv_is_a_playlist_error():
    text = '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0xZZ\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n'
    with pytest.raises(PlaylistError, match="IV"):
        parse_playlist(text, BASE + "x.m3u8")


# --------------------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    ("body", "ctype", "match"),
    [
        ((DATA / "html_page.m3u8").read_bytes(), "text/html", "HTML page"),
        (b'{"error": "token expired"}', "application/json", "a JSON document of 26 bytes"),
        (b"", None, "empty body"),
        (b"   \r\n", None, "empty body"),
        (bytes([0x47, 0x40, 0x00, 0x10]) * 100, "video/mp2t", "MPEG-TS video of 400 bytes"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png", "binary data"),
        (b"hello world\n", "text/plain", "does not start with #EXTM3U"),
    ],
)
def test_bodies_that_are_not_playlists_say_what_came_back(body, ctype, match):
    with pytest.raises(PlaylistError, match=match):
        decode_playlist(body, BASE + "index.m3u8", ctype)


def test_a_bom_is_tolerated():
    text = decode_playlist(b"\xef\xbb\xbf#EXTM3U\n#EXTINF:1,\na.ts\n#EXT-X-ENDLIST\n", BASE)
    assert isinstance(parse_playlist(text, BASE + "i.m3u8"), MediaPlan)


# --------------------------------------------------------------------------- master playlists


def test_master_playlist_variants_and_audio():
    master = load("master.m3u8")
    assert isinstance(master, MasterPlaylist)
    assert [v.height for v in master.variants] == [360, 1080, 720, 720, 240]
    assert master.variants[1].uri == BASE + "1080p/index.m3u8?token=abc"
    assert master.variants[3].uri == "https://media.example.com/abs/720p-hi/index.m3u8"
    # a rendition without URI (audio muxed in the variant) is not a separate track
    assert [a.name for a in master.audio] == ["Deutsch", "English"]


@pytest.mark.parametrize(
    ("quality", "height", "bandwidth"),
    [
        ("best", 1080, 5_000_000),
        ("worst", 240, 400_000),
        ("1080p", 1080, 5_000_000),
        ("720p", 720, 3_000_000),  # same height: the higher bandwidth
        ("900p", 720, 3_000_000),  # not offered: nearest lower
        ("360P", 360, 800_000),
        ("240p", 240, 400_000),
    ],
)
def test_choose_variant(quality, height, bandwidth):
    master = load("master.m3u8")
    chosen = choose_variant(master.variants, quality)
    assert (chosen.height, chosen.bandwidth) == (height, bandwidth)


def test_quality_below_everything_lists_what_exists():
    master = load("master.m3u8")
    with pytest.raises(QualityNotFoundError) as info:
        choose_variant(master.variants, "144p")
    assert "1080p, 720p, 360p, 240p" in str(info.value)


def test_unknown_quality_word():
    master = load("master.m3u8")
    with pytest.raises(QualityNotFoundError, match="best, worst"):
        choose_variant(master.variants, "ultra")


def test_variants_without_resolution_rank_by_bandwidth():
    variants = [
        Variant("https://x/a", 100),
        Variant("https://x/b", 300),
        Variant("https://x/c", 200),
    ]
    assert choose_variant(variants, "best").uri == "https://x/b"
    assert choose_variant(variants, "worst").uri == "https://x/a"


def test_choose_audio_prefers_the_default_of_the_variants_group():
    master = load("master.m3u8")
    hd = choose_variant(master.variants, "1080p")
    audio = choose_audio(master, hd)
    assert audio is not None and audio.name == "English"
    assert audio.uri == BASE + "audio/en/index.m3u8"
    muxed = choose_variant(master.variants, "240p")
    assert choose_audio(master, muxed) is None


@pytest.mark.parametrize(
    ("wanted", "names"),
    [
        ("default", ["English"]),
        ("all", ["English", "Deutsch"]),  # the default first, then playlist order
        (["de"], ["Deutsch"]),
        (["fr", "deu", "en"], ["Deutsch"]),  # the first language offered wins
        (["de-AT"], ["Deutsch"]),  # same language, another region
        (["fr"], ["English"]),  # none offered: the default
    ],
)
def test_choose_audio_tracks(wanted, names):
    master = load("master.m3u8")
    hd = choose_variant(master.variants, "1080p")
    assert [a.name for a in choose_audio_tracks(master, hd, wanted)] == names
    assert choose_audio_tracks(master, choose_variant(master.variants, "240p"), "all") == ()


def test_an_exact_language_tag_wins_over_the_same_language():
    text = (
        "#EXTM3U\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="PT",LANGUAGE="pt-PT",DEFAULT=YES,URI="pt.m3u8"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="BR",LANGUAGE="pt-BR",URI="br.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO="a"\nv.m3u8\n'
    )
    master = parse_playlist(text, BASE + "m.m3u8")
    assert isinstance(master, MasterPlaylist)
    variant = master.variants[0]
    assert [a.name for a in choose_audio_tracks(master, variant, ["pt-br"])] == ["BR"]
    assert [a.name for a in choose_audio_tracks(master, variant, ["pt"])] == ["PT"]


def test_nested_uri_schemes_in_master_are_refused():
    text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nftp://x/y.m3u8\n"
    with pytest.raises(UnsupportedStreamError, match="only http and https"):
        parse_playlist(text, BASE + "m.m3u8")


def test_master_with_bad_resolution_is_malformed():
    text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=axb\nv.m3u8\n"
    with pytest.raises(PlaylistError, match="malformed"):
        parse_playlist(text, BASE + "m.m3u8")


# --------------------------------------------------------------------------- properties

TAGS = [
    "#EXTM3U",
    "#EXT-X-VERSION:3",
    "#EXT-X-TARGETDURATION:4",
    "#EXT-X-ENDLIST",
    "#EXT-X-MEDIA-SEQUENCE:",
    "#EXTINF:",
    "#EXT-X-BYTERANGE:",
    "#EXT-X-KEY:METHOD=",
    '#EXT-X-KEY:METHOD=AES-128,URI="k",IV=',
    '#EXT-X-MAP:URI="i.mp4",BYTERANGE=',
    "#EXT-X-STREAM-INF:BANDWIDTH=",
    "#EXT-X-STREAM-INF:RESOLUTION=",
    '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",URI=',
    "#EXT-X-DISCONTINUITY",
    "#EXT-X-PLAYLIST-TYPE:",
    "#EXT-X-PROGRAM-DATE-TIME:",
    "#EXT-X-I-FRAMES-ONLY",
    "#EXT-X-PART:URI=",
    "#EXT-X-DATERANGE:",
    "a.ts",
    "http://h/x.ts",
    "file:///x",
    "../../x.ts",
    "",
]
line = st.one_of(
    st.sampled_from(TAGS),
    st.builds(lambda t, s: t + s, st.sampled_from(TAGS), st.text(max_size=12)),
    st.text(max_size=30),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, max_size=25), st.sampled_from(["", "#EXTM3U\n"]))
def test_arbitrary_playlist_text_only_raises_dlstore_errors(lines, prefix):
    text = prefix + "\n".join(lines)
    try:
        result = parse_playlist(text, BASE + "index.m3u8", max_segments=50)
    except DlstoreError:
        return
    assert isinstance(result, MasterPlaylist | MediaPlan)
    if isinstance(result, MediaPlan):
        assert result.segments
        for seg in result.segments:
            assert seg.uri.startswith(("http://", "https://"))
            assert seg.byte_range is None or seg.byte_range.length > 0
            assert seg.iv is None or len(seg.iv) == 16
    else:
        assert result.variants


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_dlstore_errors(body):
    try:
        text = decode_playlist(body, BASE + "index.m3u8", None)
        parse_playlist(text, BASE + "index.m3u8")
    except DlstoreError:
        pass


# ------------------------------------------------------------------- encrypted init sections

KEYED_MAP = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MAP:URI="clear-init.mp4"
#EXT-X-KEY:METHOD=AES-128,URI="k1.bin",IV=0x0102
#EXTINF:4,
a.m4s
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4,
b.m4s
#EXT-X-KEY:METHOD=AES-128,URI="k2.bin"
#EXTINF:4,
c.m4s
#EXT-X-KEY:METHOD=NONE
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4,
d.m4s
#EXT-X-ENDLIST
"""


def test_an_ext_x_key_before_an_ext_x_map_encrypts_the_init_section_with_its_iv():
    plan = parse_playlist(KEYED_MAP, BASE + "x.m3u8")
    a, b, c, d = plan.segments
    # A MAP before any KEY is clear, even though the segments after the KEY are not.
    assert a.init is not None and a.init.key is None and a.init.iv is None
    assert a.key is not None and a.key.uri == BASE + "k1.bin"
    # The KEY in force at the second MAP applies to it, with that KEY's IV.
    assert b.init is not None and b.init.uri == BASE + "init.mp4"
    assert b.init.key == a.key and b.init.iv == (0x0102).to_bytes(16, "big")
    # Rotation: the segment's key changes, the init section keeps the key of its MAP.
    assert c.key is not None and c.key.uri == BASE + "k2.bin" and c.iv == (2).to_bytes(16, "big")
    assert c.init == b.init
    # METHOD=NONE before a MAP: the same URI again, but clear, so another init section.
    assert d.key is None and d.init is not None and d.init.key is None
    assert d.init != b.init
    assert plan.init_sections == (a.init, b.init, d.init)


def test_an_encrypted_init_section_without_an_iv_is_a_clear_error():
    text = KEYED_MAP.replace(",IV=0x0102", "")
    with pytest.raises(UnsupportedStreamError) as info:
        parse_playlist(text, BASE + "x.m3u8")
    assert str(info.value) == (
        f"The init section init.mp4 of the playlist at {BASE}x.m3u8 is encrypted but its "
        "EXT-X-KEY has no IV, which RFC 8216 requires; dlstore cannot decrypt it."
    )


# --------------------------------------------------------------------------- subtitles

SUBTITLED = """#EXTM3U
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="s",NAME="English",LANGUAGE="en-US",DEFAULT=YES,URI="en.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="s",NAME="Forced",LANGUAGE="en",FORCED=YES,URI="forced.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="s",NAME="Deutsch",LANGUAGE="de",URI="de.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="other",NAME="Other",LANGUAGE="fr",URI="fr.m3u8"
#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="CC",INSTREAM-ID="CC1"
#EXT-X-STREAM-INF:BANDWIDTH=1,SUBTITLES="s",CLOSED-CAPTIONS="cc"
v.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2
w.m3u8
"""


@pytest.mark.parametrize(
    ("wanted", "names"),
    [("all", ["English", "Forced", "Deutsch"]), ("none", []), (["en"], ["English", "Forced"]),
     (["deu", "fr"], ["Deutsch"]), (["ja"], [])],
)  # fmt: skip
def test_choose_subtitles_of_the_variants_group(wanted, names):
    master = parse_playlist(SUBTITLED, BASE + "m.m3u8")
    assert isinstance(master, MasterPlaylist)
    with_group, without = master.variants
    assert with_group.subtitle_group == "s"
    assert [s.name for s in choose_subtitles(master, with_group, wanted)] == names
    assert choose_subtitles(master, without, "all") == ()
    english, forced = master.subtitles[:2]
    assert english.uri == BASE + "en.m3u8" and english.default and not english.forced
    assert forced.forced and not forced.default


# --------------------------------------------------------------------------- cost (issue #10)


def many_segments(count: int, ref: str = "seg-{i:06d}.ts?t=1") -> str:
    body = "".join(f"#EXTINF:6.0,\n{ref.format(i=i)}\n" for i in range(count))
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:6\n{body}#EXT-X-ENDLIST\n"


def test_plain_segment_uris_are_joined_without_urljoin_each(monkeypatch):
    """The guard on planning's cost: ``urljoin`` (the largest per-segment cost) runs a fixed
    number of times for a playlist of plain relative URIs, not once per segment."""
    import dlstore.playlist as playlist_module

    calls = []
    real = playlist_module.urljoin
    monkeypatch.setattr(playlist_module, "urljoin", lambda *a: calls.append(a) or real(*a))
    plan = parse_playlist(many_segments(2000), BASE + "index.m3u8?token=x")
    assert plan.segments[1999].uri == BASE + "seg-001999.ts?t=1"
    assert len(calls) <= 2


_REF_CHARS = "ab1./?:#%;=&-_~+@ \t"


@settings(max_examples=3000, deadline=None)
@given(
    base=st.sampled_from([
        BASE + "index.m3u8", BASE + "index.m3u8?token=x#f", "https://h.example",
        "https://h.example/a//b/./c/../index.m3u8", "HTTP://H.example:8080/a/", "ftp://h/a/x",
        "https://h/a;p/x.m3u8", "https://h/a/..", "https://[::1]/x/y.m3u8",
    ]),
    ref=st.text(alphabet=_REF_CHARS, min_size=1, max_size=14),
)  # fmt: skip
def test_the_resolver_joins_as_urljoin_does(base, ref):
    from dlstore.playlist import _absolute, _Resolver

    def outcome(join):
        try:
            return join()
        except Exception as exc:  # noqa: BLE001 - the same error either way
            return f"{type(exc).__name__}: {exc}"

    fast = outcome(lambda: _Resolver(base).absolute(ref, "segment"))
    assert fast == outcome(lambda: _absolute(base, ref, "segment"))


@settings(max_examples=3000, deadline=None)
@given(path=st.text(alphabet="ab./T", max_size=12))
def test_a_segments_suffix_is_the_one_pathlib_gives(path):
    from dlstore.playlist import _suffix

    assert _suffix(path) == PurePosixPath(path).suffix.lower()
