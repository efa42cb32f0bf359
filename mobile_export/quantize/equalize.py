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

The mirror pair, a 1x1 convolution → ReLU (→ channel shuffle) → depthwise convolution (ShuffleNet V1
and V2 branches, MobileNetV3's ReLU blocks), is cheaper still: both weights are quantized per channel
along the scaled axis (the 1x1 per output row, the depthwise per channel), so scaling row c of the 1x1
by k_c and the depthwise channel that reads it by 1/k_c costs neither any precision. We give every
live channel the tensor's full range, k_c = max_c' a_c' / a_c (at most SCALE_LIMIT); a shuffle between
them only permutes which depthwise channel reads channel c.

Only ONNX initializers change; tensor names stay, so the artifact's ONNX (saved equalized) still
maps to the TFLite model layer by layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from mobile_export.convert.graph import attr as _attr
from mobile_export.convert.graph import consumers_of, copy_model, initializers, own_bias, set_initializers
from mobile_export.convert.lowering.passes import shuffle_permutation

MAX_INPUTS = 64           # calibration inputs used for the channel ranges
SCALE_LIMIT = 32.0        # s_c in [1/32, 32]: XNNPACK refuses requantization scales past 256
DEAD = 1e-3               # channels whose activations stay below DEAD x the tensor's max are left alone


DW_TO_PW = "depthwise -> 1x1"
PW_TO_DW = "1x1 -> depthwise"


@dataclass(frozen=True)
class Pair:
    depthwise: str        # node names
    pointwise: str
    activation: str       # the tensor between them that gets rebalanced (the first conv's output or its ReLU's)
    through_relu: bool
    kind: str = DW_TO_PW  # which conv comes first
    shuffle_groups: int = 1  # PW_TO_DW: a channel shuffle with these groups sits between them






def _is_depthwise(node, inits) -> bool:
    if node.op_type != "Conv" or len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
        return False
    w = inits[node.input[1]]
    return len(w.dims) == 4 and w.dims[1] == 1 and _attr(node, "group", 1) == w.dims[0] and w.dims[0] >= 2


def _shuffle_after(tensor: str, consumers, inits) -> tuple[str, int] | None:
    """(output, groups) when ``tensor`` only feeds a channel shuffle Reshape(N,g,C/g,H,W) → Transpose
    (0,2,1,3,4) → Reshape(N,C,H,W), each step with a single consumer."""
    nxt = consumers.get(tensor, [])
    if len(nxt) != 1 or nxt[0].op_type != "Reshape" or nxt[0].input[1] not in inits:
        return None
    shape5 = numpy_helper.to_array(inits[nxt[0].input[1]]).tolist()
    tr = consumers.get(nxt[0].output[0], [])
    if len(shape5) != 5 or len(tr) != 1 or tr[0].op_type != "Transpose" or list(_attr(tr[0], "perm", [])) != [0, 2, 1, 3, 4]:
        return None
    r2 = consumers.get(tr[0].output[0], [])
    if len(r2) != 1 or r2[0].op_type != "Reshape" or r2[0].input[1] not in inits:
        return None
    if len(numpy_helper.to_array(inits[r2[0].input[1]]).tolist()) != 4:
        return None
    return r2[0].output[0], int(shape5[1])


def find_pw_dw_pairs(graph) -> list[Pair]:
    """1x1 Conv (grouped or not) → Relu (→ channel shuffle) → depthwise Conv, the Relu output (and the
    shuffle's) read by nothing else and neither weight shared."""
    inits, consumers = initializers(graph), consumers_of(graph)
    pairs = []
    for pw in graph.node:
        if pw.op_type != "Conv" or len(pw.input) < 3 or pw.input[1] not in inits or pw.input[2] not in inits:
            continue
        if list(inits[pw.input[1]].dims[2:]) != [1, 1]:
            continue
        relu = consumers.get(pw.output[0], [])
        if len(relu) != 1 or relu[0].op_type != "Relu":
            continue
        act = relu[0].output[0]
        feed, groups = _shuffle_after(act, consumers, inits) or (act, 1)
        dw = consumers.get(feed, [])
        if len(dw) != 1 or not _is_depthwise(dw[0], inits) or dw[0].input[0] != feed:
            continue
        if inits[dw[0].input[1]].dims[0] != inits[pw.input[1]].dims[0]:
            continue
        if any(len(consumers.get(t, [])) != 1 for t in (dw[0].input[1], pw.input[1])):
            continue
        pairs.append(Pair(dw[0].name, pw.name, act, True, PW_TO_DW, groups))
    return pairs


def find_pairs(graph) -> list[Pair]:
    """Both kinds: ``find_dw_pw_pairs`` then ``find_pw_dw_pairs``."""
    return find_dw_pw_pairs(graph) + find_pw_dw_pairs(graph)


def find_dw_pw_pairs(graph) -> list[Pair]:
    """Depthwise Conv → (Relu →) 1x1 Conv (grouped or not: ShuffleNetV1's gconv2) where the intermediate tensors have no other
    consumer and neither weight is shared (a shared bias, such as the one all-zero bias onnxsim keeps
    for untrained BN-folded convs, is copied by ``equalize``)."""
    inits, consumers = initializers(graph), consumers_of(graph)
    pairs = []
    for dw in graph.node:
        if not _is_depthwise(dw, inits):
            continue
        w = inits[dw.input[1]]
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
    fn = float_graph.evaluator(tensors)
    batch = int(float_graph.input_shape[0])
    x = inputs_nhwc[:MAX_INPUTS]
    out = {t: None for t in tensors}
    for i in range(0, len(x) - batch + 1, batch):
        res = fn(x[i:i + batch])
        for t in tensors:
            a = np.abs(res[t]).reshape(-1, res[t].shape[-1]).max(axis=0)
            out[t] = a if out[t] is None else np.maximum(out[t], a)
    return out






def _spread(a: np.ndarray) -> float:
    return float(a.max() / a.min()) if a.size else 1.0


def equalize(proto: onnx.ModelProto, float_graph, inputs_nhwc: np.ndarray) -> tuple[onnx.ModelProto, list[dict]]:
    """A copy of ``proto`` with every eligible pair of either kind equalized, and what was done (per
    pair: the activation's channel-range spread before and after, max/min over live channels)."""
    pairs = find_pairs(proto.graph)
    if not pairs:
        return proto, []
    ranges = channel_ranges(float_graph, inputs_nhwc, sorted({p.activation for p in pairs}))
    out = copy_model(proto)
    inits = initializers(out.graph)
    nodes = {n.name: n for n in out.graph.node}
    done = []
    for p in pairs:
        dw, pw = nodes[p.depthwise], nodes[p.pointwise]
        a = ranges[p.activation].astype(np.float64)
        w_dw, w_pw = numpy_helper.to_array(inits[dw.input[1]]), numpy_helper.to_array(inits[pw.input[1]])
        if p.kind == PW_TO_DW:
            live = a > DEAD * a.max()
            k = np.ones_like(a)
            k[live] = np.clip(a[live].max() / a[live], 1.0, SCALE_LIMIT)
            b_pw = own_bias(out, inits, pw)
            reads = shuffle_permutation(len(a), p.shuffle_groups)  # depthwise channel j reads channel reads[j]
            set_initializers(inits, {pw.input[1]: w_pw * k[:, None, None, None], pw.input[2]: b_pw * k,
                                     dw.input[1]: w_dw / k[reads][:, None, None, None]})
            after = a * k
        else:
            b_dw = own_bias(out, inits, dw)
            cols = _columns(w_pw, int(_attr(pw, "group", 1)))  # (channel c) -> the 1x1 weights reading it
            r2 = np.array([np.abs(w_pw[rows, col]).max() for rows, col in cols], dtype=np.float64)
            live = (a > DEAD * a.max()) & (r2 > DEAD * r2.max())
            s = np.ones_like(a)
            s[live] = np.clip(np.sqrt(a[live] / r2[live]), 1.0 / SCALE_LIMIT, SCALE_LIMIT)
            w_pw = w_pw.copy()
            for c, (rows, col) in enumerate(cols):
                w_pw[rows, col] *= s[c]
            set_initializers(inits, {dw.input[1]: w_dw / s[:, None, None, None], dw.input[2]: b_dw / s,
                                     pw.input[1]: w_pw})
            after = a / s
        done.append({"kind": p.kind, "depthwise": p.depthwise, "pointwise": p.pointwise, "tensor": p.activation,
                     "through_relu": p.through_relu, "dead_channels": int((~live).sum()),
                     "channel_spread_before": _spread(a[live]), "channel_spread_after": _spread(after[live])})
    return out, done
