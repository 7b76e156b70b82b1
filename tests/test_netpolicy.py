"""dlstore.netpolicy without a network: the deny list, its config key, the check at connect.

Name resolution is a fake ``socket.getaddrinfo``; connects are recorded (and refused)
by a stand-in for ``netpolicy._connect``, so "no connection was made" is observed,
not assumed. tests/test_http_security.py does the same against real local servers.
"""

from __future__ import annotations

import random
import socket
from collections import Counter
from ipaddress import ip_network

import pytest
import requests

from dlstore import netpolicy
from dlstore.config import Settings, load_settings
from dlstore.errors import ConfigError, NetworkPolicyError, TransientDownloadError
from dlstore.http import Retry, fetch_small, make_session
from dlstore.netpolicy import denied_by, origin_of, parse_networks
from dlstore.options import DEFAULT_DENY_NETWORKS, DownloadOptions, task_download_options

METADATA = "169.254.169.254"


class FakeResolver:
    """``socket.getaddrinfo`` for the names in ``answers``; real lookups for the rest."""

    def __init__(self, real):
        self.real = real
        self.answers: dict[str, list[str]] = {}
        self.lookups: Counter[str] = Counter()

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        if host not in self.answers:
            return self.real(host, port, family, type, proto, flags)
        self.lookups[host] += 1
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in self.answers[host]
        ]


@pytest.fixture
def resolver(monkeypatch) -> FakeResolver:
    fake = FakeResolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def connects(monkeypatch) -> list[str]:
    """Addresses netpolicy tried to connect to; each attempt is refused, nothing is sent."""
    tried: list[str] = []

    def refuse(info, *args):
        tried.append(info[4][0])
        raise ConnectionRefusedError(111, "Connection refused (test)")

    monkeypatch.setattr(netpolicy, "_connect", refuse)
    return tried


# --- parsing the config key ------------------------------------------------------------


def test_parse_networks_reads_cidrs_and_single_addresses():
    networks = parse_networks(["10.0.0.0/8", " fc00::/7 ", "192.0.2.1"])
    assert networks == (
        ip_network("10.0.0.0/8"),
        ip_network("fc00::/7"),
        ip_network("192.0.2.1/32"),
    )
    assert parse_networks([]) == ()


@pytest.mark.parametrize(
    ("entry", "shown"),
    [
        ("10.0.0.0/33", "'10.0.0.0/33'"),
        ("cdn.example", "'cdn.example'"),
        ("10.0.0.1/8", "'10.0.0.1/8'"),  # host bits set: a typo for 10.0.0.0/8?
        ("", "''"),
        (8, "8"),
        (None, "None"),
    ],
)
def test_a_bad_network_is_named(entry, shown):
    with pytest.raises(ConfigError) as info:
        parse_networks(["127.0.0.0/8", entry], "cfg.yaml: downloader.deny_networks")
    message = str(info.value)
    assert message.startswith("cfg.yaml: downloader.deny_networks: ")
    assert shown in message


@pytest.mark.parametrize("value", ["169.254.0.0/16", {"a": 1}, None, 5])
def test_deny_networks_must_be_a_list(value):
    with pytest.raises(ConfigError, match="expected a list of networks"):
        parse_networks(value)


def test_config_file_sets_deny_networks_and_options_carry_it(tmp_path):
    path = tmp_path / "downloader.yaml"
    path.write_text('downloader:\n  deny_networks: ["127.0.0.0/8", "::1/128"]\n')
    settings = load_settings(path, environ={})
    assert settings.deny_networks == (ip_network("127.0.0.0/8"), ip_network("::1/128"))
    assert settings.download_options().deny_networks == settings.deny_networks
    assert task_download_options(settings, {}).deny_networks == settings.deny_networks


def test_config_file_with_a_bad_network_names_key_and_entry(tmp_path):
    path = tmp_path / "downloader.yaml"
    path.write_text('downloader:\n  deny_networks: ["127.0.0.0/8", "bogus"]\n')
    with pytest.raises(ConfigError, match=r"downloader\.deny_networks: 'bogus' is not a network"):
        load_settings(path, environ={})


def test_default_denies_link_local_and_unspecified_and_an_empty_list_denies_none(tmp_path):
    expected = {"169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128"}
    assert {str(n) for n in DEFAULT_DENY_NETWORKS} == expected
    assert Settings().download_options().deny_networks == DEFAULT_DENY_NETWORKS
    assert DownloadOptions().deny_networks == DEFAULT_DENY_NETWORKS
    path = tmp_path / "downloader.yaml"
    path.write_text("downloader:\n  deny_networks: []\n")
    assert load_settings(path, environ={}).deny_networks == ()


