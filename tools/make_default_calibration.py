#!/usr/bin/env python
"""Build the embedded default calibration set shipped in ``calibration/data/``.

Run from the repository root (needs ``../shared`` and, for the photos, PyPI access once)::

    python tools/make_default_calibration.py                       # both files
    python tools/make_default_calibration.py --skimage-wheel PATH  # photos from a wheel you have

It writes two files; nothing downloads data at run time, the package only reads them.

``calibration/data/default.npz`` — 300 CIFAR-10 training images, class-balanced
    Drawn from ``../shared/datasets/cifar10-train.tar.gz`` (``train/<class>/NNNN.jpg``, 32×32 JPEGs):
    for each class in sorted order, ``np.random.default_rng(SEED).choice`` picks 30 of the class's
    sorted file names without replacement (one generator, classes visited in order); the picks are
    stored class-major, each class in file-name order. Keys: ``images`` uint8 (300, 32, 32, 3) HWC RGB,
    ``labels`` int64 (300,), ``class_names`` str (10,), ``files`` str (300,) archive member names,
    ``provenance`` str (JSON). CIFAR-10 (A. Krizhevsky, 2009, "Learning Multiple Layers of Features from
    Tiny Images") carries no formal licence; it is redistributed widely for research and benchmarking.

``calibration/data/photos.npz`` — 10 public-domain / CC0 photographs from scikit-image
    Read straight out of the scikit-image wheel (``skimage/data/*``; the wheel is not installed and is
    not a dependency), resized with Pillow LANCZOS so the shorter side is 256 (aspect kept), stored as
    uint8 arrays: HWC RGB for colour photos, HW for greyscale ones (the loader converts to RGB). Keys:
    ``photo_00`` … ``photo_09``, ``names`` str (10,), ``licenses`` str (10,), ``provenance`` str (JSON).
    Licences are the ones scikit-image's ``skimage.data`` docstrings state (see PHOTOS below).

Reproducible: fixed seed, sorted inputs, ``np.savez_compressed`` (its zip entries carry a fixed date),
so the same archive, wheel, NumPy and Pillow give byte-identical files; ``--check`` rebuilds in memory
and compares with the committed files.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from mobile_export.artifacts import sha256_file as _sha256_file
import PIL
from PIL import Image

log = logging.getLogger("make_default_calibration")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "calibration" / "data"
CIFAR_TAR = REPO.parent / "shared" / "datasets" / "cifar10-train.tar.gz"
SEED = 0
PER_CLASS = 30
PHOTO_SHORT_SIDE = 256
SKIMAGE_VERSION = "0.26.0"

# (name, file inside skimage/data, licence as stated in scikit-image's skimage.data docstring)
PHOTOS: tuple[tuple[str, str, str], ...] = (
    ("astronaut", "astronaut.png", "public domain (NASA Great Images; Eileen Collins)"),
    ("camera", "camera.png", "CC0 (photographer Lav Varshney)"),
    ("chelsea", "chelsea.png", "CC0 (photographer Stefan van der Walt)"),
    ("coffee", "coffee.png", "CC0 (photographer Rachel Michetti; courtesy Pikolo Espresso Bar)"),
    ("rocket", "rocket.jpg", "public domain (SpaceX photos, DSCOVR launch on Falcon 9)"),
    ("hubble_deep_field", "hubble_deep_field.jpg", "public domain (NASA / HubbleSite XDF)"),
    ("clock", "clock_motion.png", "public domain (photographer Stefan van der Walt)"),
    ("retina", "retina.jpg", "CC0 1.0 (Mikael Haggstrom, Wikimedia Commons)"),
    ("brick", "brick.png", "CC0 (CC0Textures Bricks25)"),
    ("grass", "grass.png", "CC0 (DeviantArt linolafett, Grass-01)"),
)




def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def build_cifar(tar_path: Path, seed: int = SEED, per_class: int = PER_CLASS) -> dict[str, np.ndarray]:
    """The class-balanced CIFAR-10 sample; reads only the chosen members' bytes."""
    with tarfile.open(tar_path, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".jpg")]
        by_class: dict[str, list[tarfile.TarInfo]] = {}
        for m in members:
            parts = Path(m.name).parts  # ("train", class, file)
            if len(parts) == 3:
                by_class.setdefault(parts[1], []).append(m)
        class_names = sorted(by_class)
        rng = np.random.default_rng(seed)
        chosen: list[tuple[int, tarfile.TarInfo]] = []
        for label, cls in enumerate(class_names):
            files = sorted(by_class[cls], key=lambda m: m.name)
            if len(files) < per_class:
                raise SystemExit(f"class {cls} has only {len(files)} images, need {per_class}")
            picks = np.sort(rng.choice(len(files), size=per_class, replace=False))
            chosen.extend((label, files[i]) for i in picks)
        # read in archive order (forward seeks only in the gzip stream), store in chosen order
        pixels: dict[str, np.ndarray] = {}
        for _, m in sorted(chosen, key=lambda lm: lm[1].offset):
            with Image.open(io.BytesIO(tar.extractfile(m).read())) as im:
                pixels[m.name] = np.asarray(im.convert("RGB"), dtype=np.uint8)
    images = np.stack([pixels[m.name] for _, m in chosen])
    assert images.shape == (len(class_names) * per_class, 32, 32, 3), images.shape
    provenance = {
        "dataset": "CIFAR-10 train split (A. Krizhevsky, 2009), 32x32 JPEGs in ImageFolder layout",
        "archive": tar_path.name,
        "archive_sha256": _sha256_file(tar_path),
        "sampling": f"per class (sorted), np.random.default_rng({seed}).choice({per_class}, replace=False) "
                    "over sorted file names; stored class-major in file-name order",
        "licence": "CIFAR-10 has no formal licence; widely redistributed for research/benchmarking",
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "tool": "tools/make_default_calibration.py",
    }
    return {
        "images": images,
        "labels": np.array([label for label, _ in chosen], dtype=np.int64),
        "class_names": np.array(class_names),
        "files": np.array([m.name for _, m in chosen]),
        "provenance": np.array(json.dumps(provenance, sort_keys=True)),
    }


