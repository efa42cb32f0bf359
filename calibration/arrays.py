"""``.npy`` / ``.npz`` calibration sources: validation, layout, sampling, normalization.

Accepted: rank-4 arrays, NCHW ``(N, C, H, W)`` or NHWC ``(N, H, W, C)`` with C/H/W matching the model
config. float16/32/64 arrays are taken as already preprocessed (cast to float32); uint8 arrays are raw
0..255 pixels (scaled to [0, 1], then normalized with the config's mean/std). Other dtypes, NaN/inf,
and labels that do not match the inputs are refused with a CalibrationError naming the fix.
"""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mobile_export.errors import CalibrationError

from .dataset import CalibrationSet
from .preprocess import channels, normalize_array
from .sampling import fewer_warning, sample_indices

log = logging.getLogger(__name__)

LABEL_KEYS = ("labels", "class_names")
_CHUNK = 64  # rows per NaN/inf scan step (keeps memory flat on memory-mapped files)


def _shape(t: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in t) + ")"


def check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.kind == "f" or dtype == np.uint8:
        return
    if dtype.kind in "iu":
        raise CalibrationError(
            f"{name} has dtype {dtype}; integer arrays must be uint8 pixels (0..255), or save float32 "
            "inputs that are already normalized."
        )
    raise CalibrationError(
        f"{name} has dtype {dtype}, which is not numeric image data; save a float32 (normalized) "
        "or uint8 (0..255 pixels) array."
    )


def layout(shape: tuple[int, ...], config: Any, name: str) -> str:
    """'NCHW' or 'NHWC' for a shape that matches ``config``; CalibrationError otherwise."""
    c, s = channels(config), int(config.input_size)
    nchw, nhwc = (c, s, s), (s, s, c)
    expected = f"(N, {c}, {s}, {s}) NCHW or (N, {s}, {s}, {c}) NHWC"
    if len(shape) != 4:
        raise CalibrationError(
            f"{name} has shape {_shape(shape)} (rank {len(shape)}) but the model needs {expected}; "
            "save a batch of inputs of that shape."
        )
    if tuple(shape[1:]) == nchw:
        return "NCHW"
    if tuple(shape[1:]) == nhwc:
        return "NHWC"
    raise CalibrationError(
        f"{name} has shape {_shape(shape)} but the model needs {expected}; resize the inputs or "
        "pass --input-size to match."
    )


def check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind != "f":
        return
    bad_total, first = 0, None
    for start in range(0, arr.shape[0], _CHUNK):
        bad = ~np.isfinite(np.asarray(arr[start:start + _CHUNK]))
        n = int(bad.sum())
        if n and first is None:
            first = start + int(np.argwhere(bad)[0][0])
        bad_total += n
    if bad_total:
        raise CalibrationError(
            f"{name} contains {bad_total} NaN/inf value(s) (first in sample {first}); "
            "fix or drop those samples."
        )


def _labels(z: np.lib.npyio.NpzFile, n: int, name: str) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    labels = class_names = None
    if "labels" in z.files:
        labels = _member(z, "labels", name)
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise CalibrationError(
                f"'labels' in {name} must be a 1-D integer array of class indices, got "
                f"{labels.dtype} of shape {_shape(labels.shape)}; save integer labels, one per input."
            )
        if labels.shape[0] != n:
            raise CalibrationError(
                f"{name} has {labels.shape[0]} labels for {n} inputs; save exactly one label per input."
            )
        if n and labels.min() < 0:
            raise CalibrationError(f"'labels' in {name} contains negative class indices; use 0-based indices.")
        labels = labels.astype(np.int64)
    if "class_names" in z.files:
        names = _member(z, "class_names", name)
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise CalibrationError(f"'class_names' in {name} must be a 1-D array of strings; save it as such.")
        class_names = tuple(str(s) for s in names.tolist())
        if labels is not None and n and int(labels.max()) >= len(class_names):
            raise CalibrationError(
                f"{name} has label {int(labels.max())} but only {len(class_names)} class_names; "
                "make the labels index into class_names."
            )
    return labels, class_names


def _member(z: np.lib.npyio.NpzFile, key: str, name: str) -> np.ndarray:
    try:
        return z[key]
    except ValueError as e:
        if "Object arrays" in str(e):
            raise CalibrationError(
                f"'{key}' in {name} has dtype object, which is not numeric data; save a float32 "
                "(normalized) or uint8 (0..255 pixels) array."
            ) from None
        raise CalibrationError(f"cannot read '{key}' from {name} ({e}); re-save the file with numpy.savez.") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise CalibrationError(f"cannot read '{key}' from {name} ({e}); re-save the file with numpy.savez.") from None


def _open_npy(path: Path, name: str) -> np.ndarray:
    """Memory-map the .npy (only the sampled rows are read); object arrays are never unpickled."""
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise ValueError("no .npy header")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        if "Python objects" in str(e) or "Object arrays" in str(e):
            raise CalibrationError(
                f"{name} has dtype object, which is not numeric data; save a float32 (normalized) "
                "or uint8 (0..255 pixels) array."
            ) from None
        raise CalibrationError(f"cannot read {name} as a .npy array ({e}); re-save it with numpy.save.") from None
    except (OSError, EOFError) as e:
        raise CalibrationError(f"cannot read {name} as a .npy array ({e}); re-save it with numpy.save.") from None


def load_array_file(path: Path, config: Any, *, num: int, seed: int, source: str) -> CalibrationSet:
    """A ``.npy`` / ``.npz`` source → CalibrationSet (``num`` rows, seeded permutation)."""
    labels = class_names = None
    if path.suffix.lower() == ".npy":
        kind, name = "npy", f"calibration array {source}"
        arr = _open_npy(path, name)
    else:
        kind = "npz"
        try:
            z = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise CalibrationError(
                f"cannot read {source} as a .npz archive ({e}); re-save it with numpy.savez."
            ) from None
        with z:
            keys = [k for k in z.files if k not in LABEL_KEYS]
            if not keys:
                raise CalibrationError(f"{source} holds no input array; save the inputs under the key 'inputs'.")
            key = "inputs" if "inputs" in keys else keys[0]
            name = f"array '{key}' in {source}"
            arr = _member(z, key, name)
            check_dtype(arr.dtype, name)
            layout(arr.shape, config, name)
            labels, class_names = _labels(z, arr.shape[0], source)
    check_dtype(arr.dtype, name)
    lay = layout(arr.shape, config, name)
    if arr.shape[0] == 0:
        raise CalibrationError(f"{name} holds no samples (shape {_shape(arr.shape)}); save at least one input.")
    check_finite(arr, name)

    warnings = fewer_warning(num, arr.shape[0], source)
    idx = sample_indices(arr.shape[0], num, seed)
    x = np.asarray(arr[np.sort(idx)])[np.argsort(np.argsort(idx))]  # sorted reads, permuted order
    if lay == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    if x.dtype.kind == "f":
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0.0 and hi > 20.0:
            msg = (f"{name} holds float values in [{lo:g}, {hi:g}], which look like unnormalized pixels; "
                   "float arrays are used as already normalized, so save raw pixels as uint8 instead.")
            log.warning(msg)
            warnings.append(msg)
    inputs = normalize_array(x, config)
    log.info("calibration: %d of %d samples from %s (%s %s, seed %d)", len(idx), arr.shape[0], source, kind, lay, seed)
    return CalibrationSet.build(inputs, labels=None if labels is None else labels[idx], class_names=class_names,
                                source=source, kind=kind, seed=seed, warnings=warnings,
                                names=[f"row {int(i)}" for i in idx])
