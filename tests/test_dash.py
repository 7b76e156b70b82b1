"""The MPD parser on checked-in manifests (tests/data/mpd/): pure, no network."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import pytest

from dlstore.dash import (
    DashManifest,
    Representation,
    choose,
    choose_text,
    init_section,
    is_mpd,
    join_periods,
    parse_mpd,
    representation_segments,
)
from dlstore.dash_tracks import _text_track
from dlstore.errors import PlaylistError, QualityNotFoundError, UnsupportedStreamError
from dlstore.playlist import ByteRange
from dlstore.testing.dash_media import sidx_box

DATA = Path(__file__).parent / "data" / "mpd"
URL = "https://host.example/path/to/manifest.mpd?token=secret"
LIMIT = 100_000


def load(name: str, url: str = URL, **swap: str) -> DashManifest:
    text = (DATA / name).read_text()
    for old, new in swap.items():
        text = text.replace(old, new)
    return parse_mpd(text.encode(), url)


def load_text(name: str) -> str:
    return (DATA / name).read_text()


def no_read(uri: str, byte_range: ByteRange) -> bytes:
    raise AssertionError(f"nothing should be read, but {uri} {byte_range} was")


def segments(rep: Representation, read=no_read, limit: int = LIMIT):
    return representation_segments(rep, read, limit)


def urls(rep: Representation) -> list[str]:
    return [s.uri for s in segments(rep)]


def video(manifest: DashManifest, rep_id: str, period: int = 0) -> Representation:
    return next(r for r in manifest.periods[period].video if r.id == rep_id)


# --------------------------------------------------------------------------- recognising


@pytest.mark.parametrize(
    ("url", "body", "expected"),
    [
        ("https://h/a.mpd", b'<?xml version="1.0"?>\n<MPD type="static">', True),
        ("https://h/a.m3u8", b'\xef\xbb\xbf<?xml version="1.0"?><!-- x --><MPD>', True),
        ("https://h/manifest", b"<MPD xmlns='urn:mpeg:dash:schema:mpd:2011'>", True),
        ("https://h/a.MPD?sig=1", b"<html><body>login</body></html>", True),
        ("https://h/a.mpd", b"#EXTM3U\n#EXT-X-VERSION:3\n", False),
        ("https://h/a.m3u8", b"#EXTM3U\n", False),
        (
            "https://h/a.m3u8",
            b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>',
            False,
        ),
    ],
)
def test_is_mpd_by_content_or_by_url(url, body, expected):
    assert is_mpd(url, body) is expected


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "did not return a DASH manifest: it returned an empty body"),
        (b"<html><head><title>Sign in", "it returned an HTML page"),
        # a DOCTYPE, which the parser refuses before any tag: still a login page, not an attack
        (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>", "an HTML page"),
        (b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>", "root element is <Error>"),
        (b"<MPD><Period>", "is not well-formed XML"),
    ],
)
def test_what_is_not_an_mpd_is_named(body, says):
    with pytest.raises(PlaylistError, match=says) as caught:
        parse_mpd(body, URL)
    assert "secret" not in str(caught.value)  # the URL is shown without its query


# --------------------------------------------------------------------------- templates


def test_template_timeline_with_time_inherited_from_the_adaptation_set():
    manifest = load("template_timeline.mpd")
    rep = video(manifest, "720")
    segs = segments(rep)
    base = "https://cdn.example.com/vod/v720/"
    assert [s.uri for s in segs] == [f"{base}seg-{t}.m4s" for t in (0, 180000, 360000, 540000)]
    assert [s.duration for s in segs] == [2.0, 2.0, 2.0, 1.0]
    assert {s.init.uri for s in segs} == {base + "init.mp4"}
    assert (rep.width, rep.height, rep.codecs, rep.frame_rate) == (1280, 720, "avc1.64001f", 25.0)
    assert video(manifest, "1080").frame_rate == pytest.approx(29.97, abs=0.01)


def test_a_representations_own_timeline_replaces_the_sets_and_keeps_its_attributes():
    rep = video(load("template_timeline.mpd"), "480")
    segs = segments(rep)
    assert [s.uri.rsplit("/", 2)[-2:] for s in segs] == [["v480", "seg-0.m4s"],
                                                         ["v480", "seg-315000.m4s"]]  # fmt: skip
    assert [s.duration for s in segs] == [3.5, 3.5]


def test_repeat_minus_one_runs_to_the_period_end_with_number_width_and_bandwidth():
    manifest = load("template_timeline.mpd")
    audio = manifest.periods[0].audio[0]
    assert audio.language == "en" and audio.main
    best = audio.best()
    assert best.id == "a128"
    segs = segments(best)
    # 7 s of 2 s segments: 4 of them (the 4th reaches past the end, as r=-1 allows)
    base = "https://cdn.example.com/vod/a/128000/"
    assert [s.uri for s in segs] == [f"{base}{n:05d}.m4s" for n in (1, 2, 3, 4)]
    assert segs[0].init.uri == base + "init.mp4"


def test_text_adaptation_sets_are_left_out():
    period = load("template_timeline.mpd").periods[0]
    assert [r.id for r in period.video] == ["1080", "720", "480"]
    assert [a.id for a in period.audio] == ["2"]


def test_number_template_with_duration_fills_the_period_and_cuts_the_last():
    rep = video(load("template_number.mpd", url="https://h.example/v/m.mpd"), "v1")
    segs = segments(rep)
    assert [s.uri for s in segs] == [
        f"https://h.example/v/v1/seg_{n:05d}_800000.m4s" for n in (3, 4, 5)
    ]
    assert [s.duration for s in segs] == [2.0, 2.0, 1.0]
    assert init_section(rep).uri == "https://h.example/v/v1-init.mp4"


def test_end_number_bounds_a_number_template():
    manifest = load("template_number.mpd", **{'startNumber="3"': 'startNumber="3" endNumber="4"'})
    assert len(segments(video(manifest, "v1"))) == 2


def test_a_dollar_pair_is_a_dollar_and_unknown_identifiers_are_refused():
    ok = load("template_number.mpd", **{"/seg_": "/$$seg_"})
    assert urls(video(ok, "v1"))[0].endswith("/v1/$seg_00003_800000.m4s")
    bad = load("template_number.mpd", **{"$Bandwidth$": "$SubNumber$"})
    with pytest.raises(PlaylistError, match=r"identifier \$SubNumber\$"):
        segments(video(bad, "v1"))


# --------------------------------------------------------------------------- lists and bases


def test_segment_list_of_files_and_of_ranges():
    manifest = load("segment_list.mpd", url="https://h.example/dash/m.mpd")
    files = segments(video(manifest, "files"))
    assert [s.uri for s in files] == [f"https://h.example/dash/files/s{n}.m4s" for n in (1, 2, 3)]
    assert [s.duration for s in files] == [4.0, 4.0, 4.0]
    assert files[0].init.uri == "https://h.example/dash/files/init.mp4"
    assert files[0].init.byte_range is None
    ranged = segments(video(manifest, "ranges"))
    assert {s.uri for s in ranged} == {"https://h.example/dash/one.mp4"}
    assert [s.byte_range for s in ranged] == [ByteRange(50000, 800), ByteRange(29201, 50800)]
    assert [s.duration for s in ranged] == [6.0, 4.0]
    assert ranged[0].init.byte_range == ByteRange(800, 0)


def test_segment_base_reads_its_index_range_and_lists_the_sidx_subsegments():
    manifest = load("segment_base.mpd", url="https://h.example/od/m.mpd")
    rep = video(manifest, "v")
    box = sidx_box([1000, 2000, 1500], [2000, 2000, 2000])
    assert len(box) == 68  # indexRange 832-899
    asked = []

    def read(uri, byte_range):
        asked.append((uri, byte_range))
        return box

    segs = segments(rep, read)
    assert asked == [("https://h.example/od/video_640.mp4", ByteRange(68, 832))]
    assert [s.byte_range for s in segs] == [
        ByteRange(1000, 900),
        ByteRange(2000, 1900),
        ByteRange(1500, 3900),
    ]
    assert [s.duration for s in segs] == [2.0, 2.0, 2.0]
    assert segs[0].init.byte_range == ByteRange(832, 0)  # Initialization@range="0-831"


def test_segment_base_without_initialization_takes_the_bytes_before_the_index():
    manifest = load("segment_base.mpd")
    audio = manifest.periods[0].audio[0].best()
    assert init_section(audio).byte_range == ByteRange(700, 0)


def test_a_sidx_pointing_at_sidx_boxes_is_followed_in_order_reading_only_the_boxes():
    # A file: the top index at 832 (the indexRange) references a child index with its
    # subsegment, a subsegment, and a second child index (version 1) with two subsegments.
    media = [100_000, 200_000, 300_000, 400_000]
    child_a = sidx_box([media[0]], [1000])
    child_b = sidx_box(media[2:], [1000, 1000], version=1)
    top = sidx_box([len(child_a) + media[0], media[1], len(child_b) + sum(media[2:])],
                   [1000, 1000, 2000], index_refs=(0, 2))  # fmt: skip
    data = bytearray(832) + top + child_a + bytes(media[0]) + bytes(media[1]) + child_b
    data += bytes(sum(media[2:]))
    reads = []

    def read(uri, byte_range):
        reads.append(byte_range)
        return bytes(data[byte_range.offset : byte_range.offset + byte_range.length])

    manifest = load(
        "segment_base.mpd", **{'indexRange="832-899"': f'indexRange="832-{831 + len(top)}"'}
    )
    segs = segments(video(manifest, "v"), read)
    a = 832 + len(top)
    first = a + len(child_a)
    b = first + media[0] + media[1]
    assert [s.byte_range for s in segs] == [
        ByteRange(media[0], first),
        ByteRange(media[1], first + media[0]),
        ByteRange(media[2], b + len(child_b)),
        ByteRange(media[3], b + len(child_b) + media[2]),
    ]
    assert [s.duration for s in segs] == [1.0, 1.0, 1.0, 1.0]
    assert [r.offset for r in reads] == [832, a, b]
    assert max(r.length for r in reads) <= 4096  # the subsegments were not read


def test_too_many_sidx_boxes_are_refused():
    box = sidx_box([1000], [1000], index_refs=(0,))  # each box points at one more box

    def read(uri, byte_range):
        return box

    manifest = load("segment_base.mpd")
    with pytest.raises(PlaylistError, match="more than 64 sidx boxes"):
        segments(video(manifest, "v"), read)


# --------------------------------------------------------------------------- periods, URLs


def test_periods_take_their_length_from_the_next_start_and_the_total():
    manifest = load("multi_period.mpd", url="https://h.example/show/m.mpd")
    intro, feature = manifest.periods
    assert (intro.start, intro.duration) == (0, 30)
    assert (feature.start, feature.duration) == (30, 70)
    choice = choose(manifest, "best")
    assert [r.id for r in choice.video] == ["hd", "fhd"]
    assert choice.variant.height == 1080  # the longest period's
    plan = join_periods(manifest.url, [segments(r) for r in choice.video])
    assert len(plan.segments) == 15 + 35
    assert plan.segments[0].uri == "https://h.example/show/intro/hd/1.m4s"
    assert plan.segments[15].uri == "https://h.example/show/feature/fhd/1.m4s"
    assert [n for n, s in enumerate(plan.segments) if s.discontinuity] == [15]
    assert [s.media_sequence for s in plan.segments] == list(range(50))
    assert [i.uri for i in plan.init_sections] == [
        "https://h.example/show/intro/hd/init.mp4",
        "https://h.example/show/feature/fhd/init.mp4",
    ]
    assert plan.duration == 100


def test_a_later_period_without_the_quality_gets_its_lowest():
    choice = choose(load("multi_period.mpd"), "360p")
    assert [r.id for r in choice.video] == ["sd", "hd"]
    with pytest.raises(QualityNotFoundError, match="360p"):
        choose(load("multi_period.mpd", **{'width="640" height="360"': 'width="1" height="999"'}),
               "360p")  # fmt: skip


def test_base_urls_stack_at_every_level_and_absolute_ones_replace():
    manifest = load("baseurl_nesting.mpd", url="https://host.example/path/to/manifest.mpd")
    assert urls(video(manifest, "stacked")) == [
        "https://host.example/abs/video/r1/1.m4s", "https://host.example/abs/video/r1/2.m4s"
    ]  # fmt: skip
    assert urls(video(manifest, "elsewhere"))[0] == "https://other.example.org/full/1.m4s"
    audio = manifest.periods[0].audio[0].best()
    assert urls(audio)[0] == "https://host.example/path/to/media/p1/a-1.m4s"
    assert init_section(audio).uri == "https://host.example/path/to/media/p1/a-init.mp4"


def test_a_non_http_base_url_is_refused():
    manifest = load("baseurl_nesting.mpd", **{"/abs/video/": "file:///etc/"})
    with pytest.raises(UnsupportedStreamError, match="only http and https"):
        urls(video(manifest, "stacked"))


# --------------------------------------------------------------------------- choosing


@pytest.mark.parametrize(
    ("quality", "chosen"),
    [("best", "1080"), ("worst", "480"), ("720p", "720"), ("1000p", "720"), ("480p", "480")],
)
def test_quality_as_for_hls(quality, chosen):
    choice = choose(load("template_timeline.mpd"), quality)
    assert [r.id for r in choice.video] == [chosen]
    assert [r.id for r in choice.audio] == ["a128"]
    assert choice.audio_rendition.language == "en"


def test_a_quality_not_offered_is_an_error_listing_the_offer():
    with pytest.raises(QualityNotFoundError, match="1080p, 720p, 480p"):
        choose(load("template_timeline.mpd"), "360p")


def test_the_main_audio_set_wins_else_the_first():
    text = (DATA / "template_timeline.mpd").read_text()
    french = text.split('<AdaptationSet id="2"', 1)[1].split("</AdaptationSet>", 1)[0]
    french = french.replace('lang="en"', 'lang="fr"').replace("<Role", "<NoRole")
    french = french.replace('"a64"', '"f64"').replace('"a128"', '"f128"')
    extra = f'<AdaptationSet id="4"{french}</AdaptationSet>'
    first = text.replace('<AdaptationSet id="2"', extra + '<AdaptationSet id="2"', 1)
    assert choose(parse_mpd(first.encode(), URL), "best").audio_rendition.language == "en"
    no_main = first.replace('value="main"', 'value="dub"')
    choice = choose(parse_mpd(no_main.encode(), URL), "best")
    assert choice.audio_rendition.language == "fr" and choice.audio[0].id == "f128"


def with_french_set(text: str, *, main: bool = False) -> str:
    """The manifest with a French audio set (and a French text set) before the English."""
    french = text.split('<AdaptationSet id="2"', 1)[1].split("</AdaptationSet>", 1)[0]
    french = french.replace('lang="en"', 'lang="fre"')
    french = french if main else french.replace("<Role", "<NoRole")
    french = french.replace('"a64"', '"f64"').replace('"a128"', '"f128"')
    subs = '<AdaptationSet id="5" contentType="text" mimeType="text/vtt" lang="fr-CA">' \
        '<Representation id="fsubs" bandwidth="1"><BaseURL>subs/fr.vtt</BaseURL>' \
        "</Representation></AdaptationSet>"  # fmt: skip
    extra = f'<AdaptationSet id="4"{french}</AdaptationSet>{subs}'
    return text.replace('<AdaptationSet id="2"', extra + '<AdaptationSet id="2"', 1)


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [("default", ["a128"]), ("all", ["a128", "f128"]), (["fr"], ["f128"]), (["de"], ["a128"]),
     (["de", "fr-FR", "en"], ["f128"])],
)  # fmt: skip
def test_audio_sets_are_chosen_as_hls_renditions_are(wanted, chosen):
    manifest = parse_mpd(with_french_set(load_text("template_timeline.mpd")).encode(), URL)
    choice = choose(manifest, "best", wanted)
    tracks = [(choice.audio_rendition, choice.audio)] + list(choice.more_audio)
    assert [reps[0].id for _, reps in tracks] == chosen
    assert [r.default for r, _ in tracks] == [chosen[0] == "a128"] + [False] * (len(chosen) - 1)
    assert [r.language for r, _ in tracks] == [{"a": "en", "f": "fre"}[c[0]] for c in chosen]


def test_webvtt_text_sets_are_chosen_as_hls_subtitles_are():
    manifest = parse_mpd(with_french_set(load_text("template_timeline.mpd")).encode(), URL)
    everything = choose_text(manifest, "all")
    assert [(r.language, r.uri) for r, _ in everything] == [
        ("fr-CA", "https://cdn.example.com/vod/subs/fr.vtt"),
        ("en", "https://cdn.example.com/vod/subs/en.vtt"),
    ]
    assert [r.language for r, _ in choose_text(manifest, ["fr"])] == ["fr-CA"]
    assert choose_text(manifest, "none") == ()
    (_, periods), *_ = everything
    ((start, rep),) = periods
    assert start == 0 and rep.kind == "text"
    assert [(s.uri, s.duration) for s in segments(rep)] == [
        ("https://cdn.example.com/vod/subs/fr.vtt", 7.0)
    ]  # a whole file: one segment, the period long


def test_text_dlstore_cannot_read_is_left_out_not_fatal():
    text = (DATA / "template_timeline.mpd").read_text()
    broken = text.replace('<Representation id="subs" bandwidth="256">',
                          '<Representation bandwidth="256">')  # fmt: skip
    wvtt = text.replace('mimeType="text/vtt"', 'mimeType="application/mp4" codecs="wvtt"')
    for variant in (broken, wvtt):
        manifest = parse_mpd(variant.encode(), URL)
        assert manifest.periods[0].text == () and choose_text(manifest) == ()


def test_muxed_video_has_no_separate_audio():
    choice = choose(load("template_number.mpd"), "best")
    assert [r.id for r in choice.video] == ["v1"] and choice.audio == ()
    assert choice.audio_rendition is None


def test_audio_only_is_the_video_track():
    text = (DATA / "segment_base.mpd").read_text()
    audio_only = text.split("<AdaptationSet", 1)[0] + "<AdaptationSet" + text.split(
        "<AdaptationSet", 2)[2]  # fmt: skip
    choice = choose(parse_mpd(audio_only.encode(), URL), "720p")
    assert [r.id for r in choice.video] == ["a"] and choice.variant is None


def test_webm_beside_mp4_is_left_out_and_webm_only_is_refused():
    files = 'mimeType="video/mp4">\n        <BaseURL>files/'
    beside = load("segment_list.mpd", **{files: files.replace("mp4", "webm")})
    assert [r.id for r in beside.periods[0].video] == ["ranges"]
    with pytest.raises(UnsupportedStreamError, match="only as video/webm"):
        load("segment_list.mpd", **{'mimeType="video/mp4"': 'mimeType="video/webm"'})


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("uuid", "name"),
    [
        ("EDEF8BA9-79D6-4ACE-A3C8-27DCD51D21ED", "Widevine"),
        ("9a04f079-9840-4286-ab92-e65be0885f95", "PlayReady"),
        ("e2719d58-a985-b3c9-781a-b030af78d30e", "ClearKey"),
        ("12345678-0000-0000-0000-000000000000", "urn:uuid:12345678-0000-0000-0000-000000000000"),
    ],
)
def test_content_protection_is_refused_naming_the_system(uuid, name):
    with pytest.raises(UnsupportedStreamError) as caught:
        load("drm.mpd", **{"EDEF8BA9-79D6-4ACE-A3C8-27DCD51D21ED": uuid})
    assert str(caught.value) == (
        f"This stream is protected by DRM ({name}); dlstore cannot download it."
    )


def test_content_protection_in_a_representation_alone_is_refused():
    text = (
        (DATA / "template_number.mpd")
        .read_text()
        .replace(
            "<SegmentTemplate",
            '<ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cenc"/>'
            "<SegmentTemplate",
        )
    )
    with pytest.raises(UnsupportedStreamError, match=r"DRM \(Common Encryption\)"):
        parse_mpd(text.encode(), URL)


#: A line break (as XML writes one in an attribute) and a bidi override: forged lines.
FORGED = "&#10;[task forged] line\u202e"


def assert_shown_safely(error: BaseException) -> None:
    """The manifest's own text reaches the message escaped (it lands in a row), and cut."""
    message = str(error)
    assert "\n" not in message and "\u202e" not in message and len(message) < 600, message
    assert "\\n[task forged] line\\u202e" in message


