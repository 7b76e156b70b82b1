"""Settings: ``config/downloader.yaml`` (the video manager's format), ``DOWNLOADER_*`` env, flags.

Precedence, lowest first: built-in defaults, the YAML file, environment
variables, command-line flags (applied by the CLI with :meth:`Settings.replace`).
Every key is checked: an unknown key, a wrong type or an unknown profile is a
:class:`~dlstore.errors.ConfigError` that names it. Built once by the CLI and
passed down; nothing else reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dlstore.errors import ConfigError
from dlstore.options import DEFAULT_DENY_NETWORKS, DownloadOptions, check_format

if TYPE_CHECKING:  # netpolicy imports requests; yaml is imported when a file is read
    from dlstore.netpolicy import Network

DEFAULT_CONFIG_PATH = Path("config") / "downloader.yaml"
#: The per-download defaults, written once (options.DownloadOptions); the settings start there.
_DOWNLOAD = DownloadOptions()
DEFAULT_DATABASE_PATH = Path("data") / "dlstore.sqlite"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: The longest ``shutdown_grace``: a service manager must not wait for ever.
MAX_SHUTDOWN_GRACE = 3600.0


@dataclass(frozen=True)
class Profile:
    """Download tuning; a key left out falls back to the top-level setting."""

    threads: int | None = None
    max_retries: int | None = None
    retry_delay: float | None = None
    chunk_size: int | None = None
    bandwidth_limit: int | None = None  # bytes per second, whole download
    connect_timeout: float | None = None
    read_timeout: float | None = None


BUILTIN_PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "fast": Profile(threads=16, max_retries=1, retry_delay=0.5),
        "stable": Profile(threads=8, max_retries=5, retry_delay=2.0),
        "low_bandwidth": Profile(threads=2, max_retries=3, chunk_size=4096),
    }
)


@dataclass(frozen=True)
class Settings:
    enabled: bool = True
    default_profile: str = "stable"
    temp_dir: Path = Path("app/server/public/temp")
    output_dir: Path = Path("app/server/public/downloads")
    default_threads: int = _DOWNLOAD.threads
    max_threads: int = 16
    max_retries: int = _DOWNLOAD.max_retries
    retry_delay: float = _DOWNLOAD.retry_delay
    chunk_size: int = _DOWNLOAD.chunk_size
    bandwidth_limit: int | None = None
    connect_timeout: float = _DOWNLOAD.connect_timeout
    read_timeout: float = _DOWNLOAD.read_timeout
    log_file: Path | None = Path("logs/downloader.log")
    log_level: str = "INFO"
    max_concurrent_tasks: int = 3
    database_url: str | None = None
    # dlstore's own keys (README documents them):
    poll_interval: float = 2.0  # seconds between looks for pending rows
    lease_seconds: float = 30.0  # a downloading row whose heartbeat is older is orphaned
    task_retries: int = 3  # automatic re-queues of a transient failure before `failed`
    task_retry_delay: float = 30.0  # first automatic re-queue delay; doubles each time
    deny_networks: tuple[Network, ...] = DEFAULT_DENY_NETWORKS  # no connection may reach these
    max_segment_bytes: int = _DOWNLOAD.max_segment_bytes  # refused while it streams past this
    stall_timeout: float = _DOWNLOAD.stall_timeout  # < 1 KiB in this many seconds: aborted
    max_per_host: int = 0  # downloads at once from one URL host in a daemon; 0: no limit
    metrics_listen: str | None = None  # HOST:PORT for the daemon's /metrics and /healthz
    shutdown_grace: float = 10.0  # SIGTERM: seconds in-flight segments get to finish
    profiles: Mapping[str, Profile] = field(default_factory=lambda: BUILTIN_PROFILES)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (flags); ``None`` values are ignored."""
        changes = {k: v for k, v in changes.items() if v is not None}
        updated = dataclasses.replace(self, **changes)
        _validate(updated)
        return updated

    def profile(self, name: str | None) -> Profile:
        name = name or self.default_profile
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles))
            raise ConfigError(f"Unknown profile {name!r}; known profiles: {known}.")
        return self.profiles[name]

    def download_options(
        self,
        *,
        profile: str | None = None,
        quality: str | None = None,
        headers: Mapping[str, str] | None = None,
        output_format: str | None = None,
        threads: int | None = None,
    ) -> DownloadOptions:
        chosen = self.profile(profile)
        threads = threads or chosen.threads or self.default_threads
        if threads < 1 or threads > self.max_threads:
            raise ConfigError(f"threads must be between 1 and max_threads ({self.max_threads}).")
        output_format = check_format(output_format or "mp4")
        return DownloadOptions(
            quality=quality or "best",
            headers=MappingProxyType(dict(headers or {})),
            output_format=output_format,
            threads=threads,
            max_retries=_pick(chosen.max_retries, self.max_retries),
            retry_delay=_pick(chosen.retry_delay, self.retry_delay),
            chunk_size=_pick(chosen.chunk_size, self.chunk_size),
            connect_timeout=_pick(chosen.connect_timeout, self.connect_timeout),
            read_timeout=_pick(chosen.read_timeout, self.read_timeout),
            rate_limit_bps=_pick(chosen.bandwidth_limit, self.bandwidth_limit),
            deny_networks=self.deny_networks,
            max_segment_bytes=self.max_segment_bytes,
            stall_timeout=self.stall_timeout,
        )

    def resolved_database_url(self) -> str:
        return self.database_url or str(DEFAULT_DATABASE_PATH)


