"""Egress control: address policy, browser-style host parsing, and the proxy end to end.

Every server here is started by the test on loopback. 127.0.0.1 plays the public Internet
(allowed through allow_networks); 127.0.0.2 plays the hotline's internal network, where a
listener counts every connection it gets: that count must stay 0. Names resolve through a fake
resolver, never through real DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from scanner.egress import EgressPolicy, EgressProxy, Resolver, check_url, parse_host

pytestmark = pytest.mark.timeout(30)

GOOD = "127.0.0.1"
FORBIDDEN = "127.0.0.2"
TEREDO_PRIVATE = "2001:0:4136:e378:8000:63bf:f5ff:fffe"  # client 10.0.0.1, server 65.54.227.120
TEREDO_PUBLIC = "2001:0:4136:e378:8000:63bf:f7f7:f7f7"  # client 8.8.8.8


def test_embedded_address_layouts() -> None:
    # The tables below rely on these layouts; ipaddress decodes them independently.
    assert IPv6Address(TEREDO_PRIVATE).teredo == (
        IPv4Address("65.54.227.120"),
        IPv4Address("10.0.0.1"),
    )
    assert IPv6Address(TEREDO_PUBLIC).teredo[1] == IPv4Address("8.8.8.8")
    assert IPv6Address("2002:a00:1::").sixtofour == IPv4Address("10.0.0.1")
    assert IPv6Address("2002:7f00:1::").sixtofour == IPv4Address("127.0.0.1")
    assert IPv6Address("::ffff:127.0.0.1").ipv4_mapped == IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("127.0.0.1", "loopback address 127.0.0.1"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.1", "private address 10.0.0.1"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local address 169.254.169.254"),
        ("100.64.0.1", "CGNAT"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "this-network"),
        ("255.255.255.255", "broadcast"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("192.0.0.8", "IETF protocol assignment"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("::1", "loopback address ::1"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "IPv4-mapped form of loopback address 127.0.0.1"),
        ("::ffff:10.0.0.1", "IPv4-mapped form of private address 10.0.0.1"),
        ("::ffff:169.254.169.254", "IPv4-mapped form of link-local"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("::8.8.8.8", "IPv4-compatible"),  # deprecated form: refused whatever it embeds
        ("2002:7f00:1::", "6to4 form of loopback address 127.0.0.1"),
        ("2002:a00:1::", "6to4 form of private address 10.0.0.1"),
        (TEREDO_PRIVATE, "Teredo form of private address 10.0.0.1"),
        ("64:ff9b::a00:1", "NAT64 form of private address 10.0.0.1"),
        ("64:ff9b::7f00:1", "NAT64 form of loopback"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("fe80::1", "link-local address fe80::1"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("2001:2::1", "benchmarking"),
        ("100::1", "discard-only"),
        ("4000::1", "reserved"),
        ("not-an-ip", "not an IP address"),
    ],
)
def test_refused_addresses(ip: str, reason: str) -> None:
    refusal = EgressPolicy().refusal(ip)
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "100.63.255.255",  # just below CGNAT
        "100.128.0.0",  # just above CGNAT
        "172.32.0.1",  # just above 172.16/12
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "2002:808:808::1",
        "64:ff9b::808:808",
        TEREDO_PUBLIC,
    ],
)
def test_public_addresses_allowed(ip: str) -> None:
    assert EgressPolicy().refusal(ip) is None


def test_allow_networks_is_exact() -> None:
    policy = EgressPolicy.from_strings(["127.0.0.1/32", " ", "fd00:1::/64"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None  # the same IPv4 address on the wire
    assert policy.refusal("127.0.0.2") == "loopback address 127.0.0.2"
    assert policy.refusal("fd00:1::5") is None
    assert "unique-local" in (policy.refusal("fd00:2::5") or "")
    assert "6to4 form" in (policy.refusal("2002:7f00:1::") or "")


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "10.0.0.0/33", "localhost", "1.2.3"])
def test_from_strings_rejects_bad_cidr(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid CIDR"):
        EgressPolicy.from_strings(["127.0.0.1/32", bad])


def test_allowed_ports() -> None:
    policy = EgressPolicy(allowed_ports=frozenset({80, 443}))
    assert policy.port_refusal(443) is None
    assert policy.port_refusal(25) == "port 25 is not allowed"
    assert EgressPolicy().port_refusal(0) == "invalid port 0"
    assert check_url("http://example.test:25/", policy) == "port 25 is not allowed"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", IPv4Address("127.0.0.1")),
        ("0x7f.1", IPv4Address("127.0.0.1")),
        ("0X7F.0X1", IPv4Address("127.0.0.1")),
        ("0177.0.0.1", IPv4Address("127.0.0.1")),
        ("127.1", IPv4Address("127.0.0.1")),
        ("127.0.1", IPv4Address("127.0.0.1")),
        ("0x7f000001", IPv4Address("127.0.0.1")),
        ("127.0.0.1.", IPv4Address("127.0.0.1")),
        ("0x", IPv4Address("0.0.0.0")),
        ("4294967295", IPv4Address("255.255.255.255")),
        ("%31%32%37.0.0.1", IPv4Address("127.0.0.1")),
        ("１２７．０．０．１", IPv4Address("127.0.0.1")),  # fullwidth digits and dots
        ("127。0。0。1", IPv4Address("127.0.0.1")),  # ideographic full stops
        ("[::ffff:7f00:1]", IPv6Address("::ffff:7f00:1")),
        ("[::FFFF:127.0.0.1]", IPv6Address("::ffff:7f00:1")),
        ("::1", IPv6Address("::1")),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com."),
        ("bücher.example", "xn--bcher-kva.example"),
        ("1.2.3.4x", "1.2.3.4x"),
        ("0x7g.1.example", "0x7g.1.example"),
    ],
)
def test_parse_host(host: str, expected: object) -> None:
    assert parse_host(host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "256.256.256.256",
        "1.2.3.4.5",
        "4294967296",
        "1.16777216",
        "09.1",
        "foo.0x",
        "foo.09",
        "1..2",
        "",
        "a b",
        "a/b",
        "a%zz",
        "[::1",
        "[fe80::1%25eth0]",
        "[1.2.3.4]",
    ],
)
def test_parse_host_rejects(host: str) -> None:
    with pytest.raises(ValueError):
        parse_host(host)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.test/", None),
        ("https://example.test:8443/path?q=1", None),
        ("HTTPS://Example.TEST/", None),
        ("http://8.8.8.8/", None),
        ("http://good.example#@127.0.0.1/", None),  # the "@" is in the fragment
        ("http://127.0.0.1/", "loopback address 127.0.0.1"),
        ("HTTP://127.0.0.1/", "loopback"),
        ("http://2130706433/", "loopback address 127.0.0.1"),
        ("http://0x7f.1/", "loopback"),
        ("http://0177.0.0.1:8080/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://10.0.0.1./", "private address 10.0.0.1"),
        ("http://[::1]/", "loopback address ::1"),
        ("https://[::ffff:a9fe:a9fe]/", "IPv4-mapped form of link-local address 169.254.169.254"),
        ("http://good.example@127.0.0.1/", "loopback"),
        ("http://user:pw@good.example:80@10.1.2.3:8080/x", "private address 10.1.2.3"),
        ("http://127.0.0.1\\@good.example/", "loopback"),
        ("http:\\\\169.254.169.254/latest/meta-data/", "link-local"),
        ("http:2130706433/", "loopback"),
        (" \thttp://0x7f.1/ ", "loopback"),
        ("ht\ttp://10.0.0.1/", "private"),
        ("http://%31%30.0.0.1/", "private address 10.0.0.1"),
        ("http://256.1.1.1/", "unusable URL"),
        ("http://example.test:99999/", "unusable URL"),
        ("http://example.test:0/", "invalid port 0"),
        ("http:///", "unusable URL"),
        ("example.test/page", "unusable URL: not an absolute URL"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
        ("ftp://example.test/", "scheme 'ftp' is not allowed"),
        ("data:text/html,<h1>x</h1>", "scheme 'data' is not allowed"),
        ("blob:http://example.test/uuid", "scheme 'blob' is not allowed"),
        ("ws://example.test/", "scheme 'ws' is not allowed"),
    ],
)
def test_check_url(url: str, reason: str | None) -> None:
    result = check_url(url, EgressPolicy())
    if reason is None:
        assert result is None
    else:
        assert result is not None
        assert reason in result


# ---------------------------------------------------------------- end to end through the proxy


def fake_resolver(table: dict[str, list[str]]) -> Resolver:
    async def resolve(name: str) -> list[str]:
        if name == "servfail.test":  # the name server did not answer
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if name not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[name]

    return resolve


RESOLVER = fake_resolver(
    {
        "good.test": [GOOD],
        "evil.test": [FORBIDDEN],
        "mixed.test": [GOOD, FORBIDDEN],
        "mapped.test": ["::ffff:127.0.0.2"],
        "meta.test": ["169.254.169.254"],
    }
)


def good_app() -> web.Application:
    async def index(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def digest(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"{len(body)} {hashlib.sha256(body).hexdigest()}")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(5):
            await response.write(f"part{i};".encode())
        await response.write_eof()
        return response

    async def echo_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data.upper())
        return ws

    async def forged(_request: web.Request) -> web.Response:
        return web.Response(text="pretends", headers={"X-Hotline-Egress": "blocked"})

    app = web.Application()
    app.router.add_get("/forged", forged)
    app.router.add_get("/", index)
    app.router.add_get("/redirect", redirect)
    app.router.add_post("/digest", digest)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/ws", echo_ws)
    return app


@dataclass
class Scene:
    proxy: EgressProxy
    session: aiohttp.ClientSession
    good: int  # port of the allowed web server on 127.0.0.1
    forbidden: int  # port of the counting listener on 127.0.0.2
    hits: list[None]  # one entry per connection the forbidden listener accepted

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw client connection to the proxy."""
        return await asyncio.open_connection(GOOD, int(self.proxy.url.rsplit(":")[-1]))

    async def raw(self, data: bytes) -> bytes:
        """Send bytes to the proxy and read its whole answer."""
        reader, writer = await self.connect()
        writer.write(data)
        try:
            return await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def scene(
    *,
    connect_timeout: float = 2.0,
    allowed_ports: frozenset[int] | None = None,
    upstream: str | None = None,
    head_timeout: float = 30.0,
    resolver: Resolver = RESOLVER,
) -> AsyncIterator[Scene]:
    hits: list[None] = []

    def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(None)
        writer.close()

    forbidden = await asyncio.start_server(count, FORBIDDEN, 0)
    runner = web.AppRunner(good_app())
    await runner.setup()
    site = web.TCPSite(runner, GOOD, 0)
    await site.start()
    policy = EgressPolicy.from_strings(
        [f"{GOOD}/32"], connect_timeout=connect_timeout, allowed_ports=allowed_ports
    )
    try:
        async with (
            EgressProxy(
                policy, resolver=resolver, upstream=upstream, head_timeout=head_timeout
            ) as proxy,
            aiohttp.ClientSession() as session,
        ):
            yield Scene(
                proxy=proxy,
                session=session,
                good=runner.addresses[0][1],
                forbidden=forbidden.sockets[0].getsockname()[1],
                hits=hits,
            )
    finally:
        await runner.cleanup()
        forbidden.close()
        await forbidden.wait_closed()