def test_the_manifests_own_text_is_escaped_and_cut_in_what_it_is_refused_for():
    many = "".join(f'<ContentProtection schemeIdUri="urn:x:{n}:{FORGED}"/>' for n in range(9))
    with pytest.raises(UnsupportedStreamError, match=r"\(Widevine, urn:x:0:") as drm:
        load("drm.mpd", **{"<SegmentTemplate": many + "<SegmentTemplate"})
    assert str(drm.value).endswith(" and 6 more); dlstore cannot download it.")
    assert_shown_safely(drm.value)
    with pytest.raises(UnsupportedStreamError, match="only as video/x-") as mime:
        load("template_number.mpd", **{'"video/mp4"': f'"video/x-{FORGED}"'})
    assert_shown_safely(mime.value)
    named = load("template_number.mpd", **{"$Bandwidth$": f"$Sub{FORGED}$"})
    with pytest.raises(PlaylistError, match="identifier") as identifier:
        segments(video(named, "v1"))
    assert_shown_safely(identifier.value)

    huge = "x" * 100_000
    with pytest.raises(UnsupportedStreamError) as drm:
        load("drm.mpd", **{"<SegmentTemplate": f'<ContentProtection schemeIdUri="{huge}"/>'
                                               "<SegmentTemplate"})  # fmt: skip
    with pytest.raises(UnsupportedStreamError) as mime:
        load("template_number.mpd", **{'"video/mp4"': f'"video/{huge}"'})
    with pytest.raises(PlaylistError, match="the unknown type 'xxx") as kind:
        load("dynamic.mpd", **{'type="dynamic"': f'type="{huge}"'})
    long_id = load("template_number.mpd", **{'id="v1"': f'id="v1{huge}"'})
    with pytest.raises(PlaylistError, match="^The DASH representation 'v1xxx") as count:
        segments(long_id.periods[0].video[0], limit=1)
    assert all(len(str(e.value)) < 300 for e in (drm, mime, kind, count))


