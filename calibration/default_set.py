"""The embedded default calibration set: int8 export works offline with no data from the user.

Shipped as package data (built by ``tools/make_default_calibration.py``, which documents provenance):

- ``data/photos.npz``: 10 public-domain / CC0 photographs from scikit-image's sample data
  (astronaut, camera, chelsea, coffee, rocket, hubble_deep_field, clock, retina, brick, grass),
  shorter side 256, uint8 (HWC RGB or HW greyscale);
- ``data/default.npz``: 300 CIFAR-10 training images (30 per class, seeded), uint8 32×32 RGB, with
  CIFAR-10 labels and class names.

The default set is the photos followed by the CIFAR images, each preprocessed with the model's
config (CIFAR images are upscaled by the same resize / centre-crop rule as any image). Sampling:
the photos always come first (they are the best-quality images), each part in its own seeded
permutation; ``num`` smaller than the photo count takes a seeded sample of the photos only. Its
labels are None: the models being calibrated are not necessarily CIFAR-10 models. For CIFAR-10
evaluation, ``load_default_labelled`` returns the CIFAR part with labels and class names.
"""
from __future__ import annotations

import functools
import io
import logging
from importlib import resources
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from mobile_export.errors import CalibrationError

from .dataset import DEFAULT_SOURCE, CalibrationSet
from .preprocess import channels, preprocess_image
from .sampling import check_num, fewer_warning, sample_indices

log = logging.getLogger(__name__)

DATA_FILES = ("photos.npz", "default.npz")
LABELLED_SOURCE = "default:cifar10"


def default_warning(n: int) -> str:
    return (f"calibrated on the embedded default set ({n} generic images); a set from your own domain "
            "(--calibration DIR) gives better int8 ranges.")


def _read_npz(name: str) -> dict[str, np.ndarray]:
    try:
        data = resources.files(__package__).joinpath("data").joinpath(name).read_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (FileNotFoundError, OSError, ValueError) as e:
        raise CalibrationError(
            f"the embedded default calibration set (data/{name}) is missing or damaged in this install "
            f"({e}); reinstall mobile-export or pass --calibration DIR."
        ) from None


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[tuple[np.ndarray, ...], tuple[str, ...], np.ndarray, np.ndarray, tuple[str, ...]]:
    """(photos, photo names, CIFAR images NHWC uint8, CIFAR labels, CIFAR class names), read once."""
    photos_z, cifar_z = (_read_npz(n) for n in DATA_FILES)
    names = tuple(str(s) for s in photos_z["names"].tolist())
    photos = tuple(photos_z[f"photo_{i:02d}"] for i in range(len(names)))
    images, labels = cifar_z["images"], cifar_z["labels"].astype(np.int64)
    class_names = tuple(str(s) for s in cifar_z["class_names"].tolist())
    for a in (*photos, images, labels):
        a.setflags(write=False)
    return photos, names, images, labels, class_names


def default_counts() -> tuple[int, int]:
    """(number of photos, number of CIFAR images) in the embedded set."""
    photos, _, images, _, _ = _raw()
    return len(photos), int(images.shape[0])


def _preprocess(arrays: list[np.ndarray], config: Any, desc: str) -> np.ndarray:
    size = int(config.input_size)
    out = np.empty((len(arrays), channels(config), size, size), dtype=np.float32)
    for i, a in enumerate(tqdm(arrays, desc=desc, unit="img", leave=False, disable=None if len(arrays) > 16 else True)):
        out[i] = preprocess_image(Image.fromarray(a), config, name=f"{desc} image {i}")
    return out


def load_default(config: Any, num: int = 256, seed: int = 0) -> CalibrationSet:
    """Up to ``num`` images of the embedded default set, preprocessed for ``config`` (labels None)."""
    photos, photo_names, images, _, _ = _raw()
    total = len(photos) + images.shape[0]
    rng = np.random.default_rng(seed)
    p_idx = rng.permutation(len(photos))[:num]
    c_idx = rng.permutation(images.shape[0])[: max(0, num - len(photos))]
    chosen = [photos[i] for i in p_idx] + [images[i] for i in c_idx]
    warnings: list[str] = []
    if total < num:
        msg = f"asked for {num} calibration samples but the embedded default set holds only {total}; using all {total}."
        log.warning(msg)
        warnings.append(msg)
    # recorded for a caller that calibrates on it, never logged here: fidelity checks and the BN
    # statistics of an untrained reference read this set too (with --calibration DIR as well)
    warnings.append(default_warning(len(chosen)))
    log.debug("embedded default images: %d of %d (seed %d)", len(chosen), total, seed)
    inputs = _preprocess(chosen, config, "default calibration")
    names = [f"photo:{photo_names[i]}" for i in p_idx] + [f"cifar10:{int(i)}" for i in c_idx]
    return CalibrationSet.build(inputs, source=DEFAULT_SOURCE, kind="default", seed=seed, warnings=warnings,
                                names=names)


def _choose(available: int, num: int | None, seed: int, what: str, noun: str) -> tuple[np.ndarray, list[str]]:
    """All indices in stored order (``num=None``), else the first ``num`` of a seeded permutation."""
    if num is None:
        return np.arange(available), []
    return sample_indices(available, check_num(num), seed), fewer_warning(num, available, what, noun)


def load_default_labelled(config: Any, num: int | None = None, seed: int = 0) -> CalibrationSet:
    """The CIFAR-10 part of the default set with its labels and class names, preprocessed for
    ``config`` (for CIFAR-10 evaluation). ``num=None``: all images, in stored order (class-major);
    otherwise the first ``num`` of a seeded permutation."""
    _, _, images, labels, class_names = _raw()
    idx, warnings = _choose(images.shape[0], num, seed, "the embedded CIFAR-10 part", "labelled samples")
    inputs = _preprocess([images[i] for i in idx], config, "default labelled")
    return CalibrationSet.build(inputs, labels=labels[idx], class_names=class_names, source=LABELLED_SOURCE,
                                kind="default", seed=seed, warnings=warnings,
                                names=[f"cifar10:{int(i)}" for i in idx])


HOLDOUT_SOURCE = "cifar10"
HOLDOUT_FILE = "cifar10_holdout.npz"


def load_cifar10_holdout(config: Any, num: int | None = None, seed: int = 0) -> CalibrationSet:
    """1,000 labelled CIFAR-10 images from the held-out split the shipped CIFAR-10 checkpoints never
    trained on (100 per class), preprocessed for ``config``: real accuracy, offline."""
    z = _read_npz(HOLDOUT_FILE)
    images, labels, files = z["images"], z["labels"].astype(np.int64), z["files"]
    idx, warnings = _choose(images.shape[0], num, seed, "the held-out CIFAR-10 set", "samples")
    inputs = _preprocess([images[i] for i in idx], config, "cifar10 held-out")
    return CalibrationSet.build(inputs, labels=labels[idx], class_names=tuple(str(s) for s in z["class_names"]),
                                source=HOLDOUT_SOURCE, kind="cifar10-holdout", seed=seed, warnings=warnings,
                                names=[str(files[i]) for i in idx])
