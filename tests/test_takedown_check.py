"""One check, one verdict: each way a referred URL can answer, against the simulator on
loopback. Most verdicts come from the HTTP stage; three need the browser."""

from __future__ import annotations

import asyncio
import socket

import pytest

from hotline.config import Settings
from monitor import Evidence, check
from monitor.check import MAX_IMAGE_URLS

from .helpers import Site
from .takedown_sim import KNOWN, Simulator


@pytest.fixture
def sim(site: Site, hotline_env, monkeypatch) -> Simulator:
    monkeypatch.setenv("HOTLINE_PAGE_TIMEOUT", "1.5s")
    return Simulator(site)


def evidence_of(sim: Simulator, name: str) -> Evidence:
    from matcher import hash_image

    h = hash_image(KNOWN)
    return Evidence(
        hashes=(("md5", h.md5), ("phash", h.phash), ("pdq", h.pdq)),
        image_urls=(sim.image_url(name),),
    )


def run(url: str, evidence: Evidence, **kw) -> tuple[str, dict]:
    return asyncio.run(check(url, evidence, Settings.from_env(), **kw))


@pytest.mark.parametrize(
    ("page", "image", "verdict"),
    [
        ("404", "404", "gone_http"),
        ("410", "404", "gone_http"),
        ("451", "404", "legal_451"),
        ("401", "404", "denied"),
        ("403", "404", "denied"),
        ("429", "404", "transient"),
        ("503", "404", "transient"),
        ("500", "404", "transient"),
        ("slow", "404", "transient"),
        ("reset", "404", "transient"),
        # The page is gone but its image URL still serves the referred image.
        ("404", "live", "live"),
        # ... or serves another picture now, or cannot be read.
        ("404", "other", "gone_http"),
        ("404", "503", "transient"),
    ],
)
def test_http_stage_verdicts(sim: Simulator, page: str, image: str, verdict: str) -> None:
    sim.add("s", page=page, image=image)
    got, detail = run(sim.page_url("s"), evidence_of(sim, "s"))
    assert got == verdict, detail
    assert detail["stage"] == "http"  # no browser for any of these
    assert detail["user_agent"] == Settings.from_env().identity.user_agent
    # The page shows nothing referred, so the referred image URL is fetched as well.
    assert [t["role"] for t in detail["targets"]] == ["page", "image"]


def test_direct_image_urls(sim: Simulator) -> None:
    sim.add("d", image="live")
    evidence = evidence_of(sim, "d")
    verdict, detail = run(sim.image_url("d"), evidence)
    assert verdict == "live" and detail["targets"][0]["found"][0]["signal_type"] == "md5"
    sim.image["d"] = "other"  # the same URL now serves another picture
    assert run(sim.image_url("d"), evidence)[0] == "content_gone"
    sim.image["d"] = "flap"
    assert {run(sim.image_url("d"), evidence)[0] for _ in range(2)} == {"transient", "live"}


def test_network_verdicts(sim: Simulator) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    empty = Evidence((), ())
    same_host = Evidence((("md5", "0" * 32),), (f"http://127.0.0.1:{closed}/img.jpg",))
    verdict, detail = run(f"http://127.0.0.1:{closed}/page", same_host)
    assert verdict == "gone_connect" and len(detail["targets"]) == 1  # not asked twice
    assert run("http://10.0.0.1/page", empty)[0] == "blocked"

    async def nxdomain(name: str) -> list[str]:
        raise OSError(f"{name}: Name or service not known")

    assert run("http://gone.invalid/page", empty, resolver=nxdomain)[0] == "gone_dns"

    async def servfail(name: str) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    # A name server that does not answer says nothing about the name.
    assert run("http://flaky.example/page", empty, resolver=servfail)[0] == "transient"


def test_no_evidence_means_an_answering_page_is_live(sim: Simulator) -> None:
    sim.add("n", page="placeholder")
    verdict, detail = run(sim.page_url("n"), Evidence((), ()))
    assert verdict == "live" and detail["stage"] == "http"


def test_image_urls_checked_per_check_are_bounded(sim: Simulator) -> None:
    sim.add("b", page="404", image="404")
    many = Evidence((("md5", "0" * 32),), tuple(f"{sim.image_url('b')}?{i}" for i in range(30)))
    _, detail = run(sim.page_url("b"), many)
    assert len(detail["targets"]) == 1 + MAX_IMAGE_URLS


@pytest.mark.browser
def test_browser_verdicts(sim: Simulator) -> None:
    """Pages that answer 2xx are judged by what the browser shows."""
    sim.add("live")
    sim.add("placeholder", page="placeholder", image="404")
    sim.add("swapped", image="other")
    sim.add("cloak", page="cloak", image="cloak")
    # A bot wall hides the page: not a removal, whatever it shows.
    sim.add("challenge", page="challenge", image="404")
    sim.add("captcha", page="captcha", image="404")
    expected = {
        "live": "live",
        "placeholder": "content_gone",
        "swapped": "content_gone",
        "challenge": "denied",
        "captcha": "denied",
    }
    for name, verdict in expected.items():
        got, detail = run(sim.page_url(name), evidence_of(sim, name))
        assert got == verdict, (name, detail)
        assert detail["stage"] == "browser"
    # A site that answers scripts 404 but browsers the page: the HTTP stage alone would
    # say gone; a check that would confirm the removal asks the browser, which sees it.
    evidence = evidence_of(sim, "cloak")
    assert run(sim.page_url("cloak"), evidence)[0] == "gone_http"
    verdict, detail = run(sim.page_url("cloak"), evidence, confirming=True)
    assert verdict == "live" and detail["stage"] == "browser" and detail["confirming"]
