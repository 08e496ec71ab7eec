"""Hash images in memory and match them against local hash lists."""

from matcher.hashing import ImageHashes, hash_file, hash_image
from matcher.index import Entry, Index, Match
from matcher.lists import LineError, ParsedEntry, parse_hash_list
from matcher.signals import SIGNAL_TYPES, SignalType, get_signal_type

__all__ = [
    "SIGNAL_TYPES",
    "Entry",
    "ImageHashes",
    "Index",
    "LineError",
    "Match",
    "ParsedEntry",
    "SignalType",
    "get_signal_type",
    "hash_file",
    "hash_image",
    "parse_hash_list",
]
