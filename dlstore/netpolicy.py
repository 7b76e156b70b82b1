"""Where a download's requests may go, enforced where every connection passes.

Two rules, both about rows written by strangers:

- **deny_networks.** Every connection (playlist, variant, key, segment, each
  redirect hop) resolves its host with :func:`socket.getaddrinfo`, drops the
  addresses in a denied network and connects only to one that is left, by
  address: what was checked is what is connected to, so a DNS answer that
  changes between a check and the connect (rebinding) cannot slip through.
  IPv4-mapped IPv6 addresses (``::ffff:169.254.169.254``) are judged as the IPv4
  address they carry. :class:`PolicyAdapter` installs this in a ``requests``
  session; a refusal is a :class:`~dlstore.errors.NetworkPolicyError` and no
  socket is opened.
- **Credentials stay with their origin.** :class:`OriginBoundSession` sends a
  row's ``Cookie`` and ``Authorization`` only to the scheme, host and port of the
  URL the row names, on the first request and on every redirect hop.

The connections also let a request be aborted before it has a response: while
one waits for its response's headers, its socket is handed to the thread's
:data:`header_watch` (set by :meth:`dlstore.http.ActiveResponses.requesting`), so a
deadline or a cancel can shut it down however slowly the headers come.

:func:`parse_networks` turns the config's CIDR strings into networks.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any
from urllib.parse import urlsplit

import idna
import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, merge_cookies
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from dlstore.errors import ConfigError, NetworkPolicyError
from dlstore.options import DEFAULT_DENY_NETWORKS
from dlstore.redact import escape_controls

Network = IPv4Network | IPv6Network
AddrInfo = tuple[Any, ...]  # one entry of socket.getaddrinfo()'s answer

#: Headers of a row that go only to the origin of the row's URL (lower case).
ORIGIN_BOUND_HEADERS = frozenset({"cookie", "authorization"})
DEFAULT_PORTS = {"http": 80, "https": 443}


# --- the deny list ---------------------------------------------------------------------


def parse_networks(entries: Any, source: str = "deny_networks") -> tuple[Network, ...]:
    """The config's list of CIDR strings as networks; a ConfigError names a bad entry."""
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(
            f'{source}: expected a list of networks such as ["169.254.0.0/16", "fe80::/10"] '
            f"(or [] to deny none), got {entries!r}."
        )
    networks = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ConfigError(f"{source}: {entry!r} is not a network; write it as text.")
        try:
            networks.append(ipaddress.ip_network(entry.strip()))
        except ValueError as exc:
            raise ConfigError(
                f"{source}: {entry!r} is not a network in CIDR form such as "
                f'"10.0.0.0/8" or "fc00::/7" ({exc}).'
            ) from exc
    return tuple(networks)


def denied_by(address: str, networks: Iterable[Network]) -> Network | None:
    """The network of ``networks`` that holds ``address`` (IPv4-mapped: as IPv4), or None."""
    parsed: IPv4Address | IPv6Address = ipaddress.ip_address(address.partition("%")[0])
    candidates = [parsed]
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        candidates.append(parsed.ipv4_mapped)
    for network in networks:
        if any(candidate in network for candidate in candidates):
            return network
    return None


def allowed_addresses(host: str, port: int, networks: Iterable[Network]) -> list[AddrInfo]:
    """``host``'s addresses that ``networks`` allow, in resolver order.

    Raises NetworkPolicyError if every address is denied; socket.gaierror if the
    name does not resolve.
    """
    networks = tuple(networks)
    answers = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    allowed, refused = [], []
    for info in answers:
        network = denied_by(info[4][0], networks)
        if network is None:
            allowed.append(info)
        else:
            refused.append((info[4][0], network))
    if not allowed and refused:
        address, network = refused[0]
        shown = escape_controls(host[:200])
        named = "" if shown == address else f" ({shown})"
        raise NetworkPolicyError(
            f"dlstore's network policy (deny_networks) does not allow connecting to "
            f"{address}{named}, which is in {network}. If this download should be allowed, "
            "ask the administrator to change deny_networks in dlstore's configuration."
        )
    return allowed


def open_socket(
    host: str,
    port: int,
    networks: Iterable[Network],
    timeout: Any,
    source_address: tuple[str, int] | None = None,
    socket_options: Iterable[tuple[int, int, Any]] | None = None,
) -> socket.socket:
    """A socket connected to an address of ``host`` that ``networks`` allow.

    Like urllib3's ``create_connection``, but the addresses are checked first and
    connected to by number, so no second lookup can answer differently.
    """
    error: OSError | None = None
    for info in allowed_addresses(host.strip("[]"), port, networks):
        try:
            return _connect(info, timeout, source_address, socket_options)
        except OSError as exc:
            error = exc
    raise error or OSError(f"{host} has no address to connect to")


def _connect(
    info: AddrInfo,
    timeout: Any,
    source_address: tuple[str, int] | None,
    socket_options: Iterable[tuple[int, int, Any]] | None,
) -> socket.socket:
    family, kind, proto, _, sockaddr = info
    sock = socket.socket(family, kind, proto)
    try:
        for option in socket_options or ():
            sock.setsockopt(*option)
        if timeout is None or isinstance(timeout, (int, float)):
            sock.settimeout(timeout)  # else urllib3's "default": leave the socket's
        if source_address:
            sock.bind(source_address)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


