"""The checks on a URL callers hand dlstore, and on a row's text (a task's other options:
:mod:`dlstore.options`).

Pure. It raises an :class:`~dlstore.errors.UnsupportedStreamError` whose message
says what is wrong and what is accepted.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from dlstore.errors import InvalidInputError, UnsupportedStreamError
from dlstore.redact import redact_url, undecodable_byte, unsafe_character

#: Longer URLs are refused: web servers answer 414 beyond about 8 KiB anyway, and a
#: row's URL is shown in messages and logs.
MAX_URL_CHARS = 8192


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, else an error saying why not.

    A URL with a control character, a space or a line break inside is refused too, and
    one longer than MAX_URL_CHARS.
    Error sentences show the URL as :func:`~dlstore.redact.redact_url` does.
    """
    if not isinstance(url, str) or not url.strip():
        raise UnsupportedStreamError("The URL is empty.")
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise UnsupportedStreamError(
            f"The URL is {len(url)} characters long; at most {MAX_URL_CHARS} are accepted."
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" around an IPv6 host
        raise UnsupportedStreamError(
            f"The URL {redact_url(url)} is not a valid URL ({exc})."
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme}://" if scheme else "no scheme"
        raise UnsupportedStreamError(
            f"Only http:// and https:// URLs can be downloaded, not {shown} ({redact_url(url)})."
        )
    if not parts.hostname:
        raise UnsupportedStreamError(f"The URL {redact_url(url)} has no host name.")
    bad = unsafe_character(url)
    if bad is not None:
        raise UnsupportedStreamError(
            f"The URL {redact_url(url)} contains {bad}; a URL must not hold control "
            "characters, spaces or line breaks (write them %-encoded, e.g. %20 for a space)."
        )
    return url


def check_utf8(column: str, text: str | None) -> None:
    """Refuse a column's text that held bytes that are not UTF-8 (SQLite stores any).

    The error names the column and the byte, never the text: dlstore cannot tell what
    the writer meant (a URL, a file name) from bytes it cannot decode.
    """
    found = undecodable_byte(text) if text else None
    if found is None:
        return
    byte, position = found
    raise InvalidInputError(
        f"The task's {column} is not valid UTF-8 text (the byte 0x{byte:02X} at byte "
        f"{position} is not UTF-8); whatever wrote the row must store it as UTF-8: "
        f"correct the {column} and retry the task."
    )
