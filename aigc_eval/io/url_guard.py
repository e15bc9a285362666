"""Refusing caller-given URLs that point inside the network (SSRF protection).

`check_url` says whether a URL may be fetched: http(s) only, no credentials, and every address
its host resolves to public. The address test uses the standard library's `ipaddress`
properties (is_private, is_loopback, is_link_local, ...) rather than a hand-written list of
ranges, so it follows Python's registry of special-purpose blocks.

A check before the fetch is not enough on its own: DNS can answer a public address to the
check and a private one to the connection (rebinding). `guarded_session` closes that gap: its
connections resolve the host once, check every address, and connect to those very addresses,
on every hop of a redirect chain. Refusals raise UnsafeURL/BlockedAddress (ValueErrors, not
requests exceptions) out of `session.get`: a caller's error, never worth a retry.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
import sys
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util.connection import allowed_gai_family

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]
ADVICE = ("the service refuses private, loopback, link-local and metadata addresses "
          "(--allow-private-urls lifts this on a closed network)")
# Only for the wording of the message: each of these is refused anyway as link-local/private/shared.
_METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")}
# NAT64 (RFC 6052) forwards 64:ff9b::a.b.c.d to a.b.c.d; Python 3.11 calls the prefix global and
# ipaddress has no accessor for it, so this one prefix is written out.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# The URL of the request being sent, so a refusal at connection time names the hop refused.
_current_url: contextvars.ContextVar[str | None] = contextvars.ContextVar("guarded_url", default=None)


class UnsafeURL(ValueError):
    """A URL the guard will not fetch; the message is one line saying why."""


class BlockedAddress(UnsafeURL):
    """A URL whose host is, or resolves to, a non-public address."""


def _redact(url: str) -> str:
    """The URL without any user:password, fit for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _own_reason(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:  # Python calls some multicast blocks global
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:  # deprecated fec0::/10, "global" to 3.11
        return "a site-local address"
    if not ip.is_global:  # e.g. 100.64/10 carrier-grade NAT, neither private nor global
        return "a shared, non-global address"
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be fetched from ("a private address", ...), or None when it is public.

    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo, NAT64) are judged by the IPv4
    address too, since traffic to them can end up there."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        for inner in filter(None, embedded):
            reason = _own_reason(inner)
            if reason:
                return f"{reason} (embedded {inner})"
    return _own_reason(ip)


def _is_local_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost")  # RFC 6761: always loopback


def _resolve(host: str, port: int, resolve: Resolver | None, family: int = 0) -> list[tuple]:
    # Looked up at call time so a monkeypatched socket.getaddrinfo (tests) is honoured.
    return (resolve or socket.getaddrinfo)(host, port, family, socket.SOCK_STREAM)


def _address(sockaddr: tuple) -> IPAddress:
    return ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])  # drop an IPv6 scope id


