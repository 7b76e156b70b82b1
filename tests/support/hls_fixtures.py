"""pytest fixtures for HLS tests: generated media, a local server, fast options.

Listed in ``tests/conftest.py`` as a plugin (``pytest_plugins``):

- ``hls_media`` (session): a :class:`~dlstore.testing.media.MediaLibrary`, built once.
- ``hls_server``: an :class:`~dlstore.testing.hls_server.HlsServer` serving it, fresh per test
  (hit counters start at zero, no faults).
- ``hls_server_factory``: ``factory(folder=None)`` → another started server, stopped after
  the test.
- ``fast_options``: ``DownloadOptions`` with short timeouts and ~10 ms retry delays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dlstore.options import DownloadOptions
from dlstore.testing.hls_server import HlsServer
from dlstore.testing.media import MediaLibrary, build_library


@pytest.fixture(scope="session")
def hls_media(tmp_path_factory: pytest.TempPathFactory) -> MediaLibrary:
    return build_library(tmp_path_factory.mktemp("hls-media"))


@pytest.fixture
def hls_server(hls_media: MediaLibrary) -> Iterator[HlsServer]:
    with HlsServer(hls_media.root) as server:
        yield server


@pytest.fixture
def hls_server_factory() -> Iterator[Callable[..., HlsServer]]:
    servers: list[HlsServer] = []

    def factory(folder: Path | None = None) -> HlsServer:
        server = HlsServer(folder).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def fast_options() -> DownloadOptions:
    return DownloadOptions(
        threads=4,
        max_retries=4,
        retry_delay=0.01,
        connect_timeout=5.0,
        read_timeout=5.0,
    )
