"""Search, hash pivots (exact and near), exports, evidence, classify, submit and metrics."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest
import redis
from rq import Queue

from store import Store
from store.search import Near, SearchFilters

from .api_helpers import MD5_KNOWN, PDQ_KNOWN, PHASH_KNOWN, PHASH_NEAR, Client, seed, seeded_api
from .test_store import postgres, url  # noqa: F401  (fixtures: SQLite and PostgreSQL stores)


@pytest.fixture
def api(hotline_env: dict, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    with seeded_api(monkeypatch, redis_url) as (server, seeded, store):
        yield Client(server, seeded.tokens["analyst"]), seeded, store


def ids(client: Client, query: str) -> list[int]:
    answer = client.get(f"/api/search?{query}")
    assert answer.status_code == 200, answer.text
    return [r["id"] for r in answer.json()["results"]]


def test_search_filters(api: tuple) -> None:
    client, seeded, _ = api
    hit, near, clean = (seeded.reports[k] for k in ("hit", "near", "clean"))
    assert ids(client, "") == [clean, near, hit]  # newest first
    assert ids(client, "sort=id&order=asc") == [hit, near, clean]
    assert ids(client, "url=MIRROR.other") == [near]
    assert ids(client, "url=album/7") == [hit]  # the final URL counts too
    assert ids(client, "url=%25") == []  # LIKE wildcards are literal
    assert ids(client, "domain=example.test") == [hit]  # subdomains of redirect hops
    assert ids(client, "domain=gallery.example.test") == [hit]
    assert ids(client, "domain=xample.test") == []
    assert ids(client, "domain=example.org") == [clean]
    assert ids(client, "server_ip=192.0.2.7") == [hit]
    assert ids(client, f"hash={MD5_KNOWN.upper()}") == [hit]
    assert ids(client, f"hash={PDQ_KNOWN}") == [hit]  # 64 digits: sha256 or pdq
    assert ids(client, f"hash={PDQ_KNOWN}&hash_type=sha256") == []
    assert ids(client, f"near={PHASH_KNOWN}&distance=2") == [near, hit]
    assert ids(client, f"near={PHASH_KNOWN}&distance=1") == [hit]
    assert ids(client, f"near={PDQ_KNOWN}") == [hit]
    assert ids(client, "list=known-a1") == [hit]
    assert ids(client, "category=A1") == [hit]
    assert ids(client, "category=B2") == []
    assert ids(client, "list=known-a1&retro=true") == []
    assert ids(client, "retro=false") == [hit]
    assert ids(client, "matched=true") == [hit]
    assert ids(client, "matched=false") == [clean, near]
    assert ids(client, "state=done&domain=example.org") == [clean]
    assert ids(client, "state=queued") == []
    assert ids(client, "since=2000-01-01&until=2100-01-01T00:00:00Z") == [clean, near, hit]
    assert ids(client, "until=2000-01-01") == []

    page = client.get("/api/search?per_page=2&page=2&sort=id&order=asc").json()
    assert (page["total"], [r["id"] for r in page["results"]]) == (3, [clean])
    [summary] = client.get(f"/api/search?hash={MD5_KNOWN}").json()["results"]
    assert summary["lists"] == ["known-a1"] and summary["categories"] == ["A1"]
    assert summary["server_ips"] == ["192.0.2.7"] and summary["matches"] == 1
    assert summary["images"] == 2 and summary["takedown"] is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("hash=abc", "hex digits"),
        ("hash=" + "z" * 32, "md5 must be 32 hex digits"),
        ("near=" + "0" * 32, "phash (16 hex digits) or pdq"),
        ("near=" + "0" * 16 + "&distance=65", "at most"),
        ("distance=3", "distance needs near"),
        ("page=0", "page must be between"),
        ("state=lost", "state must be one of"),
        ("since=yesterday", "ISO 8601"),
        ("retro=maybe", "true or false"),
    ],
)
def test_search_rejects_bad_filters_with_a_reason(api: tuple, query: str, message: str) -> None:
    client, _, _ = api
    answer = client.get(f"/api/search?{query}")
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_hash_pivot_exact_and_near(api: tuple) -> None:
    client, seeded, _ = api
    exact = client.get(f"/api/hashes/md5/{MD5_KNOWN}").json()
    assert (exact["total"], exact["reports"], exact["truncated"]) == (1, 1, False)
    assert exact["listed"] == [
        {"list": "known-a1", "kind": "known", "category": "A1", "ref": "IWF-1", "enabled": True}
    ]
    assert {h["host"] for h in exact["hosts"]} == {"short.example.test", "www.gallery.example.test"}
    [sighting] = exact["sightings"]
    assert sighting["report_id"] == seeded.reports["hit"]
    assert sighting["image_url"] == "http://cdn.gallery.example.test/1.jpg"

    near = client.get(f"/api/hashes/phash/{PHASH_KNOWN}?distance=4").json()
    assert [(s["report_id"], s["distance"]) for s in near["sightings"]] == [
        (seeded.reports["hit"], 0),
        (seeded.reports["near"], 2),
    ]
    assert near["first_seen"] < near["last_seen"]
    assert client.get(f"/api/hashes/md5/{MD5_KNOWN}?distance=3").status_code == 400
    assert client.get("/api/hashes/crc32/abcd").status_code == 400


def test_near_index_sees_images_stored_after_it_was_built(api: tuple) -> None:
    client, _, store = api
    assert len(ids(client, f"near={PHASH_NEAR}&distance=0")) == 1
    report_id = store.add_report("http://late.test/")
    scan = store.get_report(1)["scans"][0]
    scan["images"] = [{**scan["images"][0], "phash": PHASH_NEAR, "matches": []}]
    store.save_scan(report_id, scan)
    assert report_id in ids(client, f"near={PHASH_NEAR}&distance=0")


def test_exports_csv_and_json(api: tuple) -> None:
    client, seeded, store = api
    evil = store.add_report("http://evil.test/=HYPERLINK(1)", "=cmd|' /C calc'!A0")
    answer = client.get("/api/search/export?format=csv&sort=id&order=asc")
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"].startswith("attachment; filename=")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [int(r["id"]) for r in rows] == [*seeded.reports.values(), evil]
    assert rows[0]["lists"] == "known-a1" and rows[0]["server_ips"] == "192.0.2.7"
    assert rows[-1]["source"].startswith("'=")  # no formula reaches a spreadsheet

    answer = client.get("/api/search/export?format=json&domain=example.test")
    doc = json.loads(answer.text)
    assert [r["id"] for r in doc] == [seeded.reports["hit"]]
    assert client.get("/api/search/export?format=json&url=nothing-like-it").json() == []


def test_evidence_summary(api: tuple) -> None:
    client, seeded, _ = api
    doc = client.get(f"/api/reports/{seeded.reports['hit']}/evidence").json()
    [scan] = doc["scans"]
    assert scan["redirects"] == [{"url": "http://short.example.test/x", "status": 302}]
    assert scan["server_ip"] == "192.0.2.7"
    assert scan["images"][0]["md5"] == MD5_KNOWN
    assert scan["images"][0]["matches"][0]["list"] == "known-a1"
    assert len(doc["sha256"]) == 64 and doc["generated_by"] == "analyst-1"
    text = client.get(f"/api/reports/{seeded.reports['hit']}/evidence?format=text").text
    assert "redirect 302: http://short.example.test/x" in text
    assert f"md5: {MD5_KNOWN}" in text and "MATCH known-a1 [A1]" in text
    assert client.get("/api/reports/999/evidence").status_code == 404


def test_classify_puts_a_seen_hash_on_the_own_list(api: tuple, redis_url: str) -> None:
    client, _, store = api
    sha256 = f"{2:064x}"  # the second, unmatched image of the "hit" report
    answer = client.post(
        "/api/classify", json={"signal_type": "sha256", "hash": sha256, "category": "B1"}
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["list"] == "hotline-assessed" and result["added"] == 5
    assert result["retro_job"] in Queue("retro", connection=redis.Redis.from_url(redis_url)).job_ids
    assert set(result["hashes"]) == {"md5", "sha1", "sha256", "phash", "pdq"}
    entries = [e for e in store.iter_entries() if e["list"] == "hotline-assessed"]
    assert {(e["signal_type"], e["category"]) for e in entries} >= {("sha256", "B1")}
    assert entries[0]["ref"] == f"assessed by analyst-1 {entries[0]['ref'][-10:]}"
    again = client.post(
        "/api/classify", json={"signal_type": "sha256", "hash": sha256, "category": "B1"}
    ).json()
    assert (again["added"], again["already_listed"]) == (0, 5)
    unseen = client.post(
        "/api/classify", json={"signal_type": "md5", "hash": "0" * 32, "category": "B1"}
    )
    assert unseen.status_code == 404 and "only seen hashes" in unseen.json()["error"]


def test_lists_import_disable_enable(api: tuple) -> None:
    client, seeded, _ = api
    admin = Client(client.server, seeded.tokens["admin"])
    body = f"signal_type,hash,id\nmd5,{'a' * 32},P-1\nmd5,nothex,P-2\n"
    imported = admin.post("/api/lists/partner/entries?kind=allow", data=body).json()
    assert (imported["added"], imported["rejected"]) == (1, 1)
    assert imported["rejected_lines"][0]["line"] == 3 and imported["retro_job"]
    listed = {hl["name"]: hl for hl in client.get("/api/lists").json()["lists"]}
    assert listed["partner"]["kind"] == "allow" and listed["partner"]["total"] == 1

    off = admin.post("/api/lists/known-a1/disable", json={"keys": ["IWF-1"]}).json()
    assert (off["changed"], off["retro_job"]) == (1, None)
    listed = {hl["name"]: hl for hl in client.get("/api/lists").json()["lists"]}
    assert listed["known-a1"]["total"] == 0
    on = admin.post("/api/lists/known-a1/enable", json={"keys": [MD5_KNOWN.upper()]}).json()
    assert on["changed"] == 1 and on["retro_job"]
    assert admin.post("/api/lists/nope/disable", json={"keys": ["x"]}).status_code == 404
    assert admin.post("/api/lists/known-a1/disable", json={"keys": []}).status_code == 400
    assert admin.post("/api/lists/x/entries?kind=odd", data=body).status_code == 400


def test_submit_one_and_bulk(api: tuple, redis_url: str) -> None:
    client, _, store = api
    one = client.post("/api/reports", json={"url": "http://new.test/a", "source": "partner"})
    assert one.status_code == 201 and one.json()["queued"] is True
    assert store.get_report(one.json()["report_id"])["source"] == "partner"
    bulk = client.post(
        "/api/reports/bulk",
        json={"reports": [{"url": "http://new.test/b"}, {"url": "https://c.test"}]},
    )
    assert bulk.status_code == 201 and len(bulk.json()["reports"]) == 2
    assert Queue("intake", connection=redis.Redis.from_url(redis_url)).count == 3
    for body in ({"url": "javascript:alert(1)"}, {"url": ""}, {"source": "x"}, ["x"]):
        assert client.post("/api/reports", json=body).status_code == 400
    assert client.post("/api/reports", data="{").status_code == 400
    assert client.post("/api/reports/bulk", json={"reports": []}).status_code == 400


def test_metrics(api: tuple) -> None:
    client, _, _ = api
    client.get("/api/search")
    text = client.get("/metrics").text
    for line in (
        'hotline_scans_total{error="",status="completed"} 3.0',
        'hotline_scan_duration_seconds_bucket{le="5.0"} 3.0',
        "hotline_images_hashed_total 4.0",
        'hotline_matches_total{list="known-a1"} 1.0',
        "hotline_redis_up 1.0",
        'hotline_http_requests_total{method="GET",route="/api/search",status="200"} 1.0',
    ):
        assert line in text, line


@pytest.fixture
def any_store(url: str) -> Iterator[Store]:  # noqa: F811
    store = Store(url)
    store.migrate()
    yield store
    store.close()


def test_store_search_on_both_databases(any_store: Store) -> None:
    seeded = seed(any_store)
    total, found = any_store.search_reports(SearchFilters(domain="Example.Test."))
    assert (total, [r["id"] for r in found]) == (1, [seeded.reports["hit"]])
    near = SearchFilters(near=Near("phash", PHASH_KNOWN, 2))
    assert any_store.search_ids(near, sort="id", descending=False) == [
        seeded.reports["hit"],
        seeded.reports["near"],
    ]
    exact = any_store.hash_sightings("md5", MD5_KNOWN)
    assert exact["total"] == 1 and exact["listed"][0]["category"] == "A1"
    assert any_store.scan_durations([3.0, 5.0])[0] == [0, 3]
    assert any_store.statistics()["matches"]["by_list"] == {"known-a1": 1}
