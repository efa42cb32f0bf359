"""The one place heavy runtimes are imported on first use instead of at the top of a module.

Why: ``import mobile_export`` and the CLI must answer ``--help``, ``list`` and bad input within a
second or two, before TensorFlow (~3 s to import), LiteRT, onnxruntime, torch's full model zoo,
matplotlib (only when a report draws a plot) or Ray (the optional ``[cluster]`` extra) load; and a
machine without an optional one (Ray; LiteRT where a device only has ``tflite_runtime``) must still
import every module. Everything else is imported at the top of its module.
"""
from __future__ import annotations

import importlib
from types import ModuleType


def load(name: str) -> ModuleType:
    """``import name`` on first call (cached by Python afterwards)."""
    return importlib.import_module(name)
