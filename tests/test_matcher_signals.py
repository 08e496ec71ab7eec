import hashlib

import pytest

from matcher import SIGNAL_TYPES, get_signal_type
from matcher.signals import EXACT_MISMATCH


def test_registry_names_and_defaults():
    assert list(SIGNAL_TYPES) == ["md5", "sha1", "sha256", "phash", "dhash", "pdq"]
    assert {n: s.exact for n, s in SIGNAL_TYPES.items()} == {
        "md5": True,
        "sha1": True,
        "sha256": True,
        "phash": False,
        "dhash": False,
        "pdq": False,
    }
    assert {n: s.default_threshold for n, s in SIGNAL_TYPES.items()} == {
        "md5": 0,
        "sha1": 0,
        "sha256": 0,
        "phash": 10,
        "dhash": 10,
        "pdq": 31,
    }


def test_get_signal_type_is_case_insensitive():
    assert get_signal_type(" PDQ ") is SIGNAL_TYPES["pdq"]


def test_get_signal_type_unknown_names_known_types():
    with pytest.raises(ValueError, match=r"unknown signal type 'tlsh' \(known: md5, sha1"):
        get_signal_type("tlsh")


@pytest.mark.parametrize("name", ["md5", "sha1", "sha256"])
def test_crypto_types_accept_hashlib_hex(name):
    digest = hashlib.new(name, b"hotline test bytes").hexdigest()
    signal = get_signal_type(name)
    assert signal.normalize(f"  {digest.upper()}\n") == digest
    assert signal.distance(digest, digest.upper()) == 0
    other = hashlib.new(name, b"other bytes").hexdigest()
    assert signal.distance(digest, other) == EXACT_MISMATCH


@pytest.mark.parametrize(
    ("name", "value", "digits"),
    [
        ("phash", "abc", 16),
        ("phash", "g" * 16, 16),
        ("phash", "0x" + "a" * 14, 16),
        ("dhash", "a" * 17, 16),
        ("pdq", "a" * 63, 64),
        ("md5", "", 32),
        ("sha1", "a b" * 10, 40),
        ("sha256", "٣" * 64, 64),  # non-ASCII digits are not hex digits
    ],
)
def test_normalize_rejects_bad_hex(name, value, digits):
    with pytest.raises(ValueError, match=rf"^{name} must be {digits} hex digits, got "):
        get_signal_type(name).normalize(value)


def test_normalize_error_does_not_echo_long_input():
    with pytest.raises(ValueError) as info:
        get_signal_type("phash").normalize("x" * 10_000)
    assert len(str(info.value)) < 120


@pytest.mark.parametrize(
    ("name", "a", "b", "expected"),
    [
        ("phash", "0000000000000000", "0000000000000000", 0),
        ("phash", "0000000000000000", "8000000000000001", 2),
        ("dhash", "ffffffffffffffff", "0000000000000000", 64),
        ("pdq", "0" * 64, "f" * 64, 256),
        ("pdq", "0" * 63 + "7", "0" * 64, 3),
        ("pdq", "8" + "0" * 63, "0" * 64, 1),
    ],
)
def test_hamming_distance(name, a, b, expected):
    signal = get_signal_type(name)
    assert signal.distance(a, b) == expected
    assert signal.distance(b.upper(), a) == expected
