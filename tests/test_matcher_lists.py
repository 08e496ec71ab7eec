import io
import itertools
import time

import pytest

from matcher import LineError, ParsedEntry, parse_hash_list

PHASH = "c3a5966c6b1e3d0f"
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "9e107d9d372bb6826bd81d3542a419d6"


def parse(text: str) -> list[ParsedEntry | LineError]:
    return list(parse_hash_list(io.StringIO(text)))


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  \n"])
def test_empty_input(text):
    assert parse(text) == []


def test_header_only():
    assert parse("signal_type,hash\n") == []


def test_hma_form():
    text = f"# exported\n\npdq {PDQ}\n  PHASH\t{PHASH.upper()}  \n# done\nmd5 {MD5}\n"
    assert parse(text) == [
        ParsedEntry(3, "pdq", PDQ, None, None),
        ParsedEntry(4, "phash", PHASH, None, None),
        ParsedEntry(6, "md5", MD5, None, None),
    ]


def test_hma_bad_lines_carry_line_numbers():
    text = f"pdq {PDQ}\nvideo_md5 {MD5}\nphash 123\nmd5 {MD5} extra\n"
    assert parse(text) == [
        ParsedEntry(1, "pdq", PDQ, None, None),
        LineError(
            2, "unknown signal type 'video_md5' (known: md5, sha1, sha256, phash, dhash, pdq)"
        ),
        LineError(3, "phash must be 16 hex digits, got '123'"),
        LineError(4, f"expected '<signal_type> <hash>', got 'md5 {MD5} extra'"),
    ]


def test_csv_columns_in_any_order_with_extras():
    text = (
        "\ufeffCategory, ID ,source,Hash,SIGNAL_TYPE\n"
        f"A1,17,partner,{PHASH},phash\n"
        f'"B, quoted",18,partner,"{PDQ}",pdq\n'
        f",,partner,{MD5},md5\n"
    )
    assert parse(text) == [
        ParsedEntry(2, "phash", PHASH, "17", "A1"),
        ParsedEntry(3, "pdq", PDQ, "18", "B, quoted"),
        ParsedEntry(4, "md5", MD5, None, None),
    ]


def test_csv_minimal_columns_and_duplicates_left_to_the_store():
    text = f"signal_type,hash\nmd5,{MD5}\nmd5,{MD5}\n"
    duplicate = [ParsedEntry(2, "md5", MD5, None, None), ParsedEntry(3, "md5", MD5, None, None)]
    assert parse(text) == duplicate


def test_csv_bad_rows_carry_line_numbers():
    text = (
        "signal_type,hash,id\n"
        f"phash,{PHASH},1\n"
        "\n"
        "phash,nothex,2\n"
        "tlsh,abc,3\n"
        "md5\n"
        f'md5,{MD5},"two\nlines"\n'
        f"dhash,{PHASH},4\n"
    )
    assert parse(text) == [
        ParsedEntry(2, "phash", PHASH, "1", None),
        LineError(4, "phash must be 16 hex digits, got 'nothex'"),
        LineError(5, "unknown signal type 'tlsh' (known: md5, sha1, sha256, phash, dhash, pdq)"),
        LineError(6, "expected 3 columns, got 1"),
        ParsedEntry(7, "md5", MD5, "two\nlines", None),
        ParsedEntry(9, "dhash", PHASH, "4", None),
    ]


def test_csv_without_required_columns():
    assert parse("# list\nhash,id\nabc,1\n") == [
        LineError(2, "CSV header needs signal_type and hash columns, got 'hash,id'")
    ]


def test_errors_never_echo_a_long_line():
    results = parse(f"phash {'f' * 5000}\nmd5 {'x' * 5000} {'y' * 5000}\n")
    assert [type(r) for r in results] == [LineError, LineError]
    assert all(len(r.message) < 120 for r in results)


def test_unbalanced_quote_costs_a_bounded_stretch_of_lines():
    lines = ["signal_type,hash\n", f'md5,"{MD5}\n'] + [f"md5,{i:032x}\n" for i in range(20_000)]
    results = list(parse_hash_list(lines))
    assert results[0] == LineError(2, "malformed CSV: field larger than field limit (131072)")
    assert results[-1] == ParsedEntry(20_002, "md5", f"{19_999:032x}", None, None)


def test_parsing_streams():
    def endless():
        yield "signal_type,hash\n"
        for i in itertools.count():
            yield f"phash,{i:016x}\n"

    first = list(itertools.islice(parse_hash_list(endless()), 3))
    assert [r.line for r in first] == [2, 3, 4]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("form", ["csv", "hma"])
def test_a_million_lines(form):
    def lines():
        if form == "csv":
            yield "signal_type,hash,id,category\n"
            for i in range(1_000_000):
                yield f"pdq,{i:064x},{i},c\n"
        else:
            for i in range(1_000_000):
                yield f"pdq {i:064x}\n"

    started = time.perf_counter()
    count = sum(isinstance(r, ParsedEntry) for r in parse_hash_list(lines()))
    assert count == 1_000_000
    assert time.perf_counter() - started < 8  # about 2.5 s (CSV) on the dev machine