# --- judging addresses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "network"),
    [
        (METADATA, "169.254.0.0/16"),
        ("::ffff:169.254.169.254", "169.254.0.0/16"),  # IPv4-mapped: judged as IPv4
        ("::ffff:a9fe:a9fe", "169.254.0.0/16"),
        ("fe80::1%eth0", "fe80::/10"),
        ("0.0.0.0", "0.0.0.0/8"),
        ("::", "::/128"),
        ("93.184.216.34", None),
        ("::ffff:93.184.216.34", None),
        ("2001:db8::1", None),
    ],
)
def test_denied_by_judges_mapped_addresses_as_ipv4(address, network):
    found = denied_by(address, DEFAULT_DENY_NETWORKS)
    assert (str(found) if found else None) == network


def test_a_mapped_network_in_the_list_denies_the_mapped_form_too():
    assert denied_by("::ffff:10.1.2.3", parse_networks(["::ffff:10.0.0.0/104"])) is not None
    assert denied_by("10.1.2.3", parse_networks(["::ffff:10.0.0.0/104"])) is None


# --- the check at connect --------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_name_resolving_to_a_denied_address_is_refused_before_any_connect(
    scheme, resolver, connects
):
    resolver.answers["cdn.example"] = [METADATA, "::ffff:169.254.169.254"]
    session = make_session(DownloadOptions(), f"{scheme}://cdn.example/v.m3u8")
    with pytest.raises(NetworkPolicyError) as info:
        session.get(f"{scheme}://cdn.example/latest/meta-data/", timeout=5)
    message = str(info.value)
    assert "network policy (deny_networks)" in message
    assert f"{METADATA} (cdn.example)" in message and "169.254.0.0/16" in message
    assert "administrator" in message
    assert not info.value.transient
    assert connects == []


@pytest.mark.parametrize("host", [METADATA, "[::ffff:169.254.169.254]", "0.0.0.0", "[::]"])
def test_an_address_written_in_the_url_is_judged_too(host, connects):
    session = make_session(DownloadOptions(), f"http://{host}/")
    with pytest.raises(NetworkPolicyError):
        session.get(f"http://{host}/", timeout=5)
    assert connects == []


def test_only_the_allowed_addresses_of_a_mixed_answer_are_tried(resolver, connects):
    resolver.answers["cdn.example"] = [METADATA, "192.0.2.10", "fe80::1", "2001:db8::10"]
    session = make_session(DownloadOptions(max_retries=0), "http://cdn.example/")
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get("http://cdn.example/", timeout=5)
    assert connects == ["192.0.2.10", "2001:db8::10"]
    assert resolver.lookups["cdn.example"] == 1  # one lookup; the connects used its answer


def test_a_refusal_is_not_retried(resolver, connects):
    resolver.answers["cdn.example"] = [METADATA]
    options = DownloadOptions(max_retries=5)
    waits: list[float] = []
    retry = Retry(
        attempts=6, base_delay=0.01, wait=lambda d: waits.append(d) or False, rng=random.Random(0)
    )
    with pytest.raises(NetworkPolicyError) as info:
        fetch_small(
            make_session(options, "http://cdn.example/v.m3u8"),
            "http://cdn.example/v.m3u8",
            options=options,
            what="the playlist",
            max_bytes=1000,
            retry=retry,
        )
    assert not isinstance(info.value, TransientDownloadError)
    assert resolver.lookups["cdn.example"] == 1 and waits == [] and connects == []


def test_an_empty_deny_list_lets_every_address_through(resolver, connects):
    resolver.answers["cdn.example"] = [METADATA]
    session = make_session(DownloadOptions(deny_networks=(), max_retries=0), "http://x/")
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get("http://cdn.example/", timeout=5)
    assert connects == [METADATA]


def test_the_session_ignores_the_environment():
    session = make_session(DownloadOptions(), "https://cdn.example/")
    assert session.trust_env is False
    assert session.proxies == {}


# --- origins ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://cdn.example/a.m3u8", "https://CDN.example:443/b/c.ts?x=1", True),
        ("http://cdn.example/", "http://cdn.example:80/", True),
        ("https://cdn.example/", "http://cdn.example/", False),
        ("https://cdn.example/", "https://cdn.example:8443/", False),
        ("https://cdn.example/", "https://evil-cdn.example/", False),
        ("https://cdn.example/", "https://cdn.example.evil/", False),
        ("https://bücher.example/", "https://xn--bcher-kva.example/", True),
        ("https://[::1]:8080/", "https://[::1]:8080/x", True),
    ],
)
def test_origin_is_scheme_host_and_port(a, b, same):
    assert (origin_of(a) == origin_of(b)) is same
    assert origin_of(a) is not None


@pytest.mark.parametrize("url", ["ftp://cdn.example/", "https:///path", "http://h:99999/", "x"])
def test_a_url_without_an_http_origin_has_none(url):
    assert origin_of(url) is None
