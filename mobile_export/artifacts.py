"""Artifact folders, hashing, and the manifest: its one schema version, how it is built and read.

``OUT/NAME/PRECISION/`` is written in a temporary sibling directory and renamed into place, so an
interrupted run never leaves a half artifact where a final one is expected.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mobile_export.errors import ArtifactError, OutputDirError
from mobile_export.options import Precision

SCHEMA_VERSION = 1  # of manifest.json and of every report.json (export and validation)
MANIFEST_REQUIRED = ("model", "precision", "num_classes", "tflite_sha256", "inputs", "outputs", "preprocessing")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dumps(obj: Any) -> str:
    """Stable JSON: sorted keys, fixed indentation, newline at the end."""
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def check_writable(out_dir: Path) -> None:
    """Fail early (before minutes of conversion) when ``out_dir`` cannot be written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".probe-"):
            pass
    except OSError as e:
        raise OutputDirError(f"cannot write to output directory '{out_dir}' ({e.strerror or e}); pass a writable --out.") from None


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp directory beside ``final``; on success replace ``final`` with it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Write a single file atomically (temp file in the same directory + rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("mobile-export", "torch", "onnx", "onnxruntime", "onnxsim", "tensorflow", "ai-edge-litert"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest.json beside the artifact ``path``; ArtifactError naming what to fix otherwise."""
    mpath = path.parent / "manifest.json"
    if not mpath.is_file():
        raise ArtifactError(f"no manifest.json beside {path}; validate needs the manifest mobile-export wrote "
                            "with the model (re-export it).")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{mpath} is not readable JSON ({e}); re-export the model.") from None
    missing = ([k for k in MANIFEST_REQUIRED if k not in manifest] if isinstance(manifest, dict)
               else list(MANIFEST_REQUIRED))
    if missing:
        raise ArtifactError(f"{mpath} lacks {', '.join(missing)}; it is not a mobile-export manifest (re-export the model).")
    return manifest


def _io_entry(info, name: str) -> dict:
    d = info.as_dict()
    d["tensor"], d["name"] = d["name"], name  # signature name (stable) and TFLite tensor name
    d["layout"] = "NHWC" if len(info.shape) == 4 else "NC"
    return d


def _weights_entry(config) -> dict | None:
    if config.weights_spec is not None:
        return {"name": config.weights_spec.name, "sha256": sha256_file(config.weights_spec.path)}
    if config.weights is not None:
        return {"path": Path(config.weights).name, "sha256": sha256_file(config.weights)}
    return None


def build_manifest(config, options, tflite: bytes, proto, tfl, lowered, calib=None, int8=None) -> dict:
    """manifest.json of an export: ``config`` (models.ModelConfig), ``options`` (ExportOptions),
    the TFLite bytes and its loaded model ``tfl``, the ONNX graph, the lowering (recipe, layers,
    fixed ranges), and for int8 the calibration set and the search's result (its decisions)."""
    precision = options.precision
    weights = _weights_entry(config)
    recipe = list(lowered.recipe)
    if int8 is not None:
        recipe += int8.decisions + [
            f"{r.tensor}: int8 range [{r.lo:.6g}, {r.hi:.6g}] ({'calibrated' if r.calibrated else 'exact bound'})"
            for r in lowered.fixed_ranges]
    return {
        "schema_version": SCHEMA_VERSION,
        "model": config.name,
        "family": config.spec.family,
        "precision": precision.value,
        "io_type": options.io_type.value if precision is Precision.INT8 else "float",
        "num_classes": config.num_classes,
        "weights": weights,
        "trained": weights is not None,
        "seed": options.seed,  # the reference's seed: validate rebuilds an untrained model from it
        "tflite_sha256": sha256_bytes(tflite),
        "onnx_sha256": sha256_bytes(proto.SerializeToString()),
        "inputs": [_io_entry(tfl.inputs[0], config.input_name)],
        "outputs": [_io_entry(tfl.outputs[0], config.output_name)],
        "preprocessing": config.preprocessing(),
        "labels": list(config.labels) if config.labels else None,
        "calibration": None if calib is None else {
            "source": calib.source, "kind": calib.kind, "count": calib.count,
            "seed": calib.seed, "sha256": calib.sha256,
        },
        "recipe": recipe,
        "layers": lowered.layers(),
        "versions": versions(),
    }
