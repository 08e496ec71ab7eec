"""Hash images in memory and match them against local hash lists."""

from matcher.hashing import PERCEPTUAL, ImageHashes, hash_file, hash_image
from matcher.index import (
    LIST_KINDS,
    Entry,
    HashList,
    Index,
    IndexBuilder,
    Match,
    check_thresholds,
    split_allowed,
)
from matcher.lists import LineError, ParsedEntry, parse_hash_list, write_hash_list
from matcher.shared import SharedIndex
from matcher.signals import SIGNAL_TYPES, SignalType, get_signal_type

__all__ = [
    "LIST_KINDS",
    "PERCEPTUAL",
    "SIGNAL_TYPES",
    "Entry",
    "HashList",
    "ImageHashes",
    "Index",
    "IndexBuilder",
    "LineError",
    "Match",
    "ParsedEntry",
    "SharedIndex",
    "SignalType",
    "check_thresholds",
    "get_signal_type",
    "hash_file",
    "hash_image",
    "parse_hash_list",
    "split_allowed",
    "write_hash_list",
]
