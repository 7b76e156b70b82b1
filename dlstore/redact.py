"""URLs as dlstore shows them: no secrets, no control characters.

A row's URL may carry credentials (``https://user:pw@host/``), signed tokens in
its query string (``?token=…``, ``?Signature=…``) or in its fragment, and
characters that rewrite a terminal or forge a log line (a newline, ESC). Every
log line, ``message``, ``error_message`` and terminal line that names a URL
shows :func:`redact_url` of it instead. The HTTP libraries' messages, which quote
URLs and what servers sent, are never shown (:func:`dlstore.http.translate_errors`
names the kind of failure instead). Pure functions, no dlstore imports.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

#: What stands in for a query string or a fragment that was masked.
MASK = "…"
#: The most characters of a URL shown; longer ones end in "...".
MAX_SHOWN_CHARS = 160

#: Invisible characters that reorder how the text around them is displayed.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f"  # Arabic letter mark, left-to-right and right-to-left marks
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # isolates
)


def redact_url(url: str) -> str:
    """``url`` without user-info, with its query and fragment masked, safe to print.

    ``https://user:pw@cdn.example/v.m3u8?token=x`` → ``https://cdn.example/v.m3u8?…``.
    Text that is not a URL has anything after a ``?`` or ``#`` masked. Control
    characters come back escaped (``\\n``, ``\\x1b``); at most MAX_SHOWN_CHARS
    characters come back.
    """
    shown = _masked(str(url))
    if len(shown) <= MAX_SHOWN_CHARS:
        return shown
    return shown[: MAX_SHOWN_CHARS - 3] + "..."


#: What ends a URL within free text: a space, a quote, a control character.
_URL_END = r"""\s'"<>`\x00-\x1f\x7f"""
#: A URL within free text: a scheme and "//", up to a space or a quote.
_URL_IN_TEXT = re.compile(rf"[A-Za-z][A-Za-z0-9+.-]*://[^{_URL_END}]+")
#: A scheme-less path with a query (urllib3's "with url: /v.m3u8?token=…").
_QUERY_IN_TEXT = re.compile(rf"/[^{_URL_END}?#]*[?#][^{_URL_END}]*")


def redact_text(text: str) -> str:
    """``text`` (an exception's message, a traceback) with every URL in it redacted.

    Each ``scheme://…`` shows as :func:`redact_url` shows it, a path's query string
    or fragment is masked, and the control characters of the rest come back
    escaped, so the result is one line.
    """
    shown = _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), str(text))
    shown = _QUERY_IN_TEXT.sub(lambda match: _masked(match.group()), shown)
    return escape_controls(shown)


def _masked(text: str) -> str:
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced "[" in the host
        parts = None
    if parts is None or not parts.netloc:
        # Nothing to mask reliably (a path, "javascript:…"): cut at the first "?" or "#".
        cut = min((i for i in (text.find("?"), text.find("#")) if i >= 0), default=-1)
        return escape_controls(text if cut < 0 else text[: cut + 1] + MASK)
    host = parts.netloc.rpartition("@")[2]
    shown = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else f"//{host}{parts.path}"
    if parts.query:
        shown += "?" + MASK
    if parts.fragment:
        shown += "#" + MASK
    return escape_controls(shown)


def unsafe_character(text: str, *, spaces: bool = False) -> str | None:
    """The first control, line-breaking or bidi character in ``text`` (and, unless
    ``spaces``, the first space), described; None if none.

    For error sentences, which name the character (``"U+000A (line feed) at
    position 23"``) rather than echo it.
    """
    for position, char in enumerate(text, start=1):
        if _unsafe(char) and not (spaces and unicodedata.category(char) == "Zs"):
            name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "control character")
            return f"U+{ord(char):04X} ({name.lower()}) at position {position}"
    return None


#: Every character :func:`_unsafe` names but the plain space, as one class: categories
#: Cc, Zs, Zl and Zp, and the bidi controls (a test checks it against unicodedata). A
#: regular expression, as every log line and every segment's name goes through it.
_ESCAPED = re.compile(
    "[\x00-\x1f\x7f-\x9f\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    + "".join(sorted(_BIDI_CONTROLS))
    + "]"
)
#: A lone surrogate: how ``errors="surrogateescape"`` reads a byte that is not UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: The lone surrogates that stand for an undecodable byte (0x80–0xFF).
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def undecodable_byte(text: str) -> tuple[int, int] | None:
    """The first byte of ``text`` that was not UTF-8 where it was read, and its position
    in bytes counted from 1; None if every byte was.

    Such a byte reads as a lone surrogate (U+DC80–U+DCFF) under ``surrogateescape``,
    as :mod:`dlstore.db` reads SQLite's TEXT.
    """
    found = _SURROGATE.search(text)
    while found is not None and ord(found.group()) not in _ESCAPED_BYTES:
        found = _SURROGATE.search(text, found.end())
    if found is None:
        return None
    before = text[: found.start()].encode("utf-8", "surrogatepass")
    return ord(found.group()) - 0xDC00, len(before) + 1


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (an undecodable byte), which no UTF-8 writer
    (a database driver, a terminal) accepts."""
    return first_surrogate(text) is not None


def first_surrogate(text: str) -> int | None:
    """The code point of the first lone surrogate in ``text`` (an undecodable byte, or
    JSON's ``"\\ud800"``), or None."""
    found = _SURROGATE.search(text)
    return None if found is None else ord(found.group())


def replace_undecodable(text: str) -> str:
    """``text`` with each lone surrogate (an undecodable byte) written as U+FFFD, printable."""
    return _SURROGATE.sub("\ufffd", text)


def escape_controls(text: str) -> str:
    """``text`` with each control, line-breaking or bidi character written as an escape,
    and each undecodable byte as U+FFFD (:func:`replace_undecodable`)."""
    return _ESCAPED.sub(_escape, replace_undecodable(text))


def _escape(found: re.Match[str]) -> str:
    return ascii(found.group())[1:-1]


def _unsafe(char: str) -> bool:
    category = unicodedata.category(char)
    return category in ("Cc", "Zs", "Zl", "Zp") or char in _BIDI_CONTROLS


#: Names for the controls that unicodedata leaves unnamed.
_CONTROL_NAMES = {
    "\x00": "NUL",
    "\t": "tab",
    "\n": "line feed",
    "\r": "carriage return",
    "\x1b": "escape",
    "\x7f": "delete",
}
