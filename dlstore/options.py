"""What one download needs to know, apart from its URL and destination.

Built by :mod:`dlstore.config` from the config file, a profile, a task's metadata
and command-line flags; consumed by :mod:`dlstore.engine`. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from types import MappingProxyType

OUTPUT_FORMATS = ("mp4", "ts")

#: Networks no connection may reach unless the config says otherwise: link-local
#: (cloud metadata services live at 169.254.169.254) and the unspecified addresses,
#: which reach the local host.
DEFAULT_DENY_NETWORKS: tuple[IPv4Network | IPv6Network, ...] = tuple(
    ip_network(cidr) for cidr in ("169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128")
)


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
    deny_networks: tuple[IPv4Network | IPv6Network, ...] = DEFAULT_DENY_NETWORKS
