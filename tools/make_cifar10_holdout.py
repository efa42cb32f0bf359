"""Build calibration/data/cifar10_holdout.npz: 1,000 CIFAR-10 images (100 per class) drawn from the
held-out split that the shipped CIFAR-10 checkpoints never saw in training
(models/weights/cifar10_holdout.txt), so exports and `validate --data cifar10` report real accuracy
offline.

    python tools/make_cifar10_holdout.py [--archive ../shared/datasets/cifar10-train.tar.gz] [--check]
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "calibration" / "data" / "cifar10_holdout.npz"
HOLDOUT_LIST = REPO / "models" / "weights" / "cifar10_holdout.txt"
ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-train.tar.gz"
PER_CLASS = 100
SEED = 0

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_default_calibration import _npz_bytes, _sha256_file  # noqa: E402


def build(archive: Path) -> dict[str, np.ndarray]:
    holdout = [l.strip() for l in HOLDOUT_LIST.read_text().splitlines() if l.strip()]
    by_class: dict[str, list[str]] = {}
    for name in holdout:
        by_class.setdefault(Path(name).parts[1], []).append(name)
    class_names = sorted(by_class)
    rng = np.random.default_rng(SEED)
    chosen = []
    for label, cls in enumerate(class_names):
        files = sorted(by_class[cls])
        chosen += [(label, files[i]) for i in np.sort(rng.choice(len(files), PER_CLASS, replace=False))]
    wanted = {name for _, name in chosen}
    pixels = {}
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar:
            if m.name in wanted:
                with Image.open(io.BytesIO(tar.extractfile(m).read())) as im:
                    pixels[m.name] = np.asarray(im.convert("RGB"), dtype=np.uint8)
    missing = wanted - set(pixels)
    if missing:
        raise SystemExit(f"{len(missing)} held-out files are not in {archive}, e.g. {sorted(missing)[0]}")
    provenance = {
        "dataset": "CIFAR-10 train split (A. Krizhevsky, 2009); images from the held-out split never used for training",
        "archive_sha256": _sha256_file(archive),
        "holdout_list": HOLDOUT_LIST.name,
        "holdout_list_sha256": _sha256_file(HOLDOUT_LIST),
        "sampling": f"{PER_CLASS} per class, np.random.default_rng({SEED}).choice over sorted held-out names",
        "tool": "tools/make_cifar10_holdout.py",
    }
    return {
        "images": np.stack([pixels[n] for _, n in chosen]),
        "labels": np.array([l for l, _ in chosen], dtype=np.int64),
        "class_names": np.array(class_names),
        "files": np.array([n for _, n in chosen]),
        "provenance": np.array(json.dumps(provenance, sort_keys=True)),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archive", type=Path, default=ARCHIVE)
    p.add_argument("--check", action="store_true", help="verify the shipped file instead of writing it")
    args = p.parse_args(argv)
    data = _npz_bytes(build(args.archive))
    if args.check:
        same = OUT.read_bytes() == data
        print("cifar10_holdout.npz is up to date" if same else "cifar10_holdout.npz differs from a rebuild")
        return 0 if same else 1
    tmp = OUT.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(OUT)
    print(f"wrote {OUT} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
