"""Takedown verification end to end, in seconds: the real scheduler and worker processes
re-check eleven simulated referrals whose pages change behaviour over time, until each
reaches the right state with no false removal; webhooks arrive signed, after a retry;
``hotline report --json`` and ``hotline stats takedown`` show the outcome."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from aiohttp import web

import monitor
from hotline.config import Settings
from store import Store

from .helpers import ROOT, Site, run_hotline
from .takedown_sim import Simulator, scanned_report

pytestmark = pytest.mark.browser

SECRET = "test-webhook-secret"
OVERDUE_S = 8
# name: (page, image, referred URL is the image itself, final state)
SCENARIOS = {
    "gone_404": ("404", "404", False, "removed"),
    "gone_410": ("410", "404", False, "removed"),
    "port_closed": ("live", "live", False, "removed"),
    "placeholder": ("placeholder", "404", False, "removed"),
    "image_swapped": ("live", "other", False, "removed"),
    "image_url_outlives_page": ("404", "live", False, "removed"),
    "removed_then_back": ("404", "404", False, "reappeared"),
    "flapping_503": ("404", "flap", True, "overdue"),
    "429_then_live": ("404", "429", True, "overdue"),
    "slow_then_live": ("404", "slow", True, "overdue"),
    "never_removed": ("cloak", "cloak", False, "overdue"),  # cloaks against scripts
}
REMOVED = {name for name, s in SCENARIOS.items() if s[3] in ("removed", "reappeared")}


class Receiver:
    """A webhook endpoint on loopback that refuses the first delivery (to see a retry)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.received: list[tuple[dict, dict]] = []
        self.refused = 0
        site.routes["/hook"] = self.handle

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.refused:
            self.refused += 1
            return web.Response(status=500)
        self.received.append((dict(request.headers), json.loads(body)))
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert request.headers["X-Hotline-Signature"] == expected
        return web.Response(status=204)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    site = Site().start()
    yield Receiver(site)
    site.stop()


