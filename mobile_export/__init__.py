"""mobile-export: PyTorch reference CNNs → TFLite (fp32, fp16, int8), with a fidelity report.

Heavy imports (TensorFlow, onnxruntime) happen lazily, so ``import mobile_export`` is cheap.
"""
from __future__ import annotations

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow

__version__ = "0.1.0"

_LAZY = {
    "export": "mobile_export.pipeline",
    "ExportOptions": "mobile_export.options",
    "Precision": "mobile_export.options",
    "ValidateOptions": "mobile_export.options",
    "validate": "mobile_export.validation",
    "ValidationReport": "mobile_export.validation",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mobile_export' has no attribute {name!r}")
