"""Hashing tests on benign material only: generated images and scikit-image's photos."""

import hashlib
import io
import itertools
import random
import struct
import zlib

import imagehash
import numpy as np
import pdqhash
import pytest
from PIL import Image
from skimage import data

from matcher import SIGNAL_TYPES, Entry, ImageHashes, Index, hash_file, hash_image
from matcher.hashing import _bits_to_hex

PHASH, DHASH, PDQ = SIGNAL_TYPES["phash"], SIGNAL_TYPES["dhash"], SIGNAL_TYPES["pdq"]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")
# Natural photos for the false-positive check (data.cat() is chelsea again, so left out).
MORE_PHOTOS = (*PHOTOS, "immunohistochemistry", "hubble_deep_field", "retina", "horse", "coins")


def photo(name: str, size: tuple[int, int] | None = None) -> Image.Image:
    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    return img.resize(size, Image.Resampling.LANCZOS) if size else img


def encode(img: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def threatexchange_pdq(img: Image.Image) -> str:
    """PDQ as python-threatexchange's pdq_from_bytes computes it: full resolution, hex
    of the bit string taken as one big-endian number."""
    vector, _quality = pdqhash.compute(np.asarray(img.convert("RGB")))
    return f"{int(''.join(str(int(b)) for b in vector), 2):064x}"


def index_distance(signal, query: ImageHashes, stored: ImageHashes) -> int:
    """What the index sees: the query's main and query-only hashes against a stored one."""
    return min(
        signal.distance(q, getattr(stored, signal.name)) for q in query.hashes_for(signal.name)
    )


# --- reference values ------------------------------------------------------------------


def test_crypto_digests_are_of_the_raw_bytes():
    raw = encode(photo("coffee"))
    h = hash_image(raw)
    assert (h.md5, h.sha1, h.sha256) == (
        hashlib.md5(raw).hexdigest(),
        hashlib.sha1(raw).hexdigest(),
        hashlib.sha256(raw).hexdigest(),
    )
    assert (h.bytes, h.format, h.width, h.height, h.error) == (len(raw), "PNG", 600, 400, None)


@pytest.mark.parametrize("name", PHOTOS)
def test_png_hashes_equal_the_reference_libraries(name):
    raw = encode(photo(name))
    h = hash_image(raw)
    reference = Image.open(io.BytesIO(raw))
    assert h.phash == str(imagehash.phash(reference))
    assert h.dhash == str(imagehash.dhash(reference))
    assert h.pdq == threatexchange_pdq(reference)  # under 640 px: PDQ sees the full image
    assert h.pdq_quality == 100


@pytest.mark.parametrize(
    "convert",
    [
        lambda img: img.convert("L"),
        lambda img: img.convert("RGBA"),
        lambda img: img.convert("P", palette=Image.Palette.ADAPTIVE),
        lambda img: img.convert("LA"),
        lambda img: img.convert("1"),
    ],
    ids=["L", "RGBA", "P", "LA", "1"],
)
def test_png_modes_keep_canonical_imagehash(convert):
    raw = encode(convert(photo("chelsea")))
    reference = Image.open(io.BytesIO(raw))
    h = hash_image(raw)
    assert h.phash == str(imagehash.phash(reference))
    assert h.dhash == str(imagehash.dhash(reference))


def test_pdq_hex_is_threatexchange_bit_order():
    # Hash256::format prints words w[15]..w[0] as %04hx; pdqhash's own hash_to_vector
    # turns those words into the vector it returns.
    rng = random.Random(7)
    for _ in range(20):
        words = [rng.randrange(1 << 16) for _ in range(16)]
        expected = "".join(f"{w:04x}" for w in reversed(words))
        assert _bits_to_hex(pdqhash.bindings.hash_to_vector(words)) == expected


# --- decoding shortcuts stay close to the full decode ---------------------------------


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (400, 300)])
@pytest.mark.parametrize("name", PHOTOS)
def test_jpeg_reduced_decode_drift_is_small(name, size):
    raw = encode(photo(name, size), "JPEG", quality=85)
    full = Image.open(io.BytesIO(raw))
    full.load()
    h = hash_image(raw)
    alone = hash_image(raw, signals=("phash",))  # decoded at 1/8 where it can be
    # Measured on these photos: pHash 0 bits, dHash at most 2, PDQ at most 12 (1280x720).
    assert PHASH.distance(h.phash, str(imagehash.phash(full))) <= 2
    assert PHASH.distance(alone.phash, str(imagehash.phash(full))) <= 2
    assert DHASH.distance(h.dhash, str(imagehash.dhash(full))) <= 2
    assert PDQ.distance(h.pdq, threatexchange_pdq(full)) <= 16
    if max(size) <= 640:  # small enough to be hashed from every pixel: exact
        assert (h.phash, h.dhash, h.pdq) == (
            str(imagehash.phash(full)),
            str(imagehash.dhash(full)),
            threatexchange_pdq(full),
        )


