"""Cross-layer equalization for int8: a cheap per-channel fix-up tried by the sensitivity pass.

A depthwise convolution whose output feeds a 1x1 convolution directly (or through a ReLU, which
commutes with a positive per-channel scale) leaves one per-tensor int8 activation in between whose
channels can differ in range by orders of magnitude; narrow channels then get only a few levels.
Scaling channel c of the depthwise weights and bias by 1/s_c and input column c of the 1x1 weights by
s_c leaves the float function unchanged (Nagel et al., "Data-Free Quantization", 2019). We pick s_c
from calibration activations, s_c = sqrt(a_c / w_c) (within [1/32, 32]; dead channels keep s_c = 1) with a_c the channel's max
|activation| and w_c the column's max |weight| (the balanced, activation-aware choice of SmoothQuant, Xiao et al. 2023):
afterwards both are sqrt(a_c * w_c), so no channel is starved in the shared activation scale and the
1x1 weights (quantized per output channel) stay balanced across their inputs.

Only ONNX initializers change; tensor names stay, so the artifact's ONNX (saved equalized) still
maps to the TFLite model layer by layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

MAX_INPUTS = 64           # calibration inputs used for the channel ranges
SCALE_LIMIT = 32.0        # s_c in [1/32, 32]: XNNPACK refuses requantization scales past 256
DEAD = 1e-3               # channels whose activations stay below DEAD x the tensor's max are left alone


@dataclass(frozen=True)
class Pair:
    depthwise: str        # node names
    pointwise: str
    activation: str       # the tensor between them that gets rebalanced (the depthwise output)
    through_relu: bool


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def find_pairs(graph) -> list[Pair]:
    """Depthwise Conv → (Relu →) 1x1 Conv (grouped or not: ShuffleNetV1's gconv2) where the intermediate tensors have no other
    consumer and neither weight is shared (a shared bias, such as the one all-zero bias onnxsim keeps
    for untrained BN-folded convs, is copied by ``equalize``)."""
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    pairs = []
    for dw in graph.node:
        if dw.op_type != "Conv" or len(dw.input) < 3 or dw.input[1] not in inits or dw.input[2] not in inits:
            continue
        w = inits[dw.input[1]]
        if len(w.dims) != 4 or w.dims[1] != 1 or _attr(dw, "group", 1) != w.dims[0] or w.dims[0] < 2:
            continue
        nxt, relu, act = consumers.get(dw.output[0], []), False, dw.output[0]
        if len(nxt) == 1 and nxt[0].op_type == "Relu":
            relu, act = True, nxt[0].output[0]  # the int8 tensor is the ReLU's output
            nxt = consumers.get(act, [])
        if len(nxt) != 1:
            continue
        pw = nxt[0]
        if pw.op_type != "Conv" or pw.input[1] not in inits:
            continue
        pw_w, groups = inits[pw.input[1]], _attr(pw, "group", 1)
        if list(pw_w.dims[2:]) != [1, 1] or pw_w.dims[1] * groups != w.dims[0] or pw_w.dims[0] % groups:
            continue
        if any(len(consumers.get(t, [])) != 1 for t in (dw.input[1], pw.input[1])):
            continue
        pairs.append(Pair(dw.name, pw.name, act, relu))
    return pairs


def _columns(w: np.ndarray, groups: int) -> list[tuple[slice, int]]:
    """For each input channel c of a (grouped) 1x1 conv with weights (O, C/g, 1, 1): the output rows of
    its group and its column inside the group."""
    per_in, per_out = w.shape[1], w.shape[0] // groups
    return [(slice(c // per_in * per_out, (c // per_in + 1) * per_out), c % per_in) for c in range(per_in * groups)]


def channel_ranges(float_graph, inputs_nhwc: np.ndarray, tensors: list[str]) -> dict[str, np.ndarray]:
    """Max |activation| per channel of each named tensor, over the first MAX_INPUTS inputs."""
    import tensorflow as tf

    fn = tf.function(lambda x: float_graph(x, extra_outputs=tensors), autograph=False)
    batch = int(float_graph.input_shape[0])
    x = inputs_nhwc[:MAX_INPUTS]
    out = {t: None for t in tensors}
    for i in range(0, len(x) - batch + 1, batch):
        res = fn(tf.constant(x[i:i + batch]))
        for t in tensors:
            a = np.abs(res[t].numpy()).reshape(-1, res[t].shape[-1]).max(axis=0)
            out[t] = a if out[t] is None else np.maximum(out[t], a)
    return out


def equalize(proto: onnx.ModelProto, float_graph, inputs_nhwc: np.ndarray) -> tuple[onnx.ModelProto, list[dict]]:
    """A copy of ``proto`` with every eligible depthwise → 1x1 pair equalized, and what was done
    (per pair: the activation's channel-range spread before and after, max/min over channels)."""
    pairs = find_pairs(proto.graph)
    if not pairs:
        return proto, []
    ranges = channel_ranges(float_graph, inputs_nhwc, [p.activation for p in pairs])
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    inits = {i.name: i for i in out.graph.initializer}
    nodes = {n.name: n for n in out.graph.node}
    done = []
    for p in pairs:
        dw, pw = nodes[p.depthwise], nodes[p.pointwise]
        w1, b1 = numpy_helper.to_array(inits[dw.input[1]]), numpy_helper.to_array(inits[dw.input[2]])
        w2 = numpy_helper.to_array(inits[pw.input[1]])
        cols = _columns(w2, int(_attr(pw, "group", 1)))  # (channel c) -> the 1x1 weights reading it
        a = ranges[p.activation].astype(np.float64)
        r2 = np.array([np.abs(w2[rows, col]).max() for rows, col in cols], dtype=np.float64)
        live = (a > DEAD * a.max()) & (r2 > DEAD * r2.max())
        s = np.ones_like(a)
        s[live] = np.clip(np.sqrt(a[live] / r2[live]), 1.0 / SCALE_LIMIT, SCALE_LIMIT)
        if sum(dw.input[2] in n.input for n in out.graph.node) > 1:  # shared bias: give this conv its own
            own = f"{dw.input[1]}_bias"
            out.graph.initializer.append(numpy_helper.from_array(b1, own))
            inits[own] = out.graph.initializer[-1]
            dw.input[2] = own
        w2 = w2.copy()
        for c, (rows, col) in enumerate(cols):
            w2[rows, col] *= s[c]
        new = {dw.input[1]: w1 / s[:, None, None, None], dw.input[2]: b1 / s, pw.input[1]: w2}
        for name, value in new.items():
            inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
        after = a / s
        done.append({"depthwise": p.depthwise, "pointwise": p.pointwise, "tensor": p.activation,
                     "through_relu": p.through_relu, "dead_channels": int((~live).sum()),
                     "channel_spread_before": float(a[live].max() / a[live].min()) if live.any() else 1.0,
                     "channel_spread_after": float(after[live].max() / after[live].min()) if live.any() else 1.0})
    return out, done
