"""One cell of a batch: export + validate in a scratch folder, everything returned as bytes.

The same function runs in-process (``--serial``) and in a Ray worker, so a cell's artifact is the
same bytes wherever it ran. Workers share no filesystem with the driver: the files a cell needs
(weights, calibration, validation data, gate) travel as ``Blob``s and are unpacked into a per-node
cache keyed by content; the sources are named in manifests and reports as the matrix file wrote them
(``calibration.NamedSource``), not by the worker's copy.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobile_export import lazy
from mobile_export.calibration import NamedSource
from mobile_export.options import Precision

from .matrix import PATH_KEYS, Cell

CACHE_ENV = "MOBILE_EXPORT_BATCH_CACHE"


@dataclass(frozen=True)
class Blob:
    """A file or folder (as a tar) the driver ships to the workers."""

    name: str          # the file or folder name the worker gives its copy
    is_dir: bool
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def pack(path: str | os.PathLike) -> Blob:
    """``path`` as a Blob: a file's bytes, or a folder as a tar in sorted order with fixed metadata."""
    p = Path(path)
    if p.is_file():
        return Blob(p.name, False, p.read_bytes())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            info = tarfile.TarInfo(str(f.relative_to(p)))
            info.size, info.mode, info.mtime = f.stat().st_size, 0o644, 0
            with open(f, "rb") as fh:
                tar.addfile(info, fh)
    return Blob(p.name, True, buf.getvalue())


def unpack(blob: Blob) -> Path:
    """The worker's copy of ``blob`` in the node cache (made once per content, atomically)."""
    root = Path(os.environ.get(CACHE_ENV, Path(tempfile.gettempdir()) / "mobile-export-batch")) / blob.sha256[:24]
    final = root / blob.name
    if final.exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        if blob.is_dir:
            with tarfile.open(fileobj=io.BytesIO(blob.data)) as tar:
                tar.extractall(tmp / blob.name, filter="data")
        else:
            (tmp / blob.name).write_bytes(blob.data)
        try:
            os.replace(tmp / blob.name, final)
        except OSError:  # another task on this node unpacked it first
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# One compute / inference thread per cell, so cells sharing a node never oversubscribe it (set in
# the Ray task's environment before TensorFlow, torch or onnxruntime start their pools).
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
                  "MOBILE_EXPORT_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_cell(cell: Cell, blobs: dict[str, Blob]) -> dict[str, Any]:
    """Export and validate ``cell``; ``blobs`` maps the cell's path keys to their shipped content.
    Returns ``{"id", "row", "files": {relative path: bytes}}``. Errors propagate (the executor
    retries, then records them)."""
    api = lazy.load("mobile_export.api")  # TensorFlow and torch: only where a cell runs
    local = {k: unpack(b) for k, b in blobs.items()}
    named = {k: NamedSource(local[k], str(cell.labels.get(k, getattr(cell, k)))) for k in local}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mobile-export-cell-") as work:
        opts = cell.export_options(out_dir=Path(work) / "dist", latency_runs=0,  # the cell's validate times it
                                   weights=str(local["weights"]) if "weights" in local else cell.weights,
                                   calibration=named.get("calibration", cell.calibration)
                                   if cell.precision is Precision.INT8 else None)
        res = api.export(cell.model, opts)
        t_export = time.perf_counter() - t0
        v = api.validate(res.tflite_path, reference=cell.model, weights=opts.weights,
                     data=named.get("data", cell.data), num=cell.num, seed=cell.seed,
                     gate=str(local["gate"]) if "gate" in local else None,
                     latency_runs=cell.latency_runs, out_dir=res.out_dir / "validation")
        files = {str(f.relative_to(res.out_dir)): f.read_bytes()
                 for f in sorted(res.out_dir.rglob("*")) if f.is_file()}
    row = summarize(cell, res, v)
    row["seconds"] = {"export": round(t_export, 1), "validate": round(time.perf_counter() - t0 - t_export, 1)}
    return {"id": cell.id, "row": row, "files": files}


def summarize(cell: Cell, res, v) -> dict[str, Any]:
    """The table row of a finished cell (``res``: api.ExportResult, ``v``: api.ValidationResult)."""
    rep = v.report
    fid = rep.fidelity.tflite_vs_torch
    acc = rep.accuracy
    failed = [c.sentence() for c in rep.gate.failures if not c.skipped]
    if not res.passed:
        failed.insert(0, "export checks failed: " + "; ".join(c.sentence() for c in res.report.gate.failures[:3]))
    return {
        "id": cell.id, "model": cell.model, "precision": cell.precision.value, "input_size": cell.input_size,
        "status": "pass" if res.passed and v.passed else "fail",
        "sqnr_db": fid.sqnr_db, "max_rel": fid.max_rel, "top1_agreement": fid.top1_agreement,
        "partitions": res.report.graph.partitions, "outside": len(res.report.graph.outside),
        "latency_ms": rep.latency_ms("tflite", 1),
        "samples": rep.data.count,
        "torch_top1": acc["torch"]["top1"] if acc else None,
        "tflite_top1": acc["tflite"]["top1"] if acc else None,
        "drop": acc["top1_drop"] if acc else None,
        "checks": [{"name": c.name, "passed": c.passed, "skipped": c.skipped, "sentence": c.sentence()}
                   for c in rep.gate.checks],
        "failed": failed,
        "tflite_sha256": res.manifest["tflite_sha256"],
    }


def error_row(cell: Cell, error: BaseException | str, *, kind: str = "error", exit_code: int = 3) -> dict:
    """The row of a cell that raised, lost its worker twice, or was cancelled."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    first = (text.strip().splitlines() or [""])[0][:300]
    return {"id": cell.id, "model": cell.model, "precision": cell.precision.value, "input_size": cell.input_size,
            "status": kind, "error": first, "exit_code": exit_code,
            "traceback": None if isinstance(error, str) else "".join(traceback.format_exception(error))[-4000:]}


def blobs_for(cell: Cell, packed: dict[str, Blob]) -> dict[str, Blob]:
    """The blobs ``cell`` needs, from the driver's ``packed`` (path → Blob, packed once per path)."""
    return {k: packed[getattr(cell, k)] for k in PATH_KEYS if getattr(cell, k) in packed}
