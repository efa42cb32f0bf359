"""Which TFLite tensor holds which ONNX node's output.

Every ONNX node is lowered under its own TF name scope (``n012_Conv``, see
``convert.lowering.lowered``), and TFLite tensor names keep it; fused ops join several names with
';' (``n006_Relu/Relu;n005_Conv/Conv2D``). A tensor maps to the scope with the highest node index
among those in its name — the last node of a fused group is the one whose output the tensor holds —
and among the tensors of one scope, the one written last is the node's output (earlier ones are
intermediates of a multi-op lowering such as hard-swish, or a PAD before a convolution) — unless
the node's own tensors all come before a fused op that names it: then its output exists only inside
that op and the node gets no row.

TFLite activations are NHWC and ONNX's NCHW: ``align`` transposes a reference when that makes the
shapes agree and reshapes it when only size-1 axes differ.
"""
from __future__ import annotations

import re

import numpy as np

_SCOPE = re.compile(r"^n(\d+)_[A-Za-z0-9_]+$")


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