def _pick(first: Any, fallback: Any) -> Any:
    return fallback if first is None else first


def parse_listen(text: str) -> tuple[str, int]:
    """``metrics_listen``'s ``HOST:PORT`` (``[::1]:9100`` for IPv6; port 0: any free one)."""
    host, colon, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"metrics_listen: expected HOST:PORT such as 127.0.0.1:9100, got {text!r}."
        )
    return host, int(port)


# --- loading -------------------------------------------------------------------------

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_PROFILE_FIELDS = {f.name: f for f in dataclasses.fields(Profile)}
_PATH_KEYS = {"temp_dir", "output_dir", "log_file"}
_INT_KEYS = {"default_threads", "max_threads", "max_retries", "chunk_size", "bandwidth_limit",
             "max_concurrent_tasks", "task_retries", "threads", "max_segment_bytes",
             "max_per_host"}  # fmt: skip
_FLOAT_KEYS = {"retry_delay", "connect_timeout", "read_timeout", "poll_interval",
               "lease_seconds", "task_retry_delay", "stall_timeout",
               "shutdown_grace"}  # fmt: skip
_NULLABLE_KEYS = {"bandwidth_limit", "log_file", "database_url", "metrics_listen"}

ENV_VARS = {
    "DOWNLOADER_ENABLED": "enabled",
    "DOWNLOADER_MAX_CONCURRENT": "max_concurrent_tasks",
    "DOWNLOADER_TEMP_DIR": "temp_dir",
    "DOWNLOADER_OUTPUT_DIR": "output_dir",
    "DOWNLOADER_DATABASE_URL": "database_url",
}


def load_settings(
    config_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then the YAML file, then ``DOWNLOADER_*`` variables.

    ``config_path`` None means ``config/downloader.yaml`` if it exists; a path given
    explicitly must exist.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_path or DEFAULT_CONFIG_PATH
    if config_path is not None and not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    if path.is_file():
        values.update(_read_yaml(path))
    for var, key in ENV_VARS.items():
        raw = environ.get(var)
        if raw is not None and raw.strip() != "":
            values[key] = _coerce(key, _env_value(key, raw), source=var)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"Config file {path} must hold a mapping with a 'downloader' key.")
    unknown = [str(k) for k in document if k != "downloader"]
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r}; expected 'downloader'.")
    section = document.get("downloader") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'downloader' must be a mapping of settings.")
    values: dict[str, Any] = {}
    for key, raw in section.items():
        where = f"{path}: downloader.{key}"
        if key == "profiles":
            values["profiles"] = _read_profiles(raw, where)
        elif key in _FIELDS:
            values[key] = _coerce(key, raw, source=where)
        else:
            raise ConfigError(f"{where}: unknown key {key!r}.")
    return values


