"""Egress control: the only way a scan reaches the network.

Reported pages are hostile, and some are built to make the scanner attack the hotline's own
network (cloud metadata, intranet services, routers). So every byte Chromium and aiohttp fetch
goes through one local forward proxy per scan (:class:`EgressProxy`). It parses hosts the way
Chromium does, resolves names itself, refuses any non-public address unless the operator allowed
that network, and connects to exactly the address it checked, which leaves DNS rebinding no
window. The proxy keeps metadata about each request (:class:`EgressEvent`), never content.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any
from urllib.parse import unquote

import idna

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str], Awaitable[list[str]]]
"""Name → IP address strings; raises OSError when the name does not resolve."""


def _low32(addr: IPv6Address) -> IPv4Address:
    return IPv4Address(int(addr) & 0xFFFFFFFF)


def _teredo_client(addr: IPv6Address) -> IPv4Address:
    teredo = addr.teredo
    assert teredo is not None  # only called for addresses inside 2001::/32
    return teredo[1]


def _sixtofour(addr: IPv6Address) -> IPv4Address:
    embedded = addr.sixtofour
    assert embedded is not None  # only called for addresses inside 2002::/16
    return embedded


# IPv6 forms that deliver to an embedded IPv4 address: they are as dangerous as that address.
_EMBEDDINGS: tuple[tuple[IPv6Network, str, Callable[[IPv6Address], IPv4Address]], ...] = (
    (IPv6Network("::ffff:0:0/96"), "IPv4-mapped", _low32),
    (IPv6Network("64:ff9b::/96"), "NAT64", _low32),
    (IPv6Network("2002::/16"), "6to4", _sixtofour),
    (IPv6Network("2001::/32"), "Teredo", _teredo_client),
)

# Special-purpose ranges (IANA registries) a scan has no business reaching; first match names it.
_SPECIAL: dict[int, tuple[tuple[IPv4Network | IPv6Network, str], ...]] = {
    4: tuple(
        (IPv4Network(net), label)
        for net, label in (
            ("0.0.0.0/32", "unspecified"),
            ("0.0.0.0/8", "this-network"),
            ("10.0.0.0/8", "private"),
            ("100.64.0.0/10", "shared (CGNAT)"),
            ("127.0.0.0/8", "loopback"),
            ("169.254.0.0/16", "link-local"),
            ("172.16.0.0/12", "private"),
            ("192.0.0.0/24", "IETF protocol assignment"),
            ("192.0.2.0/24", "documentation"),
            ("192.88.99.0/24", "6to4 relay anycast"),
            ("192.168.0.0/16", "private"),
            ("198.18.0.0/15", "benchmarking"),
            ("198.51.100.0/24", "documentation"),
            ("203.0.113.0/24", "documentation"),
            ("224.0.0.0/4", "multicast"),
            ("255.255.255.255/32", "broadcast"),
            ("240.0.0.0/4", "reserved"),
        )
    ),
    6: tuple(
        (IPv6Network(net), label)
        for net, label in (
            ("::/128", "unspecified"),
            ("::1/128", "loopback"),
            ("::/96", "IPv4-compatible (deprecated)"),
            ("64:ff9b:1::/48", "local-use NAT64"),
            ("100::/64", "discard-only"),
            ("2001:2::/48", "benchmarking"),
            ("2001::/23", "IETF protocol assignment"),
            ("2001:db8::/32", "documentation"),
            ("3fff::/20", "documentation"),
            ("5f00::/16", "SRv6 SID"),
            ("fc00::/7", "unique-local"),
            ("fe80::/10", "link-local"),
            ("fec0::/10", "site-local"),
            ("ff00::/8", "multicast"),
        )
    ),
}
_GLOBAL_UNICAST = IPv6Network("2000::/3")


def _special(addr: IPAddress) -> str | None:
    """Why addr is not an ordinary public address, or None if it is one."""
    if isinstance(addr, IPv6Address):
        for net, form, embedded in _EMBEDDINGS:
            if addr in net:
                inner = _special(embedded(addr))
                return f"{form} form of {inner} ({addr})" if inner else None
    for net, label in _SPECIAL[addr.version]:
        if addr in net:
            return f"{label} address {addr}"
    if isinstance(addr, IPv6Address) and addr not in _GLOBAL_UNICAST:
        return f"reserved address {addr}"
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """What a scan may reach: public addresses, plus networks the operator allowed explicitly."""

    allow_networks: tuple[IPNetwork, ...] = ()
    allowed_ports: frozenset[int] | None = None  # None: any port 1-65535
    connect_timeout: float = 10.0  # seconds, for each name resolution and connection attempt

    @classmethod
    def from_strings(cls, networks: Iterable[str], **kw: Any) -> EgressPolicy:
        """Build a policy from CIDR strings (HOTLINE_ALLOW_NETWORKS); blanks are skipped."""
        parsed = []
        for text in filter(None, (network.strip() for network in networks)):
            try:
                parsed.append(ipaddress.ip_network(text))
            except ValueError as exc:
                raise ValueError(f"allowed network {text!r} is not a valid CIDR: {exc}") from None
        return cls(allow_networks=tuple(parsed), **kw)

    def refusal(self, ip: str) -> str | None:
        """None if a scan may connect to ip, else the reason it may not."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return f"not an IP address: {ip!r}"
        # An IPv4-mapped address is the IPv4 address on the wire, so the IPv4 allowance covers it.
        mapped = addr.ipv4_mapped if isinstance(addr, IPv6Address) else None
        if any(
            addr in net or (mapped is not None and mapped in net) for net in self.allow_networks
        ):
            return None
        return _special(addr)

    def port_refusal(self, port: int) -> str | None:
        """None if a scan may connect to port, else the reason it may not."""
        if not 0 < port < 65536:
            return f"invalid port {port}"
        if self.allowed_ports is not None and port not in self.allowed_ports:
            return f"port {port} is not allowed"
        return None


