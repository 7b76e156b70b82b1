"""A task's options, in one place: what a caller may ask for and what one download gets.

    a row's ``metadata``, a batch entry, ``add``/``download`` flags
        ──check_task_metadata──▶ the caller's keys, checked (CALLER_METADATA_KEYS)
        ──Settings.download_options (config + profile)──▶ DownloadOptions
    claimed row  ──prepare──▶ Job: URL, an output name reserved for the task, its work folder
    batch entry  ──batch_task──▶ BatchTask ──job──▶ Job

Each check raises a :class:`~dlstore.errors.DlstoreError` subclass whose message says
what is wrong and what is accepted, so one check serves ``dlstore add``, batch files
and the daemon (which writes the message into a row's ``error_message``). No I/O
beyond looking at paths (whether an output file exists, where a link leads) and,
for a claimed row, claiming its work folder and reserving its output name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dlstore.errors import DlstoreError, DownloadError, InvalidInputError
from dlstore.languages import LANGUAGE_TAG
from dlstore.paths import (
    check_name,
    output_files_exist,
    release,
    reservation_path,
    reserve,
    reserved_by,
    resolve_output,
    safe_subdir,
    sanitize_filename,
)
from dlstore.redact import first_surrogate, replace_undecodable
from dlstore.validate import check_url, check_utf8
from dlstore.workfolder import PlacedFile, WorkFolder

if TYPE_CHECKING:
    from dlstore.config import Settings
    from dlstore.models import DownloadTask

#: The output formats a task may ask for, each with the FFmpeg muxer that writes it.
OUTPUT_FORMATS = MappingProxyType({"mp4": "mp4", "ts": "mpegts"})
#: Keys a caller (the Rust API, `dlstore add`, a batch file) may set in ``metadata``.
CALLER_METADATA_KEYS = (
    "quality", "output_dir", "headers", "format", "profile",
    "audio", "subtitles", "embed_subtitles", "live", "record_limit",
)  # fmt: skip
#: The keys of a batch file's entry (``priority`` is the row's column, not metadata).
BATCH_KEYS = ("name", "url", *CALLER_METADATA_KEYS, "priority")
#: The ``priority`` values dlstore writes (higher is claimed sooner; the default is 0).
PRIORITY_RANGE = (-1000, 1000)
#: "name (2).mp4" … "name (100).mp4" are tried when "name.mp4" exists.
MAX_NAME_SUFFIX = 100
#: Bounds on a row's metadata text, checked before it is parsed or trusted.
MAX_METADATA_CHARS = 1024 * 1024
#: How deep the JSON of a column the API writes (``metadata``, ``history``) may nest.
MAX_METADATA_DEPTH = 32
MAX_JSON_INT_DIGITS = 100
#: The most language codes a caller may list (``audio``, ``subtitles``).
MAX_LANGUAGES = 20
AUDIO_CHOICES = ("default", "all")
SUBTITLE_CHOICES = ("all", "none")

#: The longest ``record_limit`` (seconds), and how long a recording without one may last.
MAX_RECORD_SECONDS = 24 * 3600
#: ``--record-limit`` suffixes, in seconds.
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}

_QUALITY = re.compile(r"^(best|worst|\d{2,4}p)$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s*([smh]?)$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: An id that can be its own work folder's name: lower case only (a case-insensitive
#: file system cannot merge two), no leading or trailing dot or dash.
_PLAIN_ID = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?")
#: Folder names dlstore derives itself; an id starting so is hashed, never used as is.
_DERIVED_PREFIXES = ("task-", "batch-")

#: Networks no connection may reach unless the config says otherwise: link-local
#: (cloud metadata services live at 169.254.169.254) and the unspecified addresses,
#: which reach the local host.
DEFAULT_DENY_NETWORKS: tuple[IPv4Network | IPv6Network, ...] = tuple(
    ip_network(cidr) for cidr in ("169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128")
)


@dataclass(frozen=True)
class DownloadOptions:
    """What one download needs to know apart from its URL and destination; the engine's input."""

    quality: str = "best"  # "1080p", "720p", ..., "best", "worst"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    output_format: str = "mp4"  # "mp4" or "ts"
    threads: int = 8
    max_retries: int = 3
    retry_delay: float = 2.0  # first backoff delay in seconds; doubles each try, with jitter
    chunk_size: int = 256 * 1024
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    rate_limit_bps: int | None = None  # overall bandwidth cap in bytes per second
    max_playlist_bytes: int = 16 * 1024 * 1024
    max_segments: int = 100_000
    deny_networks: tuple[IPv4Network | IPv6Network, ...] = DEFAULT_DENY_NETWORKS
    #: "default", "all", or language codes in order of preference (see check_audio)
    audio: str | tuple[str, ...] = "default"
    #: "all", "none", or language codes (see check_subtitles)
    subtitles: str | tuple[str, ...] = "all"
    embed_subtitles: bool = False  # also mux the subtitles into the MP4 (mov_text)

    max_segment_bytes: int = 256 * 1024 * 1024  # a bigger segment is refused while it streams
    stall_timeout: float = 30.0  # a body sending < 1 KiB in this many seconds is aborted
    record_live: bool = False  # Streams (#12): record a live stream (caller key live: "record")
    record_limit: float | None = None  # seconds of media to record; None: until it ends

    @property
    def read_wait(self) -> float:
        """Seconds one socket read may wait for a byte: the read timeout, at most the stall one."""
        return min(self.read_timeout, self.stall_timeout)

    @property
    def small_fetch_deadline(self) -> float:
        """Seconds one attempt at a playlist or a key may take in all, headers to last byte."""
        return self.connect_timeout + self.read_timeout

    @property
    def header_deadline(self) -> float:
        """Seconds a segment's request may wait for all of its response's headers, once sent
        (each redirect hop's too, counted from the first): the read timeout."""
        return self.read_timeout

    #: Called with the error each time a segment is tried again (the daemon's metrics).
    on_segment_retry: Callable[[Exception], None] | None = field(
        default=None, compare=False, repr=False
    )