def _read_profiles(raw: Any, where: str) -> Mapping[str, Profile]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of profile names to settings.")
    profiles = dict(BUILTIN_PROFILES)
    for name, body in raw.items():
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ConfigError(f"{where}.{name} must be a mapping.")
        fields: dict[str, Any] = {}
        for key, value in body.items():
            if key not in _PROFILE_FIELDS:
                raise ConfigError(f"{where}.{name}: unknown key {key!r}.")
            fields[key] = _coerce(key, value, source=f"{where}.{name}.{key}")
        profiles[str(name)] = Profile(**fields)
    return MappingProxyType(profiles)


def _env_value(key: str, raw: str) -> Any:
    if key == "enabled":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return raw
    if key in _INT_KEYS:
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def _coerce(key: str, value: Any, *, source: str) -> Any:
    """Check ``value``'s type for ``key``; return it in the settings' type."""
    if value is None and key in _NULLABLE_KEYS:
        return None
    if key == "enabled":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: expected true or false, got {value!r}.")
    if key in _INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: expected a whole number, got {value!r}.")
        return value
    if key in _FLOAT_KEYS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: expected a number, got {value!r}.")
        return float(value)
    if key in _PATH_KEYS:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source}: expected a path, got {value!r}.")
        return Path(value)
    if key == "deny_networks":
        from dlstore.netpolicy import parse_networks

        return parse_networks(value, source)
    if key in ("default_profile", "log_level", "database_url", "metrics_listen"):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source}: expected text, got {value!r}.")
        return value.strip()
    raise ConfigError(f"{source}: unknown key {key!r}.")


def _validate(settings: Settings) -> None:
    if settings.default_profile not in settings.profiles:
        known = ", ".join(sorted(settings.profiles))
        raise ConfigError(
            f"default_profile: unknown profile {settings.default_profile!r}; known: {known}."
        )
    if settings.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(
            f"log_level: {settings.log_level!r} is not one of {', '.join(LOG_LEVELS)}."
        )
    positive = ("default_threads", "max_threads", "max_concurrent_tasks", "chunk_size",
                "poll_interval", "lease_seconds", "connect_timeout", "read_timeout",
                "max_segment_bytes", "stall_timeout")  # fmt: skip
    for key in positive:
        if getattr(settings, key) <= 0:
            raise ConfigError(f"{key}: must be greater than 0, got {getattr(settings, key)!r}.")
    for key in ("max_retries", "retry_delay", "task_retries", "task_retry_delay", "max_per_host"):
        if getattr(settings, key) < 0:
            raise ConfigError(f"{key}: must not be negative, got {getattr(settings, key)!r}.")
    if settings.metrics_listen is not None:
        parse_listen(settings.metrics_listen)
    if not 0 <= settings.shutdown_grace <= MAX_SHUTDOWN_GRACE:
        raise ConfigError(
            f"shutdown_grace: must be from 0 to {MAX_SHUTDOWN_GRACE:g} seconds, "
            f"got {settings.shutdown_grace!r}."
        )
    if settings.bandwidth_limit is not None and settings.bandwidth_limit <= 0:
        raise ConfigError("bandwidth_limit: must be greater than 0 bytes per second.")
    if settings.default_threads > settings.max_threads:
        raise ConfigError(
            f"default_threads ({settings.default_threads}) is above max_threads "
            f"({settings.max_threads})."
        )
    for name, profile in settings.profiles.items():
        if profile.threads is not None and not 1 <= profile.threads <= settings.max_threads:
            raise ConfigError(
                f"profiles.{name}.threads: must be between 1 and max_threads "
                f"({settings.max_threads})."
            )
