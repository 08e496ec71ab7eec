"""Hash image bytes in memory: crypto digests of the bytes plus perceptual hashes.

Everything comes from one decode. Image bytes are never written anywhere and never
appear in an error message.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from matcher.signals import PDQ, SIGNAL_TYPES

# Formats a browser shows (TIFF for `lists add-images`); the rest of Pillow's plugins
# are attack surface we do not need (EPS, for one, runs Ghostscript).
Image.init()
_FORMATS = tuple(
    f for f in ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "ICO", "TIFF") if f in Image.OPEN
)
PERCEPTUAL = ("phash", "dhash", "pdq")
_MAX_FRAMES = 8  # animation frames hashed, evenly spaced, frame 0 included
_PDQ_EXACT_SIDE = 640  # up to this many pixels a side PDQ sees every pixel (see _pdq_size)
_PDQ_WINDOWS = 3
_PDQ_DRAFT = 512  # JPEG decode side kept for PDQ: hashes within 16 bits (tested)
_SMALL_DRAFT = 64  # ... and for pHash/dHash alone
_EXACT_SIDE = 1024  # up to this many pixels a side pHash/dHash are imagehash's exactly
_REDUCING_GAP = 3.0  # Pillow: from 3 on, "indistinguishable from fair resampling"
_BYTES_LITERAL = re.compile(r"""\bb(['"])(?:\\.|(?!\1).)*\1""")  # repr() of bytes


@dataclass(frozen=True)
class ImageHashes:
    """Hashes of one image. On error only the crypto digests (and what was learnt of the
    header) are filled. `query_*` hold extra hashes used only for lookups: mirrored image,
    PDQ's other dihedral orientations and further animation frames."""

    md5: str
    sha1: str
    sha256: str
    phash: str | None = None
    dhash: str | None = None
    pdq: str | None = None
    pdq_quality: int | None = None
    width: int | None = None
    height: int | None = None
    bytes: int = 0
    format: str | None = None
    error: tuple[str, str] | None = None  # (kind, message), kind "bad_image" or "too_large"
    query_phashes: tuple[str, ...] = ()
    query_pdqs: tuple[str, ...] = ()

    def hashes_for(self, signal_type: str) -> tuple[str, ...]:
        """Distinct hashes to look up for `signal_type`: the main one, unless it is a PDQ
        of too low quality to trust, then the query-only variants."""
        main = getattr(self, signal_type)
        if signal_type == "pdq" and (self.pdq_quality or 0) < PDQ.min_quality:
            main = None
        extra = {"phash": self.query_phashes, "pdq": self.query_pdqs}.get(signal_type, ())
        return tuple(dict.fromkeys(h for h in (main, *extra) if h))

    def main_hashes(self) -> dict[str, str]:
        """The image's own hash per signal type, as a list entry holds them: all that were
        computed, PDQ only at a quality worth matching."""
        trusted = (self.pdq_quality or 0) >= PDQ.min_quality
        return {
            name: value
            for name in SIGNAL_TYPES
            if (value := getattr(self, name)) and (name != "pdq" or trusted)
        }


@dataclass(frozen=True)
class _Frame:
    phash: str | None = None
    phash_mirrored: str | None = None
    dhash: str | None = None
    pdqs: tuple[str, ...] = ()  # pdqhash.compute_dihedral order; [0] original, [5] mirrored
    pdq_quality: int = 0


def hash_file(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = 50_000_000,
    signals: Collection[str] = PERCEPTUAL,
) -> ImageHashes:
    """Hash a file's bytes. A missing or unreadable file raises OSError; undecodable
    content does not raise (see hash_image)."""
    return hash_image(Path(path).read_bytes(), max_pixels=max_pixels, signals=signals)


def hash_image(
    data: bytes, *, max_pixels: int = 50_000_000, signals: Collection[str] = PERCEPTUAL
) -> ImageHashes:
    """Hash image bytes: the crypto digests always, the perceptual hashes named in
    `signals` (all by default; fewer is faster, e.g. ("phash",) decodes a JPEG at 1/8).

    Never raises for bad input: undecodable or truncated data gives error kind
    "bad_image", more than `max_pixels` pixels gives "too_large"; the crypto digests are
    filled either way so exact lists still match."""
    wanted = frozenset(signals)
    if unknown := wanted - set(PERCEPTUAL):
        raise ValueError(f"not perceptual signal types: {sorted(unknown)} (have {PERCEPTUAL})")
    digests = {
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    header: dict[str, object] = {}
    try:
        # Pillow only warns between its two bomb limits; treat that as a bomb too. (The
        # filter is process-wide; should threads race and leak it, it only ever turns
        # that same warning into an error.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as im:
                header = {"format": im.format, "width": im.width, "height": im.height}
                if im.width * im.height > max_pixels:
                    message = f"{im.width}x{im.height} pixels is over max_pixels={max_pixels}"
                    return ImageHashes(**digests, **header, error=("too_large", message))
                if not wanted:
                    return ImageHashes(**digests, **header)
                return ImageHashes(**digests, **header, **_perceptual(im, max_pixels, wanted))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return ImageHashes(**digests, **header, error=("too_large", _describe(exc)))
    except Exception as exc:  # any failure of a decoder on untrusted bytes is a bad image
        return ImageHashes(**digests, **header, error=("bad_image", _describe(exc)))


def _perceptual(im: Image.Image, max_pixels: int, wanted: frozenset[str]) -> dict[str, object]:
    # JPEG only (a no-op elsewhere): libjpeg decodes at 1/2, 1/4 or 1/8 scale, keeping at
    # least _PDQ_DRAFT pixels a side for PDQ, or _SMALL_DRAFT when only pHash/dHash (made
    # from 32x32 and 9x8 pixels) are wanted.
    side = _PDQ_DRAFT if "pdq" in wanted else _SMALL_DRAFT
    full_size = im.size
    im.draft("RGB", (side, side))
    first = _hash_frame(im, wanted, reduced=im.size != full_size)
    frames = [first, *_other_frames(im, max_pixels, wanted)]
    # Every frame is looked up mirrored too; the first one also in PDQ's rotations.
    phashes = [h for f in frames for h in (f.phash, f.phash_mirrored) if h]
    pdqs = [
        h
        for f in frames
        if f.pdqs and f.pdq_quality >= PDQ.min_quality
        for h in (f.pdqs if f is first else (f.pdqs[0], f.pdqs[5]))
    ]
    pdq = first.pdqs[0] if first.pdqs else None
    return {
        "phash": first.phash,
        "dhash": first.dhash,
        "pdq": pdq,
        "pdq_quality": first.pdq_quality if pdq else None,
        "query_phashes": _without(first.phash, phashes),
        "query_pdqs": _without(pdq, pdqs),
    }


def _without(main: str | None, hashes: list[str]) -> tuple[str, ...]:
    """Distinct hashes other than the main one, in order."""
    return tuple(h for h in dict.fromkeys(hashes) if h != main)


def _other_frames(im: Image.Image, max_pixels: int, wanted: frozenset[str]) -> Iterator[_Frame]:
    """Frames after the first, up to _MAX_FRAMES in all, evenly spaced over as many frames
    as max_pixels lets us decode (frames are decoded in sequence to reach a later one)."""
    budget = max_pixels - im.width * im.height
    walk = min(getattr(im, "n_frames", 1), max(1, max_pixels // (im.width * im.height)))
    chosen = set(np.linspace(0, walk - 1, min(walk, _MAX_FRAMES)).round().astype(int).tolist())
    try:
        for index in range(1, max(chosen) + 1):
            im.seek(index)
            budget -= im.width * im.height  # a GIF's canvas may grow frame by frame
            if budget < 0:
                return
            if index in chosen:
                yield _hash_frame(im, wanted, reduced=False)
    except Exception:  # a broken later frame leaves the first frame's hashes intact
        return


def _hash_frame(frame: Image.Image, wanted: frozenset[str], *, reduced: bool) -> _Frame:
    """Hashes of one decoded frame. Up to _EXACT_SIDE pixels, from the file's own pixels,
    pHash and dHash are exactly imagehash's values (imagehash.phash/dhash start with
    these very resizes, which on our 32x32 and 9x8 inputs become no-op copies). A
    reduced-scale decode or a larger image is first box-reduced (Pillow's reducing_gap),
    which moves them at most 2 bits (tested) at a fraction of the cost."""
    rgb = _to_rgb(frame)
    gap = _REDUCING_GAP if reduced or max(rgb.size) > _EXACT_SIDE else None
    found: dict[str, object] = {}
    if "phash" in wanted or "dhash" in wanted:
        gray = rgb.convert("L")
    if "phash" in wanted:
        small = gray.resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=gap)
        found["phash"] = str(imagehash.phash(small))
        found["phash_mirrored"] = str(
            imagehash.phash(small.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
        )
    if "dhash" in wanted:
        strip = gray.resize((9, 8), Image.Resampling.LANCZOS, reducing_gap=gap)
        found["dhash"] = str(imagehash.dhash(strip))
    if "pdq" in wanted:
        pdq_size = _pdq_size(*rgb.size)
        if pdq_size != rgb.size:
            rgb = rgb.resize(pdq_size, Image.Resampling.BOX)
        vectors, quality = pdqhash.compute_dihedral(np.asarray(rgb))
        found["pdqs"] = tuple(_bits_to_hex(v) for v in vectors)
        found["pdq_quality"] = int(quality)
    return _Frame(**found)


def _to_rgb(frame: Image.Image) -> Image.Image:
    """8-bit RGB, alpha dropped (as imagehash and ThreatExchange do, so list hashes made
    by them match). 16-bit grey is scaled down: Pillow's convert() would clip it."""
    if frame.mode.startswith("I;16"):
        frame = Image.fromarray((np.asarray(frame) >> 8).astype(np.uint8))
    elif frame.mode == "P" and "transparency" in frame.info:
        frame = frame.convert("RGBA")  # same colours; direct to RGB makes Pillow warn
    return frame if frame.mode == "RGB" else frame.convert("RGB")


def _pdq_size(width: int, height: int) -> tuple[int, int]:
    """Size to hand PDQ. Up to _PDQ_EXACT_SIDE it gets every pixel, so its hash is
    ThreatExchange's exactly. Beyond that: PDQ blurs each side with a box of
    ceil(side/128) pixels before sampling 64x64, and shrinking each side to
    _PDQ_WINDOWS such boxes keeps the blur the same fraction of the image, so the hash
    stays within a few bits of the full-size one (an odd box count is centred, unlike a
    fixed size) at a fraction of the cost."""
    if max(width, height) <= _PDQ_EXACT_SIDE:
        return width, height

    def side(pixels: int) -> int:
        boxes = -(-pixels // 128)
        return pixels if boxes <= _PDQ_WINDOWS else round(pixels * _PDQ_WINDOWS / boxes)

    return side(width), side(height)


def _bits_to_hex(bits: np.ndarray) -> str:
    """Hex of a pdqhash bit vector. pdqhash lists bit 255 first, and ThreatExchange's
    text form (Hash256::format) prints words 15..0, most significant first: so packing
    the vector big-endian gives exactly that text."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def _describe(exc: BaseException) -> str:
    """Exception text fit for a log: byte literals (file content) scrubbed, length capped."""
    return f"{type(exc).__name__}: {_BYTES_LITERAL.sub('<bytes>', str(exc))}"[:200]
