"""One loaded artifact — the ``.tflite`` bytes, its ONNX graph and its manifest — that opens each
runtime once, on first use, and shares it between every check of a command (export or validate):

- ``plain``: the stored graph without a delegate, every tensor kept (``preserve_all``): the graph
  checks, the I/O contract, the per-layer comparison and device inputs read it;
- ``xnnpack(threads)``: XNNPACK, the CPU delegate phones run: outputs, partitions, latency;
- ``ort(threads)`` / ``ort_graph(proto)``: onnxruntime sessions of the ONNX graph and of graphs
  derived from it (per-layer outputs, fp16-rounded weights), one per graph and thread count
  (``runtimes.onnxruntime.Sessions``, shared with the export's ONNX check).

``load(path, reference)`` reads a written artifact and cross-checks its files; export builds one
from the bytes it just made (``Loaded(...)``), so the written model is never read back.
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx

from mobile_export import artifacts
from mobile_export.errors import ArtifactError, UserError
from mobile_export.models import configure
from mobile_export.options import Precision
from mobile_export.runtimes.host import TFLITE_IDENTIFIER, GraphView, TFLiteModel
from mobile_export.runtimes.onnxruntime import Sessions


class Loaded:
    """An artifact and its runtimes, each opened once on first use."""

    def __init__(self, tflite: bytes, onnx: Any, manifest: Mapping[str, Any], path: Path | None = None,
                 sessions: Sessions | None = None) -> None:
        self.tflite, self.onnx, self.manifest, self.path = tflite, onnx, manifest, path
        self.sessions = sessions if sessions is not None else Sessions()
        self._xnnpack: dict[int, TFLiteModel] = {}

    @property
    def precision(self) -> Precision:
        return Precision.parse(self.manifest["precision"])

    @property
    def trained(self) -> bool:
        m = self.manifest
        return bool(m.get("trained", m.get("weights") is not None))

    @property
    def output_kind(self) -> str:
        return self.manifest.get("output", "logits")

    @cached_property
    def plain(self) -> TFLiteModel:
        """The model without a delegate, every tensor kept readable."""
        return TFLiteModel(self.tflite, xnnpack=False, preserve_all=True)

    @cached_property
    def graph(self) -> GraphView:
        return GraphView.of(self.plain)

    @property
    def batch(self) -> int:
        return self.plain.inputs[0].shape[0]

    def xnnpack(self, threads: int = 1) -> TFLiteModel:
        if threads not in self._xnnpack:
            self._xnnpack[threads] = TFLiteModel(self.tflite, num_threads=threads)
        return self._xnnpack[threads]

    def ort_graph(self, proto: Any, threads: int = 1):
        """An onnxruntime session of ``proto`` (this artifact's graph or one derived from it)."""
        return self.sessions.get(proto, threads)

    def ort(self, threads: int = 1):
        return self.ort_graph(self.onnx, threads)


def _check_io(path: Path, manifest: Mapping[str, Any], tfl: TFLiteModel) -> None:
    want, got = manifest["inputs"][0], tfl.inputs[0]
    if list(want.get("shape", [])) != got.shape or want.get("dtype") != got.dtype:
        raise ArtifactError(f"{path} does not match its manifest: input {got.dtype}{got.shape} vs manifest "
                            f"{want.get('dtype')}{want.get('shape')}; re-export the model.")
    q = want.get("quantization")
    if (q is None) != (got.scale is None) or (q and (not np.isclose(q["scale"], got.scale, rtol=1e-6)
                                                     or q["zero_point"] != got.zero_point)):
        raise ArtifactError(f"{path} does not match its manifest: input quantization {got.scale}/{got.zero_point} "
                            f"vs manifest {q}; re-export the model.")
    if tfl.outputs[0].shape[-1] != manifest["num_classes"]:
        raise ArtifactError(f"{path} has {tfl.outputs[0].shape[-1]} outputs but its manifest says "
                            f"{manifest['num_classes']} classes; re-export the model.")
    labels = manifest.get("labels")
    if labels is not None and len(labels) != manifest["num_classes"]:
        raise ArtifactError(f"the manifest beside {path} lists {len(labels)} labels for {manifest['num_classes']} "
                            "classes; fix its labels or re-export the model.")


def _read_onnx(path: Path):
    onnx_path = path.parent / "model.onnx"
    if not onnx_path.is_file():
        raise ArtifactError(f"no model.onnx beside {path}; validate compares against it (re-export the model).")
    try:
        return onnx.load_from_string(onnx_path.read_bytes())
    except Exception as e:  # onnx raises DecodeError and friends
        raise ArtifactError(f"{onnx_path} is not a readable ONNX model ({type(e).__name__}); re-export the model.") from None


def load(tflite_path: str | os.PathLike, reference: str | None) -> Loaded:
    """Read and cross-check the .tflite, its manifest and model.onnx; ArtifactError/UserError on a mismatch."""
    path = Path(tflite_path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist; pass the model.tflite that mobile-export wrote.")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ArtifactError(f"{path} is not a TFLite model (no 'TFL3' flatbuffer identifier at bytes 4..8); "
                            "pass the model.tflite that mobile-export wrote.")
    loaded = Loaded(data, None, {}, path)
    try:
        plain = loaded.plain  # the one plain interpreter every later check reads
    except ArtifactError as e:
        raise ArtifactError(f"{path} is truncated or damaged: {e}") from None
    manifest = loaded.manifest = artifacts.read_manifest(path)
    if reference is not None and reference != manifest["model"]:
        raise UserError(f"--reference {reference} does not match the model the artifact was exported from "
                        f"({manifest['model']}); pass --reference {manifest['model']}.")
    if artifacts.sha256_bytes(data) != manifest["tflite_sha256"]:
        raise ArtifactError(f"{path} does not match its manifest (tflite_sha256 differs); the model or the "
                            "manifest was replaced — re-export the model.")
    _check_io(path, manifest, plain)
    loaded.onnx = _read_onnx(path)
    return loaded


def reference_config(manifest: Mapping[str, Any], weights: str | os.PathLike | None):
    """The ModelConfig the export used, from the manifest (weights checked against its sha256)."""

    recorded = manifest.get("weights")
    if recorded is None:
        if weights is not None:
            raise UserError(f"the artifact was exported without weights (an untrained reference); drop --weights {weights}.")
        resolved = None
    elif weights is None and "name" in recorded:
        resolved = recorded["name"]
    elif weights is None:
        raise UserError(f"the artifact was exported with weights {recorded.get('path')} "
                        f"(sha256 {str(recorded.get('sha256'))[:12]}…); pass that file with --weights PATH.")
    else:
        resolved = str(weights)
    size = int(manifest["preprocessing"]["input_size"][0])
    config = configure(manifest["model"], weights=resolved, num_classes=int(manifest["num_classes"]), input_size=size)
    wpath = config.weights_spec.path if config.weights_spec is not None else config.weights
    if recorded is not None and wpath is not None and Path(wpath).is_file() and recorded.get("sha256"):
        if artifacts.sha256_file(wpath) != recorded["sha256"]:
            raise UserError(f"weights {weights or resolved} differ from the ones the artifact was exported with "
                            f"(sha256 {recorded['sha256'][:12]}…); pass the same --weights.")
    return config


def reference_seed(manifest: Mapping[str, Any]) -> int:
    """The seed the export drew an untrained reference's weights with."""
    return int(manifest.get("seed", (manifest.get("calibration") or {}).get("seed", 0)))
