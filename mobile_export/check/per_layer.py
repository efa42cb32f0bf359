"""Per-layer comparison: where does the TFLite model first diverge from the ONNX/PyTorch reference?

TFLite tensors are paired with ONNX node outputs by their name scopes (``runtimes.tensor_map``).
The ONNX side is ``model.onnx`` with those node outputs added as graph outputs, run by onnxruntime
(which matches PyTorch to ~1e-6); the manifest's ``layers`` names the PyTorch module of each node.
A reference whose layout cannot be aligned with the TFLite tensor is skipped. Quantized tensors are
dequantized with their own scale / zero point. A layer diverges past its precision's tolerance
(``fidelity.layer_tolerance``).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from tqdm import tqdm

from mobile_export import fidelity
from mobile_export.convert.graph import with_outputs
from mobile_export.options import Precision
from mobile_export.runtimes.tensor_map import align, map_tensors, scopes_in

log = logging.getLogger(__name__)


class _Acc:
    """Running sums for one layer over samples."""

    def __init__(self) -> None:
        self.signal = self.noise = self.max_abs = self.ref_max = 0.0
        self.cos: list[float] = []

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
        diff = g - r
        self.signal += float(r @ r)
        self.noise += float(diff @ diff)
        self.max_abs = max(self.max_abs, float(np.abs(diff).max(initial=0.0)))
        self.ref_max = max(self.ref_max, float(np.abs(r).max(initial=0.0)))
        denom = float(np.linalg.norm(r) * np.linalg.norm(g))
        self.cos.append(float(r @ g) / denom if denom > 0 else (1.0 if not diff.any() else 0.0))

    def result(self) -> dict[str, float]:
        if self.noise == 0:
            sqnr = float("inf")
        elif self.signal == 0:
            sqnr = float("-inf")
        else:
            sqnr = float(10 * np.log10(self.signal / self.noise))
        return {"sqnr_db": sqnr, "cosine_mean": float(np.mean(self.cos)), "cosine_min": float(np.min(self.cos)),
                "max_abs": self.max_abs, "max_rel": self.max_abs / max(self.ref_max, 1e-12)}


def diverges(metrics: dict[str, float], tolerance: tuple[str, float]) -> bool:
    kind, bound = tolerance
    if kind == "min_sqnr_db":
        return not metrics["sqnr_db"] >= bound
    return not metrics["max_rel"] <= bound


def _accumulate(tfl, sess, rows: list[dict], inputs_nchw: np.ndarray, input_name: str) -> tuple[list[_Acc], dict, int]:
    """Run both runtimes batch by batch and add every mapped layer's pair to its accumulator;
    rows whose layouts cannot be aligned are recorded as skipped."""
    out_names = [o.name for o in sess.get_outputs()]
    batch = tfl.inputs[0].shape[0]
    accs, skipped = [_Acc() for _ in rows], {}
    n = len(inputs_nchw) - len(inputs_nchw) % batch
    for i in tqdm(range(0, n, batch), desc="per-layer comparison", unit="batch", leave=False,
                  disable=None if n > batch else True):
        x = inputs_nchw[i:i + batch].astype(np.float32)
        ref = dict(zip(out_names, sess.run(None, {input_name: x})))
        got = tfl.read_tensors(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), [r["tflite"]["tensor"] for r in rows])
        for j, row in enumerate(rows):
            g = got[row["tflite"]["tensor"]]
            r = align(np.asarray(ref[row["onnx_output"]]), list(g.shape))
            if r is None:
                skipped[j] = f"layout: ONNX {list(ref[row['onnx_output']].shape)} vs TFLite {list(g.shape)}"
                continue
            accs[j].add(r, g)
    return accs, skipped, n


def _entry(row: dict, position: int, layers: list[dict], known: dict[str, int]) -> dict[str, Any]:
    layer, rec = row["layer"], row["tflite"]
    return {
        "position": position, "scope": layer["scope"], "op_type": layer["op_type"],
        "module": layer.get("module", ""), "onnx_node": layer.get("onnx_node", ""),
        "onnx_output": row["onnx_output"], "tflite_tensor": rec["name"], "tflite_op": rec["op_name"],
        "tflite_dtype": rec["dtype"],
        # other nodes fused into this TFLite op (e.g. the Conv under a fused Relu) and their modules
        "fused": [{"scope": sc, "module": layers[known[sc]].get("module", "")}
                  for sc in scopes_in(rec["name"], known) if sc != layer["scope"]],
    }


def compare_layers(
    loaded,
    layers: list[dict],
    inputs_nchw: np.ndarray,
    *,
    input_name: str,
    precision: Precision,
    tolerance: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """Per-layer SQNR / cosine / error of the artifact ``loaded`` (``check.loaded.Loaded``: its plain
    interpreter keeps every tensor) against onnxruntime on ``inputs_nchw`` (a few samples suffice),
    and the first layer in graph order past ``tolerance`` (default: the precision's,
    ``fidelity.layer_tolerance``)."""
    tolerance = tuple(tolerance or fidelity.layer_tolerance(precision))
    tfl = loaded.plain
    proto = loaded.onnx
    rows = map_tensors(tfl.op_outputs(), layers, {o for n in proto.graph.node for o in n.output})
    sess = loaded.ort_graph(with_outputs(proto, list(dict.fromkeys(r["onnx_output"] for r in rows))))
    accs, skipped, n = _accumulate(tfl, sess, rows, inputs_nchw, input_name)
    known = {layer["scope"]: i for i, layer in enumerate(layers)}
    table, first = [], None
    for j, (row, acc) in enumerate(zip(rows, accs)):
        entry = _entry(row, len(table), layers, known)
        if j in skipped or not acc.cos:
            entry.update({"skipped": skipped.get(j, "no samples"), "diverged": False})
        else:
            entry.update(acc.result())
            entry["diverged"] = diverges(entry, tolerance)
            first = first or (entry if entry["diverged"] else None)
        table.append(entry)
    if first is not None:
        log.info("first divergent layer: %s (%s, module %s)", first["scope"], first["op_type"], first["module"] or "-")
    return {"tolerance": {"kind": tolerance[0], "value": tolerance[1]}, "samples": int(n),
            "compared": sum(1 for e in table if "skipped" not in e),
            "unmapped_layers": len(layers) - len({e["scope"] for e in table}), "first_divergence": first,
            "layers": table}
