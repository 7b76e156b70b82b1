"""dlstore.hosts: a URL's origin host, in Python and in SQL alike; the claim's exclusion."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Text, literal, select

from dlstore.config import Settings, load_settings
from dlstore.errors import ConfigError
from dlstore.hosts import url_host, url_host_sql
from dlstore.testing.rust_api import CREATE, RustApi


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://cdn.example/v.m3u8", "cdn.example"),
        ("HTTP://User:pw@CDN.Example:8443/v.m3u8?token=x", "cdn.example"),
        ("http://127.0.0.1:8080/a", "127.0.0.1"),
        ("http://localhost", "localhost"),
        ("http://[::1]:9000/x", "[::1]"),
        ("https://a.example?x=1", "a.example"),
        ("https://a.example#frag", "a.example"),
        ("not a url", ""),
        ("http://[::1/x", ""),
        ("http://É.example/", "É.example"),  # ASCII letters only are lowered
    ],
)
def test_url_host(url, host):
    assert url_host(url) == host


URLISH = st.text(alphabet="htps:/?#@[]:.AaZz09é%-_ ", max_size=40)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(urls=st.lists(st.one_of(URLISH, st.builds("http://{}".format, URLISH)), max_size=8))
def test_sql_and_python_agree(store, urls):
    dialect = store.engine.dialect.name
    with store.engine.connect() as conn:
        for url in urls:
            query = select(url_host_sql(literal(url, Text), dialect))
            assert conn.execute(query).scalar() == url_host(url), url


def test_claim_passes_over_excluded_hosts(store, migrated_url):
    api = RustApi(migrated_url)
    for number, url in enumerate(
        ["https://busy.example/1.m3u8", "https://BUSY.example:444/2.m3u8", "https://free.example/3"]
    ):
        api.execute(CREATE, (f"r{number}", f"r{number}", url, f"2025-01-13T10:0{number}:00Z", None))
    api.close()
    found = store.claim("h:1:a", exclude_hosts=["busy.example"])
    assert found is not None and found[0].id == "r2"
    assert store.claim("h:1:a", exclude_hosts=["busy.example"]) is None
    assert store.claim("h:1:a", exclude_hosts=["other.example"])[0].id == "r0"
    assert store.claim("h:1:a")[0].id == "r1"


def test_max_per_host_in_the_config(tmp_path):
    path = tmp_path / "downloader.yaml"
    assert Settings().max_per_host == 0  # no limit
    path.write_text("downloader:\n  max_per_host: 2\n")
    assert load_settings(path, environ={}).max_per_host == 2
    for bad in ("-1", "two", "1.5"):
        path.write_text(f"downloader:\n  max_per_host: {bad}\n")
        with pytest.raises(ConfigError, match="max_per_host"):
            load_settings(path, environ={})
