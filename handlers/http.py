"""Outgoing HTTP for webhooks, external steps and HTTP actions, behind an SSRF guard.

Template authors choose the URLs, so every hop is checked before it is sent: the host is resolved and
each address must be public (not private, loopback, link-local, multicast, reserved or unspecified)
unless `FLOWLINE_ALLOW_PRIVATE_NETWORKS` lists a CIDR that contains it with that port (`10.0.0.5:8443`;
a bare CIDR opens ports 80 and 443 only, `:*` every port). Redirects are followed here, not by aiohttp, so
each hop (address and port) is checked again (at most 5). The aiohttp connector resolves through the same
policy, so a DNS answer that changes between the check and the connect (rebinding) is refused too.

`SafeHttpClient` takes two ports: a `Resolver` and a `Transport` (one request, no redirects, body capped),
so the redirect and guard logic is tested with fakes and the real ones are thin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

MAX_REDIRECTS = 5
MAX_BODY_BYTES = 256 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class HttpError(Exception):
    """A request that did not produce a response; `retryable` says whether another attempt may help."""

    retryable = True


class BlockedDestination(HttpError):
    retryable = False


class InvalidUrl(HttpError):
    retryable = False


class BodyTooLarge(HttpError):
    retryable = False


class TooManyRedirects(HttpError):
    retryable = False


class RequestTimeout(HttpError):
    retryable = True


class ConnectionFailed(HttpError):
    retryable = True


DEFAULT_PORTS = frozenset({80, 443})


@dataclass(frozen=True)
class AllowedDestination:
    """One entry of FLOWLINE_ALLOW_PRIVATE_NETWORKS: a CIDR and the ports it opens (None: every port)."""

    network: IpNetwork
    ports: frozenset[int] | None = DEFAULT_PORTS

    @classmethod
    def parse(cls, entry: AllowedDestination | IpNetwork | str) -> AllowedDestination:
        """`10.0.0.5:8443`, `10.0.0.0/8:443`, `[fd00::/8]:443`, `10.1.2.3:*` (every port) or a bare CIDR.

        Why ports: an allowed ERP address is a host, and every other service on it (an engine's health
        port, a database) was reachable too, also by a redirect. A bare CIDR opens only ports 80 and 443;
        any other port must be named, and `*` must be written out to open them all.
        """
        if isinstance(entry, AllowedDestination):
            return entry
        if not isinstance(entry, str):
            return cls(entry)
        text = entry.strip()
        host, port = text, None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"allow-list entry {entry!r}: expected [address]:port")
                port = rest[1:]
        elif text.count(":") == 1:
            host, port = text.split(":")
        network = ipaddress.ip_network(host, strict=False)
        if port is None:
            return cls(network)
        if port == "*":
            return cls(network, None)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"allow-list entry {entry!r}: the port must be 1-65535 or *")
        return cls(network, frozenset({int(port)}))

    def admits(self, ip: IpAddress, port: int | None) -> bool:
        if ip.version != self.network.version or ip not in self.network:
            return False
        return self.ports is None or port in self.ports


class NetworkPolicy:
    """Which resolved addresses (and ports) outgoing requests may reach."""

    def __init__(self, allowed: Sequence[AllowedDestination | IpNetwork | str] = ()) -> None:
        self.allowed = tuple(AllowedDestination.parse(n) for n in allowed)

    def refusal(self, address: str, port: int | None = None) -> str | None:
        """None if `address` (on `port`; None when unknown: only `*` entries admit it) may be contacted."""
        try:
            ip: IpAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(entry.admits(ip, port) for entry in self.allowed):
            return None
        for flag in ("is_loopback", "is_private", "is_link_local", "is_multicast", "is_reserved",
                     "is_unspecified"):
            if getattr(ip, flag):
                return f"{ip} is a {flag[3:].replace('_', '-')} address"
        if not ip.is_global:
            return f"{ip} is not a public address"
        return None


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    async def resolve(self, host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return sorted({info[4][0] for info in infos})


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class Transport(Protocol):
    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> HttpResponse:
        """One request, redirects not followed, body at most MAX_BODY_BYTES (else BodyTooLarge)."""
        ...


@dataclass(frozen=True)
class Hop:
    method: str
    url: str
    status: int


@dataclass
class Exchange:
    response: HttpResponse
    hops: list[Hop] = field(default_factory=list)


def _target(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidUrl(f"only http(s) URLs with a host can be called, not {url[:200]!r}")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


class SafeHttpClient:
    def __init__(self, transport: Transport, resolver: Resolver, policy: NetworkPolicy, *,
                 max_redirects: int = MAX_REDIRECTS) -> None:
        self.transport = transport
        self.resolver = resolver
        self.policy = policy
        self.max_redirects = max_redirects

    async def check(self, url: str) -> None:
        """Raise BlockedDestination unless every address the URL's host resolves to is allowed."""
        host, port = _target(url)
        try:
            addresses = [host] if _is_ip(host) else await self.resolver.resolve(host, port)
        except OSError as exc:
            raise ConnectionFailed(f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise ConnectionFailed(f"{host} resolves to no address")
        for address in addresses:
            why = self.policy.refusal(address, port)
            if why:
                raise BlockedDestination(f"refusing to call {host}:{port}: {why} "
                                         "(see FLOWLINE_ALLOW_PRIVATE_NETWORKS)")

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      body: bytes | None = None, timeout: float = 30.0) -> Exchange:
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(method.upper(), url, dict(headers or {}), body)
        except TimeoutError:
            raise RequestTimeout(f"no response within {timeout:g} s") from None

    async def _follow(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Exchange:
        hops: list[Hop] = []
        origin = _origin(url)
        for _ in range(self.max_redirects + 1):
            await self.check(url)
            response = await self.transport.send(method, url, headers, body)
            location = response.headers.get("Location") or response.headers.get("location")
            if response.status not in REDIRECT_STATUSES or not location:
                return Exchange(response, hops)
            hops.append(Hop(method, url, response.status))
            url = urljoin(url, location)
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body = ("HEAD" if method == "HEAD" else "GET"), None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            if _origin(url) != origin:  # credentials stay with the host they were written for
                headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
        raise TooManyRedirects(f"more than {self.max_redirects} redirects")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that only hands out allowed addresses (closes the DNS-rebinding window)."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self.policy = policy

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_UNSPEC) -> list[ResolveResult]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        results: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            why = self.policy.refusal(sockaddr[0], sockaddr[1])
            if why:
                raise OSError(f"refusing to connect to {host}:{sockaddr[1]}: {why}")
            results.append(ResolveResult(hostname=host, host=sockaddr[0], port=sockaddr[1], family=fam, proto=proto,
                                         flags=socket.AI_NUMERICHOST))
        return results

    async def close(self) -> None:
        return None


