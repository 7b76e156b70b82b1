"""Language tags as playlists give them and as FFmpeg stores them. Pure: no I/O.

An HLS ``LANGUAGE`` attribute is a BCP 47 tag (``en``, ``pt-BR``, ``zh-Hans``, at times
a three-letter ``eng``); a caller asks for languages the same way. MP4 and MPEG-TS store
a stream's language as an ISO 639-2 code, which FFmpeg takes from the ``language``
metadata key: the terminology (T) code (``fra``, ``deu``), as ISO 14496-12 says.

    iso639_2("fr-CA")              → "fra"
    iso639_2("fre")                → "fra"   (bibliographic codes mapped to T)
    same_language("en", "eng-GB")  → True
    best_match(["pt-BR", "en"], offered, language_of)  → the first one offered

No table of language names: dlstore only needs codes. The table below is ISO 639-1
(every two-letter code, and the three withdrawn ones Java still writes) with its
ISO 639-2/T code, and the twenty ISO 639-2/B codes that differ from their T code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: A language tag as dlstore accepts one from a caller: a BCP 47 shape, not a registry check.
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8}){0,7}$")

_ISO639_1_TEXT = """
    aa:aar ab:abk ae:ave af:afr ak:aka am:amh an:arg ar:ara as:asm av:ava ay:aym az:aze
    ba:bak be:bel bg:bul bh:bih bi:bis bm:bam bn:ben bo:bod br:bre bs:bos ca:cat ce:che
    ch:cha co:cos cr:cre cs:ces cu:chu cv:chv cy:cym da:dan de:deu dv:div dz:dzo ee:ewe
    el:ell en:eng eo:epo es:spa et:est eu:eus fa:fas ff:ful fi:fin fj:fij fo:fao fr:fra
    fy:fry ga:gle gd:gla gl:glg gn:grn gu:guj gv:glv ha:hau he:heb hi:hin ho:hmo hr:hrv
    ht:hat hu:hun hy:hye hz:her ia:ina id:ind ie:ile ig:ibo ii:iii ik:ipk io:ido is:isl
    it:ita iu:iku ja:jpn jv:jav ka:kat kg:kon ki:kik kj:kua kk:kaz kl:kal km:khm kn:kan
    ko:kor kr:kau ks:kas ku:kur kv:kom kw:cor ky:kir la:lat lb:ltz lg:lug li:lim ln:lin
    lo:lao lt:lit lu:lub lv:lav mg:mlg mh:mah mi:mri mk:mkd ml:mal mn:mon mr:mar ms:msa
    mt:mlt my:mya na:nau nb:nob nd:nde ne:nep ng:ndo nl:nld nn:nno no:nor nr:nbl nv:nav
    ny:nya oc:oci oj:oji om:orm or:ori os:oss pa:pan pi:pli pl:pol ps:pus pt:por qu:que
    rm:roh rn:run ro:ron ru:rus rw:kin sa:san sc:srd sd:snd se:sme sg:sag si:sin sk:slk
    sl:slv sm:smo sn:sna so:som sq:sqi sr:srp ss:ssw st:sot su:sun sv:swe sw:swa ta:tam
    te:tel tg:tgk th:tha ti:tir tk:tuk tl:tgl tn:tsn to:ton tr:tur ts:tso tt:tat tw:twi
    ty:tah ug:uig uk:ukr ur:urd uz:uzb ve:ven vi:vie vo:vol wa:wln wo:wol xh:xho yi:yid
    yo:yor za:zha zh:zho zu:zul iw:heb in:ind ji:yid
"""
_BIBLIOGRAPHIC_TEXT = """
    alb:sqi arm:hye baq:eus bur:mya chi:zho cze:ces dut:nld fre:fra geo:kat ger:deu
    gre:ell ice:isl mac:mkd mao:mri may:msa per:fas rum:ron slo:slk tib:bod wel:cym
"""


def _pairs(text: str) -> dict[str, str]:
    return dict(pair.split(":") for pair in text.split())


_ISO639_1 = _pairs(_ISO639_1_TEXT)
_BIBLIOGRAPHIC = _pairs(_BIBLIOGRAPHIC_TEXT)


def primary_subtag(tag: str | None) -> str | None:
    """The language part of a tag, lower case (``"pt"`` for ``"pt-BR"``); None if none."""
    if not tag:
        return None
    first = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return first if first.isascii() and first.isalpha() and 2 <= len(first) <= 8 else None


def iso639_2(tag: str | None) -> str | None:
    """The ISO 639-2/T code FFmpeg should store for ``tag``; None if it names no language
    dlstore knows (then a stream is left without a language rather than a wrong one)."""
    primary = primary_subtag(tag)
    if primary is None:
        return None
    if len(primary) == 2:
        return _ISO639_1.get(primary)
    if len(primary) == 3:
        return _BIBLIOGRAPHIC.get(primary, primary)
    return None


def same_language(a: str | None, b: str | None) -> bool:
    """Whether two tags name the same language (``en`` and ``eng-US`` do)."""
    first, second = primary_subtag(a), primary_subtag(b)
    if first is None or second is None:
        return False
    return (iso639_2(first) or first) == (iso639_2(second) or second)


def best_match(
    wanted: Sequence[str], offered: Iterable[T], language_of: Callable[[T], str | None]
) -> T | None:
    """The first of ``offered`` in the language first in ``wanted`` that any of them speaks:
    the same tag (``pt-BR``) wins over the same language (``pt-PT``). None if none does."""
    items = list(offered)
    for code in wanted:
        exact = [i for i in items if (language_of(i) or "").lower() == code.lower()]
        close = [i for i in items if same_language(language_of(i), code)]
        if exact or close:
            return (exact or close)[0]
    return None


def matches_any(tag: str | None, wanted: Sequence[str]) -> bool:
    """Whether ``tag`` is in one of the ``wanted`` languages."""
    return any(same_language(tag, code) for code in wanted)
