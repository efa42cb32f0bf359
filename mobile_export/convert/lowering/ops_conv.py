"""Convolution, fully connected and pooling lowerings (NHWC, weights transposed at conversion)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from mobile_export.convert.graph import attrs
from mobile_export.errors import UnsupportedOpError

from .registry import Value, as_int_list, lowers, same_padding


def _spatial_padding(x: Value, kernel, strides, dilations, pads, pad_value=0.0):
    """Return (tensor, padding) so a VALID/SAME TF op reproduces ONNX's explicit pads."""
    h, w = int(x.t.shape[1]), int(x.t.shape[2])
    pt, pl, pb, pr = pads
    if not any(pads):
        return x.t, "VALID"
    same_h = same_padding(h, kernel[0], strides[0], dilations[0])
    same_w = same_padding(w, kernel[1], strides[1], dilations[1])
    if (pt, pb) == same_h and (pl, pr) == same_w:
        # Conv SAME pads zeros; max-pool SAME ignores padded cells: both equal ONNX's pads here.
        return x.t, "SAME"
    padded = tf.pad(x.t, [[0, 0], [pt, pb], [pl, pr], [0, 0]], constant_values=pad_value)
    return padded, "VALID"


def _conv2d(t, filt: np.ndarray, strides, padding: str, dil, depthwise: bool = False):
    """CONV_2D / DEPTHWISE_CONV_2D. ``tf.nn``'s wrappers refuse a stride > 1 together with a dilation
    > 1 (ESPNetv2's strided EESP branches); the raw ops run it and convert to one TFLite op carrying
    both stride and dilation factors, which XNNPACK runs."""
    if max(strides) == 1 or max(dil) == 1:
        fn = tf.nn.depthwise_conv2d if depthwise else tf.nn.conv2d
        return fn(t, tf.constant(filt), [1, *strides, 1], padding, dilations=dil)
    fn = tf.raw_ops.DepthwiseConv2dNative if depthwise else tf.raw_ops.Conv2D
    return fn(input=t, filter=tf.constant(filt), strides=[1, *strides, 1], padding=padding, dilations=[1, *dil, 1])


@lowers("Conv")
def conv(ctx, node):
    x = ctx.value(node.input[0])
    w = ctx.const(node.input[1]).astype(np.float32)
    b = ctx.const(node.input[2]).astype(np.float32) if len(node.input) > 2 and node.input[2] else None
    a = attrs(node)
    if w.ndim != 4 or not x.nhwc:
        raise UnsupportedOpError("Conv", node.name, "only 2-D convolutions on NCHW activations are lowered")
    group = int(a.get("group", 1))
    kernel = list(w.shape[2:])
    strides = as_int_list(a.get("strides", [1, 1]))
    dil = as_int_list(a.get("dilations", [1, 1]))
    pads = as_int_list(a.get("pads", [0, 0, 0, 0]))
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedOpError("Conv", node.name, "auto_pad is not lowered; export with explicit pads")
    t, padding = _spatial_padding(x, kernel, strides, dil, pads)
    out_c, in_per_group = w.shape[0], w.shape[1]
    in_c = int(x.t.shape[3])
    if group > 1 and group == in_c and in_per_group == 1:
        mult = out_c // in_c
        filt = w.reshape(in_c, mult, *kernel).transpose(2, 3, 0, 1)
        y = _conv2d(t, filt, strides, padding, dil, depthwise=True)
    else:
        # Plain or grouped: one CONV_2D (a grouped one's filter has C/groups input channels). TFLite's
        # kernels and XNNPACK run grouped convolutions natively, fp32 and int8; on emulated cortex-a76
        # one grouped CONV_2D costs 24% (int8) and 14% (fp32) fewer instructions than SPLIT → a
        # CONV_2D per group → CONCATENATION (4 groups, 128 channels, 28x28).
        y = _conv2d(t, w.transpose(2, 3, 1, 0), strides, padding, dil)
    if b is not None:
        y = tf.nn.bias_add(y, tf.constant(b))
    return [Value(y, nhwc=True)]


@lowers("Gemm")
def gemm(ctx, node):
    x = ctx.value(node.input[0])
    a = attrs(node)
    if a.get("transA", 0):
        raise UnsupportedOpError("Gemm", node.name, "transA=1 is not lowered")
    w = ctx.const(node.input[1]).astype(np.float32)
    if a.get("transB", 0):
        w = w.T
    w = w * float(a.get("alpha", 1.0))
    y = tf.matmul(x.t, tf.constant(np.ascontiguousarray(w)))
    if len(node.input) > 2 and node.input[2]:
        c = ctx.const(node.input[2]).astype(np.float32) * float(a.get("beta", 1.0))
        y = y + tf.constant(c)
    return [Value(y)]


@lowers("MatMul")
def matmul(ctx, node):
    x = ctx.value(node.input[0])
    w = ctx.const(node.input[1]).astype(np.float32)
    return [Value(tf.matmul(x.t, tf.constant(w)))]


