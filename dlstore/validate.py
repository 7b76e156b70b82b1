"""Checks on what callers hand dlstore: URLs, qualities, headers, task metadata.

Pure functions. Each raises a :class:`~dlstore.errors.DlstoreError` subclass whose
message says what is wrong and what is accepted, so the same check serves
``dlstore add``, batch files and the daemon (which writes the message into a
row's ``error_message``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from dlstore.errors import DlstoreError, UnsupportedStreamError
from dlstore.options import OUTPUT_FORMATS
from dlstore.paths import safe_subdir
from dlstore.redact import redact_url, unsafe_character

_QUALITY = re.compile(r"^(best|worst|\d{2,4}p)$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class InvalidInputError(DlstoreError):
    """The task's settings are invalid."""


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, else an error saying why not.

    A URL with a control character, a space or a line break inside is refused too.
    Error sentences show the URL as :func:`~dlstore.redact.redact_url` does.
    """
    if not isinstance(url, str) or not url.strip():
        raise UnsupportedStreamError("The URL is empty.")
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" around an IPv6 host
        raise UnsupportedStreamError(
            f"The URL {redact_url(url)[:200]} is not a valid URL ({exc})."
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme}://" if scheme else "no scheme"
        raise UnsupportedStreamError(
            f"Only http:// and https:// URLs can be downloaded, not {shown} "
            f"({redact_url(url)[:200]})."
        )
    if not parts.hostname:
        raise UnsupportedStreamError(f"The URL {redact_url(url)[:200]} has no host name.")
    bad = unsafe_character(url)
    if bad is not None:
        raise UnsupportedStreamError(
            f"The URL {redact_url(url)[:200]} contains {bad}; a URL must not hold control "
            "characters, spaces or line breaks (write them %-encoded, e.g. %20 for a space)."
        )
    return url


def check_quality(quality: Any) -> str:
    if not isinstance(quality, str) or not _QUALITY.match(quality.strip().lower()):
        raise InvalidInputError(
            f'Unknown quality {quality!r}; use a height such as "1080p" or "720p", '
            'or "best" or "worst".'
        )
    return quality.strip().lower()


def check_format(output_format: Any) -> str:
    if output_format not in OUTPUT_FORMATS:
        raise InvalidInputError(
            f"Unknown format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}."
        )
    return str(output_format)


def check_headers(headers: Any) -> dict[str, str]:
    """``headers`` if a task may send them, else an error naming the header (never its value).

    Refused: names that are not HTTP tokens, the same name twice, ``Host``,
    ``Content-Length`` and hop-by-hop headers (they are the connection's, not the
    task's), and values with a control character (tab, line break, NUL, ESC, DEL)
    or a character outside Latin-1.
    """
    if not isinstance(headers, Mapping):
        raise InvalidInputError(
            "headers must be an object of header names to values, "
            'such as {"Referer": "https://example.com/"}.'
        )
    if len(headers) > 100:
        raise InvalidInputError(f"headers holds {len(headers)} headers; at most 100 are sent.")
    reserved = {"host", "content-length", "connection", "keep-alive", "proxy-authenticate",
                "proxy-authorization", "proxy-connection", "te", "trailer", "transfer-encoding",
                "upgrade"}  # fmt: skip
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or len(name) > 100 or not _HEADER_NAME.match(name):
            shown = repr(name)[:100] if isinstance(name, str) else type(name).__name__
            raise InvalidInputError(f"{shown} is not a valid HTTP header name.")
        if name.lower() in reserved:
            raise InvalidInputError(
                f"The header {name} cannot be set: dlstore's HTTP connection sets it itself."
            )
        if name.lower() in {seen.lower() for seen in checked}:
            raise InvalidInputError(f"The header {name} is given twice; give it once.")
        if not isinstance(value, str) or len(value) > 16384:
            raise InvalidInputError(
                f"The value of header {name} must be text of at most 16384 characters."
            )
        if re.search(r"[\x00-\x1f\x7f]", value):
            raise InvalidInputError(
                f"The value of header {name} holds a control character (a line break, tab, "
                "NUL, ESC or DEL); it must be one line of printable text."
            )
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidInputError(
                f"The value of header {name} holds characters outside Latin-1, which HTTP "
                "headers cannot carry; %-encode them (as a browser does)."
            ) from None
        checked[name] = value
    return checked


def parse_header(line: str) -> tuple[str, str]:
    """``'Referer: https://x/'`` → ``("Referer", "https://x/")``."""
    name, sep, value = line.partition(":")
    if not sep or not name.strip():
        raise InvalidInputError(f"Header {line!r} must look like 'Name: value'.")
    name, value = name.strip(), value.strip()
    check_headers({name: value})
    return name, value


def check_output_dir(output_dir: Any) -> str:
    """A relative folder that stays inside the output root (checked again on use)."""
    if not isinstance(output_dir, str):
        raise InvalidInputError(f"output_dir must be text, not {type(output_dir).__name__}.")
    return str(safe_subdir(output_dir))


def check_task_metadata(
    metadata: Mapping[str, Any], profiles: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Validate the caller's keys of a task's metadata (others pass through untouched)."""
    checked = dict(metadata)
    if "quality" in metadata and metadata["quality"] is not None:
        checked["quality"] = check_quality(metadata["quality"])
    if "format" in metadata and metadata["format"] is not None:
        checked["format"] = check_format(metadata["format"])
    if "headers" in metadata and metadata["headers"] is not None:
        checked["headers"] = check_headers(metadata["headers"])
    if "output_dir" in metadata and metadata["output_dir"] is not None:
        checked["output_dir"] = check_output_dir(metadata["output_dir"])
    profile = metadata.get("profile")
    if profile is not None and profiles is not None and profile not in profiles:
        raise InvalidInputError(
            f"Unknown profile {profile!r}; use one of {', '.join(sorted(profiles))}."
        )
    return checked
