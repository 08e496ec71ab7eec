"""Robustness of matching to the edits that re-posts go through, on the real photographs
that ship in a PyPI package: the 18 of scikit-image's bundled images that are photographs
(portraits, animals, objects, astronomy, microscopy, textures, pages of text).

Each photograph is listed from its PNG, as `hotline lists add-images` lists it; each
edit (JPEG q50, resize 50 %, 320-px thumbnail, text overlay, gamma 0.6, grayscale, crop
5 %, rotate 5°, mirror) is looked up as a scan looks it up: our hashes, mirrored and
rotated query hashes included, through the index at the default thresholds (pHash 10,
dHash 10, PDQ 31). Per signal type and for the combined decision (any one of them
matches): recall (an edit matches its own photograph) and false positives (an edit
matches another photograph).

Baseline, same run: the canonical hashes (imagehash pHash and dHash, pdqhash on the full
decode) compared directly at the same thresholds, as a matcher without our lookups would.

Target: zero false positives between distinct photographs, combined recall ≥ 0.90.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageDraw, ImageFont, ImageOps
from skimage import data

from matcher import SIGNAL_TYPES, Entry, Index, hash_image
from tests.helpers import encode

PHOTOS = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina",
    "immunohistochemistry", "coins", "moon", "page", "text", "clock", "gravel", "grass",
    "brick", "cell", "stereo_motorcycle",
)  # fmt: skip
PERCEPTUAL = ("phash", "dhash", "pdq")


def load(name: str) -> Image.Image:
    pixels = getattr(data, name)()
    if name == "stereo_motorcycle":  # a stereo pair: the left view only
        pixels = pixels[0]
    return Image.fromarray(pixels).convert("RGB")


def _overlay(img: Image.Image) -> Image.Image:
    out = img.copy()
    font = ImageFont.load_default(size=max(12, img.height // 12))
    ImageDraw.Draw(out).text(
        (img.width // 20, img.height * 4 // 5),
        "reposted 2024",
        fill="white",
        font=font,
        stroke_width=2,
        stroke_fill="black",
    )
    return out


def _crop(img: Image.Image) -> Image.Image:
    dx, dy = img.width // 40, img.height // 40  # 5 % of each side in all, centred
    return img.crop((dx, dy, img.width - dx, img.height - dy))


EDITS: dict[str, Callable[[Image.Image], bytes]] = {
    "jpeg q50": lambda img: encode(img, quality=50),
    "resize 50%": lambda img: encode(img.resize((img.width // 2, img.height // 2))),
    "thumbnail 320": lambda img: encode(ImageOps.contain(img, (320, 320))),
    "text overlay": lambda img: encode(_overlay(img)),
    "gamma 0.6": lambda img: encode(img.point(lambda v: round(255 * (v / 255) ** 0.6))),
    "grayscale": lambda img: encode(img.convert("L")),
    "crop 5%": lambda img: encode(_crop(img)),
    "rotate 5°": lambda img: encode(img.rotate(5, Image.Resampling.BICUBIC)),
    "mirror": lambda img: encode(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
}


def canonical(raw: bytes) -> dict[str, str]:
    image = Image.open(io.BytesIO(raw))
    vector, _ = pdqhash.compute(np.asarray(image.convert("RGB")))
    return {
        "phash": str(imagehash.phash(image)),
        "dhash": str(imagehash.dhash(image)),
        "pdq": np.packbits(vector.astype(np.uint8)).tobytes().hex(),
    }


def main() -> None:
    photos = {name: load(name) for name in PHOTOS}
    originals = {name: encode(img, "PNG") for name, img in photos.items()}
    listed = [
        Entry(len(PHOTOS) * i + k, name, "listed", signal, value, None)
        for k, name in enumerate(PHOTOS)
        for i, (signal, value) in enumerate(hash_image(originals[name]).main_hashes().items())
        if signal in PERCEPTUAL
    ]
    index = Index.build(listed)
    reference = {name: canonical(raw) for name, raw in originals.items()}
    kinds = (*PERCEPTUAL, "combined")
    ours = {kind: [0, 0] for kind in kinds}  # hits of its own photo, false positives
    naive = {kind: [0, 0] for kind in kinds}
    per_edit = {edit: [0, 0] for edit in EDITS}  # combined recall: ours, canonical
    for name, img in photos.items():
        for edit, make in EDITS.items():
            raw = make(img)
            found = {(m.entry_id, m.signal_type) for m in index.match(hash_image(raw))}
            edited = canonical(raw)
            near = {
                (other, signal)
                for other, ref in reference.items()
                for signal in PERCEPTUAL
                if SIGNAL_TYPES[signal].distance(edited[signal], ref[signal])
                <= SIGNAL_TYPES[signal].default_threshold
            }
            for tally, pairs, column in ((ours, found, 0), (naive, near, 1)):
                for kind in kinds:
                    signals = PERCEPTUAL if kind == "combined" else (kind,)
                    hit = {other for other, signal in pairs if signal in signals}
                    tally[kind][0] += name in hit
                    tally[kind][1] += len(hit - {name})
                per_edit[edit][column] += any(other == name for other, _ in pairs)
    trials = len(photos) * len(EDITS)
    print(f"{len(photos)} photographs x {len(EDITS)} edits = {trials} look-ups")
    print(f"{'':24}" + "".join(f"{kind:>22}" for kind in kinds))
    for label, tally in (("ours (recall, false +)", ours), ("canonical (baseline)", naive)):
        cells = "".join(f"{tally[k][0] / trials:>15.2f}  {tally[k][1]:>4}" for k in kinds)
        print(f"{label:<24}{cells}")
    print("combined recall by edit:  ours  canonical")
    for edit, (mine, theirs) in per_edit.items():
        print(f"  {edit:<22} {mine / len(photos):6.2f} {theirs / len(photos):10.2f}")
    recall, false_positives = ours["combined"][0] / trials, ours["combined"][1]
    verdict = "met" if recall >= 0.90 and false_positives == 0 else "MISSED"
    print(
        f"target: combined recall {recall:.2f} ≥ 0.90 and {false_positives} false positives "
        f"= 0: {verdict}"
    )


if __name__ == "__main__":
    main()
