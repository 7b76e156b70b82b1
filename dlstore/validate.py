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

_QUALITY = re.compile(r"^(best|worst|\d{2,4}p)$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class InvalidInputError(DlstoreError):
    """The task's settings are invalid."""


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, else an error saying why not."""
    if not isinstance(url, str) or not url.strip():
        raise UnsupportedStreamError("The URL is empty.")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme}://" if scheme else "no scheme"
        raise UnsupportedStreamError(
            f"Only http:// and https:// URLs can be downloaded, not {shown} ({url[:200]!r})."
        )
    if not parts.hostname:
        raise UnsupportedStreamError(f"The URL {url[:200]!r} has no host name.")
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
    if not isinstance(headers, Mapping):
        raise InvalidInputError(
            "headers must be an object of header names to values, "
            'such as {"Referer": "https://example.com/"}.'
        )
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise InvalidInputError(f"{name!r} is not a valid HTTP header name.")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise InvalidInputError(f"The value of header {name} must be one line of text.")
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
