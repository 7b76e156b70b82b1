"""What one download needs to know, apart from its URL and destination.

Built by :mod:`dlstore.config` from the config file, a profile, a task's metadata
and command-line flags; consumed by :mod:`dlstore.engine`. Pure data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dlstore.errors import DlstoreError

OUTPUT_FORMATS = ("mp4", "ts")
#: Keys a caller (the Rust API, `dlstore add`, a batch file) may set in ``metadata``.
CALLER_METADATA_KEYS = ("quality", "output_dir", "headers", "format", "profile")


@dataclass(frozen=True)
class DownloadOptions:
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


def parse_metadata(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DlstoreError(
            f"The task's metadata is not valid JSON ({exc.msg} at position {exc.pos}); "
            'fix it to a JSON object such as {"quality": "720p"}.'
        ) from exc
    if not isinstance(value, dict):
        raise DlstoreError(
            'The task\'s metadata must be a JSON object such as {"quality": "720p"}, '
            f"not {type(value).__name__}."
        )
    return value


def merge_metadata(existing: Mapping[str, Any], learned: Mapping[str, Any]) -> dict[str, Any]:
    """``existing`` with what dlstore learned merged in; the caller's keys always win."""
    merged = dict(existing)
    for key, value in learned.items():
        if key in CALLER_METADATA_KEYS and key in existing:
            continue
        merged[key] = value
    return merged
