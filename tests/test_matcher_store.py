"""The store's list upkeep and retro bookkeeping, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from store import ListInUse, ListNotFound, Store

from .test_store import MD5, PDQ, image_document, postgres, scan_document, store, url

__all__ = ["postgres", "store", "url"]  # fixtures, shared with test_store

PHASH = "c3c3c3c3c3c3c3c3"


def test_list_upkeep(store: Store) -> None:
    store.create_list("iwf", category="A1")
    store.add_entries("iwf", [("md5", MD5, "M-1", None), ("pdq", PDQ, None, "B2")])
    assert store.get_list("iwf") == {
        "name": "iwf", "category": "A1", "kind": "known", "version": 1, "thresholds": {},
    }  # fmt: skip
    assert store.set_thresholds("iwf", {"pdq": 20}) is True
    assert store.set_thresholds("iwf", {"pdq": 20}) is False
    assert store.get_list("iwf")["thresholds"] == {"pdq": 20}
    assert store.set_enabled("iwf", ["M-1", PDQ], False) == 2
    assert store.set_enabled("iwf", [f"x{i}" for i in range(1200)] + ["M-1"], True) == 1
    assert store.get_list("iwf")["version"] == 4
    assert [e["hash"] for e in store.export_entries("iwf")] == [MD5]
    for missing in (
        lambda: store.get_list("nope"),
        lambda: store.set_thresholds("nope", {}),
        lambda: store.set_enabled("nope", ["x"], True),
        lambda: list(store.export_entries("nope")),
    ):
        with pytest.raises(ListNotFound):
            missing()


def test_snapshot_pending_and_retro_matches(store: Store) -> None:
    store.create_list("iwf", kind="known")
    store.create_list("logos", kind="allow")
    store.set_thresholds("iwf", {"phash": 6})
    store.add_entries("iwf", [("md5", MD5, None, None), ("phash", PHASH, "P", None)])
    store.add_entries("logos", [("pdq", PDQ, None, None)])
    with store.index_snapshot() as (version, lists, rows):
        assert version == store.lists_version()
        assert lists == [
            {"name": "iwf", "kind": "known", "thresholds": {"phash": 6}},
            {"name": "logos", "kind": "allow", "thresholds": {}},
        ]
        assert [(r["list"], r["signal_type"]) for r in rows] == [
            ("iwf", "md5"), ("iwf", "phash"), ("logos", "pdq"),
        ]  # fmt: skip
    assert store.lists_pending_retro() == ["iwf", "logos"]
    pending = list(store.pending_entries("iwf"))
    assert [e["ref"] for e in pending] == [None, "P"]
    store.finish_retro(e["pk"] for e in pending)
    assert store.lists_pending_retro() == ["logos"]

    report_id = store.add_report("http://example.test/")
    image = image_document("http://example.test/1.jpg", phash=PHASH)
    scan_id = store.save_scan(report_id, scan_document(images=[image]))
    [row] = [r for batch in store.image_hashes(scan_id=scan_id) for r in batch]
    assert (row["phash"], row["dhash"], row["query_hashes"]) == (
        PHASH,
        image["dhash"],
        image["query_hashes"],
    )
    assert list(store.image_hashes(scan_id=scan_id + 1)) == []
    match = {"entry_pk": pending[1]["pk"], "signal_type": "phash", "distance": 0, "threshold": 6}
    assert store.add_retro_matches([(row["id"], match)], []) == 1
    assert store.add_retro_matches([(row["id"], match)], []) == 0  # recorded once
    [scan] = store.get_report(report_id)["scans"]
    assert scan["matched"] is True
    assert [(m["entry_id"], m["retro"]) for m in scan["images"][0]["matches"]] == [("P", True)]

    with pytest.raises(ListInUse, match="'iwf' has 1 matches in 1 scans"):
        store.delete_list("iwf")
    assert store.delete_list("iwf", with_matches=True) == {"entries": 2, "matches": 1, "scans": 1}
    assert store.get_report(report_id)["scans"][0]["matched"] is False
    assert [hl["name"] for hl in store.lists()] == ["logos"]