def _fetch_skimage_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           f"scikit-image=={SKIMAGE_VERSION}", "-d", str(dest)]
    log.info("fetching the scikit-image wheel (for its sample photos): %s", " ".join(cmd))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wheels = sorted(dest.glob("scikit_image-*.whl"))
    if not wheels:
        raise SystemExit("pip download produced no scikit-image wheel")
    return wheels[0]


def _resize_short_side(img: Image.Image, short: int) -> Image.Image:
    w, h = img.size
    if min(w, h) < short:
        raise SystemExit(f"photo {img.size} is smaller than {short} on its shorter side")
    if w <= h:
        size = (short, int(round(h * short / w)))
    else:
        size = (int(round(w * short / h)), short)
    return img.resize(size, Image.LANCZOS)


def build_photos(wheel: Path) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(wheel) as zf:
        for i, (name, fname, _) in enumerate(PHOTOS):
            with Image.open(io.BytesIO(zf.read(f"skimage/data/{fname}"))) as im:
                im = im.convert("L") if im.mode in ("L", "1", "I;16", "I") else im.convert("RGB")
                arrays[f"photo_{i:02d}"] = np.asarray(_resize_short_side(im, PHOTO_SHORT_SIDE), dtype=np.uint8)
    provenance = {
        "source": f"scikit-image {SKIMAGE_VERSION} wheel, skimage/data/* (read from the wheel, not installed)",
        "wheel": wheel.name,
        "wheel_sha256": _sha256_file(wheel),
        "resize": f"Pillow LANCZOS, shorter side {PHOTO_SHORT_SIDE}, aspect kept (round)",
        "photos": {name: {"file": fname, "licence": lic} for name, fname, lic in PHOTOS},
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "tool": "tools/make_default_calibration.py",
    }
    arrays["names"] = np.array([p[0] for p in PHOTOS])
    arrays["licenses"] = np.array([p[2] for p in PHOTOS])
    arrays["provenance"] = np.array(json.dumps(provenance, sort_keys=True))
    return arrays


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cifar-tar", type=Path, default=CIFAR_TAR)
    ap.add_argument("--skimage-wheel", type=Path, help="a scikit-image wheel (else pip downloads one)")
    ap.add_argument("--out", type=Path, default=DATA_DIR)
    ap.add_argument("--no-photos", action="store_true", help="rebuild only default.npz")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    outputs = {"default.npz": _npz_bytes(build_cifar(args.cifar_tar))}
    if not args.no_photos:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = args.skimage_wheel or _fetch_skimage_wheel(Path(tmp))
            outputs["photos.npz"] = _npz_bytes(build_photos(wheel))

    status = 0
    for name, data in outputs.items():
        path = args.out / name
        if args.check:
            same = path.exists() and path.read_bytes() == data
            log.info("%s: %s", path, "identical" if same else "DIFFERS")
            status |= 0 if same else 1
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            log.info("wrote %s (%d bytes, sha256 %s)", path, len(data), hashlib.sha256(data).hexdigest())
    return status


if __name__ == "__main__":
    sys.exit(main())
