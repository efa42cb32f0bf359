"""The CIFAR-10 training data the reference tools share (train_reference, pack_checkpoint,
accuracy_table): the archive or ImageFolder decoded once into a cached uint8 array, the seeded
class-balanced held-out split, the zoo's own preprocessing of held-out images, held-out top-1, and
atomic writes.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

log = logging.getLogger("train_reference")

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout, or $MOBILE_EXPORT_SHARED (as in tests/conftest.py)
DEFAULT_DATA = Path(os.environ.get("MOBILE_EXPORT_SHARED", REPO.parent / "shared")) / "datasets" / "cifar10-train.tar.gz"
CACHE = Path(os.environ.get("MOBILE_EXPORT_CACHE", Path.home() / ".cache" / "mobile-export"))
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm")

# CIFAR-10 train-set channel statistics (the commonly used figures; the JPEG archive's own are within 1e-3)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _stack(names: list[str], labels: list[int], pixels: list[np.ndarray], classes: list[str], key: str) -> dict:
    shapes = {p.shape for p in pixels}
    if len(shapes) != 1:
        raise SystemExit(
            f"the images have {len(shapes)} different sizes (e.g. {sorted(shapes)[:3]}); this trainer caches "
            "one uint8 array and needs images of one size: resize the tree first."
        )
    return {
        "images": np.stack(pixels),
        "labels": np.asarray(labels, dtype=np.int64),
        "files": np.asarray(names),
        "classes": np.asarray(classes),
        "key": np.asarray(key),
    }


def _load_tar(path: Path, key: str) -> dict:
    by_class: dict[str, list[tuple[str, bytes]]] = {}
    with tarfile.open(path, "r:*") as tar:
        for m in tar:  # streaming, archive order
            if not (m.isfile() and m.name.lower().endswith(IMAGE_EXT)):
                continue
            parts = Path(m.name).parts
            if len(parts) < 2:
                continue
            by_class.setdefault(parts[-2], []).append((m.name, tar.extractfile(m).read()))
    classes = sorted(by_class)
    names, labels, pixels = [], [], []
    for label, cls in enumerate(classes):
        for name, data in sorted(by_class[cls]):
            names.append(name)
            labels.append(label)
            pixels.append(_decode(data))
    return _stack(names, labels, pixels, classes, key)


def _load_folder(root: Path, key: str) -> dict:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    names, labels, pixels = [], [], []
    for label, cls in enumerate(classes):
        for p in sorted((root / cls).rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_EXT:
                names.append(str(p.relative_to(root)))
                labels.append(label)
                pixels.append(_decode(p.read_bytes()))
    return _stack(names, labels, pixels, classes, key)


def load_dataset(data: Path) -> dict:
    """Decoded images (N, H, W, 3) uint8, labels, member names, class names; cached on disk."""
    if data.is_dir():
        h = hashlib.sha256()
        for p in sorted(data.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(data)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        key, kind = "folder-" + h.hexdigest(), "folder"
    elif data.is_file():
        key, kind = sha256_file(data), "archive"
    else:
        raise SystemExit(f"training data '{data}' does not exist; pass --data ARCHIVE_OR_IMAGEFOLDER.")
    cache = CACHE / f"dataset-{key[:24]}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            ds = {k: z[k] for k in z.files}
        log.info("data: %d images %s from cache %s", len(ds["labels"]), ds["images"].shape[1:], cache)
    else:
        t0 = time.time()
        log.info("data: decoding %s once (cached afterwards at %s)", data, cache)
        ds = _load_tar(data, key) if kind == "archive" else _load_folder(data, key)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")   # per process: two trainings may decode at once
        np.savez(tmp, **ds)
        os.replace(tmp, cache)
        log.info("data: %d images decoded in %.1fs", len(ds["labels"]), time.time() - t0)
    ds["sha256"] = key
    ds["kind"] = kind
    return ds


def holdout_split(ds: dict, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, holdout_idx): class-balanced, seeded; holdout sorted class-major, file-name order."""
    labels, files = ds["labels"], ds["files"]
    classes = len(ds["classes"])
    per_class = holdout // classes
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(classes):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.argsort(files[idx], kind="stable")]
        if len(idx) <= per_class:
            raise SystemExit(f"class {ds['classes'][c]} has only {len(idx)} images; lower --holdout.")
        picked.append(np.sort(idx[np.sort(rng.choice(len(idx), size=per_class, replace=False))]))
    hold = np.concatenate(picked)
    mask = np.ones(len(labels), dtype=bool)
    mask[hold] = False
    return np.flatnonzero(mask), hold


def holdout_text(files: np.ndarray) -> str:
    return "".join(f"{f}\n" for f in files)


def eval_inputs(images: np.ndarray, input_size: int, mean, std) -> torch.Tensor:
    """The zoo's own preprocessing (what the validator does), image by image."""
    from mobile_export.calibration import preprocess_image

    cfg = SimpleNamespace(input_size=input_size, mean=mean, std=std, spec=SimpleNamespace(in_channels=3))
    out = np.stack([preprocess_image(Image.fromarray(im), cfg) for im in images])
    return torch.from_numpy(out)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Held-out top-1 of ``model`` on preprocessed ``x`` (the trainer's and the packer's figure)."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