def test_a_dynamic_manifest_is_refused_as_live():
    with pytest.raises(UnsupportedStreamError, match='live stream \\(type="dynamic"\\)'):
        load("dynamic.mpd")


def test_an_entity_attack_is_refused_before_anything_expands():
    started = time.monotonic()
    with pytest.raises(PlaylistError, match="DOCTYPE or entities"):
        load("entity_attack.mpd")
    assert time.monotonic() - started < 1.0


def test_a_huge_repeat_is_refused_before_it_is_expanded():
    rep = video(load("huge_repeat.mpd"), "v")
    started = time.monotonic()
    with pytest.raises(PlaylistError, match="1000000000001 segments, more than the limit of 100"):
        segments(rep, limit=100)
    assert time.monotonic() - started < 1.0


def test_a_repeat_to_a_far_period_end_is_refused_before_it_is_expanded():
    far = load("huge_repeat.mpd", **{'r="1000000000000"': 'r="-1"', "PT4S": "PT100000H"})
    with pytest.raises(PlaylistError, match="more than the limit of 1000"):
        segments(video(far, "v"), limit=1000)


def test_a_repeat_to_an_unknown_end_is_an_error():
    text = (DATA / "huge_repeat.mpd").read_text().replace('r="1000000000000"', 'r="-1"')
    unknown = parse_mpd(text.replace(' mediaPresentationDuration="PT4S"', "").encode(), URL)
    with pytest.raises(PlaylistError, match="length is unknown"):
        segments(video(unknown, "v"))


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ('d="1"', 'd="0"', "without a positive @d"),
        ('r="1000000000000"', 'r="many"', "malformed @S@r"),
        ('t="0"', 't="-5"', "invalid @S@t"),
        ('timescale="1000"', 'timescale="0"', "timescale of 0"),
        ('media="$Time$.m4s"', 'media="$Time%0xd$.m4s"', "identifier"),
    ],
)
def test_malformed_values_are_named(old, new, says):
    swaps = {'r="1000000000000"': 'r="3"', old: new}  # a short timeline, but for the swap
    rep = video(load("huge_repeat.mpd", **swaps), "v")
    with pytest.raises(PlaylistError, match=says):
        segments(rep, limit=100)


