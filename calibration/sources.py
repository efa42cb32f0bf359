"""Calibration data sources: the embedded default set, image folders, ImageFolder trees, .npy/.npz.

``load_calibration(source, config, num=256, seed=0)`` picks the reader from ``source``:

- ``None`` → the embedded default set (``default_set.py``);
- a directory with no loose images whose immediate sub-directories hold images → an ImageFolder
  tree: sorted sub-directory names are the classes (label = index, like torchvision's ImageFolder);
- any other directory → every image below it, recursively (extensions .jpg .jpeg .png .bmp .webp
  .ppm in any case; hidden files and directories are skipped), unlabelled;
- ``*.npy`` → one array of model inputs, ``*.npz`` → array ``inputs`` (else the first array) plus
  optional ``labels`` (int class indices) and ``class_names``. Accepted arrays: NCHW
  ``(N, C, H, W)`` or NHWC ``(N, H, W, C)`` (transposed) matching the config's input size; float
  arrays are taken as already preprocessed (normalized) and cast to float32; uint8 arrays are raw
  pixels, scaled to [0, 1] and normalized with the config's mean/std.

Sampling is deterministic: files are sorted (by path relative to the root; in a tree, class by
class; arrays keep their row order), then ``np.random.default_rng(seed).permutation`` orders them
and the first ``num`` are used.
Fewer than ``num`` available → all are used and a warning is recorded (and logged).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from mobile_export.errors import CalibrationError

from .arrays import load_array_file
from .dataset import CalibrationSet
from .default_set import load_default
from .preprocess import channels, preprocess_image
from .sampling import check_num, fewer_warning, sample_indices

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm")
ARRAY_EXTENSIONS = (".npy", ".npz")


class NamedSource(os.PathLike):
    """A source read from ``path`` but named ``label`` in manifests and reports: a batch worker's
    local copy of the data a matrix file names, so the artifact says what the user wrote, wherever
    the copy lives (``mobile-export batch``)."""

    def __init__(self, path: str | os.PathLike, label: str) -> None:
        self.path, self.label = os.fspath(path), label

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return f"NamedSource({self.path!r}, label={self.label!r})"


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def find_images(root: Path) -> list[Path]:
    """Every image file below ``root`` (recursive, hidden entries skipped), sorted by relative path."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, f) for f in filenames if is_image_file(Path(f)))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def find_classes(root: Path) -> list[tuple[str, list[Path]]] | None:
    """ImageFolder classes of ``root`` (sorted sub-directories and their images), or None when
    ``root`` is not an ImageFolder tree (loose images at the top, or no sub-directory holds any)."""
    entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    if any(e.is_file() and is_image_file(Path(e.name)) for e in entries):
        return None
    classes = [(e.name, find_images(Path(e.path))) for e in sorted(entries, key=lambda e: e.name) if e.is_dir()]
    if not any(files for _, files in classes):
        return None
    return classes


def load_images(paths: list[Path], config: Any) -> np.ndarray:
    """Read and preprocess ``paths`` into one NCHW float32 array (progress bar on a terminal)."""
    size = int(config.input_size)
    out = np.empty((len(paths), channels(config), size, size), dtype=np.float32)
    for i, path in enumerate(tqdm(paths, desc="calibration images", unit="img", leave=False,
                                  disable=None if len(paths) > 16 else True)):
        out[i] = read_image(path, config)
    return out


def read_image(path: Path, config: Any) -> np.ndarray:
    """One image file → CHW float32; CalibrationError naming the file when it cannot be read."""
    try:
        with Image.open(path) as img:
            img.load()
            return preprocess_image(img, config, name=f"image {path}")
    except CalibrationError:
        raise
    except Image.DecompressionBombError as e:
        raise CalibrationError(f"image {path} is too large to decode safely ({e}); downscale or remove it.") from None
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ValueError, SyntaxError ...
        reason = str(e) or type(e).__name__
        raise CalibrationError(
            f"cannot read image {path} ({reason}); replace or remove the file."
        ) from None


def _from_directory(root: Path, config: Any, num: int, seed: int, source: str, flag: str) -> CalibrationSet:
    classes = find_classes(root)
    warnings: list[str] = []
    labels_all: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    if classes is not None:
        kind = "imagefolder-tree"
        class_names = tuple(name for name, _ in classes)
        files = [p for _, paths in classes for p in paths]
        labels_all = np.array([i for i, (_, paths) in enumerate(classes) for _ in paths], dtype=np.int64)
        empty = [name for name, paths in classes if not paths]
        if empty:
            msg = (f"class directories without images in {source}: {', '.join(empty)}; "
                   "their label indices have no samples.")
            log.warning(msg)
            warnings.append(msg)
    else:
        kind = "image-folder"
        files = find_images(root)
        if not files:
            raise CalibrationError(
                f"{flag} directory {source} contains no images "
                f"({' '.join(IMAGE_EXTENSIONS)}); add images or point {flag} elsewhere."
            )
    warnings += fewer_warning(num, len(files), f"{source}")
    idx = sample_indices(len(files), num, seed)
    chosen = [files[i] for i in idx]
    log.info("calibration: %d of %d images from %s (%s, seed %d)", len(chosen), len(files), source, kind, seed)
    inputs = load_images(chosen, config)
    labels = None if labels_all is None else labels_all[idx]
    return CalibrationSet.build(inputs, labels=labels, class_names=class_names, source=source,
                                kind=kind, seed=seed, warnings=warnings,
                                names=[p.relative_to(root).as_posix() for p in chosen])


def load_calibration(
    source: str | os.PathLike | None,
    config: Any,
    num: int = 256,
    seed: int = 0,
    *,
    flag: str = "--calibration",
) -> CalibrationSet:
    """Load up to ``num`` calibration inputs from ``source``, preprocessed for ``config``.

    ``source`` is None (the embedded default set), a directory of images, an ImageFolder tree, or a
    ``.npy`` / ``.npz`` file (see the module docstring). Raises CalibrationError (exit code 2) with
    one sentence naming what to fix when the source is missing, empty, unreadable or mis-shaped;
    ``flag`` is the option the user gave it with (``--data`` for validate).
    """
    num = check_num(num)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CalibrationError(f"the calibration seed must be a non-negative integer, got {seed!r}.")
    seed = int(seed)
    if source is None:
        return load_default(config, num=num, seed=seed)
    label = str(source) if isinstance(source, NamedSource) else os.fspath(source)
    path = check_source(source, flag)
    if path.is_dir():
        return _from_directory(path, config, num, seed, label, flag)
    return load_array_file(path, config, num=num, seed=seed, source=label)


def check_source(source: str | os.PathLike, flag: str = "--calibration") -> Path:
    """``source`` as a path that exists and is a directory or a .npy/.npz file (the cheap check run
    before any conversion); CalibrationError naming ``flag`` otherwise."""
    label = os.fspath(source)
    path = Path(label).expanduser()
    if not path.exists():
        raise CalibrationError(f"{flag} {label} does not exist; pass an existing image directory or .npy/.npz file.")
    if not (path.is_dir() or (path.is_file() and path.suffix.lower() in ARRAY_EXTENSIONS)):
        raise CalibrationError(f"{flag} {label} is neither a directory of images nor a .npy/.npz file; "
                               "pass one of those.")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise CalibrationError(f"{flag} {label} is not readable; fix its permissions.")
    return path
