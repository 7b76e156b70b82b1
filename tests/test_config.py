from __future__ import annotations

from pathlib import Path

import pytest

from dlstore.config import load_settings
from dlstore.errors import ConfigError

MANAGER_YAML = """
downloader:
  default_profile: stable
  temp_dir: ./app/server/public/temp
  output_dir: ./app/server/public/downloads
  default_threads: 8
  max_threads: 16
  max_retries: 3
  retry_delay: 2.0
  connect_timeout: 15
  read_timeout: 60
  log_file: ./logs/downloader.log
  log_level: INFO
  max_concurrent_tasks: 3
  profiles:
    fast:          {threads: 16, max_retries: 1, retry_delay: 0.5}
    stable:        {threads: 8,  max_retries: 5, retry_delay: 2.0}
    low_bandwidth: {threads: 2,  max_retries: 3, chunk_size: 4096}
"""


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "downloader.yaml"
    path.write_text(body)
    return path


def test_video_managers_file_loads(tmp_path):
    settings = load_settings(write(tmp_path, MANAGER_YAML), environ={})
    assert settings.output_dir == Path("app/server/public/downloads")
    assert settings.max_concurrent_tasks == 3 and settings.read_timeout == 60.0
    low = settings.download_options(profile="low_bandwidth")
    assert (low.threads, low.max_retries, low.chunk_size) == (2, 3, 4096)
    assert low.retry_delay == 2.0  # not in the profile: the top-level value
    fast = settings.download_options(profile="fast", quality="720p", headers={"Referer": "r"})
    assert (fast.threads, fast.max_retries, fast.retry_delay, fast.quality) == (16, 1, 0.5, "720p")
    assert dict(fast.headers) == {"Referer": "r"}
    assert settings.download_options().threads == 8  # default_profile: stable


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.enabled and settings.default_profile == "stable"
    assert settings.resolved_database_url() == "data/dlstore.sqlite"


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("downloader:\n  max_thread: 4\n", "max_thread"),
        ("downloader:\n  max_threads: many\n", "downloader.max_threads"),
        ("downloader:\n  retry_delay: true\n", "downloader.retry_delay"),
        ("downloader:\n  default_profile: turbo\n", "turbo"),
        ("downloader:\n  profiles:\n    fast: {threads: 4, speed: 9}\n", "speed"),
        ("downloader:\n  profiles:\n    fast: {threads: 99}\n", "profiles.fast.threads"),
        ("server:\n  port: 1\n", "server"),
        ("downloader:\n  log_level: LOUD\n", "log_level"),
        ("downloader: [1, 2]\n", "downloader"),
        ("downloader:\n  max_concurrent_tasks: 0\n", "max_concurrent_tasks"),
        ("downloader: {a: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, body, names):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, body), environ={})
    assert names in str(info.value)


def test_environment_overrides_the_file(tmp_path):
    env = {
        "DOWNLOADER_ENABLED": "false",
        "DOWNLOADER_MAX_CONCURRENT": "5",
        "DOWNLOADER_TEMP_DIR": "/tmp/t",
        "DOWNLOADER_OUTPUT_DIR": "/srv/out",
        "DOWNLOADER_DATABASE_URL": "postgresql://db/x",
    }
    settings = load_settings(write(tmp_path, MANAGER_YAML), environ=env)
    assert settings.enabled is False and settings.max_concurrent_tasks == 5
    assert settings.temp_dir == Path("/tmp/t") and settings.output_dir == Path("/srv/out")
    assert settings.resolved_database_url() == "postgresql://db/x"


@pytest.mark.parametrize(
    ("var", "value"), [("DOWNLOADER_ENABLED", "maybe"), ("DOWNLOADER_MAX_CONCURRENT", "lots")]
)
def test_bad_environment_value_names_the_variable(var, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=var):
        load_settings(None, environ={var: value})


def test_flags_override_everything(tmp_path):
    settings = load_settings(
        write(tmp_path, MANAGER_YAML), environ={"DOWNLOADER_MAX_CONCURRENT": "5"}
    )
    assert settings.replace(max_concurrent_tasks=7, database_url=None).max_concurrent_tasks == 7
    with pytest.raises(ConfigError, match="max_concurrent_tasks"):
        settings.replace(max_concurrent_tasks=0)


def test_unknown_profile_and_threads_above_max(tmp_path):
    settings = load_settings(write(tmp_path, MANAGER_YAML), environ={})
    with pytest.raises(ConfigError, match="turbo"):
        settings.download_options(profile="turbo")
    with pytest.raises(ConfigError, match="max_threads"):
        settings.download_options(threads=64)
