"""The origin host of a row's URL, for ``max_per_host``: in Python and in SQL, the same.

The daemon counts its running downloads by :func:`url_host` of their URLs; the claim
skips pending rows whose :func:`url_host_sql` is among the hosts at their limit. Both
compute the same text, step by step (a test holds them equal on both databases):

    after the first "://"           (none: '')
    up to the first "/", "?" or "#" the authority
    after the first "@"             without user-info
    "[…]" up to the first "]"       an IPv6 literal keeps its brackets
    else up to the first ":"        without the port
    A-Z lowered to a-z              (ASCII only, like SQLite's lower())

``HTTP://User@CDN.Example:8443/v.m3u8`` → ``cdn.example``. Only the row's own URL
counts: segments served from other hosts (a CDN) do not. This is plain string work,
not URL parsing: a URL the daemon cannot download anyway (no host, bad syntax) gets
some host text, and fails when its download starts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, literal
from sqlalchemy.sql.elements import ColumnElement

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = _UPPER.lower()
_ASCII_LOWER = str.maketrans(_UPPER, _LOWER)


def url_host(url: str) -> str:
    """The origin host of ``url``, as :func:`url_host_sql` computes it in the database."""
    start = url.find("://")
    if start < 0:
        return ""
    rest = url[start + 3 :]
    end = (rest.replace("?", "/").replace("#", "/") + "/").find("/")
    authority = rest[:end]
    authority = authority[authority.find("@") + 1 :]
    if authority.startswith("["):
        host = authority[: authority.find("]") + 1]
    else:
        host = authority[: (authority + ":").find(":")]
    return host.translate(_ASCII_LOWER)


def url_host_sql(url: ColumnElement[Any], dialect: str) -> ColumnElement[str]:
    """:func:`url_host` of the SQL text ``url``, for ``dialect`` ('sqlite' or 'postgresql')."""
    postgres = dialect == "postgresql"

    def find(text: Any, part: str) -> ColumnElement[int]:  # 1-based; 0 if absent
        needle = literal(part)
        return func.strpos(text, needle) if postgres else func.instr(text, needle)

    def lower(text: Any) -> ColumnElement[str]:
        return func.translate(text, _UPPER, _LOWER) if postgres else func.lower(text)

    scheme_end = find(url, "://")
    rest = func.substr(url, scheme_end + 3)
    stops = func.replace(func.replace(rest, "?", "/"), "#", "/") + "/"
    authority = func.substr(rest, 1, find(stops, "/") - 1)
    authority = func.substr(authority, find(authority, "@") + 1)
    host = case(
        (func.substr(authority, 1, 1) == "[", func.substr(authority, 1, find(authority, "]"))),
        else_=func.substr(authority, 1, find(authority + ":", ":") - 1),
    )
    return case((scheme_end == 0, ""), else_=lower(host))
