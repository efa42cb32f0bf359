"""Calibration data for int8 post-training quantization.

>>> from mobile_export.calibration import load_calibration
>>> calib = load_calibration("path/to/images", config, num=256, seed=0)   # or None: embedded set
>>> calib.inputs.shape            # (N, C, H, W) float32, normalized for the model
>>> fit, held_back = calib.split(32)

Sources: None (the embedded default set), a directory of images (recursive), an ImageFolder tree
(labels from sorted class directories), a ``.npy`` (NCHW/NHWC; float = already normalized,
uint8 = raw pixels) or a ``.npz`` (``inputs`` + optional ``labels`` / ``class_names``).
Preprocessing follows the model config: see ``preprocess``.
"""
from __future__ import annotations

from .dataset import CalibrationSet, inputs_sha256
from .default_set import default_counts, default_warning, load_cifar10_holdout, load_default_labelled
from .preprocess import normalize_array, preprocess_image, resize_size
from .sources import ARRAY_EXTENSIONS, IMAGE_EXTENSIONS, NamedSource, check_source, load_calibration

__all__ = [
    "ARRAY_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "CalibrationSet",
    "NamedSource",
    "default_counts",
    "default_warning",
    "inputs_sha256",
    "check_source",
    "load_calibration",
    "load_cifar10_holdout",
    "load_default_labelled",
    "normalize_array",
    "preprocess_image",
    "resize_size",
]
