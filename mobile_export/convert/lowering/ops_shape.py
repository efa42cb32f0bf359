"""Shape, concatenation, split, reduction and padding lowerings, plus the channel shuffle.

Reshapes that only drop a 1×1 spatial extent stay RESHAPEs; anything that would need the NCHW
element order materialises it with one TRANSPOSE (the tests flag those, none of the zoo needs one).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from mobile_export.convert.graph import attrs
from mobile_export.errors import UnsupportedOpError

from . import xnn
from .registry import Value, as_int_list, lowers, nchw_axis_to_nhwc


def _logical(v: Value):
    """The tensor in ONNX's element order (NCHW for 4-D activations)."""
    return tf.transpose(v.t, [0, 3, 1, 2]) if v.nhwc else v.t


def _to_value(t, nonneg=False) -> Value:
    """Wrap a tensor given in ONNX's element order, moving a 4-D result to NHWC."""
    if len(t.shape) == 4:
        return Value(tf.transpose(t, [0, 2, 3, 1]), nhwc=True, nonneg=nonneg)
    return Value(t, nonneg=nonneg)


def _reshape(x: Value, shape: list[int]) -> Value:
    cur = [int(d) for d in x.t.shape]
    if x.nhwc:
        n, h, w, c = cur
        if len(shape) == 4 and shape in ([n, c, h, w], [n, c, h, -1], [n, -1, h, w]):
            return x  # no-op in NCHW terms
        if h == 1 and w == 1 and len(shape) != 4:  # dropping a 1×1 extent: same element order in both layouts
            return Value(tf.reshape(x.t, shape), nonneg=x.nonneg)
        if h == 1 and w == 1 and shape[2:] == [1, 1]:  # [N, C', 1, 1]: still 1×1, so NHWC keeps the order
            return Value(tf.reshape(x.t, [shape[0], 1, 1, shape[1]]), nhwc=True, nonneg=x.nonneg)
        return _to_value(tf.reshape(_logical(x), shape), x.nonneg)
    if len(shape) == 4:
        return _to_value(tf.reshape(x.t, shape), x.nonneg)
    return Value(tf.reshape(x.t, shape), nonneg=x.nonneg)


@lowers("Reshape")
def reshape(ctx, node):
    x = ctx.value(node.input[0])
    shape = as_int_list(ctx.const(node.input[1]))
    cur = [int(d) for d in x.t.shape]
    cur_logical = [cur[0], cur[3], cur[1], cur[2]] if x.nhwc else cur
    shape = [cur_logical[i] if d == 0 else d for i, d in enumerate(shape)]
    return [_reshape(x, shape)]


@lowers("Flatten")
def flatten(ctx, node):
    x = ctx.value(node.input[0])
    axis = int(attrs(node).get("axis", 1))
    dims = [int(d) for d in x.t.shape]
    logical = [dims[0], dims[3], dims[1], dims[2]] if x.nhwc else dims
    return [_reshape(x, [int(np.prod(logical[:axis])), int(np.prod(logical[axis:]))])]


@lowers("Squeeze", "Unsqueeze")
def squeeze(ctx, node):
    x = ctx.value(node.input[0])
    out_shape = ctx.shape_of(node.output[0])
    if out_shape is None:
        raise UnsupportedOpError(node.op_type, node.name, "output shape unknown (run onnxsim)")
    return [_reshape(x, out_shape)]


@lowers("Transpose")
def transpose(ctx, node):
    x = ctx.value(node.input[0])
    perm = as_int_list(attrs(node)["perm"])
    return [_to_value(tf.transpose(_logical(x), perm), x.nonneg)]


@lowers("Concat")
def concat(ctx, node):
    vals = [ctx.value(n) for n in node.input]
    axis = int(attrs(node)["axis"])
    nhwc = vals[0].nhwc
    if any(v.nhwc != nhwc for v in vals):
        raise UnsupportedOpError("Concat", node.name, "mixes NHWC and plain operands")
    ax = nchw_axis_to_nhwc(axis, 4) if nhwc else axis
    return [Value(xnn.concat([v.t for v in vals], axis=ax), nhwc=nhwc, nonneg=all(v.nonneg for v in vals))]