def test_a_remote_period_is_refused():
    with pytest.raises(UnsupportedStreamError, match="xlink:href"):
        load("dynamic.mpd", **{
            'type="dynamic"': 'type="static" xmlns:xlink="http://www.w3.org/1999/xlink"',
            '<Period start="PT0S">': '<Period xlink:href="https://evil.example/p.xml">',
        })  # fmt: skip


def test_periods_that_differ_in_their_tracks_are_refused():
    text = (DATA / "multi_period.mpd").read_text()
    head, feature = text.split('<Period id="feature"', 1)
    no_audio = feature.split('<AdaptationSet contentType="audio"', 1)[0] + "</Period></MPD>"
    manifest = parse_mpd((head + '<Period id="feature"' + no_audio).encode(), URL)
    with pytest.raises(UnsupportedStreamError, match="separate audio in some periods only"):
        choose(manifest, "best")


def test_each_periods_cues_count_from_that_periods_start_on_the_media_clock():
    text = (DATA / "multi_period.mpd").read_text()
    subs = (
        '<AdaptationSet contentType="text" mimeType="text/vtt" lang="en"><Representation '
        'id="s" bandwidth="1"><BaseURL>en.vtt</BaseURL></Representation></AdaptationSet></Period>'
    )
    text = text.replace("</Period>", subs).replace(  # the video's media time starts at 10 s
        'timescale="1" duration="2" initialization="$Rep', 'timescale="1" duration="2" '
        'presentationTimeOffset="10" initialization="$Rep', 1)  # fmt: skip
    manifest = parse_mpd(text.encode(), URL)
    ((rendition, periods),) = choose_text(manifest)
    track = _text_track(URL, rendition, periods, Fraction(10), no_read, LIMIT)
    assert [s.uri.rsplit("/", 2)[-2] for s in track.plan.segments] == ["intro", "feature"]
    assert track.clock == (10 * 90000, 40 * 90000)  # 10 s, then 10 + 30 s
