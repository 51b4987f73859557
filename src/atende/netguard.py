"""The outbound-request guard: every gateway call and media fetch leaves Atende through here.

A tenant admin chooses a session's `base_url`, and a webhook names a `media_url`, so both are
attacker-controlled: without this guard Atende would fetch the cloud metadata service or an
internal admin page and hand back the answer. The rules, in one place:

- http and https only;
- the host is resolved here and every address is checked: loopback, private, link-local, CGNAT,
  multicast, unspecified, reserved and IPv4-in-IPv6 (mapped, NAT64, 6to4, Teredo) addresses are
  refused unless inside `settings.gateway_allowed_networks` (a gateway on the same host);
- the connection goes to the address that was checked (the host name still gives the Host header
  and the TLS server name), so a DNS answer that changes between check and connect can not
  redirect it: there is no second look-up;
- redirects are never followed (the client says so, and `providers.http.call` refuses 3xx);
- an answer larger than `max_response_bytes` is cut off, not buffered.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable, Sequence

import anyio
import httpcore
import httpx

from atende.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = frozenset({b"http", b"https"})
MiB = 1024 * 1024

# Python's `is_global` misses some of these (multicast, CGNAT on older versions); listed so the
# rule reads as written above rather than as the standard library's current opinion.
_V4_REFUSED = tuple(
    ipaddress.IPv4Network(n)
    for n in ("0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "224.0.0.0/3")
)
# IPv6 forms that carry an IPv4 address a router or the kernel may turn back into IPv4.
_V6_EMBEDDING = tuple(
    ipaddress.IPv6Network(n)
    for n in ("::ffff:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
)


class DestinationRefused(Exception):
    """The URL's scheme or one of its host's addresses is not one Atende may connect to.

    Deliberately not an httpx/httpcore error, so it reaches `providers.http.call` as itself."""


class ResponseTooLarge(Exception):
    """The gateway's answer is larger than the cap; the rest of it is not read."""


def base_url_problem(url: str) -> str | None:
    """Why `url` can not be a gateway base_url, or None. Routes are appended to it as text, so a
    `?` or `#` would turn them into a query or fragment and let the admin pick the real path;
    backslashes, spaces and control characters are read differently by different URL parsers."""
    if any(ch in url for ch in "?#\\") or any(ch.isspace() or not ch.isprintable() for ch in url):
        return "base_url must not contain '?', '#', '\\', spaces or control characters"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "base_url is not a valid URL"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "base_url must be an http:// or https:// URL with a host"
    return None


def path_segment_problem(value: str) -> str | None:
    """Why `value` can not go into a gateway URL's path as one segment (a session name, an API
    version), or None: it must not add segments, a query or a fragment of its own."""
    if any(ch in value for ch in "/?#\\%") or any(not ch.isprintable() for ch in value):
        return "must not contain '/', '?', '#', '\\', '%' or control characters"
    if value in (".", ".."):
        return "must not be '.' or '..'"
    return None


def is_public(ip: IPAddress) -> bool:
    """Whether `ip` is an ordinary internet address (no internal or special-purpose range)."""
    if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast:
        return False
    if ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in net for net in _V4_REFUSED)
    return not ip.is_site_local and not any(ip in net for net in _V6_EMBEDDING)


def permitted(ip: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    """The operator's list comes first: it is how a gateway on the same host is reached."""
    return any(ip.version == net.version and ip in net for net in allowed) or is_public(ip)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is itself, with no look-up)."""
    literal = host.strip("[]")
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:  # socket.gaierror: the name does not resolve
        raise httpcore.ConnectError(f"could not resolve {host!r}") from exc
    found: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # drop an IPv6 zone id
        if ip not in found:
            found.append(ip)
    return found


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking the host before it connects."""

    def __init__(
        self, allowed: Sequence[IPNetwork], inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._allowed = tuple(allowed)
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with anyio.fail_after(timeout):
            addresses = await resolve(host, port)
        usable = [ip for ip in addresses if permitted(ip, self._allowed)]
        if not usable:
            raise DestinationRefused(f"{host} resolves to an address Atende may not connect to")
        failure: Exception | None = None
        for ip in usable:  # connect to the checked address itself: no second resolution
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("unix sockets are not gateway addresses")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, max_bytes: int) -> None:
        self._inner = inner
        self._max_bytes = max_bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._max_bytes:
                raise ResponseTooLarge(f"the answer is larger than {self._max_bytes} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport on a `GuardedBackend`, with a size cap on every answer."""

    def __init__(
        self,
        allowed: Sequence[IPNetwork],
        *,
        max_response_bytes: int,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(trust_env=False)
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        # Replaces the pool the parent built: the same settings, plus the guarded backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allowed),
        )
        self._max_response_bytes = max_response_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.raw_scheme not in SCHEMES:
            raise DestinationRefused("only http and https URLs are fetched")
        response = await super().handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_response_bytes:
            await response.aclose()
            raise ResponseTooLarge(f"the answer declares {declared} bytes")
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _CappedStream(response.stream, self._max_response_bytes)
        return response


def max_response_bytes(settings: Settings) -> int:
    """A media file, base64-encoded inside a JSON answer (Evolution's getBase64), and some room."""
    return settings.media_max_bytes * 4 // 3 + MiB


def client(settings: Settings) -> httpx.AsyncClient:
    """The one outbound client of a running Atende (`AppContext.http`)."""
    transport = GuardedTransport(
        settings.allowed_networks, max_response_bytes=max_response_bytes(settings)
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=settings.gateway_timeout_secs,
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: the guard must see the real host
    )