# --- the metadata column ---------------------------------------------------------------


def parse_metadata(text: str | None) -> dict[str, Any]:
    """The metadata column's JSON object; a DlstoreError says what is wrong with it.

    Bounded before it is trusted: at most MAX_METADATA_CHARS of text, nested at most
    MAX_METADATA_DEPTH deep (deeper JSON would exhaust the parser's recursion), and
    strict JSON: no NaN or Infinity, no integer of more than MAX_JSON_INT_DIGITS digits.
    """
    if text is None or not text.strip():
        return {}
    if len(text) > MAX_METADATA_CHARS:
        raise DlstoreError(
            f"The task's metadata is {len(text)} characters long; at most "
            f"{MAX_METADATA_CHARS} are accepted. Keep only the keys dlstore uses."
        )
    try:
        value, too_deep = bounded_json(text)
    except ValueError as exc:  # a JSONDecodeError, or what _json_constant/_json_int refuse
        decode = isinstance(exc, json.JSONDecodeError)
        reason = f"{exc.msg} at position {exc.pos}" if decode else str(exc)
        raise DlstoreError(
            f"The task's metadata is not valid JSON ({reason}); "
            'fix it to a JSON object such as {"quality": "720p"}.'
        ) from None
    if too_deep:
        raise DlstoreError(
            f"The task's metadata is nested more than {MAX_METADATA_DEPTH} levels deep; "
            'use a flat JSON object such as {"quality": "720p"}.'
        )
    lone = _lone_surrogate_at(value)
    if lone is not None:
        raise DlstoreError(
            f"The task's metadata holds a lone surrogate escape (\\u{lone[0]:04x}) in "
            f"{lone[1]}, which is no character and cannot be written to a file name, a header "
            "or the database; write characters as themselves (or as a surrogate pair), "
            "correct the metadata and retry the task."
        )
    if not isinstance(value, dict):
        raise DlstoreError(
            'The task\'s metadata must be a JSON object such as {"quality": "720p"}, '
            f"not {_json_type(value)}."
        )
    return value