@pytest.fixture
def env(hotline_env, redis_url, receiver: Receiver, monkeypatch) -> dict[str, str]:
    env = {
        **hotline_env,
        "HOTLINE_REDIS_URL": redis_url,
        "HOTLINE_PAGE_TIMEOUT": "1.5s",
        "HOTLINE_RECHECK_SCHEDULE": "1s*14,1h",
        "HOTLINE_CONFIRM_SPACING": "1s",
        "HOTLINE_OVERDUE_AFTER": f"{OVERDUE_S}s",
        "HOTLINE_RECHECK_AFTER_REMOVAL": "2s",
        "HOTLINE_RECHECK_PER_HOST": "32",
        "HOTLINE_RECHECK_HOST_INTERVAL": "0s",
        "HOTLINE_WEBHOOK_URL": receiver.site.url("/hook"),
        "HOTLINE_WEBHOOK_SECRET": SECRET,
        "HOTLINE_WEBHOOK_RETRIES": "1s,1s,1s",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def start(*args: str, env: dict[str, str], log) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    full |= {k: v for k, v in env.items() if k.startswith("HOTLINE_")}
    return subprocess.Popen(
        [sys.executable, "-m", "hotline", *args], env=full, cwd=ROOT, stdout=log, stderr=log
    )


def intake_and_refer(sim: Simulator, env: dict[str, str]) -> int:
    """The real path for one report: submit, scan in the browser, refer by command."""
    r = run_hotline("submit", sim.page_url("never_removed"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    report_id = json.loads(r.stdout)["report_id"]
    r = run_hotline("worker", "--burst", "--queues", "intake", env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    r = run_hotline(
        "refer", str(report_id), "--to", "host-b", "--notice-sent-at",
        "2026-01-01T00:00:00", "--json", env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["notice_sent_at"] == "2026-01-01T00:00:00+00:00"
    return report_id


def drive(name: str, doc: dict, sim: Simulator) -> None:
    """Change a scenario's site as its checks come in."""
    checks = len(doc["checks"])
    if name == "image_url_outlives_page" and checks >= 2:
        sim.image[name] = "404"
    if name in ("429_then_live", "slow_then_live") and checks >= 2:
        sim.image[name] = "live"
    if name == "removed_then_back" and doc["state"] == "removed":
        sim.page[name] = sim.image[name] = "live"


def finished(name: str, doc: dict) -> bool:
    final = SCENARIOS[name][3]
    if final == "removed":
        return doc["state"] == "removed" and doc["next_check_at"] is None
    if final == "overdue":
        return doc["state"] == "overdue" and len(doc["checks"]) >= 4
    return doc["state"] == final


def test_takedown_lifecycle(site: Site, env: dict, receiver: Receiver, tmp_path) -> None:
    sim = Simulator(site)
    for name, (page, image, _, _) in SCENARIOS.items():
        sim.add(name, page=page, image=image)
    closed = Site().start()
    closing = Simulator(closed)
    closing.add("port_closed")
    store = Store(Settings.from_env().database_url)
    store.migrate()
    report_of = {"never_removed": intake_and_refer(sim, env)}
    for name, (_, _, direct, _) in SCENARIOS.items():
        if name != "never_removed":
            origin = closing if name == "port_closed" else sim
            page, image = origin.page_url(name), origin.image_url(name)
            report_of[name] = scanned_report(store, image if direct else page, image)
            monitor.refer(store, report_of[name], "host-a")
    closed.stop()  # the host of port_closed is gone before its first check

    with (tmp_path / "service.log").open("wb") as log:
        procs = [
            start("scheduler", "--interval", "0.2s", env=env, log=log),
            start("worker", "--queues", "recheck", env=env, log=log),
        ]
        try:
            # Each scenario's record is kept from the moment it reached its end state
            # (a reappeared referral would go on to become overdue).
            docs: dict[str, dict] = {}
            deadline = time.monotonic() + 75
            while time.monotonic() < deadline:
                for name, report_id in report_of.items():
                    if name not in docs or not finished(name, docs[name]):
                        docs[name] = store.get_takedown(report_id)
                        drive(name, docs[name], sim)
                if all(finished(n, d) for n, d in docs.items()) and len(receiver.received) >= 12:
                    break
                time.sleep(0.2)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
    service_log = (tmp_path / "service.log").read_text(errors="replace")
    states = {name: doc["state"] for name, doc in docs.items()}
    assert states == {name: s[3] for name, s in SCENARIOS.items()}, service_log[-3000:]

    verdicts = {name: [c["verdict"] for c in doc["checks"]] for name, doc in docs.items()}
    assert set(verdicts["gone_404"]) == set(verdicts["gone_410"]) == {"gone_http"}
    assert set(verdicts["port_closed"]) == {"gone_connect"}
    assert set(verdicts["placeholder"]) == set(verdicts["image_swapped"]) == {"content_gone"}
    assert {c["stage"] for c in docs["placeholder"]["checks"]} == {"browser"}
    # The page was gone from the start; its image URL kept the referral live until it 404'd.
    outlives = docs["image_url_outlives_page"]
    assert verdicts["image_url_outlives_page"][0] == "live"
    last_live = max(c["at"] for c in outlives["checks"] if c["verdict"] == "live")
    assert outlives["removed_at"] > last_live
    assert set(verdicts["flapping_503"]) == {"transient", "live"}
    for name in ("429_then_live", "slow_then_live"):
        assert verdicts[name][0] == "transient" and verdicts[name][-1] == "live", name
    # Cloaking: scripts get 404s, the confirming browser check sees the page every time.
    assert set(verdicts["never_removed"]) == {"gone_http", "live"}
    assert all(c["stage"] == "browser" for c in docs["never_removed"]["checks"] if c["confirming"])
    back = docs["removed_then_back"]
    assert back["confirmed_at"] and back["reopened_at"] > back["confirmed_at"]
    assert verdicts["removed_then_back"][-1] == "live"
    for name, doc in docs.items():
        if name not in REMOVED:
            assert doc["confirmed_at"] is None, name  # no false removal, not even once

    # Webhooks: every state change, signed (checked by the receiver), after one retry.
    events = {(body["takedown"]["report_id"], body["event"]) for _, body in receiver.received}
    name_of = {rid: name for name, rid in report_of.items()}
    got = {(name_of[rid], kind) for rid, kind in events}
    assert {(n, "removed") for n in REMOVED} <= got
    assert ("removed_then_back", "reappeared") in got
    assert {(n, "overdue") for n in SCENARIOS if n not in REMOVED} <= got
    assert not {(n, "removed") for n in SCENARIOS if n not in REMOVED} & got
    assert receiver.refused == 1
    headers = receiver.received[0][0]
    assert headers["X-Hotline-Event"] in ("removed", "reappeared", "overdue")

    r = run_hotline("report", str(report_of["gone_404"]), "--json", env=env)
    takedown = json.loads(r.stdout)["takedown"]
    assert takedown["state"] == "removed" and takedown["party"] == "host-a"
    assert {"at", "verdict", "stage", "user_agent", "targets"} <= set(takedown["checks"][0])
    assert "removed" in run_hotline("report", str(report_of["gone_404"]), env=env).stdout

    r = run_hotline("stats", "takedown", "--json", env=env)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["referrals"] == len(SCENARIOS)
    # The reappeared referral went on to become overdue, as it is live again.
    states_now = {name: store.get_takedown(rid)["state"] for name, rid in report_of.items()}
    assert states_now["removed_then_back"] in ("reappeared", "overdue")
    assert {k: n for k, n in stats["states"].items() if n} == Counter(states_now.values())
    assert stats["from_received"]["removed"] == 7
    assert stats["from_received"]["within_3d"] == 1.0  # all removed within seconds
    assert stats["by_party"]["host-b"]["from_notice"]["removed"] == 0
    assert set(stats["by_network"]) == {"127.0.0.0/24"}
    r = run_hotline("stats", "takedown", "--party", "host-a", env=env)
    assert r.returncode == 0 and "all referrals: 10" in r.stdout, r.stdout
