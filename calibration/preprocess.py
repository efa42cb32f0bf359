"""Model-input preprocessing, read from the model's config (the single source of truth).

The rule (the same one ``ModelConfig.preprocessing()`` writes into the manifest):

1. convert to RGB (greyscale, palette, RGBA, CMYK … are converted by Pillow; 16-bit greyscale is
   scaled 0..65535 → 0..255 first);
2. ``input_size >= 64``: resize the shorter side to ``round(input_size / 0.875)`` (bilinear, aspect
   kept, torchvision ``Resize(int)`` arithmetic), then centre-crop ``input_size × input_size``
   (torchvision ``CenterCrop`` offsets); ``input_size < 64`` (CIFAR-sized models): resize directly to
   ``input_size × input_size``;
3. scale to [0, 1] (``/ 255``) and normalize ``(x - mean) / std`` per channel;
4. return CHW float32.

``normalize_array`` applies steps 3–4 to arrays that are already the right size (``.npy`` / ``.npz``
sources): uint8 arrays are raw pixels (0..255 → [0, 1] → mean/std); float arrays are taken as
already preprocessed and only cast to float32.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from mobile_export.errors import CalibrationError

CROP_FRACTION = 0.875  # resize to input_size / 0.875, then centre-crop input_size (224 → 256 → 224)
DIRECT_RESIZE_BELOW = 64  # smaller inputs (CIFAR-sized) are resized straight to input_size

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def channels(config: Any) -> int:
    """Input channels of ``config`` (``config.spec.in_channels``; 3 when the config has no spec)."""
    spec = getattr(config, "spec", None)
    return int(getattr(spec, "in_channels", 3))


def resize_size(input_size: int) -> int:
    """Shorter side before the centre crop: ``round(input_size / 0.875)`` (224 → 256)."""
    return int(round(input_size / CROP_FRACTION))


def _mean_std(config: Any) -> tuple[np.ndarray, np.ndarray]:
    c = channels(config)
    mean = np.asarray(config.mean, dtype=np.float32).reshape(-1)
    std = np.asarray(config.std, dtype=np.float32).reshape(-1)
    if mean.size != c or std.size != c:
        raise CalibrationError(
            f"the model config has {mean.size} mean / {std.size} std values but {c} input channels; "
            "give one mean and one std per channel."
        )
    return mean.reshape(c, 1, 1), std.reshape(c, 1, 1)


def to_rgb(img: Image.Image, name: str = "the image") -> Image.Image:
    """``img`` as 8-bit RGB; CalibrationError when its mode has no meaningful RGB conversion."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT or (img.mode == "I" and _max(img) > 255):
        # Pillow would clip 16-bit values at 255; map the full 16-bit range instead
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F" and not (0.0 <= _min(img) and _max(img) <= 255.0):
        raise CalibrationError(
            f"{name} is a floating-point image (mode F) with values outside 0..255; "
            "save it as an 8-bit RGB or greyscale image."
        )
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise CalibrationError(
            f"{name} has image mode {img.mode!r}, which cannot be converted to RGB ({e}); "
            "save it as an 8-bit RGB or greyscale image."
        ) from None


def _max(img: Image.Image) -> float:
    return float(np.asarray(img).max()) if img.width and img.height else 0.0


def _min(img: Image.Image) -> float:
    return float(np.asarray(img).min()) if img.width and img.height else 0.0


def resize_and_crop(img: Image.Image, input_size: int) -> Image.Image:
    """Step 2 of the rule: the spatial transform only (works on any mode)."""
    if input_size < DIRECT_RESIZE_BELOW:
        if img.size != (input_size, input_size):
            img = img.resize((input_size, input_size), Image.BILINEAR)
        return img
    short = resize_size(input_size)
    w, h = img.size
    # torchvision Resize(int): the shorter side becomes `short`, the longer one int(short * long / short_orig)
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_w, new_h = int(short * w / h), short
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BILINEAR)
    # torchvision CenterCrop offsets
    top = int(round((new_h - input_size) / 2.0))
    left = int(round((new_w - input_size) / 2.0))
    return img.crop((left, top, left + input_size, top + input_size))


def preprocess_image(img: Image.Image, config: Any, *, name: str = "the image") -> np.ndarray:
    """One PIL image → CHW float32 model input, following ``config`` (see the module docstring)."""
    if img.width < 1 or img.height < 1:
        raise CalibrationError(f"{name} is empty ({img.width}×{img.height} pixels); remove it.")
    c = channels(config)
    if c == 3:
        img = to_rgb(img, name)
    elif c == 1:
        img = to_rgb(img, name).convert("L")
    else:
        raise CalibrationError(
            f"images cannot feed a model with {c} input channels; pass a .npy of shape "
            f"(N, {c}, H, W) instead."
        )
    img = resize_and_crop(img, int(config.input_size))
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return normalize_array(arr.transpose(2, 0, 1)[None], config)[0]


def normalize_array(x: np.ndarray, config: Any) -> np.ndarray:
    """NCHW uint8 pixels → ``(x / 255 - mean) / std``; NCHW floats → float32 unchanged (already
    preprocessed). Returns a C-contiguous float32 array."""
    if x.dtype == np.uint8:
        mean, std = _mean_std(config)
        out = x.astype(np.float32) / np.float32(255.0)
        out -= mean
        out /= std
        return np.ascontiguousarray(out, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)