def bounded_json(text: str, max_depth: int = MAX_METADATA_DEPTH) -> tuple[Any, bool]:
    """``(value, too_deep)``: ``text`` as strict JSON, and whether it nests deeper than
    ``max_depth`` (then ``value`` may be None: the parser's own recursion gave out).

    For the columns the API writes (``metadata``, ``history``). Strict: a ValueError
    (a JSONDecodeError, or one naming the rule) for NaN or Infinity and for an integer
    of more than MAX_JSON_INT_DIGITS digits. Never a RecursionError.
    """
    try:
        value = json.loads(text, parse_constant=_json_constant, parse_int=_json_int)
    except RecursionError:
        return None, True
    return value, _depth_exceeds(value, max_depth)


def _lone_surrogate_at(value: Any) -> tuple[int, str] | None:
    """The first lone surrogate in ``value``'s keys and strings (JSON's ``"\\ud800"``
    parses to one) and where it is (``the key "headers" › "X-A"``); None if there is none.
    Walked without recursion, like :func:`_depth_exceeds`."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                place = (*where, replace_undecodable(key)[:40])
                lone = first_surrogate(key)
                if lone is not None:
                    return lone, _describe_place("the key", place)
                stack.append((child, place))
        elif isinstance(item, list):
            stack.extend((child, (*where, f"[{index}]")) for index, child in enumerate(item))
        elif isinstance(item, str) and (lone := first_surrogate(item)) is not None:
            return lone, _describe_place("the value of", where)
    return None


def _describe_place(what: str, where: tuple[str, ...]) -> str:
    path = " › ".join(f'"{part}"' if not part.startswith("[") else part for part in where)
    return f"{what} {path}" if path else "the metadata itself"


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_int(digits: str) -> int:
    if len(digits) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"a number of {len(digits)} digits is too long")
    return int(digits)


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value``'s lists and objects nest deeper than ``limit`` (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return False


def merge_metadata(existing: Mapping[str, Any], learned: Mapping[str, Any]) -> dict[str, Any]:
    """``existing`` with what dlstore learned merged in; the caller's keys always win."""
    merged = dict(existing)
    for key, value in learned.items():
        if key in CALLER_METADATA_KEYS and key in existing:
            continue
        merged[key] = value
    return merged


# --- checks on the caller's keys ---------------------------------------------------------


def check_quality(quality: Any) -> str:
    if not isinstance(quality, str) or not _QUALITY.match(quality.strip().lower()):
        raise InvalidInputError(
            f'Unknown quality {_shown(quality)}; use a height such as "1080p" or "720p", '
            'or "best" or "worst".'
        )
    return quality.strip().lower()