# WHATWG URL Standard: forbidden domain code points (after percent-decoding and IDNA).
_FORBIDDEN_DOMAIN = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
_RADIX_DIGITS = {
    8: frozenset("01234567"),
    10: frozenset("0123456789"),
    16: frozenset("0123456789abcdefABCDEF"),
}


def parse_host(host: str) -> IPAddress | str:
    """Read a URL host as Chromium does (WHATWG host parser).

    Browsers take "2130706433", "0x7f.1", "0177.0.0.1", "127.1" and "１２７．０．０．１" for
    127.0.0.1, so an address check that reads them as names is bypassed. Returns the address,
    or the lower-cased ASCII (IDNA) name; raises ValueError for a host a browser rejects, e.g.
    "256.256.256.256". A bare IPv6 address (as yarl prints it) is accepted too.
    """
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed or ":" in host:
        literal = host[1:-1] if bracketed else host
        if "%" in literal:
            raise ValueError(f"IPv6 zone identifiers are not allowed in a host: {host!r}")
        return IPv6Address(literal)
    domain = unquote(host, errors="strict")
    if not domain.isascii():
        domain = _domain_to_ascii(domain)
    domain = domain.lower()
    if not domain or _FORBIDDEN_DOMAIN.search(domain):
        raise ValueError(f"invalid host {host!r}")
    if _ends_in_number(domain):
        return _parse_ipv4(domain)
    return domain


def _domain_to_ascii(domain: str) -> str:
    """UTS #46 mapping as browsers apply it (this is what folds fullwidth digits and dots)."""
    mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
    return ".".join(
        label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
        for label in mapped.split(".")
    )


def _ends_in_number(domain: str) -> bool:
    last = domain.removesuffix(".").rpartition(".")[2]
    if last.isascii() and last.isdigit():
        return True
    try:
        _ipv4_number(last)
    except ValueError:
        return False
    return True


def _ipv4_number(part: str) -> int:
    if not part:
        raise ValueError("empty IPv4 part")
    radix = 10
    if part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        part, radix = part[1:], 8
    if not set(part) <= _RADIX_DIGITS[radix]:
        raise ValueError(f"invalid IPv4 part {part!r}")
    return int(part, radix) if part else 0