def test_large_png_drift_is_small():
    img = photo("astronaut", (1920, 1080))
    h = hash_image(encode(img, compress_level=1))
    assert PHASH.distance(h.phash, str(imagehash.phash(img))) <= 2
    assert PDQ.distance(h.pdq, threatexchange_pdq(img)) <= 16


def test_only_the_wanted_perceptual_hashes():
    raw = encode(photo("coffee"), "JPEG")
    full = hash_image(raw)
    alone = hash_image(raw, signals=("phash",))
    assert (alone.md5, alone.sha256, alone.phash) == (full.md5, full.sha256, full.phash)
    assert alone.dhash is alone.pdq is alone.pdq_quality is None
    assert alone.query_phashes == full.query_phashes and alone.query_pdqs == ()
    crypto = hash_image(raw, signals=())
    assert (crypto.sha1, crypto.width, crypto.phash) == (full.sha1, 600, None)
    with pytest.raises(ValueError, match="not perceptual signal types: \\['md5'\\]"):
        hash_image(raw, signals=("phash", "md5"))


# --- bad input never raises ------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def assert_only_digests(h, raw: bytes, kind: str) -> None:
    assert h.error is not None and h.error[0] == kind
    assert (h.md5, h.sha256, h.bytes) == (
        hashlib.md5(raw).hexdigest(),
        hashlib.sha256(raw).hexdigest(),
        len(raw),
    )
    assert h.phash is h.dhash is h.pdq is h.pdq_quality is None
    assert h.query_phashes == h.query_pdqs == ()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        bytes(random.Random(1).randrange(256) for _ in range(4096)),
        encode(photo("coffee"), "JPEG")[:5000],
        encode(photo("coffee"))[:5000],
        png_header(64, 64),  # header, no pixel data
    ],
    ids=["empty", "random", "truncated-jpeg", "truncated-png", "no-pixels"],
)
def test_bad_image(raw):
    assert_only_digests(hash_image(raw), raw, "bad_image")


def test_formats_a_browser_does_not_show_are_refused():
    raw = encode(photo("coffee", (60, 40)), "PPM")
    assert_only_digests(hash_image(raw), raw, "bad_image")


def test_truncated_image_keeps_what_the_header_said():
    h = hash_image(encode(photo("coffee"), "JPEG")[:5000])
    assert (h.format, h.width, h.height) == ("JPEG", 600, 400)


def test_error_message_carries_no_image_bytes():
    raw = encode(photo("astronaut"))
    second_idat = raw.index(b"IDAT", raw.index(b"IDAT") + 4)
    raw = raw[:second_idat] + b"\x01\x02\x03\x04" + raw[second_idat + 4 :]
    h = hash_image(raw)
    assert h.error == ("bad_image", "SyntaxError: broken PNG file (chunk <bytes>)")