def test_tricks_never_reach_the_forbidden_network() -> None:
    async def main() -> None:
        async with scene() as s:
            port = s.forbidden
            targets = [
                f"http://{FORBIDDEN}:{port}/",
                f"http://2130706434:{port}/",
                f"http://0x7f000002:{port}/",
                f"http://0x7f.0.0.2:{port}/",
                f"http://0177.0.0.2:{port}/",
                f"http://127.2:{port}/",
                f"http://[::ffff:127.0.0.2]:{port}/",
                f"http://good.example@{FORBIDDEN}:{port}/",
                f"http://evil.test:{port}/",  # resolves to 127.0.0.2
                f"http://mixed.test:{port}/",  # 127.0.0.1 and 127.0.0.2: hostile as a whole
                f"http://mapped.test:{port}/",  # resolves to ::ffff:127.0.0.2
            ]
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await s.session.ws_connect(f"ws://evil.test:{port}/socket", proxy=s.proxy.url)
            assert handshake.value.status == 403
            for target in targets:
                # Directly, and as a redirect from an allowed page.
                async with s.session.get(target, proxy=s.proxy.url) as response:
                    assert response.status == 403, target
                    assert response.headers["X-Hotline-Egress"] == "blocked"
                redirect = f"http://{GOOD}:{s.good}/redirect"
                async with s.session.get(
                    redirect, params={"to": target}, proxy=s.proxy.url
                ) as response:
                    assert [r.status for r in response.history] == [302], target
                    assert response.status == 403, target

            for authority in [
                f"{FORBIDDEN}:{port}",
                f"2130706434:{port}",
                f"0x7f.2:{port}",
                f"[::ffff:7f00:2]:{port}",
                f"evil.test:{port}",
                f"mixed.test:{port}",
                f"[::1]:{port}",
                f"meta.test:{port}",
            ]:
                answer = await s.raw(f"CONNECT {authority} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), authority
                assert b"X-Hotline-Egress: blocked\r\n" in answer

            with pytest.raises(aiohttp.ClientHttpProxyError) as excinfo:
                await s.session.get(f"https://{FORBIDDEN}:{port}/", proxy=s.proxy.url)
            assert excinfo.value.status == 403

            assert s.hits == []
            # The counter works: a direct connection is counted (and closed by the listener).
            reader, writer = await asyncio.open_connection(FORBIDDEN, port)
            assert await reader.read() == b""
            writer.close()
            assert s.hits == [None]

            events = s.proxy.events
            assert events
            assert {e.outcome for e in events} == {"ok", "blocked"}
            assert all(e.ip in (GOOD, None) for e in events if e.outcome == "ok")
            assert all(e.port == s.good for e in events if e.outcome == "ok")
            refused = s.proxy.refused()
            assert len(refused) == 2 * len(targets) + 1 + 8 + 1
            assert all(
                "127.0.0.2" in r["reason"]
                or "::1" in r["reason"]
                or "169.254.169.254" in r["reason"]
                for r in refused
            )
            assert {
                "url": f"http://evil.test:{port}/",
                "reason": "evil.test resolves to loopback address 127.0.0.2",
            } in refused
            mixed = s.proxy.failure_for("mixed.test", port)
            assert mixed is not None
            assert (mixed.outcome, mixed.ip) == ("blocked", FORBIDDEN)
            decimal = s.proxy.failure_for("2130706434", port)
            assert decimal is not None
            assert decimal.host == FORBIDDEN
            assert s.proxy.failure_for("[::ffff:127.0.0.2]", port) is not None

    asyncio.run(main())


def test_every_connection_is_checked_at_its_own_resolution() -> None:
    answers = iter([[GOOD], [FORBIDDEN]])

    async def rebinding(name: str) -> list[str]:
        return next(answers)

    async def main() -> None:
        async with scene(resolver=rebinding) as s:
            url = f"http://rebind.test:{s.good}/"
            async with s.session.get(url, proxy=s.proxy.url) as response:
                assert await response.text() == "hello"
            async with s.session.get(url, proxy=s.proxy.url) as response:
                assert response.status == 403
            assert [(e.outcome, e.ip) for e in s.proxy.events] == [
                ("ok", GOOD),
                ("blocked", FORBIDDEN),
            ]
            assert s.proxy.server_ip("rebind.test", s.good) == GOOD

    asyncio.run(main())


def test_allowed_traffic_passes_through() -> None:
    async def main() -> None:
        async with scene() as s:
            base = f"http://{GOOD}:{s.good}"
            async with s.session.get(base + "/", proxy=s.proxy.url) as response:
                assert response.status == 200
                assert await response.text() == "hello"
                assert response.headers["Connection"] == "close"
            async with s.session.get(f"http://good.test:{s.good}/", proxy=s.proxy.url) as response:
                assert await response.text() == "hello"
            assert s.proxy.server_ip("good.test", s.good) == GOOD
            assert s.proxy.server_ip("GOOD.test.", s.good) is None  # another name
            assert s.proxy.server_ip("0x7f.1", s.good) == GOOD
            assert s.proxy.failure_for("good.test", s.good) is None

            body = bytes(range(256)) * 1024
            expected = f"{len(body)} {hashlib.sha256(body).hexdigest()}"
            async with s.session.post(base + "/digest", data=body, proxy=s.proxy.url) as response:
                assert await response.text() == expected

            async def chunks() -> AsyncIterator[bytes]:
                for i in range(0, len(body), 10_000):
                    yield body[i : i + 10_000]

            async with s.session.post(
                base + "/digest", data=chunks(), proxy=s.proxy.url
            ) as response:
                assert await response.text() == expected

            async with s.session.get(base + "/chunked", proxy=s.proxy.url) as response:
                assert response.headers["Transfer-Encoding"] == "chunked"
                assert await response.text() == "part0;part1;part2;part3;part4;"

            async with s.session.get(base + "/missing") as direct:
                direct_body = await direct.read()
            async with s.session.get(base + "/missing", proxy=s.proxy.url) as response:
                assert response.status == 404
                assert "X-Hotline-Egress" not in response.headers
                assert await response.read() == direct_body

            # Only the guard may say it refused: a site cannot forge the header.
            async with s.session.get(base + "/forged", proxy=s.proxy.url) as response:
                assert "X-Hotline-Egress" not in response.headers

            async with s.session.ws_connect(f"ws://{GOOD}:{s.good}/ws", proxy=s.proxy.url) as ws:
                for word in ("one", "two"):
                    await ws.send_str(word)
                    assert (await ws.receive_str()) == word.upper()

            reader, writer = await s.connect()
            writer.write(f"CONNECT good.test:{s.good} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert (
                await reader.readuntil(b"\r\n\r\n")
                == b"HTTP/1.1 200 Connection established\r\n\r\n"
            )
            writer.write(b"GET / HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert answer.endswith(b"hello")

            assert all(e.outcome == "ok" and e.ip == GOOD for e in s.proxy.events)
            assert s.proxy.events[-1].method == "CONNECT"
            assert s.proxy.events[-1].target == f"good.test:{s.good}"
            assert s.proxy.refused() == []

    asyncio.run(main())


def test_network_failures_are_502_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port on 127.0.0.1 that nobody listens on
        probe.bind((GOOD, 0))
        closed_port = probe.getsockname()[1]
    stalled_port = 9
    real_open_connection = asyncio.open_connection

    async def open_connection(
        host: str, port: int, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if port == stalled_port:  # a connect that never completes
            await asyncio.sleep(3600)
        return await real_open_connection(host, port, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", open_connection)

    async def main() -> None:
        async with scene(connect_timeout=0.2) as s:
            cases = [
                ("nxdomain.test", 8080, "dns", "cannot resolve nxdomain.test"),
                ("servfail.test", 8080, "timeout", "Temporary failure in name resolution"),
                (GOOD, closed_port, "connect", f"connecting to {GOOD} port {closed_port}"),
                (GOOD, stalled_port, "timeout", "timed out"),
            ]
            for host, port, outcome, message in cases:
                url = f"http://{host}:{port}/"
                async with s.session.get(url, proxy=s.proxy.url) as response:
                    assert response.status == 502
                    assert response.headers["X-Hotline-Egress"] == outcome
                    assert message in await response.text()
                event = s.proxy.failure_for(host, port)
                assert event is not None
                assert (event.outcome, event.target, event.method) == (outcome, url, "GET")
                assert message in event.message
            assert s.proxy.refused() == []
            assert s.hits == []

    asyncio.run(main())


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # origin-form: not a proxy request
        b"GET https://127.0.0.1/ HTTP/1.1\r\n\r\n",  # https must use CONNECT
        b"GET ftp://127.0.0.1/ HTTP/1.1\r\n\r\n",
        b"CONNECT 127.0.0.1:https HTTP/1.1\r\n\r\n",
        b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
        b"CONNECT 256.1.1.1:80 HTTP/1.1\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/2.0\r\n\r\n",
        b"GET  http://127.0.0.1/ HTTP/1.1\r\n\r\n",
        b"hello\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/1.1\r\nX: a\nb\r\n\r\n",  # bare LF inside a header
        b"GET http://127.0.0.1/ HTTP/1.1\r\n folded\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
)
def test_bad_requests_get_400(head: bytes) -> None:
    async def main() -> None:
        async with scene() as s:
            answer = await s.raw(head)
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert b"X-Hotline-Egress: bad_request\r\n" in answer
            [event] = s.proxy.events
            assert event.outcome == "bad_request"
            assert event.ip is None

    asyncio.run(main())


def test_idle_connection_is_closed_unrecorded() -> None:
    async def main() -> None:
        async with scene(head_timeout=0.2) as s:
            assert await s.raw(b"GET http://127.0.0.1/ HTTP/1.1\r\n") == b""
            assert s.proxy.events == []

    asyncio.run(main())


def test_exit_closes_open_tunnels() -> None:
    async def main() -> None:
        async with scene() as s:
            reader, writer = await s.connect()
            writer.write(f"CONNECT {GOOD}:{s.good} HTTP/1.1\r\n\r\n".encode())
            await reader.readuntil(b"\r\n\r\n")
            await s.proxy.__aexit__(None, None, None)
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()

    asyncio.run(main())


def test_port_policy_is_enforced() -> None:
    async def main() -> None:
        async with scene(allowed_ports=frozenset({443})) as s:
            async with s.session.get(f"http://{GOOD}:{s.good}/", proxy=s.proxy.url) as response:
                assert response.status == 403
            [event] = s.proxy.events
            assert (event.outcome, event.message) == ("blocked", f"port {s.good} is not allowed")

    asyncio.run(main())


async def _copy_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    target_reader: asyncio.StreamReader,
    target_writer: asyncio.StreamWriter,
) -> None:
    async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            dst.write(data)
        dst.close()

    await asyncio.gather(copy(reader, target_writer), copy(target_reader, writer))


async def _http_upstream(
    connects: list[str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    line = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[0].decode()
    connects.append(line)
    host, port = line.split()[1].rsplit(":", 1)
    target = await asyncio.open_connection(host, int(port))
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await _copy_both(reader, writer, *target)


async def _socks5_upstream(
    connects: list[str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    assert await reader.readexactly(3) == b"\x05\x01\x00"
    writer.write(b"\x05\x00")
    ver, cmd, _, atyp = await reader.readexactly(4)
    assert (ver, cmd, atyp) == (5, 1, 1), "only CONNECT by IPv4 address is expected"
    host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    port = int.from_bytes(await reader.readexactly(2), "big")
    connects.append(f"CONNECT {host}:{port}")
    target = await asyncio.open_connection(host, port)
    writer.write(b"\x05\x00\x00\x01" + bytes(4) + bytes(2))
    await _copy_both(reader, writer, *target)


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_upstream_proxy_gets_only_checked_addresses(kind: str) -> None:
    connects: list[str] = []
    serve = {"http": _http_upstream, "socks5": _socks5_upstream}[kind]

    async def main() -> None:
        server = await asyncio.start_server(functools.partial(serve, connects), GOOD, 0)
        upstream = f"{kind}://{GOOD}:{server.sockets[0].getsockname()[1]}"
        try:
            async with scene(upstream=upstream) as s:
                url = f"http://good.test:{s.good}/"
                async with s.session.get(url, proxy=s.proxy.url) as response:
                    assert await response.text() == "hello"
                async with s.session.get(
                    f"http://evil.test:{s.forbidden}/", proxy=s.proxy.url
                ) as response:
                    assert response.status == 403
                assert [c.removesuffix(" HTTP/1.1") for c in connects] == [
                    f"CONNECT {GOOD}:{s.good}"
                ]
                assert s.proxy.server_ip("good.test", s.good) == GOOD
                assert s.hits == []
        finally:
            server.close()

    asyncio.run(main())