def _pool_padding(x: Value, kernel, strides, pads, ceil_mode: bool):
    """Explicit pads plus the extra bottom/right rows ceil_mode adds."""
    pads = list(pads)
    if ceil_mode:
        for i, size in enumerate((int(x.t.shape[1]), int(x.t.shape[2]))):
            span = size + pads[i] + pads[i + 2] - kernel[i]
            out_ceil = -(-span // strides[i]) + 1
            # PyTorch drops a last window that would start inside the end padding only.
            if (out_ceil - 1) * strides[i] >= size + pads[i]:
                out_ceil -= 1
            need = (out_ceil - 1) * strides[i] + kernel[i] - (size + pads[i] + pads[i + 2])
            pads[i + 2] += max(need, 0)
    return pads


@lowers("MaxPool")
def max_pool(ctx, node):
    x = ctx.value(node.input[0])
    a = attrs(node)
    kernel = as_int_list(a["kernel_shape"])
    strides = as_int_list(a.get("strides", [1, 1]))
    if any(d != 1 for d in as_int_list(a.get("dilations", [1, 1]))) or len(node.output) > 1:
        raise UnsupportedOpError("MaxPool", node.name, "dilated pooling / indices output are not lowered")
    pads = _pool_padding(x, kernel, strides, as_int_list(a.get("pads", [0, 0, 0, 0])), bool(a.get("ceil_mode", 0)))
    # Zero padding is exact after a ReLU; otherwise pad with the lowest float (max ignores it).
    pad_value = 0.0 if x.nonneg else float(np.finfo(np.float32).min)
    t, padding = _spatial_padding(x, kernel, strides, [1, 1], pads, pad_value)
    return [Value(tf.nn.max_pool2d(t, kernel, [1, *strides, 1], padding), nhwc=True, nonneg=x.nonneg)]


@lowers("AveragePool")
def average_pool(ctx, node):
    """Average pooling as a depthwise convolution with constant 1/(kh·kw) weights (zero padding
    counted, as PyTorch's default count_include_pad): XNNPACK runs int8 DEPTHWISE_CONV_2D but not
    int8 AVERAGE_POOL_2D, and the weight 1/(kh·kw) is exact in per-channel int8."""
    x = ctx.value(node.input[0])
    a = attrs(node)
    kernel = as_int_list(a["kernel_shape"])
    strides = as_int_list(a.get("strides", [1, 1]))
    pads = as_int_list(a.get("pads", [0, 0, 0, 0]))
    if a.get("ceil_mode", 0):
        raise UnsupportedOpError("AveragePool", node.name, "ceil_mode=1 is not lowered")
    if any(pads) and not a.get("count_include_pad", 0):
        h, w = int(x.t.shape[1]), int(x.t.shape[2])
        if (pads[0], pads[2]) != same_padding(h, kernel[0], strides[0]) or \
                (pads[1], pads[3]) != same_padding(w, kernel[1], strides[1]):
            raise UnsupportedOpError("AveragePool", node.name, "count_include_pad=0 with non-SAME pads")
        return [Value(tf.nn.avg_pool2d(x.t, kernel, [1, *strides, 1], "SAME"), nhwc=True, nonneg=x.nonneg)]
    t, padding = _spatial_padding(x, kernel, strides, [1, 1], pads)
    if padding == "SAME":  # SAME would exclude the padding from the count: pad explicitly instead
        t = tf.pad(x.t, [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]])
        padding = "VALID"
    c = int(x.t.shape[3])
    filt = np.full((kernel[0], kernel[1], c, 1), 1.0 / (kernel[0] * kernel[1]), np.float32)
    y = tf.nn.depthwise_conv2d(t, tf.constant(filt), [1, *strides, 1], padding)
    return [Value(y, nhwc=True, nonneg=x.nonneg)]


@lowers("BatchNormalization")
def batch_norm(ctx, node):
    """Inference BatchNorm not folded into a convolution (ESPNetv2's BN after a concatenation): a 1x1
    depthwise convolution with bias, one op XNNPACK runs, with per-channel int8 weights."""
    x = ctx.value(node.input[0])
    if len(node.output) > 1 or attrs(node).get("training_mode", 0) or not (x.nhwc or x.rank == 2):
        raise UnsupportedOpError("BatchNormalization", node.name, "only inference BN on NCHW or [N, C] is lowered")
    gamma, beta, mean, var = (ctx.const(n).astype(np.float64) for n in node.input[1:5])
    scale = gamma / np.sqrt(var + float(attrs(node).get("epsilon", 1e-5)))
    shift = (beta - mean * scale).astype(np.float32)
    if not x.nhwc:
        return [Value(x.t * tf.constant(scale.astype(np.float32)) + tf.constant(shift))]
    filt = scale.astype(np.float32).reshape(1, 1, -1, 1)
    y = tf.nn.depthwise_conv2d(x.t, tf.constant(filt), [1, 1, 1, 1], "VALID")
    return [Value(tf.nn.bias_add(y, tf.constant(shift)), nhwc=True)]


@lowers("GlobalAveragePool")
def global_average_pool(ctx, node):
    x = ctx.value(node.input[0])
    return [Value(tf.reduce_mean(x.t, axis=[1, 2], keepdims=True), nhwc=True, nonneg=x.nonneg)]


@lowers("GlobalMaxPool")
def global_max_pool(ctx, node):
    x = ctx.value(node.input[0])
    return [Value(tf.reduce_max(x.t, axis=[1, 2], keepdims=True), nhwc=True, nonneg=x.nonneg)]
