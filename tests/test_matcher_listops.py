"""`hotline lists …`: import edge cases, thresholds, enable/disable, export, delete.

The command runs in-process (its `main`), against SQLite in the test's HOTLINE_HOME;
no Redis answers there, so the retro-matching it would queue waits in the database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hotline.cli import main
from hotline.config import Settings
from store import Store

from .conftest import ROOT, encode, photo

PHASH = "c3a5966c6b1e3d0f"
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "9e107d9d372bb6826bd81d3542a419d6"


@pytest.fixture
def hotline(hotline_env, capsys):
    """Run `hotline ARGS…`; returns (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def store(hotline_env) -> Store:
    return Store(Settings.from_env().database_url)


def lists(hotline) -> dict[str, dict]:
    status, out, _ = hotline("lists", "--json")
    assert status == 0
    return {hl["name"]: hl for hl in json.loads(out)}


def write(tmp_path: Path, text: str, name: str = "list.txt") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_import_bad_lines_duplicates_and_empty_files(hotline, tmp_path):
    text = f"pdq {PDQ}\nphash {PHASH}\nphash nothex\ntlsh abc\npdq {PDQ.upper()}\n"
    status, out, err = hotline("lists", "import", "iwf", write(tmp_path, text))
    assert status == 0
    assert out.strip() == "iwf: 2 added, 1 already present, 2 rejected"
    assert "line 3: phash must be 16 hex digits, got 'nothex'" in err
    assert "line 4: unknown signal type 'tlsh'" in err
    assert "retro-matched once `hotline up` runs" in err  # no Redis here: it waits

    status, out, _ = hotline("lists", "import", "iwf", write(tmp_path, text))
    assert out.strip() == "iwf: 0 added, 3 already present, 2 rejected"

    status, out, _ = hotline("lists", "import", "empty", write(tmp_path, "", "empty.txt"))
    assert (status, out.strip()) == (0, "empty: 0 added, 0 already present, 0 rejected")
    status, out, _ = hotline("lists", "import", "junk", write(tmp_path, "x\ny\n", "junk.txt"))
    assert (status, out.strip()) == (2, "junk: 0 added, 0 already present, 2 rejected")
    status, _, err = hotline("lists", "import", "iwf", str(tmp_path / "missing.csv"))
    assert status == 2 and "no such file" in err
    assert {name: hl["total"] for name, hl in lists(hotline).items()} == {
        "empty": 0,
        "iwf": 2,
        "junk": 0,
    }


def test_kind_and_thresholds(hotline, tmp_path, store):
    file = write(tmp_path, f"phash {PHASH}\n")
    assert hotline("lists", "import", "logos", file, "--kind", "allow")[0] == 0
    status, _, err = hotline("lists", "import", "logos", file, "--kind", "known")
    assert status == 2 and "'logos' is a allow list, not known" in err

    status, _, _ = hotline("lists", "import", "iwf", file, "--threshold", "phash=8")
    assert status == 0
    before = lists(hotline)["iwf"]
    assert (before["kind"], before["thresholds"]) == ("known", {"phash": 8})
    assert hotline("lists", "set", "iwf", "--threshold", "PDQ=20")[1].strip() == (
        "iwf: thresholds changed"
    )
    after = lists(hotline)["iwf"]
    assert after["thresholds"] == {"phash": 8, "pdq": 20}
    assert after["version"] == before["version"] + 1
    assert hotline("lists", "set", "iwf", "--threshold", "pdq=20")[1].strip() == (
        "iwf: thresholds unchanged"
    )
    for bad, message in [
        ("md5=2", "threshold for md5 must be 0"),
        ("phash", "write TYPE=BITS"),
        ("tlsh=3", "unknown signal type 'tlsh'"),
    ]:
        status, _, err = hotline("lists", "set", "iwf", "--threshold", bad)
        assert status == 2 and message in err
    status, out, _ = hotline("lists")
    assert "iwf  (known, category -, version 3, thresholds pdq ≤20, phash ≤8): phash 1" in out


def test_disable_enable(hotline, tmp_path, store):
    text = f"signal_type,hash,id\nphash,{PHASH},P-1\npdq,{PDQ},P-2\nmd5,{MD5},\n"
    hotline("lists", "import", "iwf", write(tmp_path, text))
    store.finish_retro(range(1, 10))  # as if the retro job had run
    version = lists(hotline)["iwf"]["version"]

    status, out, _ = hotline("lists", "disable", "iwf", "P-1", MD5.upper(), "nothing-like-it")
    assert (status, out.strip()) == (0, "iwf: 2 entries disabled")
    info = lists(hotline)["iwf"]
    assert (info["entries"], info["version"]) == ({"pdq": 1}, version + 1)
    assert hotline("lists", "disable", "iwf", "P-1")[1].strip() == "iwf: 0 entries disabled"
    assert store.lists_pending_retro() == []

    keys = write(tmp_path, "P-1\n\n", "keys.txt")
    status, out, err = hotline("lists", "enable", "iwf", "--from", keys)
    assert out.strip() == "iwf: 1 entries enabled"
    assert lists(hotline)["iwf"]["entries"] == {"pdq": 1, "phash": 1}
    assert store.lists_pending_retro() == ["iwf"]  # images scanned meanwhile: match again
    assert "retro-matched once" in err
    status, _, err = hotline("lists", "enable", "iwf")
    assert status == 2 and "name the entries" in err
    assert hotline("lists", "disable", "nope", "x")[0] == 2


@pytest.mark.parametrize("form", ["csv", "hma"])
def test_export_round_trip(hotline, tmp_path, store, form):
    text = f'signal_type,hash,id,category\nphash,{PHASH},"P,1",A1\npdq,{PDQ},,\nmd5,{MD5},M-1,B2\n'
    hotline("lists", "import", "iwf", write(tmp_path, text), "--category", "A9")
    hotline("lists", "disable", "iwf", "M-1")
    out_file = tmp_path / f"out.{form}"
    status, _, err = hotline("lists", "export", "iwf", "--format", form, "--output", str(out_file))
    assert status == 0 and "iwf: 2 entries exported" in err
    assert hotline("lists", "import", "copy", str(out_file))[0] == 0

    def entries(name: str) -> list[tuple]:
        fields = ("signal_type", "hash", "ref", "category")
        return [tuple(e[f] for f in fields) for e in store.export_entries(name)]

    expected = [("phash", PHASH, "P,1", "A1"), ("pdq", PDQ, None, None)]
    if form == "hma":  # the HMA form carries hashes only
        expected = [(t, h, None, None) for t, h, _, _ in expected]
    assert entries("copy") == expected
    status, out, _ = hotline("lists", "export", "iwf")
    assert out.splitlines()[0] == "signal_type,hash,id,category"


def test_delete(hotline, tmp_path, store):
    hotline("lists", "import", "iwf", write(tmp_path, f"md5 {MD5}\n"))
    hotline("lists", "import", "other", write(tmp_path, f"md5 {MD5}\n"))
    entry_pk = next(store.iter_entries())["pk"]
    report_id = store.add_report("http://example.test/")
    image = {"url": "http://example.test/1.jpg", "md5": MD5}
    match = {"entry_pk": entry_pk, "signal_type": "md5", "distance": 0, "threshold": 0}
    scan = {
        "url": "http://example.test/",
        "status": "completed",
        "started_at": "2026-01-01T00:00:00+00:00",
        "matched": True,
        "images": [image | {"matches": [match]}],
    }
    store.save_scan(report_id, scan)

    status, _, err = hotline("lists", "delete", "iwf")
    assert status == 2 and "has 1 matches in 1 scans" in err and "--with-matches" in err
    status, out, _ = hotline("lists", "delete", "iwf", "--with-matches")
    assert out.strip() == "iwf: deleted with 1 entries and 1 matches in 1 scans"
    [scan] = store.get_report(report_id)["scans"]
    assert scan["matched"] is False and scan["images"][0]["matches"] == []
    assert hotline("lists", "delete", "other")[1].strip() == "other: deleted with 1 entries"
    assert lists(hotline) == {}
    assert hotline("lists", "delete", "other")[0] == 2


def test_add_images_with_thresholds(hotline, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "coffee.png").write_bytes(encode(photo("coffee"), "PNG"))
    (folder / "broken.jpg").write_bytes(b"not an image")
    status, out, err = hotline(
        "lists", "add-images", "own", str(folder), "--kind", "allow", "--threshold", "pdq=20"
    )
    assert status == 0
    assert "2 images hashed, 9 hashes added" in out  # 6 + the broken file's 3 digests
    assert "not decodable, exact hashes only" in err
    info = lists(hotline)["own"]
    assert (info["kind"], info["thresholds"], info["entries"]["pdq"]) == ("allow", {"pdq": 20}, 1)


@pytest.mark.timeout(90)
def test_a_million_line_import_streams(tmp_path, hotline_env):
    """1M lines: 100k good ones go to the store in batches, 900k bad ones are counted,
    not kept; the process stays within a bounded size."""
    path = tmp_path / "big.txt"
    with path.open("w") as f:
        for i in range(1_000_000):
            f.write(f"phash {i:016x}\n" if i % 10 == 0 else f"phash bad{i}\n")
    code = (  # VmHWM: the peak of this process (ru_maxrss would include our fork's)
        "import re, sys\n"
        "from hotline.cli import main\n"
        "status = main(['lists', 'import', 'big', sys.argv[1]])\n"
        "status_text = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', status_text)[1]) // 1024, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env=env | hotline_env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "big: 100000 added, 0 already present, 900000 rejected"
    assert "… 1,000,000 lines read" in done.stderr
    assert "… and 899980 more rejected lines" in done.stderr
    peak_mb = int(done.stderr.split()[-1])
    assert peak_mb < 200, f"{peak_mb} MB"  # measured about 100 MB
