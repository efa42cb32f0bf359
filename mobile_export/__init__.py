"""mobile-export: PyTorch reference CNNs → TFLite (fp32, fp16, int8), with a fidelity report.

Heavy imports (TensorFlow, onnxruntime) happen lazily, so ``import mobile_export`` is cheap.
"""
from __future__ import annotations

import importlib as _importlib
import os as _os

# Both before anything imports TensorFlow. The lowered graph runs in TensorFlow (calibration
# statistics, equalization) as well as converting: its grouped convolutions fused with bias + ReLU
# and its strided dilated depthwise convolutions (ShuffleNetV1, FBNet, ESPNetv2) run only in the
# oneDNN kernels, which TensorFlow turns on by itself only on CPUs with AVX-512 VNNI/BF16/AMX. On
# by default here, every x86 machine takes the same kernels (and the same range statistics).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

_LAZY = {
    "export": "mobile_export.api",
    "ExportOptions": "mobile_export.options",
    "Precision": "mobile_export.options",
    "ValidateOptions": "mobile_export.options",
    "validate": "mobile_export.api",
    "ValidationResult": "mobile_export.api",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mobile_export' has no attribute {name!r}")
