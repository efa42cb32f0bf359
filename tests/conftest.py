"""Shared test fixtures. ``../shared`` (beside the checkout) holds the datasets and the
torchvision oracle; tests that need it skip with a reason when it is absent."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

import mobile_export  # noqa: F401  (its TensorFlow environment defaults, before any test imports TF)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOBILE_EXPORT_SHARED", REPO.parent / "shared"))
GOLDEN_DIR = SHARED / "torchvision-golden"
CIFAR10_TAR = SHARED / "datasets" / "cifar10-train.tar.gz"


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (../shared is absent on this machine)")
    return path


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _need(GOLDEN_DIR, "torchvision golden files")


@pytest.fixture(scope="session")
def cifar10_tar() -> Path:
    return _need(CIFAR10_TAR, "CIFAR-10 archive")


def load_script(path: Path, name: str):
    """Import a script that is not in a package (``tools/*.py``, the golden ``fill.py``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def golden_fill(golden_dir):
    return load_script(golden_dir / "fill.py", "tv_golden_fill")


@pytest.fixture(scope="session")
def mv3_small_64(tmp_path_factory) -> Path:
    """mobilenet_v3_small exported once per session at 64 px, fp32 and int8 (no search, 32 calibration
    images) side by side, as ``DIR/fp32/`` and ``DIR/int8/``: the artifact pair the runtime and device
    tests validate. Tests may write reports beside the models, never change the models."""
    from mobile_export.api import export

    out = tmp_path_factory.mktemp("mv3-small-64")
    for precision in ("fp32", "int8"):
        export("mobilenet_v3_small", precision=precision, input_size=64, out_dir=out, search=False,
               **({"num_calibration": 32} if precision == "int8" else {}))
    return out / "mobilenet_v3_small"


@pytest.fixture(scope="session")
def tool():
    """``tool("accuracy_table")``: the module of ``tools/accuracy_table.py``."""
    return lambda name: load_script(REPO / "tools" / f"{name}.py", name)