class AiohttpTransport:
    """The real transport: one pooled session, no automatic redirects, bodies read up to the cap."""

    def __init__(self, policy: NetworkPolicy, *, limit: int = 100, max_body: int = MAX_BODY_BYTES) -> None:
        self.policy = policy
        self.limit = limit
        self.max_body = max_body
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy), limit=self.limit,
                                             ttl_dns_cache=0, use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                                  timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> HttpResponse:
        session = self._get_session()
        try:
            async with session.request(method, url, headers=dict(headers), data=body, allow_redirects=False) as resp:
                payload = await self._read_capped(resp)
                return HttpResponse(status=resp.status, headers=_flat_headers(resp.headers), body=payload,
                                    url=str(resp.url))
        except HttpError:
            raise
        except aiohttp.InvalidURL as exc:
            raise InvalidUrl(f"invalid URL: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(f"{type(exc).__name__}: {exc}") from None

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await resp.content.read(64 * 1024)  # returns what has arrived, up to the limit
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(f"response body is larger than {self.max_body // 1024} KiB")
            chunks.append(chunk)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _flat_headers(headers: Any) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in headers.items():
        name = key.lower()
        flat[name] = f"{flat[name]}, {value}" if name in flat else value
    return flat


def real_client(allowed: Sequence[AllowedDestination | IpNetwork | str] = ()) -> tuple[SafeHttpClient,
                                                                                      AiohttpTransport]:
    policy = NetworkPolicy(allowed)
    transport = AiohttpTransport(policy)
    return SafeHttpClient(transport, SystemResolver(), policy), transport