def check_format(output_format: Any, *, what: str = "format") -> str:
    if not isinstance(output_format, str) or output_format not in OUTPUT_FORMATS:
        raise InvalidInputError(
            f"Unknown {what} {_shown(output_format)}; use one of {', '.join(OUTPUT_FORMATS)}."
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


def check_live(live: Any) -> str:
    """The ``live`` key: ``"record"`` records a live stream (without it one is refused)."""
    if live != "record":
        raise InvalidInputError(
            f'live must be "record" (to record a live stream) or left out, not {_shown(live)}.'
        )
    return live


def check_record_limit(limit: Any) -> int | float:
    """``record_limit``: seconds of media to record, more than 0, at most MAX_RECORD_SECONDS."""
    number = isinstance(limit, (int, float)) and not isinstance(limit, bool)
    if not number or not math.isfinite(limit) or not 0 < limit <= MAX_RECORD_SECONDS:
        raise InvalidInputError(
            f"record_limit must be a number of seconds above 0 and at most {MAX_RECORD_SECONDS} "
            f"(24 hours), not {_shown(limit)}."
        )
    return int(limit) if float(limit).is_integer() else float(limit)


def parse_record_limit(text: str) -> int | float:
    """``--record-limit``: ``90``, ``90s``, ``30m`` or ``1.5h`` → seconds (checked)."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise InvalidInputError(
            f"--record-limit takes a duration such as 90, 90s, 30m or 1.5h, not {_shown(text)}."
        )
    return check_record_limit(float(match.group(1)) * _DURATION_UNITS[match.group(2)])


def live_request(live: bool, record_limit: str | None) -> tuple[str | None, int | float | None]:
    """``--live`` and ``--record-limit`` as the caller keys ``live`` and ``record_limit``."""
    if record_limit is not None and not live:
        raise InvalidInputError("--record-limit applies to live recordings: add --live.")
    limit = parse_record_limit(record_limit) if record_limit is not None else None
    return ("record" if live else None), limit


def check_priority(priority: Any) -> int:
    """A task's priority: a whole number in PRIORITY_RANGE."""
    low, high = PRIORITY_RANGE
    if isinstance(priority, bool) or not isinstance(priority, int) or not low <= priority <= high:
        raise InvalidInputError(
            f"priority must be a whole number from {low} to {high} (higher is claimed "
            f"sooner, 0 is the default), not {priority!r}."
        )
    return priority


def parse_header(line: str) -> tuple[str, str]:
    """``'Referer: https://x/'`` → ``("Referer", "https://x/")``."""
    name, sep, value = line.partition(":")
    if not sep or not name.strip():
        missing = "a colon" if not sep else "a name before the colon"
        raise InvalidInputError(f"A header must look like 'Name: value'; one has no {missing}.")
    name, value = name.strip(), value.strip()
    check_headers({name: value})
    return name, value


def parse_headers(lines: Sequence[str] | None) -> dict[str, str] | None:
    """``--header`` flags as a headers object; None when there are none."""
    return dict(parse_header(line) for line in lines) if lines else None


def check_languages(value: Any, choices: Sequence[str], key: str) -> str | list[str]:
    """One of ``choices``, or a non-empty list of language codes (BCP 47 tags such as
    ``"en"``, ``"pt-BR"``, ``"fra"``); a list comes back as a list, as JSON keeps it."""
    shown = " or ".join(f'"{c}"' for c in choices)
    usage = f'{key} must be {shown}, or a list of language codes such as ["en", "fr"]'
    if isinstance(value, str):
        if value.strip().lower() in choices:
            return value.strip().lower()
        raise InvalidInputError(f"{usage}, not {value[:40]!r}.")
    if not isinstance(value, list) or not value:
        raise InvalidInputError(f"{usage}.")
    if len(value) > MAX_LANGUAGES:
        raise InvalidInputError(f"{key} lists {len(value)} languages; at most {MAX_LANGUAGES}.")
    for code in value:
        if not isinstance(code, str) or not LANGUAGE_TAG.match(code.strip()):
            shown_code = repr(code)[:40] if isinstance(code, str) else type(code).__name__
            raise InvalidInputError(f"{usage}; {shown_code} is not a language code.")
    return [code.strip() for code in value]


def check_audio(value: Any) -> str | list[str]:
    """``audio``: "default", "all", or language codes in order of preference."""
    return check_languages(value, AUDIO_CHOICES, "audio")


def check_subtitles(value: Any) -> str | list[str]:
    """``subtitles``: "all", "none", or the language codes to fetch."""
    return check_languages(value, SUBTITLE_CHOICES, "subtitles")


def check_embed_subtitles(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(
            f"embed_subtitles must be true or false, not {type(value).__name__}."
        )
    return value


def parse_languages(text: str | None) -> str | list[str] | None:
    """A flag's value (``--audio all``, ``--audio fr,en``) as the metadata key holds it:
    a keyword as is, anything else as a list of codes (checked with the key)."""
    if text is None:
        return None
    if "," not in text and text.strip().lower() in (*AUDIO_CHOICES, "none"):
        return text.strip().lower()
    return [code.strip() for code in text.split(",") if code.strip()]


def stream_flags(
    audio: str | None = None, subs: str | None = None, embed_subs: bool = False
) -> dict[str, Any]:
    """The caller keys that ``--audio``, ``--subs`` and ``--embed-subs`` set, as metadata
    holds them (unchecked; None: unset)."""
    return {
        "audio": parse_languages(audio),
        "subtitles": parse_languages(subs),
        "embed_subtitles": True if embed_subs else None,
    }


def check_output_dir(output_dir: Any) -> str:
    """A relative folder that stays inside the output root (checked again on use)."""
    if not isinstance(output_dir, str):
        raise InvalidInputError(f"output_dir must be text, not {_json_type(output_dir)}.")
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
    if metadata.get("audio") is not None:
        checked["audio"] = check_audio(metadata["audio"])
    if metadata.get("subtitles") is not None:
        checked["subtitles"] = check_subtitles(metadata["subtitles"])
    if metadata.get("embed_subtitles") is not None:
        checked["embed_subtitles"] = check_embed_subtitles(metadata["embed_subtitles"])
    if metadata.get("live") is not None:
        checked["live"] = check_live(metadata["live"])
    if metadata.get("record_limit") is not None:
        checked["record_limit"] = check_record_limit(metadata["record_limit"])
    profile = metadata.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise InvalidInputError(f"profile must be a profile's name, not {_json_type(profile)}.")
    if profile is not None and profiles is not None and profile not in profiles:
        raise InvalidInputError(
            f"Unknown profile {_shown(profile)}; use one of {', '.join(sorted(profiles))}."
        )
    return checked


def _shown(value: Any, limit: int = 80) -> str:
    """``value`` as an error message quotes it: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_type(value: Any) -> str:
    """What ``value`` is, in JSON's words: a list, an object, a number…"""
    return _JSON_TYPES.get(type(value), type(value).__name__)


_JSON_TYPES = {
    dict: "an object",
    list: "a list",
    str: "text",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def caller_metadata(values: Mapping[str, Any], profiles: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's keys in ``values`` that are set (not None), checked: a new row's metadata."""
    chosen = {k: values[k] for k in CALLER_METADATA_KEYS if values.get(k) is not None}
    return check_task_metadata(chosen, profiles)


def task_download_options(settings: Settings, metadata: Mapping[str, Any]) -> DownloadOptions:
    """Options for a task from its (checked) caller metadata: quality, headers,
    format, profile, audio, subtitles, live recording. One place for rows and batch entries
    alike."""
    options = settings.download_options(
        profile=metadata.get("profile"),
        quality=metadata.get("quality"),
        headers=metadata.get("headers"),
        output_format=metadata.get("format"),
    )
    options = stream_options(options, metadata)
    return live_options(options, metadata.get("live"), metadata.get("record_limit"))


def stream_options(options: DownloadOptions, metadata: Mapping[str, Any]) -> DownloadOptions:
    """``options`` with the stream choices of the (checked) caller metadata: ``audio``,
    ``subtitles``, ``embed_subtitles``."""
    changes: dict[str, Any] = {}
    for key in ("audio", "subtitles"):
        value = metadata.get(key)
        if value is not None:
            changes[key] = value if isinstance(value, str) else tuple(value)
    if metadata.get("embed_subtitles") is not None:
        changes["embed_subtitles"] = bool(metadata["embed_subtitles"])
    return replace(options, **changes) if changes else options


def live_options(
    options: DownloadOptions, live: str | None, record_limit: float | None
) -> DownloadOptions:
    """``options`` recording a live stream if ``live`` is ``"record"`` (Streams, #12)."""
    return replace(options, record_live=live == "record", record_limit=record_limit)


# --- a row or a batch entry → a Job --------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What the engine needs for one task, checked."""

    url: str
    output_path: Path
    work_dir: Path
    options: DownloadOptions
    #: The file an earlier attempt placed at ``output_path`` and could not record in the
    #: row (a crash, a lost database): the download is done already.
    placed: PlacedFile | None = None


def prepare(task: DownloadTask, settings: Settings) -> Job:
    """Check a row and turn it into a :class:`Job`; a DlstoreError says what is wrong.

    The task's work folder is claimed (made with dlstore's marker, or checked to be
    this task's) and its output name reserved, in that order, before anything is
    fetched; the caller releases the name when the row ends (:func:`~dlstore.paths.release`).
    If the folder records a file an earlier attempt placed (still there, unchanged, at
    one of the task's names), the job is that file (:attr:`Job.placed`).
    """
    for column, text in (("url", task.url), ("name", task.name)):
        check_utf8(column, text)  # metadata: by metadata_dict
    metadata = check_task_metadata(task.metadata_dict(), settings.profiles)
    url = check_url(task.url)
    options = task_download_options(settings, metadata)
    work_dir = work_dir_for(settings.temp_dir, task.id)
    work = WorkFolder(work_dir, owner=task.id)
    work.claim()
    where = (settings.output_dir, metadata.get("output_dir"), task.name, options.output_format)
    placed = _placed_earlier(work, url, output_candidates(*where), task.id)
    if placed is not None:
        return Job(url, placed.path, work_dir, options, placed)
    output = free_output_path(*where, owner=task.id)
    return Job(url, output, work_dir, options)


def _placed_earlier(
    work: WorkFolder, url: str, candidates: Sequence[Path], owner: str
) -> PlacedFile | None:
    """The file ``work`` records as placed, if it is one of ``candidates`` and its name is
    still ``owner``'s (reserved again if its reservation went)."""
    placed = work.placed(url)
    if placed is None or placed.path not in candidates:
        return None
    holder = reserved_by(placed.path)
    if holder is None and reserve(placed.path, owner):
        holder = owner
    return placed if holder == owner else None


def output_candidates(root: Path, output_dir: str | None, name: str, ext: str) -> list[Path]:
    """The names a task's video may get: ``root/output_dir/name.ext``, ``name (2).ext``…"""
    first = resolve_output(root, output_dir, name, ext, overwrite=True)
    numbered = range(2, MAX_NAME_SUFFIX + 1)
    return [first, *(first.with_name(f"{first.stem} ({n}){first.suffix}") for n in numbered)]


def free_output_path(
    root: Path, output_dir: str | None, name: str, ext: str, *, owner: str | None = None
) -> Path:
    """``root/output_dir/name.ext``, or ``name (2).ext``… if that name is taken.

    Confined to ``root`` (:func:`~dlstore.paths.resolve_output` raises otherwise).
    Another video of the same name gets a numbered file rather than a failed row:
    the web UI has no way to pick another name. A name is taken if the video or its
    poster exists or another task holds its reservation. With ``owner`` the name is
    reserved for that task (atomically: two rows never get one name), and a task
    that holds one already, from an earlier attempt, gets the same name again.
    """
    candidates = output_candidates(root, output_dir, name, ext)
    first = candidates[0]
    if owner is None:
        chosen = next((c for c in candidates if not _name_taken(c, None)), None)
    else:
        first.parent.mkdir(parents=True, exist_ok=True)
        chosen = _held_by(candidates, owner) or _reserve_one(candidates, owner)
    if chosen is None:
        raise DownloadError(
            f"{first} and {MAX_NAME_SUFFIX - 1} numbered copies of it are taken already; "
            "choose another name or output_dir."
        )
    return chosen


def _name_taken(candidate: Path, owner: str | None) -> bool:
    if output_files_exist(candidate):
        return True
    held = os.path.lexists(reservation_path(candidate))
    return held and (owner is None or reserved_by(candidate) != owner)


def _held_by(candidates: Sequence[Path], owner: str) -> Path | None:
    """The candidate ``owner`` reserved on an earlier attempt, if its files are not there."""
    for candidate in candidates:
        if reserved_by(candidate) == owner:
            if not output_files_exist(candidate):
                return candidate
            release(candidate, owner)  # the file is there (a crash after placing): move on
    return None


def _reserve_one(candidates: Sequence[Path], owner: str) -> Path | None:
    """The first free candidate, reserved for ``owner``."""
    for candidate in candidates:
        if _name_taken(candidate, owner) or not reserve(candidate, owner):
            continue
        if not output_files_exist(candidate):  # a file that appeared meantime wins
            return candidate
        release(candidate, owner)
    return None


def work_dir_for(temp_dir: Path, task_id: str) -> Path:
    """The task's own work folder, the same on every attempt so that a retry resumes.

    Distinct ids never share a folder: a plain id (see ``_PLAIN_ID``) is its folder's
    name; any other id, one that starts with a name dlstore derives (``task-``,
    ``batch-``) included, becomes ``task-<sha256[:32]>``, which no plain id is. All
    names are lower case, so a case-insensitive file system keeps them apart too, and
    the folder's marker names the full id (a hash collision is refused, not shared).
    """
    name = task_id
    if not _PLAIN_ID.fullmatch(task_id) or task_id.startswith(_DERIVED_PREFIXES):
        name = "task-" + hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return Path(temp_dir).expanduser().resolve() / name


@dataclass(frozen=True)
class BatchTask:
    """One entry of a batch file, checked."""

    name: str
    url: str
    metadata: dict[str, Any]  # the caller's optional keys, checked
    priority: int = 0  # the row's, with --enqueue

    def job(self, settings: Settings, *, overwrite: bool) -> Job:
        """The entry's download: its file under the output root (an existing one is an
        error unless ``overwrite``), a work folder named after its URL and file."""
        options = task_download_options(settings, self.metadata)
        target = resolve_output(
            Path(settings.output_dir),
            self.metadata.get("output_dir"),
            self.name,
            options.output_format,
            overwrite=overwrite,
        )
        work = Path(settings.temp_dir) / f"batch-{_digest(self.url, str(target))}"
        return Job(self.url, target, work, options)


def batch_task(entry: Any, settings: Settings) -> BatchTask:
    """One entry of a batch file checked: only BATCH_KEYS, a name, a URL, valid options."""
    if not isinstance(entry, Mapping):
        raise InvalidInputError('each task must be an object like {"name": …, "url": …}.')
    unknown = sorted(set(entry) - set(BATCH_KEYS))
    if unknown:
        raise InvalidInputError(
            f"unknown key {', '.join(map(repr, unknown))}; allowed: {', '.join(BATCH_KEYS)}."
        )
    for key in ("name", "url"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise InvalidInputError(f'"{key}" is required and must be non-empty text.')
    name = entry["name"].strip()
    url = check_url(entry["url"])
    metadata = caller_metadata(entry, settings.profiles)
    check_name(name)
    priority = check_priority(0 if entry.get("priority") is None else entry["priority"])
    return BatchTask(name=name, url=url, metadata=metadata, priority=priority)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# --- `dlstore download`'s -o and --format ----------------------------------------------------


def format_from_suffix(output: Path) -> str:
    """The format ``-o``'s suffix names (``.ts`` → ts), mp4 for any other."""
    suffix = output.suffix.lower().lstrip(".")
    return suffix if suffix in OUTPUT_FORMATS else "mp4"


def output_file(output: Path, url: str, fmt: str) -> Path:
    """``-o`` as a file path: a folder gets a name from the URL; the suffix follows the format."""
    if output.is_dir() or str(output).endswith(("/", "\\")):
        stem = Path(urlsplit(url).path).stem or "video"
        return output / f"{sanitize_filename(stem)}.{fmt}"
    if output.suffix.lower().lstrip(".") != fmt:
        return output.with_name(f"{output.name}.{fmt}")
    return output
