"""The check on a URL callers hand dlstore (a task's other options: :mod:`dlstore.options`).

Pure. It raises an :class:`~dlstore.errors.UnsupportedStreamError` whose message
says what is wrong and what is accepted.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from dlstore.errors import UnsupportedStreamError


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
