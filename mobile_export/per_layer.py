"""Per-layer comparison: where does the TFLite model first diverge from the ONNX/PyTorch reference?

Every ONNX node is lowered under its own TF name scope (``n012_Conv``, see ``lowering.graph``), and
TFLite tensor names keep it; fused ops join several names with ';' (``n006_Relu/Relu;n005_Conv/
Conv2D``). A tensor maps to the scope with the highest node index among those in its name — the
last node of a fused group is the one whose output the tensor holds — and among the tensors of
one scope, the one written last is the node's output (earlier ones are intermediates of a
multi-op lowering such as hard-swish, or a PAD before a convolution) — unless the node's own
tensors all come before a fused op that names it: then its output exists only inside that op and
the node gets no row. The ONNX side is ``model.onnx`` with those node outputs
added as graph outputs, run by onnxruntime (which matches PyTorch to ~1e-6); the manifest's
``layers`` names the PyTorch module of each node.

TFLite activations are NHWC and ONNX's NCHW: a reference is transposed when that makes the shapes
agree, reshaped when only size-1 axes differ, and skipped otherwise. Quantized tensors are
dequantized with their own scale / zero point.
"""
from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import onnx
from tqdm import tqdm

from mobile_export.runtime import TFLiteModel

log = logging.getLogger(__name__)

_SCOPE = re.compile(r"^n(\d+)_[A-Za-z0-9_]+$")

# Default tolerance per precision: ("min_sqnr_db", x) flags a layer whose SQNR is below x dB,
# ("max_rel", x) one whose max error relative to the layer's max |reference| is above x.
DEFAULT_TOLERANCE = {
    "int8": ("min_sqnr_db", 15.0),
    "dynamic": ("min_sqnr_db", 15.0),
    "fp16": ("min_sqnr_db", 30.0),
    "fp32": ("max_rel", 1e-3),
}


def tensor_scope(name: str, known: dict[str, int]) -> str | None:
    """The scope a TFLite tensor name maps to: of the known scopes it names, the last in graph order."""
    best, best_pos = None, -1
    for part in name.split(";"):
        head = part.split("/", 1)[0]
        if _SCOPE.match(head) and head in known and known[head] > best_pos:
            best, best_pos = head, known[head]
    return best


def scopes_in(name: str, known: dict[str, int]) -> list[str]:
    """Every known scope a (possibly fused) TFLite tensor name mentions, in graph order."""
    found = {part.split("/", 1)[0] for part in name.split(";")}
    return sorted((s for s in found if s in known), key=known.__getitem__)


def map_tensors(op_outputs: list[dict], layers: list[dict], onnx_values: set[str]) -> list[dict]:
    """Pair TFLite op outputs with ONNX node outputs. Returns rows in graph order with ``layer``
    (the manifest entry), ``onnx_output``, and ``tflite`` (the op-output record)."""
    known = {layer["scope"]: i for i, layer in enumerate(layers)}
    by_scope: dict[str, list[dict]] = {}
    fused_at: dict[str, int] = {}  # scope -> last op whose output it was fused into (a later scope's tensor)
    for rec in op_outputs:
        scope = tensor_scope(rec["name"], known)
        if scope is not None:
            by_scope.setdefault(scope, []).append(rec)
        for part in rec["name"].split(";"):
            head = part.split("/", 1)[0]
            if head in known and head != scope:
                fused_at[head] = rec["op_index"]
    rows = []
    for layer in layers:
        recs = by_scope.get(layer["scope"])
        outputs = [o for o in layer["outputs"] if o]
        if not recs or not outputs or fused_at.get(layer["scope"], -1) > recs[-1]["op_index"]:
            continue  # no tensor, or the node's output lives only inside a later fused op
        last_op = recs[-1]["op_index"]
        last = [r for r in recs if r["op_index"] == last_op]
        if len(outputs) > 1 and len(last) == len(outputs):
            pairs = list(zip(outputs, last))
        else:
            pairs = [(outputs[0], recs[-1])]
        for out_name, rec in pairs:
            if out_name in onnx_values:
                rows.append({"layer": layer, "onnx_output": out_name, "tflite": rec})
    return rows


