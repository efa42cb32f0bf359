"""Int8 form of PReLU: XNNPACK runs PRELU in float only; an int8 PRELU leaves the delegate (measured
with ai-edge-litert 2.3: a lone int8 PRELU is not delegated, and the int8 RELU / MINIMUM of a
max(x,0) + α·min(x,0) form are not either).

Per channel, with q = min(α − 1, 0) and r = min(1 − α, 0):

    prelu(x) = x + relu(q·x) − relu(r·x)

(α ≤ 1: q·x ≥ 0 exactly when x ≤ 0, adding (α − 1)·x there; α > 1: r·x ≥ 0 exactly when x ≤ 0,
subtracting (1 − α)·x.) Each relu(w·x) is a 1x1 depthwise convolution with a fused ReLU, which int8
quantizes per channel; the sum is one ADD (and one SUB only when some α > 1). Every op is one XNNPACK
runs in int8; the output keeps the PRelu's tensor name (same value), the new tensors get new names.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mobile_export.convert.graph import channel_counts, initializers


def _per_channel_slope(alpha: np.ndarray, channels: int | None) -> np.ndarray | None:
    """α as a [C] vector when it is one slope per NCHW channel or one shared slope; else None."""
    if alpha.size == 1 and channels:
        return np.full(channels, float(alpha.reshape(-1)[0]), np.float32)
    c = alpha.size
    if alpha.shape in ((c, 1, 1), (1, c, 1, 1)) and channels in (None, c):
        return alpha.reshape(-1).astype(np.float32)
    return None


class _Emitter:
    def __init__(self, graph: onnx.GraphProto, node: onnx.NodeProto) -> None:
        self.graph, self.base, self.out = graph, node.name or node.output[0], node.output[0]
        self.nodes: list[onnx.NodeProto] = []

    def relu_of_scaled(self, x: str, w: np.ndarray, tag: str) -> str:
        """relu(w·x) per channel: a 1x1 depthwise Conv (then fused with its ReLU by the converter)."""
        wname = f"{self.out}__{tag}_w"
        self.graph.initializer.append(numpy_helper.from_array(w.reshape(-1, 1, 1, 1).astype(np.float32), wname))
        conv = f"{self.out}__{tag}_conv"
        self.nodes.append(helper.make_node("Conv", [x, wname], [conv], name=f"{self.base}_{tag}conv",
                                           group=int(w.size), kernel_shape=[1, 1]))
        self.nodes.append(helper.make_node("Relu", [conv], [f"{self.out}__{tag}"], name=f"{self.base}_{tag}relu"))
        return f"{self.out}__{tag}"

    def binary(self, op: str, a: str, b: str, final: bool, tag: str) -> str:
        out = self.out if final else f"{self.out}__{tag}"
        self.nodes.append(helper.make_node(op, [a, b], [out], name=f"{self.base}_{tag}"))
        return out


def _rewrite(graph: onnx.GraphProto, node: onnx.NodeProto, alpha: np.ndarray) -> list[onnx.NodeProto]:
    em, x = _Emitter(graph, node), node.input[0]
    q, r = np.minimum(alpha - 1.0, 0.0), np.minimum(1.0 - alpha, 0.0)
    if not q.any() and not r.any():  # α = 1 everywhere: the identity
        return [helper.make_node("Identity", [x], [node.output[0]], name=node.name)]
    y = x
    if q.any():
        y = em.binary("Add", y, em.relu_of_scaled(x, q, "neg"), final=not r.any(), tag="add")
    if r.any():
        em.binary("Sub", y, em.relu_of_scaled(x, r, "over"), final=True, tag="sub")
    return em.nodes


def prelu_int8_form(graph: onnx.GraphProto, recipe: list[str]) -> None:
    """Rewrite every PRelu with a constant per-channel (or shared) slope as in the module doc, in place."""
    if not any(n.op_type == "PRelu" for n in graph.node):
        return
    inits, channels = initializers(graph), channel_counts(graph)
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        slope = inits.get(node.input[1]) if node.op_type == "PRelu" else None
        alpha = None if slope is None else _per_channel_slope(numpy_helper.to_array(slope), channels.get(node.input[0]))
        if alpha is None:
            new_nodes.append(node)
            continue
        rewritten = _rewrite(graph, node, alpha)
        new_nodes.extend(rewritten)
        recipe.append(f"{node.name}: PReLU as x + relu(min(α−1,0)·x) − relu(min(1−α,0)·x) "
                      f"({len(rewritten)} int8 ops XNNPACK runs)")
    del graph.node[:]
    graph.node.extend(new_nodes)