def _parse_ipv4(domain: str) -> IPv4Address:
    parts = domain.split(".")
    if parts[-1] == "":
        parts.pop()
    try:
        if len(parts) > 4:
            raise ValueError("more than four parts")
        *head, last = [_ipv4_number(part) for part in parts]
        if any(number > 255 for number in head) or last >= 256 ** (4 - len(head)):
            raise ValueError("part out of range")
    except ValueError as exc:
        raise ValueError(f"invalid IPv4 host {domain!r}: {exc}") from None
    return IPv4Address(last + sum(number << 8 * (3 - i) for i, number in enumerate(head)))


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_AUTHORITY = re.compile(r"[/\\]*([^/\\?#]*)(.*)", re.DOTALL)
_HOST_PORT = re.compile(r"(\[[^\]]*\]|[^:]*)(?::([0-9]*))?")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def _split_url(url: str, default_ports: dict[str, int]) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a URL, cut where browsers cut it.

    The host follows the last "@" (http://good.example@10.0.0.1/ goes to 10.0.0.1) and ends at
    "/", "\\", "?" or "#" (http://10.0.0.1\\@good.example/ goes to 10.0.0.1 as well).
    Raises ValueError for other schemes and for what browsers reject.
    """
    url = re.sub(r"[\t\n\r]", "", url.strip(_C0_AND_SPACE))
    scheme_match = _SCHEME.match(url)
    if scheme_match is None:
        raise ValueError("not an absolute URL")
    scheme = scheme_match[1].lower()
    if scheme not in default_ports:
        raise ValueError(f"scheme {scheme!r} is not allowed")
    authority_match = _AUTHORITY.fullmatch(url, scheme_match.end())
    assert authority_match is not None  # the pattern matches any string
    authority, path = authority_match.groups()
    host, port = _split_host_port(authority.rpartition("@")[2], default_ports[scheme])
    return scheme, host, port, path


def _split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    match = _HOST_PORT.fullmatch(text)
    if match is None or not match[1]:
        raise ValueError(f"invalid host and port {text!r}")
    if match[2]:
        port = int(match[2])
    elif default_port is None:
        raise ValueError(f"port missing in {text!r}")
    else:
        port = default_port
    if port > 65535:
        raise ValueError(f"port {port} out of range")
    return match[1], port


def check_url(url: str, policy: EgressPolicy) -> str | None:
    """Pre-flight for a reported URL: the reason not to open it, or None.

    Only http(s) may be reported (data:, blob: and the like exist only inside pages). The host is
    read as the browser reads it and IP literals are checked; names are left to the proxy, which
    resolves them at connect time.
    """
    try:
        _, host, port, _ = _split_url(url, {"http": 80, "https": 443})
        addr = parse_host(host)
    except ValueError as exc:
        return f"unusable URL: {exc}"
    if isinstance(addr, str):
        return policy.port_refusal(port)
    return policy.refusal(str(addr)) or policy.port_refusal(port)


@dataclass(frozen=True)
class EgressEvent:
    """One request the proxy handled; metadata only, never content."""

    at: float
    method: str
    target: str  # absolute URL, or host:port for CONNECT
    host: str  # as parse_host canonicalizes it
    port: int
    ip: str | None
    outcome: str  # "ok" | "blocked" | "dns" | "connect" | "timeout" | "bad_request"
    message: str


class _Refused(Exception):
    """A request the proxy answers itself instead of forwarding it."""

    def __init__(self, outcome: str, message: str, ip: str | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.ip = ip


_MAX_HEAD = 64 * 1024
_HEAD_END = b"\r\n\r\n"
_CHUNK = 64 * 1024
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ([\x21-\x7e]+) (HTTP/1\.[01])")
_HEADER_LINE = re.compile(rf"({_TOKEN}):[ \t]*([^\x00\r\n]*?)[ \t]*")
_FORWARD_SCHEMES = {"http": 80, "ws": 80}  # https and wss arrive as CONNECT
# Hop-by-hop request headers; the proxy writes Host and Connection itself.
_HOP_REQUEST = frozenset(
    {"host", "connection", "proxy-connection", "keep-alive", "proxy-authorization", "upgrade"}
)
# Dropped from upstream answers; x-hotline-egress too, so only the guard can say "refused".
_HOP_RESPONSE = frozenset({b"connection", b"proxy-connection", b"keep-alive", b"x-hotline-egress"})
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})")
_INTERIM = re.compile(rb"HTTP/1\.[01] 1(?!01)[0-9]{2}")  # 100 Continue, 103 Early Hints, ...
_ANSWERS = {
    "bad_request": "400 Bad Request",
    "blocked": "403 Forbidden",
    "dns": "502 Bad Gateway",
    "connect": "502 Bad Gateway",
    "timeout": "502 Bad Gateway",
}


@dataclass
class _Request:
    """A client's request head, filled in as far as parsing got (events show that much)."""

    method: str = ""
    target: str = ""
    version: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    host: str = ""
    address: IPAddress | str = ""  # parse_host's reading of host
    port: int = 0
    path: str = ""  # origin-form target for plain HTTP

    def parse(self, head: bytes) -> None:
        line, *fields = head.removesuffix(_HEAD_END).decode("latin-1").split("\r\n")
        request_line = _REQUEST_LINE.fullmatch(line)
        if request_line is None:
            raise _Refused("bad_request", "malformed request line")
        self.method, self.target, self.version = request_line.groups()
        for text in fields:
            header = _HEADER_LINE.fullmatch(text)
            if header is None:
                raise _Refused("bad_request", "malformed header line")
            self.headers.append((header[1], header[2]))
        try:
            if self.method == "CONNECT":
                self.host, self.port = _split_host_port(self.target, None)
            else:
                _, self.host, self.port, path = _split_url(self.target, _FORWARD_SCHEMES)
                self.path = "/" + path.partition("#")[0].removeprefix("/")
            self.address = parse_host(self.host)
        except ValueError as exc:
            raise _Refused("bad_request", f"unsupported request target: {exc}") from None
        self.host = str(self.address)

    def upstream_head(self) -> bytes:
        """The request in origin-form, for one exchange: Connection: close (or upgrade)."""
        tokens = {
            token.strip().lower()
            for name, value in self.headers
            if name.lower() == "connection"
            for token in value.split(",")
        }
        upgrade = "upgrade" in tokens and any(name.lower() == "upgrade" for name, _ in self.headers)
        host = f"[{self.host}]" if isinstance(self.address, IPv6Address) else self.host
        lines = [
            f"{self.method} {self.path} {self.version}",
            f"Host: {host}" if self.port == 80 else f"Host: {host}:{self.port}",
        ]
        lines += [
            f"{name}: {value}"
            for name, value in self.headers
            if name.lower() not in _HOP_REQUEST or (upgrade and name.lower() == "upgrade")
        ]
        lines.append("Connection: upgrade" if upgrade else "Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _system_resolver(name: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _socket_address(ip: str) -> str:
    """Connect to an IPv4-mapped address as plain IPv4 (works without a dual-stack socket)."""
    addr = ipaddress.ip_address(ip)
    mapped = addr.ipv4_mapped if isinstance(addr, IPv6Address) else None
    return str(addr if mapped is None else mapped)


class EgressProxy:
    """Local forward proxy: the one enforcement point for everything a scan fetches.

    Launch Chromium with --proxy-server=<url> and --proxy-bypass-list=<-loopback> (otherwise it
    connects to localhost directly) and give aiohttp proxy=<url>. Handles CONNECT (https, ws and
    wss) and absolute-form plain HTTP, one request per client connection. Refusals are answered
    with 403/502 and an X-Hotline-Egress header, and recorded in events.

    upstream is an optional "http://host:port" or "socks5://host:port" proxy to leave
    through (e.g. an anonymizing egress); the proxy then tunnels to the checked IP address
    through it (HTTP CONNECT or SOCKS5 CONNECT), never handing it a name to resolve.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: Resolver | None = None,
        upstream: str | None = None,
        head_timeout: float = 30.0,
        max_connections: int = 64,
    ) -> None:
        self.policy = policy
        self.url = ""
        self.events: list[EgressEvent] = []
        self._resolve = resolver or _system_resolver
        self._upstream: tuple[str, int] | None = None
        self._open_tunnel = _open_tunnel
        if upstream:
            scheme, host, port, _ = _split_url(upstream, {"http": 80, "socks5": 1080})
            self._upstream = str(parse_host(host)), port
            if scheme == "socks5":
                self._open_tunnel = _open_socks5
        self._head_timeout = head_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._closing = False

    async def __aenter__(self) -> EgressProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_MAX_HEAD)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._closing = True
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def refused(self) -> list[dict[str, str]]:
        """Blocked requests, as the scan result lists them."""
        return [
            {"url": event.target, "reason": event.message}
            for event in self.events
            if event.outcome == "blocked"
        ]

    def failure_for(self, host: str, port: int) -> EgressEvent | None:
        """Latest failed request to host:port: what Chromium only calls a tunnel failure."""
        key = _host_key(host)
        return next(
            (
                e
                for e in reversed(self.events)
                if e.host == key and e.port == port and e.outcome != "ok"
            ),
            None,
        )

    def server_ip(self, host: str, port: int) -> str | None:
        """Address of the latest connection to host:port (Chromium only sees the proxy's)."""
        key = _host_key(host)
        return next(
            (
                e.ip
                for e in reversed(self.events)
                if e.host == key and e.port == port and e.outcome == "ok"
            ),
            None,
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        try:
            if not self._closing:  # accepted just before __aexit__ cancelled the others
                async with self._slots:
                    await self._handle(reader, writer)
        except OSError:
            pass  # a peer went away; nothing left to tell anyone
        except asyncio.CancelledError:
            pass  # stopped by __aexit__; ending quietly (3.11 logs cancelled handlers as errors)
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = _Request()
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(_HEAD_END), self._head_timeout)
            except (TimeoutError, asyncio.IncompleteReadError):
                return  # an idle pre-connection, or an abandoned request: nobody to answer
            except asyncio.LimitOverrunError:
                raise _Refused("bad_request", f"request head over {_MAX_HEAD} bytes") from None
            request.parse(head)
            upstream_reader, upstream_writer, ip = await self._open(request)
        except _Refused as refusal:
            self._record(request, refusal.outcome, refusal.message, refusal.ip)
            body = f"{refusal.message}\n".encode()
            writer.write(
                f"HTTP/1.1 {_ANSWERS[refusal.outcome]}\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"X-Hotline-Egress: {refusal.outcome}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            return
        self._record(request, "ok", "connected", ip)
        tunnel = request.method == "CONNECT"
        if tunnel:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream_writer.write(request.upstream_head())
        # The client's bytes (tunnel traffic, request body) flow while the answer comes back.
        upload = asyncio.create_task(_pipe(reader, upstream_writer))
        try:
            if not tunnel:
                await _pass_response_head(upstream_reader, writer)
            await _pipe(upstream_reader, writer)
        finally:
            upload.cancel()
            await asyncio.wait([upload])
            upstream_writer.close()

    async def _open(
        self, request: _Request
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        """Check the target, then connect to the first allowed address that answers."""
        if reason := self.policy.port_refusal(request.port):
            raise _Refused("blocked", reason)
        if isinstance(request.address, str):
            ips = await self._resolve_checked(request.address)
        elif reason := self.policy.refusal(request.host):
            raise _Refused("blocked", reason, request.host)
        else:
            ips = [request.host]
        for ip in map(_socket_address, ips):
            try:
                reader, writer = await asyncio.wait_for(
                    self._dial(ip, request.port), self.policy.connect_timeout
                )
            except TimeoutError:
                outcome, detail = "timeout", "timed out"
            except OSError as exc:
                outcome, detail = "connect", exc.strerror or str(exc)
            else:
                return reader, writer, ip
        raise _Refused(outcome, f"connecting to {ip} port {request.port}: {detail}", ip)

    async def _resolve_checked(self, name: str) -> list[str]:
        """All addresses of name, refusing the name if any one of them is refused.

        A name that answers with a private address is hostile, whatever else it answers.
        """
        try:
            ips = await asyncio.wait_for(self._resolve(name), self.policy.connect_timeout)
        except TimeoutError:
            raise _Refused("timeout", f"resolving {name} timed out") from None
        except OSError as exc:
            # "Try again" (no answer, SERVFAIL) says nothing about the name; NXDOMAIN does.
            outcome = "timeout" if exc.errno == socket.EAI_AGAIN else "dns"
            raise _Refused(outcome, f"cannot resolve {name}: {exc.strerror or exc}") from None
        if not ips:
            raise _Refused("dns", f"{name} has no addresses")
        for ip in ips:
            if reason := self.policy.refusal(ip):
                raise _Refused("blocked", f"{name} resolves to {reason}", ip)
        return ips

    async def _dial(self, ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._upstream is None:
            # AI_NUMERICHOST: ip is connected to as it is, never looked up again.
            return await asyncio.open_connection(
                ip, port, flags=socket.AI_NUMERICHOST, limit=_MAX_HEAD
            )
        reader, writer = await asyncio.open_connection(*self._upstream, limit=_MAX_HEAD)
        try:
            await self._open_tunnel(reader, writer, ip, port)
        except BaseException:  # refused, broken off, or cancelled by the connect timeout
            writer.close()
            raise
        return reader, writer

    def _record(self, request: _Request, outcome: str, message: str, ip: str | None) -> None:
        self.events.append(
            EgressEvent(
                at=time.time(),
                method=request.method,
                target=request.target,
                host=request.host,
                port=request.port,
                ip=ip,
                outcome=outcome,
                message=message,
            )
        )


def _host_key(host: str) -> str:
    """host as events spell it, so "[::1]", "::1" and "0x7f.1" find their events."""
    try:
        return str(parse_host(host))
    except ValueError:
        return host.lower()


async def _open_tunnel(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str, port: int
) -> None:
    """Ask the upstream proxy for a tunnel to the checked address (never to a name)."""
    authority = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    try:
        head = await reader.readuntil(_HEAD_END)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        head = b""
    status = _STATUS_LINE.match(head)
    if status is None or status[1] != b"200":
        raise ConnectionRefusedError(f"upstream proxy refused a tunnel to {authority}")


async def _open_socks5(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str, port: int
) -> None:
    """The same through a SOCKS5 proxy (RFC 1928, no authentication), by address."""
    address = ipaddress.ip_address(ip)
    writer.write(b"\x05\x01\x00")
    try:
        if await reader.readexactly(2) != b"\x05\x00":
            raise ConnectionRefusedError("SOCKS5 upstream wants authentication we do not have")
        atyp = b"\x01" if address.version == 4 else b"\x04"
        writer.write(b"\x05\x01\x00" + atyp + address.packed + port.to_bytes(2, "big"))
        reply = await reader.readexactly(4)
        if reply[1] != 0:
            raise ConnectionRefusedError(f"SOCKS5 upstream refused {ip}:{port} (code {reply[1]})")
        await reader.readexactly({1: 4, 4: 16}.get(reply[3], 0) + 2)  # its bound address
    except asyncio.IncompleteReadError:
        raise ConnectionRefusedError("SOCKS5 upstream closed the connection") from None


async def _pass_response_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Relay the response head, saying Connection: close (one exchange per connection).

    Interim 1xx heads and 101 Switching Protocols pass unchanged; anything that is not an
    HTTP/1 head within 64 KiB is left for the raw pipe.
    """
    try:
        head = await reader.readuntil(_HEAD_END)
        while _INTERIM.match(head):
            writer.write(head)
            head = await reader.readuntil(_HEAD_END)
    except asyncio.IncompleteReadError as exc:
        writer.write(exc.partial)
        return
    except asyncio.LimitOverrunError:
        return
    status = _STATUS_LINE.match(head)
    if status is not None and status[1] != b"101":
        status_line, *fields = head.removesuffix(_HEAD_END).split(b"\r\n")
        fields = [f for f in fields if f.partition(b":")[0].strip().lower() not in _HOP_RESPONSE]
        head = b"\r\n".join([status_line, *fields, b"Connection: close"]) + _HEAD_END
    writer.write(head)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF and pass the EOF on; a broken connection just ends the copy."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass
