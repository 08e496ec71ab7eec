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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from matcher.signals import PDQ

# Formats a browser shows (TIFF for `lists add-images`); the rest of Pillow's plugins
# are attack surface we do not need (EPS, for one, runs Ghostscript).
Image.init()
_FORMATS = tuple(
    f for f in ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "ICO", "TIFF") if f in Image.OPEN
)
_MAX_FRAMES = 8  # animation frames hashed, evenly spaced, frame 0 included
_PDQ_WINDOWS = 5  # see _pdq_side
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


@dataclass(frozen=True)
class _Frame:
    phash: str
    phash_mirrored: str
    dhash: str
    pdqs: tuple[str, ...]  # pdqhash.compute_dihedral order; [0] original, [5] mirrored
    pdq_quality: int


def hash_file(path: str | os.PathLike[str], *, max_pixels: int = 50_000_000) -> ImageHashes:
    """Hash a file's bytes. A missing or unreadable file raises OSError; undecodable
    content does not raise (see hash_image)."""
    return hash_image(Path(path).read_bytes(), max_pixels=max_pixels)


def hash_image(data: bytes, *, max_pixels: int = 50_000_000) -> ImageHashes:
    """Hash image bytes. Never raises for bad input: undecodable or truncated data gives
    error kind "bad_image", more than `max_pixels` pixels gives "too_large"; the crypto
    digests are filled either way so exact lists still match."""
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
                return ImageHashes(**digests, **header, **_perceptual(im, max_pixels))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return ImageHashes(**digests, **header, error=("too_large", _describe(exc)))
    except Exception as exc:  # any failure of a decoder on untrusted bytes is a bad image
        return ImageHashes(**digests, **header, error=("bad_image", _describe(exc)))


def _perceptual(im: Image.Image, max_pixels: int) -> dict[str, object]:
    # JPEG only (a no-op elsewhere): decode at 1/2, 1/4 or 1/8 scale, never below PDQ's
    # working size; pHash and dHash need far less.
    im.draft("RGB", (_pdq_side(im.width), _pdq_side(im.height)))
    first = _hash_frame(im)
    frames = [first, *_other_frames(im, max_pixels)]
    # Every frame is looked up mirrored too; the first one also in PDQ's rotations.
    phashes = [h for f in frames for h in (f.phash, f.phash_mirrored)]
    pdqs = [
        h
        for f in frames
        if f.pdq_quality >= PDQ.min_quality
        for h in (f.pdqs if f is first else (f.pdqs[0], f.pdqs[5]))
    ]
    return {
        "phash": first.phash,
        "dhash": first.dhash,
        "pdq": first.pdqs[0],
        "pdq_quality": first.pdq_quality,
        "query_phashes": _without(first.phash, phashes),
        "query_pdqs": _without(first.pdqs[0], pdqs),
    }


def _without(main: str, hashes: list[str]) -> tuple[str, ...]:
    """Distinct hashes other than the main one, in order."""
    return tuple(h for h in dict.fromkeys(hashes) if h != main)


def _other_frames(im: Image.Image, max_pixels: int) -> Iterator[_Frame]:
    """Frames after the first, up to _MAX_FRAMES in all, evenly spaced over as many frames
    as max_pixels lets us decode (frames are decoded in sequence to reach a later one)."""
    budget = max_pixels - im.width * im.height
    walk = min(getattr(im, "n_frames", 1), max(1, max_pixels // (im.width * im.height)))
    wanted = set(np.linspace(0, walk - 1, min(walk, _MAX_FRAMES)).round().astype(int).tolist())
    try:
        for index in range(1, max(wanted) + 1):
            im.seek(index)
            budget -= im.width * im.height  # a GIF's canvas may grow frame by frame
            if budget < 0:
                return
            if index in wanted:
                yield _hash_frame(im)
    except Exception:  # a broken later frame leaves the first frame's hashes intact
        return


def _hash_frame(frame: Image.Image) -> _Frame:
    rgb = _to_rgb(frame)
    gray = rgb.convert("L")
    # imagehash.phash/dhash start with exactly these resizes; done once here, theirs
    # become no-op copies, so the values stay the canonical imagehash ones.
    small = gray.resize((32, 32), Image.Resampling.LANCZOS)
    mirrored = small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    strip = gray.resize((9, 8), Image.Resampling.LANCZOS)
    pdq_size = (_pdq_side(rgb.width), _pdq_side(rgb.height))
    if pdq_size != rgb.size:
        rgb = rgb.resize(pdq_size, Image.Resampling.BOX)
    vectors, quality = pdqhash.compute_dihedral(np.asarray(rgb))
    return _Frame(
        phash=str(imagehash.phash(small)),
        phash_mirrored=str(imagehash.phash(mirrored)),
        dhash=str(imagehash.dhash(strip)),
        pdqs=tuple(_bits_to_hex(v) for v in vectors),
        pdq_quality=int(quality),
    )


def _to_rgb(frame: Image.Image) -> Image.Image:
    """8-bit RGB, alpha dropped (as imagehash and ThreatExchange do, so list hashes made
    by them match). 16-bit grey is scaled down: Pillow's convert() would clip it."""
    if frame.mode.startswith("I;16"):
        frame = Image.fromarray((np.asarray(frame) >> 8).astype(np.uint8))
    elif frame.mode == "P" and "transparency" in frame.info:
        frame = frame.convert("RGBA")  # same colours; direct to RGB makes Pillow warn
    return frame if frame.mode == "RGB" else frame.convert("RGB")


def _pdq_side(side: int) -> int:
    """Side length to hand PDQ. PDQ blurs each side with a box of ceil(side/128) pixels
    before sampling 64x64; shrinking to _PDQ_WINDOWS such boxes keeps the blur the same
    fraction of the image, so the hash stays close to the full-size one (an odd box is
    centred, unlike a fixed 512 px which drifts far more) at a fraction of the cost."""
    boxes = -(-side // 128)
    return side if boxes <= _PDQ_WINDOWS else round(side * _PDQ_WINDOWS / boxes)


def _bits_to_hex(bits: np.ndarray) -> str:
    """Hex of a pdqhash bit vector. pdqhash lists bit 255 first, and ThreatExchange's
    text form (Hash256::format) prints words 15..0, most significant first: so packing
    the vector big-endian gives exactly that text."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def _describe(exc: BaseException) -> str:
    """Exception text fit for a log: byte literals (file content) scrubbed, length capped."""
    return f"{type(exc).__name__}: {_BYTES_LITERAL.sub('<bytes>', str(exc))}"[:200]