def test_corrupted_bytes_never_raise():
    rng = random.Random(3)
    sources = [encode(photo("rocket", (64, 48)), fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP")]
    for _ in range(200):
        raw = bytearray(rng.choice(sources))
        for _ in range(rng.randrange(1, 8)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        h = hash_image(bytes(raw))
        assert h.error is None or h.error[0] == "bad_image"


def test_decompression_bomb_header_is_too_large():
    raw = png_header(100_000, 100_000)
    assert_only_digests(hash_image(raw), raw, "too_large")


def test_pillow_bomb_warning_is_too_large_too():
    # 10^8 pixels: over Pillow's warning limit, under its error limit and our max_pixels.
    h = hash_image(png_header(10_000, 10_000), max_pixels=200_000_000)
    assert h.error is not None and h.error[0] == "too_large"


def test_max_pixels_is_checked_before_decoding():
    raw = encode(photo("coffee"))
    h = hash_image(raw, max_pixels=600 * 400 - 1)
    assert_only_digests(h, raw, "too_large")
    assert (h.width, h.height, h.format) == (600, 400, "PNG")
    assert "600x400" in h.error[1]


# --- image modes -------------------------------------------------------------------------


def test_sixteen_bit_grey_is_scaled_not_clipped():
    grey = np.asarray(photo("camera").convert("L"), dtype=np.uint16)
    raw = encode(Image.fromarray(grey * 257))
    assert Image.open(io.BytesIO(raw)).mode == "I;16"
    sixteen = hash_image(raw)
    eight = hash_image(encode(Image.fromarray(grey.astype(np.uint8))))
    assert (sixteen.phash, sixteen.pdq) == (eight.phash, eight.pdq)


def test_cmyk_jpeg_and_palette_transparency_hash():
    cmyk = hash_image(encode(photo("coffee").convert("CMYK"), "JPEG", quality=90))
    rgb = hash_image(encode(photo("coffee"), "JPEG", quality=90))
    assert cmyk.error is None and PHASH.distance(cmyk.phash, rgb.phash) <= 2
    palette = photo("coffee").convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = bytes([0, 128] + [255] * 254)
    h = hash_image(encode(palette))
    assert h.error is None and PHASH.distance(h.phash, rgb.phash) <= 4


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (1, 300)])
def test_tiny_images_hash(size):
    h = hash_image(encode(Image.new("RGB", size, (200, 30, 30))))
    assert h.error is None and len(h.phash) == 16 and len(h.pdq) == 64
    assert h.hashes_for("pdq") == ()  # flat: PDQ quality 0, never looked up


# --- animation and flips -------------------------------------------------------------------


def animation(frames: list[Image.Image], fmt: str = "GIF") -> bytes:
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_frames_are_query_hashes(fmt):
    names = ("astronaut", "coffee", "chelsea")
    raw = animation([photo(n, (200, 150)) for n in names], fmt)
    h = hash_image(raw)
    decoded = Image.open(io.BytesIO(raw))
    frame_phashes = []
    for i in range(len(names)):
        decoded.seek(i)
        frame_phashes.append(str(imagehash.phash(decoded.convert("RGB"))))
    assert h.phash == frame_phashes[0]
    assert set(frame_phashes[1:]) <= set(h.query_phashes)
    assert len(h.query_pdqs) == 7 + 2 * 2  # frame 0's other orientations, then 2 per frame


def test_long_animation_hashes_at_most_eight_frames():
    frames = [Image.new("RGB", (40, 40), (i * 12, 255 - i * 12, (i * 57) % 256)) for i in range(20)]
    for i, frame in enumerate(frames):
        frame.paste((255, 255, 255), (i * 2, 0, i * 2 + 8, 40))
    h = hash_image(animation(frames))
    assert 1 <= len(h.query_phashes) <= 2 * 8 - 1
    only_first = hash_image(animation(frames), max_pixels=40 * 40)  # no budget for more frames
    assert only_first.query_phashes == (h.query_phashes[0],)  # just frame 0 mirrored


def test_mirrored_copy_is_found_through_query_hashes():
    original = hash_image(encode(photo("rocket")))
    mirrored = hash_image(encode(photo("rocket").transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    for signal in (PHASH, PDQ):
        plain = signal.distance(getattr(mirrored, signal.name), getattr(original, signal.name))
        assert plain > signal.default_threshold
        assert index_distance(signal, mirrored, original) <= signal.default_threshold
    assert original.phash in mirrored.query_phashes


def test_hash_file(tmp_path):
    path = tmp_path / "generated.png"
    path.write_bytes(encode(photo("coffee", (80, 60))))
    assert hash_file(path) == hash_image(path.read_bytes())
    with pytest.raises(OSError):
        hash_file(tmp_path / "missing.png")


# --- end to end: photos against an index ---------------------------------------------------


@pytest.fixture(scope="module")
def photo_index() -> Index:
    entries = []
    for name in MORE_PHOTOS:
        h = hash_image(encode(photo(name)))
        for signal in ("md5", "phash", "dhash", "pdq"):
            entries.append(Entry(len(entries), name, "test-list", signal, getattr(h, signal), None))
    return Index.build(entries)


def variants(img: Image.Image) -> dict[str, bytes]:
    w, h = img.size
    return {
        "jpeg-q40": encode(img, "JPEG", quality=40),
        "webp": encode(img, "WEBP", quality=70),
        "half-size": encode(img.resize((w // 2, h // 2), Image.Resampling.LANCZOS), "JPEG"),
        "1920x1080": encode(img.resize((1920, 1080), Image.Resampling.LANCZOS), "JPEG"),
        "mirrored": encode(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG"),
    }


@pytest.mark.parametrize("name", MORE_PHOTOS)
def test_altered_copies_match_only_their_photo(photo_index, name):
    copies = variants(photo(name))
    results = photo_index.match_many([hash_image(raw) for raw in copies.values()])
    for variant, matches in zip(copies, results, strict=True):
        found = {(m.entry_id, m.signal_type) for m in matches}
        assert {m.entry_id for m in matches} == {name}, variant
        assert {(name, "phash"), (name, "pdq")} <= found, variant
        if variant != "mirrored":  # dHash is not looked up mirrored
            assert (name, "dhash") in found, variant


def test_original_bytes_match_on_md5_first(photo_index):
    matches = photo_index.match(hash_image(encode(photo("camera"))))
    assert [(m.entry_id, m.signal_type, m.distance) for m in matches] == [
        ("camera", "md5", 0),
        ("camera", "dhash", 0),
        ("camera", "pdq", 0),
        ("camera", "phash", 0),
    ]


def test_distinct_photos_are_far_apart():
    hashes = {name: hash_image(encode(photo(name))) for name in MORE_PHOTOS}
    for a, b in itertools.permutations(hashes, 2):
        for signal in (PHASH, DHASH, PDQ):
            distance = index_distance(signal, hashes[a], hashes[b])
            assert distance > signal.default_threshold, (a, b, signal.name)
