"""The egress guard holds in a real browser: a hostile page tries every way it has to
reach a forbidden loopback address, and a listener there counts zero connections."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from hotline import intake
from hotline.config import Settings
from matcher import Index

from .conftest import Site, encode, photo

pytestmark = pytest.mark.browser

FORBIDDEN = "127.0.0.2"


class Listener:
    """TCP and UDP on the forbidden address, counting whatever arrives."""

    def __init__(self) -> None:
        self.tcp = socket.socket()
        self.tcp.bind((FORBIDDEN, 0))
        self.tcp.listen(64)
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((FORBIDDEN, self.port))
        self.hits = 0
        for sock in (self.tcp, self.udp):
            threading.Thread(target=self._count, args=(sock,), daemon=True).start()

    def _count(self, sock: socket.socket) -> None:
        while True:
            try:
                if sock.type == socket.SOCK_STREAM:
                    conn, _ = sock.accept()
                    conn.close()
                else:
                    sock.recvfrom(2048)
            except OSError:
                return
            self.hits += 1

    def close(self) -> None:
        self.tcp.close()
        self.udp.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def _hostile_page(site: Site, port: int) -> None:
    bad = f"{FORBIDDEN}:{port}"
    forms = [
        bad,
        f"2130706434:{port}",
        f"0x7f.0.0.2:{port}",
        f"0177.0.0.2:{port}",
        f"127.2:{port}",
        f"[::ffff:127.0.0.2]:{port}",
        f"evil.test:{port}",
        f"user@{bad}",
        f"{FORBIDDEN}.:{port}",
    ]
    imgs = "".join(f'<img src="http://{f}/i{n}.png">' for n, f in enumerate(forms))

    async def to_forbidden(request: web.Request) -> web.Response:
        raise web.HTTPFound(location=f"http://{bad}/redirected.png")

    site.routes.update(
        {
            "/ok.jpg": ("image/jpeg", encode(photo("coffee").resize((200, 130)))),
            "/hop.png": to_forbidden,
            "/refresh": (
                "text/html",
                f'<meta http-equiv="refresh" content="0;url=http://{bad}/">'.encode(),
            ),
            "/": (
                "text/html",
                f"""<!doctype html>
<img src="/ok.jpg">{imgs}<img src="/hop.png">
<iframe src="http://{bad}/frame"></iframe><iframe src="/refresh"></iframe>
<link rel="stylesheet" href="http://{bad}/s.css">
<div style="background-image:url(http://{bad}/bg.png);width:9px;height:9px"></div>
<video poster="http://{bad}/poster.jpg"></video>
<script>
  fetch("http://{bad}/fetch").catch(() => {{}});
  fetch("https://{bad}/tls").catch(() => {{}});
  try {{ new WebSocket("ws://{bad}/ws"); }} catch (e) {{}}
  try {{ new EventSource("http://{bad}/events"); }} catch (e) {{}}
  navigator.sendBeacon("http://{bad}/beacon", "x");
  const x = new XMLHttpRequest(); x.open("GET", "http://{bad}/xhr"); x.send();
  try {{ new Worker(URL.createObjectURL(new Blob(
    ['fetch("http://{bad}/worker").catch(() => {{}})'], {{type: "text/javascript"}}))); }}
  catch (e) {{}}
  try {{ navigator.serviceWorker.register("/sw.js"); }} catch (e) {{}}
  try {{
    const pc = new RTCPeerConnection({{iceServers: [{{urls: "stun:{bad}"}}]}});
    pc.createDataChannel("d");
    pc.createOffer().then((o) => pc.setLocalDescription(o));
  }} catch (e) {{}}
  setTimeout(() => {{ const i = new Image(); i.src = "http://{bad}/late.png"; }}, 200);
</script>""".encode(),
            ),
        }
    )


def test_hostile_page_reaches_nothing_forbidden(site: Site, listener: Listener, hotline_env):
    _hostile_page(site, listener.port)

    async def resolver(name: str) -> list[str]:
        return [FORBIDDEN] if name == "evil.test" else ["127.0.0.1"]

    settings = Settings.from_env()
    doc = asyncio.run(intake.scan(site.url("/"), settings, Index.build([]), resolver=resolver))
    assert doc["status"] == "completed", doc["error"]
    assert [i["url"] for i in doc["images"]] == [site.url("/ok.jpg")]
    assert listener.hits == 0
    refused = {b["url"].split("/", 3)[-1] for b in doc["blocked"] if "/" in b["url"]}
    expected = {f"i{n}.png" for n in (0, 1, 2, 3, 4, 5, 6, 8)} | {
        "redirected.png",
        "frame",
        "",
        "s.css",
        "bg.png",
        "poster.jpg",
        "fetch",
        "events",
        "beacon",
        "xhr",
        "worker",
        "late.png",
    }
    assert expected <= refused, expected - refused
    # CONNECT tunnels refused: https:// fetch and the WebSocket.
    assert sum(b["url"] == f"{FORBIDDEN}:{listener.port}" for b in doc["blocked"]) == 2
    # The listener does count what reaches it: the zero above is not a dead counter.
    socket.create_connection((FORBIDDEN, listener.port), timeout=2).close()
    deadline = asyncio.run(_wait_for(lambda: listener.hits == 1))
    assert deadline


async def _wait_for(cond, timeout: float = 2.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()
