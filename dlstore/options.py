"""What one download needs to know, apart from its URL and destination.

Built by :mod:`dlstore.config` from the config file, a profile, a task's metadata
and command-line flags; consumed by :mod:`dlstore.engine`. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

OUTPUT_FORMATS = ("mp4", "ts")


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
    max_segment_bytes: int = 256 * 1024 * 1024  # a bigger segment is refused while it streams
    stall_timeout: float = 30.0  # a body sending < 1 KiB in this many seconds is aborted

    @property
    def read_wait(self) -> float:
        """Seconds one socket read may wait for a byte: the read timeout, at most the stall one."""
        return min(self.read_timeout, self.stall_timeout)

    @property
    def small_fetch_deadline(self) -> float:
        """Seconds one attempt at a playlist or a key may take in all, headers to last byte."""
        return self.connect_timeout + self.read_timeout