# --- installing it in urllib3 and requests --------------------------------------------


#: Per thread: ``header_watch.watch(sock)``, a context manager held while ``sock`` waits
#: for a response's headers; unset: nobody watches.
header_watch = threading.local()


class _PolicyConnection:
    """Mixed into urllib3's connections: ``_new_conn`` goes through :func:`open_socket`,
    and the wait for a response's headers is watched (:data:`header_watch`)."""

    host: str
    port: int
    timeout: Any
    source_address: tuple[str, int] | None
    socket_options: Any
    _dns_host: str

    def __init__(
        self, *args: Any, deny_networks: Iterable[Network] = DEFAULT_DENY_NETWORKS, **kwargs: Any
    ) -> None:
        self.deny_networks = tuple(deny_networks)
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        try:
            sock = open_socket(
                self._dns_host, self.port, self.deny_networks, self.timeout,
                self.source_address, self.socket_options,
            )  # fmt: skip
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        watch = getattr(header_watch, "watch", None)
        sock = getattr(self, "sock", None)
        with watch(sock) if watch is not None and sock is not None else nullcontext():
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class PolicyHTTPConnection(_PolicyConnection, HTTPConnection):
    """An http:// connection that obeys ``deny_networks``."""


class PolicyHTTPSConnection(_PolicyConnection, HTTPSConnection):
    """An https:// connection that obeys ``deny_networks``."""


class _PolicyHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = PolicyHTTPConnection


class _PolicyHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = PolicyHTTPSConnection


class PolicyAdapter(HTTPAdapter):
    """A transport adapter whose every connection obeys ``deny_networks``.

    The pools it makes hand ``deny_networks`` to their connections (a pool's extra
    keyword arguments become its connections'), so the check runs at each connect.
    """

    __attrs__ = [*HTTPAdapter.__attrs__, "deny_networks"]

    def __init__(self, deny_networks: Iterable[Network], **kwargs: Any) -> None:
        self.deny_networks = tuple(deny_networks)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": functools.partial(_PolicyHTTPConnectionPool, deny_networks=self.deny_networks),
            "https": functools.partial(
                _PolicyHTTPSConnectionPool, deny_networks=self.deny_networks
            ),
        }


# --- credentials and their origin -----------------------------------------------------


def origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URL, host lower-cased and IDNA-encoded."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
    return scheme, host, port or DEFAULT_PORTS[scheme]


class OriginBoundSession(requests.Session):
    """A session that sends ``bound_headers`` only to ``origin_url``'s origin.

    Those headers (a row's Cookie and Authorization) go on each request whose URL has
    the origin's scheme, host and port, like a browser's host-only cookie: an
    off-origin redirect hop goes without them, a later hop back to the origin has
    them again. A bound Cookie is put before the cookies the jar holds for the URL
    (the ones servers set). Other headers are the session's, sent everywhere.
    """

    def __init__(self, origin_url: str, bound_headers: Mapping[str, str]) -> None:
        super().__init__()
        self.origin = origin_of(origin_url)
        self.bound_headers = dict(bound_headers)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        prepared = super().prepare_request(request)
        self._bind(prepared)
        return prepared

    def get_stream(self, url: str, headers: Mapping[str, str], timeout: Any) -> requests.Response:
        """``self.get(url, headers=headers, stream=True, timeout=timeout)``, prepared without
        requests' generic merging, whose runtime Protocol checks cost about 0.2 ms a
        request on Python 3.11: the same request for a GET with no params or body of its
        own (the session's headers, cookies, auth and hooks; the origin's bound headers),
        which is all the fetch pool sends. With ``trust_env`` on (proxies, netrc from
        the environment), or session params, it is ``get`` itself."""
        if self.trust_env or self.params:
            return self.get(url, headers=headers, stream=True, timeout=timeout)
        merged = CaseInsensitiveDict(self.headers)
        merged.update(headers)
        kept = {name: value for name, value in merged.items() if value is not None}
        prepared = requests.PreparedRequest()
        prepared.prepare_method("GET")
        prepared.prepare_url(url, "")  # "": no params (None would be checked against a Protocol)
        prepared.prepare_headers(kept)
        prepared.prepare_cookies(merge_cookies(RequestsCookieJar(), self.cookies))
        prepared.prepare_body(None, None)
        prepared.prepare_auth(self.auth, url)
        prepared.prepare_hooks(self.hooks)
        self._bind(prepared)
        return self.send(prepared, stream=True, timeout=timeout, allow_redirects=True)

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        """On every redirect hop, after requests set that hop's cookies from the jar."""
        prepared_request.headers.pop("Authorization", None)  # no netrc: trust_env is off
        self._bind(prepared_request)

    def _bind(self, prepared: requests.PreparedRequest) -> None:
        if self.origin is None or origin_of(prepared.url or "") != self.origin:
            return
        for name, value in self.bound_headers.items():
            jar_cookies = prepared.headers.get("Cookie")
            if name.lower() == "cookie" and jar_cookies:
                value = f"{value}; {jar_cookies}"
            prepared.headers[name] = value