@lowers("Split")
def split(ctx, node):
    x = ctx.value(node.input[0])
    a = attrs(node)
    axis = int(a.get("axis", 0))
    ax = nchw_axis_to_nhwc(axis, 4) if x.nhwc else axis
    size = int(x.t.shape[ax])
    if len(node.input) > 1 and node.input[1]:
        sizes = as_int_list(ctx.const(node.input[1]))
    elif "split" in a:
        sizes = as_int_list(a["split"])
    else:
        sizes = [size // len(node.output)] * len(node.output)
    # Equal parts lower to SPLIT (XNNPACK runs it); unequal ones need SPLIT_V, which it does not.
    parts = xnn.split(x.t, len(sizes), axis=ax) if len(set(sizes)) == 1 else tf.split(x.t, sizes, axis=ax)
    return [Value(p, nhwc=x.nhwc, nonneg=x.nonneg) for p in parts]


@lowers("ReduceMean")
def reduce_mean(ctx, node):
    x = ctx.value(node.input[0])
    a = attrs(node)
    axes = as_int_list(a["axes"]) if "axes" in a else as_int_list(ctx.const(node.input[1]))
    keep = bool(a.get("keepdims", 1))
    if x.nhwc:
        axes = sorted(nchw_axis_to_nhwc(ax, 4) for ax in axes)
        y = tf.reduce_mean(x.t, axis=axes, keepdims=True)
        if keep:
            return [Value(y, nhwc=True, nonneg=x.nonneg)]
        if axes == [1, 2]:
            return [Value(tf.reshape(y, [int(y.shape[0]), int(y.shape[3])]), nonneg=x.nonneg)]
        raise UnsupportedOpError("ReduceMean", node.name, "keepdims=0 over axes other than H, W")
    return [Value(tf.reduce_mean(x.t, axis=axes, keepdims=keep), nonneg=x.nonneg)]


@lowers("Pad")
def pad(ctx, node):
    x = ctx.value(node.input[0])
    mode = attrs(node).get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = as_int_list(ctx.const(node.input[1]))
    value = float(ctx.const(node.input[2])) if len(node.input) > 2 and node.input[2] else 0.0
    if mode != "constant":
        raise UnsupportedOpError("Pad", node.name, f"mode {mode!r} is not lowered")
    r = len(pads) // 2
    pairs = [[pads[i], pads[i + r]] for i in range(r)]
    if x.nhwc:
        pairs = [pairs[0], pairs[2], pairs[3], pairs[1]]
    return [Value(tf.pad(x.t, pairs, constant_values=value), nhwc=x.nhwc, nonneg=x.nonneg and value >= 0)]


@lowers("ChannelShuffle")
def channel_shuffle(ctx, node):
    """ShuffleNet's channel shuffle as CONCATENATION (channels) → RESHAPE [N,H,W,g,C/g] → TRANSPOSE of
    the last two axes → RESHAPE back. XNNPACK runs the 5-D transpose as one blocked copy; stacking the
    groups on a new innermost axis instead (CONCATENATION of [N,H,W,C/g,1] pieces) is a per-element
    strided copy, 4-5x slower on ARM. If the input is itself a concatenation of the g groups
    (ShuffleNetV2), its pieces are concatenated here directly."""
    x = ctx.value(node.input[0])
    g = int(attrs(node)["groups"])
    n, h, w, c = (int(d) for d in x.t.shape)
    pieces = ctx.concat_pieces(node.input[0])
    t = x.t if pieces is None or len(pieces) != g else xnn.concat([p.t for p in pieces], axis=3)
    y = tf.reshape(tf.transpose(tf.reshape(t, [n, h, w, g, c // g]), [0, 1, 2, 4, 3]), [n, h, w, c])
    return [Value(y, nhwc=True, nonneg=x.nonneg)]


@lowers("Slice")
def slice_(ctx, node):
    x = ctx.value(node.input[0])
    starts = as_int_list(ctx.const(node.input[1]))
    ends = as_int_list(ctx.const(node.input[2]))
    rank = x.rank
    axes = as_int_list(ctx.const(node.input[3])) if len(node.input) > 3 and node.input[3] else list(range(len(starts)))
    steps = as_int_list(ctx.const(node.input[4])) if len(node.input) > 4 and node.input[4] else [1] * len(starts)
    dims = [int(d) for d in x.t.shape]
    begin, size = [0] * rank, list(dims)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st != 1:
            raise UnsupportedOpError("Slice", node.name, "strided slices are not lowered")
        ax = nchw_axis_to_nhwc(ax, 4) if x.nhwc else ax % rank
        n = dims[ax]
        s = min(max(s + n if s < 0 else s, 0), n)
        e = min(max(e + n if e < 0 else e, 0), n)
        begin[ax], size[ax] = s, max(e - s, 0)
    return [Value(tf.slice(x.t, begin, size), nhwc=x.nhwc, nonneg=x.nonneg)]
