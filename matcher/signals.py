"""Signal types: how each kind of hash is written, validated and compared.

Modelled on python-threatexchange's SignalType: a signal type knows its text form and
its distance, while the search structure lives in `matcher.index`. Adding a type means
one small class here plus its entry in `SIGNAL_TYPES` (and computing it in `hashing`).
"""

from __future__ import annotations

import re
import sys
from abc import ABC, abstractmethod
from typing import ClassVar

_HEX = re.compile(r"[0-9a-f]+")

# Distance reported between two different exact hashes: beyond any threshold.
EXACT_MISMATCH = sys.maxsize


def preview(value: str, limit: int = 70) -> str:
    """Quote untrusted text for an error message without echoing all of it."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


class SignalType(ABC):
    """A kind of hash written as a fixed number of hex digits."""

    name: ClassVar[str]
    hex_digits: ClassVar[int]
    exact: ClassVar[bool]
    default_threshold: ClassVar[int]

    def normalize(self, value: str) -> str:
        """Canonical form (stripped lower-case hex) so equal hashes compare equal as text."""
        text = value.strip().lower()
        if len(text) != self.hex_digits or not _HEX.fullmatch(text):
            raise ValueError(
                f"{self.name} must be {self.hex_digits} hex digits, got {preview(value)}"
            )
        return text

    @abstractmethod
    def distance(self, a: str, b: str) -> int:
        """How far apart two hashes are; a match is a distance within the threshold."""


class ExactHash(SignalType):
    """A cryptographic digest of the raw bytes: equal or unrelated, nothing in between."""

    exact = True
    default_threshold = 0

    def distance(self, a: str, b: str) -> int:
        return 0 if self.normalize(a) == self.normalize(b) else EXACT_MISMATCH


class HammingHash(SignalType):
    """A perceptual hash whose bits flip gradually as an image is altered."""

    exact = False

    def distance(self, a: str, b: str) -> int:
        return (int(self.normalize(a), 16) ^ int(self.normalize(b), 16)).bit_count()


class MD5(ExactHash):
    name = "md5"
    hex_digits = 32


class SHA1(ExactHash):
    name = "sha1"
    hex_digits = 40


class SHA256(ExactHash):
    name = "sha256"
    hex_digits = 64


class PHash(HammingHash):
    """imagehash.phash: 64 bits, the value `str(imagehash.phash(image))` prints."""

    name = "phash"
    hex_digits = 16
    default_threshold = 10


class DHash(HammingHash):
    """imagehash.dhash: 64 bits, the value `str(imagehash.dhash(image))` prints."""

    name = "dhash"
    hex_digits = 16
    default_threshold = 10


class PDQ(HammingHash):
    """Meta's PDQ: 256 bits, hex as ThreatExchange writes it (bit 255 first)."""

    name = "pdq"
    hex_digits = 64
    default_threshold = 31
    # ThreatExchange's cut-off: below it the hash of a near-flat image is mostly noise.
    min_quality: ClassVar[int] = 50


SIGNAL_TYPES: dict[str, SignalType] = {
    s.name: s for s in (MD5(), SHA1(), SHA256(), PHash(), DHash(), PDQ())
}


def get_signal_type(name: str) -> SignalType:
    """Look a signal type up by name, case-insensitively."""
    try:
        return SIGNAL_TYPES[name.strip().lower()]
    except KeyError:
        known = ", ".join(SIGNAL_TYPES)
        raise ValueError(f"unknown signal type {preview(name)} (known: {known})") from None