def align(ref: np.ndarray, got_shape: list[int]) -> np.ndarray | None:
    """The ONNX (NCHW) reference in the TFLite tensor's layout, or None when they cannot agree."""
    got_shape = tuple(got_shape)
    # The lowering stores every 4-D activation NHWC, so a 4-D reference is always transposed:
    # deciding by shape alone would compare NCHW with NHWC whenever C == H == W.
    if ref.ndim == 4 and ref.transpose(0, 2, 3, 1).shape == got_shape:
        return ref.transpose(0, 2, 3, 1)
    if ref.shape == got_shape:
        return ref
    if ref.size == int(np.prod(got_shape)) and sum(d > 1 for d in ref.shape) <= 1:
        return ref.reshape(got_shape)
    return None


def _with_outputs(proto: onnx.ModelProto, names: list[str]) -> bytes:
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    existing = {o.name for o in model.graph.output}
    try:
        inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    except Exception:  # shape inference is a nicety here: outputs without shapes work too
        inferred = {}
    for n in names:
        if n in existing:
            continue
        vi = inferred.get(n) or onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
        model.graph.output.append(vi)
    return model.SerializeToString()


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


def compare_layers(
    tflite: bytes,
    proto: onnx.ModelProto,
    layers: list[dict],
    inputs_nchw: np.ndarray,
    *,
    input_name: str,
    precision: str,
    tolerance: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """Per-layer SQNR / cosine / error of the TFLite model against onnxruntime on ``inputs_nchw``
    (a few samples suffice), and the first layer in graph order past ``tolerance``."""
    import onnxruntime as ort

    tolerance = tuple(tolerance or DEFAULT_TOLERANCE.get(precision, DEFAULT_TOLERANCE["fp32"]))
    tfl = TFLiteModel(tflite, xnnpack=False, preserve_all=True)
    onnx_values = {o for n in proto.graph.node for o in n.output}
    rows = map_tensors(tfl.op_outputs(), layers, onnx_values)
    names = list(dict.fromkeys(r["onnx_output"] for r in rows))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(_with_outputs(proto, names), opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    batch = tfl.inputs[0].shape[0]
    accs = [_Acc() for _ in rows]
    skipped: dict[int, str] = {}
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
    known = {layer["scope"]: i for i, layer in enumerate(layers)}
    table, first = [], None
    for j, (row, acc) in enumerate(zip(rows, accs)):
        layer, rec = row["layer"], row["tflite"]
        entry = {
            "position": len(table), "scope": layer["scope"], "op_type": layer["op_type"],
            "module": layer.get("module", ""), "onnx_node": layer.get("onnx_node", ""),
            "onnx_output": row["onnx_output"], "tflite_tensor": rec["name"], "tflite_op": rec["op_name"],
            "tflite_dtype": rec["dtype"],
            # other nodes fused into this TFLite op (e.g. the Conv under a fused Relu) and their modules
            "fused": [{"scope": sc, "module": layers[known[sc]].get("module", "")}
                      for sc in scopes_in(rec["name"], known) if sc != layer["scope"]],
        }
        if j in skipped or not acc.cos:
            entry.update({"skipped": skipped.get(j, "no samples"), "diverged": False})
        else:
            entry.update(acc.result())
            entry["diverged"] = diverges(entry, tolerance)
            if entry["diverged"] and first is None:
                first = entry
        table.append(entry)
    if first is not None:
        log.info("first divergent layer: %s (%s, module %s)", first["scope"], first["op_type"], first["module"] or "-")
    return {
        "tolerance": {"kind": tolerance[0], "value": tolerance[1]},
        "samples": int(n),
        "compared": sum(1 for e in table if "skipped" not in e),
        "unmapped_layers": len(layers) - len({e["scope"] for e in table}),
        "first_divergence": first,
        "layers": table,
    }
