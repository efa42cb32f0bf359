"""Artifact folders, hashing, and the manifest: its one schema version, how it is built and read.

``OUT/NAME/PRECISION/`` is written in a temporary sibling directory and renamed into place, so an
interrupted run never leaves a half artifact where a final one is expected.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

from mobile_export.errors import ArtifactError, OutputDirError
from mobile_export.options import Precision

SCHEMA_VERSION = 1  # of manifest.json
# of every report.json (export and validation alike): 2 = one schema for both (check.report.Report);
# the export's fidelity "bounds" / "passed" became gate checks, per_layer moved to the top level
REPORT_SCHEMA_VERSION = 2
IO_METADATA_ENTRY = "mobile_export.io"  # the .tflite's Model.metadata entry stating its input contract
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


def check_target_dir(final: Path, flag: str = "--out") -> None:
    """Fail early when the folder ``final`` cannot be written atomically: a path component is a file,
    or the deepest existing folder above it cannot be written. Creates nothing (a probe file is
    written and removed)."""
    existing = next(p for p in [final, *final.parents] if p.exists())
    if not existing.is_dir():
        raise OutputDirError(f"'{existing}' is a file, so '{final}' cannot be created; remove it or pass another {flag}.")
    probe_in = existing if existing != final else final.parent
    try:
        with tempfile.NamedTemporaryFile(dir=probe_in, prefix=".probe-"):
            pass
    except OSError as e:
        raise OutputDirError(f"cannot write to '{probe_in}' ({e.strerror or e}); pass a writable {flag}.") from None


def check_writable_file(path: Path, flag: str) -> None:
    """Fail early when the file ``path`` cannot be written (its folder missing rights, or it is a folder)."""
    if path.is_dir():
        raise OutputDirError(f"{flag} {path} is a directory; pass a file path.")
    check_target_dir(path, flag)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(root: Path) -> None:
    """Give ``root`` and everything under it the modes a plain ``mkdir`` / ``open`` would (temp dirs
    and files are created 0700 / 0600, which locks out a CI user or another account)."""
    mask = current_umask()
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~mask)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o666 & ~mask)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(final: Path) -> list[Path]:
    """Remove the temporary / replaced siblings of ``final`` (``.NAME.tmp-PID-*``, ``.NAME.old-PID-*``)
    that a killed run left behind: those whose process is gone."""
    removed = []
    for kind in ("tmp", "old"):
        for p in final.parent.glob(f".{final.name}.{kind}-*"):
            pid = p.name[len(f".{final.name}.{kind}-"):].split("-")[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


@contextmanager
def _swap_lock(final: Path) -> Iterator[None]:
    fd = os.open(final.parent, os.O_RDONLY)  # the parent folder itself is the lock: nothing left behind
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp directory beside ``final``; on success replace ``final`` with it. Concurrent
    writers of the same ``final`` both succeed (the swap is under a lock; the last one wins), and
    leftovers of killed runs are removed first. Final modes follow the umask."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    try:
        yield tmp
        follow_umask(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    with _swap_lock(final):
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-{os.getpid()}-", dir=final.parent))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Write a single file atomically (temp file in the same directory + rename), mode per the umask."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def versions() -> dict[str, str]:
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


def _output_entry(info, io: dict) -> dict:
    d = _io_entry(info, io["output_name"])
    if io.get("output_dequantized_from"):
        d["dequantized_from"] = io["output_dequantized_from"]  # the int8 tensor behind the float output
    return d


def _weights_entry(config) -> dict | None:
    if config.weights_spec is not None:
        return {"name": config.weights_spec.name, "sha256": sha256_file(config.weights_spec.path)}
    if config.weights is not None:
        return {"path": Path(config.weights).name, "sha256": sha256_file(config.weights)}
    return None


def _preprocessing(config, pixels: bool) -> dict:
    pre = config.preprocessing()
    if pixels:  # the model normalizes: the client hands over resized RGB pixels as they are
        pre["value_range"] = [0.0, 255.0]
        pre["normalization"] = "inside the model: (pixel / 255 - mean) / std"
    else:
        pre["normalization"] = "by the client: (pixel / 255 - mean) / std"
    return pre


def build_manifest(config, options, tflite: bytes, proto, tfl, lowered, calib=None, int8=None, *, io: dict) -> dict:
    """manifest.json of an export: ``config`` (models.ModelConfig), ``options`` (ExportOptions),
    the TFLite bytes and its loaded model ``tfl``, the ONNX graph, the lowering (recipe, layers,
    fixed ranges), for int8 the calibration set and the search's result (its decisions), and ``io``
    (input / output names, pixel input, the quantization a float output was dequantized from)."""
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
        # --io of an int8 model with normalized input; otherwise inputs / outputs state the dtypes
        "io_type": (options.io_type.value if precision is Precision.INT8 and not io["pixels"] else
                    None if io["pixels"] else "float"),
        "num_classes": config.num_classes,
        "weights": weights,
        "trained": weights is not None,
        "seed": options.seed,  # the reference's seed: validate rebuilds an untrained model from it
        "tflite_sha256": sha256_bytes(tflite),
        "onnx_sha256": sha256_bytes(proto.SerializeToString()),
        "input": "pixels" if io["pixels"] else "normalized",
        "output": io["output_name"],
        "inputs": [_io_entry(tfl.inputs[0], io["input_name"])],
        "outputs": [_output_entry(tfl.outputs[0], io)],
        "preprocessing": _preprocessing(config, io["pixels"]),
        "labels": list(config.labels) if config.labels else None,
        "calibration": None if calib is None else {
            "source": calib.source, "kind": calib.kind, "count": calib.count,
            "seed": calib.seed, "sha256": calib.sha256,
        },
        "recipe": recipe,
        "layers": lowered.layers(),
        "versions": versions(),
    }