def _refuse_blocked(url: str, infos: list[tuple]) -> list[IPAddress]:
    """The distinct addresses of `infos`; raises BlockedAddress at the first non-public one."""
    addresses: list[IPAddress] = []
    for info in infos:
        ip = _address(info[4])
        reason = blocked_reason(ip)
        if reason:
            raise BlockedAddress(f"{_redact(url)} resolves to {ip}, {reason}; {ADVICE}")
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def check_url(url: str, *, allow_private: bool = False, resolve: Resolver | None = None) -> list[IPAddress]:
    """The addresses `url`'s host resolves to, all public; raises UnsafeURL when the URL is not
    http(s), carries credentials, is malformed or does not resolve, and BlockedAddress when its
    host is "localhost" or any address it resolves to is not public. `allow_private` lifts the
    address refusals (not the scheme or credential ones). `resolve` defaults to socket.getaddrinfo.

    This check alone leaves a gap between check and connection (DNS rebinding); fetch through
    `guarded_session`, which checks at connection time."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeURL(f"{_redact(url)}: only http and https URLs are fetched")
    if "@" in parts.netloc:  # credentials would be sent to whoever the URL names, and logged
        raise UnsafeURL(f"{_redact(url)}: URLs with credentials (user:password@) are refused")
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL(f"{url}: malformed URL ({exc})") from None
    if not host:
        raise UnsafeURL(f"{url}: no host")
    if not allow_private and _is_local_name(host):
        raise BlockedAddress(f"{url} names {host}, a loopback name; {ADVICE}")
    try:
        infos = _resolve(host, port, resolve)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"{url}: host {host} does not resolve ({exc})") from None
    if not infos:
        raise UnsafeURL(f"{url}: host {host} resolves to no address")
    if allow_private:
        return list(dict.fromkeys(_address(info[4]) for info in infos))
    return _refuse_blocked(url, infos)


class _GuardedConnectionMixin:
    """urllib3 connection whose socket goes only to addresses checked at connection time.

    urllib3 2.x's `_new_conn` hands the host name to `create_connection`, which resolves it
    again; here the name is resolved once, every address checked, and the socket connected to
    the checked sockaddr itself. `self.host` stays the name, so the Host header, TLS SNI and the
    certificate check (done by HTTPSConnection.connect after `_new_conn`) use the name."""

    resolve: Resolver | None = None  # set on per-adapter subclasses

    def _new_conn(self) -> socket.socket:
        host, port = self._dns_host, self.port  # type: ignore[attr-defined]
        scheme = "https" if isinstance(self, HTTPSConnection) else "http"
        url = _current_url.get() or f"{scheme}://{host}:{port}/"
        if _is_local_name(host):
            raise BlockedAddress(f"{_redact(url)} names {host}, a loopback name; {ADVICE}")
        try:
            infos = _resolve(host.strip("[]"), port, self.resolve, allowed_gai_family())
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[attr-defined]
        _refuse_blocked(url, infos)
        try:
            sock = _connect_first(infos, self.timeout, self.source_address, self.socket_options)  # type: ignore[attr-defined]
        except socket.timeout as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. "  # type: ignore[attr-defined]
                                      f"(connect timeout={self.timeout})") from exc  # type: ignore[attr-defined]
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        sys.audit("http.client.connect", self, self.host, self.port)  # type: ignore[attr-defined]
        return sock


def _connect_first(infos: list[tuple], timeout: Any, source_address: Any, options: Any) -> socket.socket:
    """A socket connected to the first of `infos` that answers (as urllib3's create_connection)."""
    error: OSError | None = None
    for family, socktype, proto, _, sockaddr in infos:
        sock = socket.socket(family, socktype, proto)
        try:
            for option in options or ():
                sock.setsockopt(*option)
            if timeout is None or isinstance(timeout, (int, float)):  # else urllib3's "default" token
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            _open(sock, sockaddr)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError("no address to connect to")


def _open(sock: socket.socket, sockaddr: tuple) -> None:
    """Connect `sock`; a seam the tests replace to reach a loopback server under a public address."""
    sock.connect(sockaddr)


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose every connection is checked by address when it is opened.

    Proxies are refused: through a proxy the connection goes to the proxy, and the guard could
    not see where the proxy goes next."""

    def __init__(self, *args: Any, resolve: Resolver | None = None, **kwargs: Any):
        self._resolve = resolve
        super().__init__(*args, **kwargs)  # calls init_poolmanager, which needs _resolve

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        resolve = getattr(self, "_resolve", None)  # absent when requests unpickles an adapter
        extra = {"resolve": staticmethod(resolve) if resolve else None}
        http = type("GuardedHTTPConnection", (_GuardedConnectionMixin, HTTPConnection), extra)
        https = type("GuardedHTTPSConnection", (_GuardedConnectionMixin, HTTPSConnection), extra)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise UnsafeURL(f"a proxy ({_redact(proxy)}) is configured; fetching through it would bypass "
                        "the address guard (unset HTTP(S)_PROXY, or use --allow-private-urls)")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Send one hop; raises UnsafeURL for credentials, BlockedAddress for a non-public host."""
        url = request.url or ""
        if "@" in urlsplit(url).netloc:
            raise UnsafeURL(f"{_redact(url)}: URLs with credentials (user:password@) are refused")
        token = _current_url.set(url)
        try:
            return super().send(request, *args, **kwargs)
        finally:
            _current_url.reset(token)


def guarded_session(allow_private: bool, base: requests.Session | None = None, *,
                    resolve: Resolver | None = None) -> requests.Session:
    """A session that fetches only from public addresses, checked on every connection of every
    redirect hop; refusals raise BlockedAddress / UnsafeURL out of `session.get`.

    `base` (default: a new session) gets the guarded adapters mounted in place and is returned,
    keeping its headers and redirect limit. With `allow_private` it is returned unchanged."""
    session = base if base is not None else requests.Session()
    if allow_private:
        return session
    for prefix in ("http://", "https://"):
        session.mount(prefix, GuardedAdapter(resolve=resolve))
    return session
