"""Activation and elementwise lowerings, written so XNNPACK takes every op (float and int8):
hard-sigmoid as relu6(x+3)·(1/6) and hard-swish as x·(relu6(x+3)·(1/6)) — XNNPACK has neither
RELU_0_TO_1 nor an int8 HARD_SWISH. ``ctx.fixed_range`` pins the int8 range of tensors whose bounds
are known exactly (ReLU6 → [0, 6], hard-sigmoid → [0, 1]); it is a no-op for float exports."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from mobile_export.convert.graph import attrs
from mobile_export.errors import UnsupportedOpError

from .registry import Value, lowers

SIXTH = np.float32(1.0 / 6.0)


def relu6(ctx, t, name: str):
    """ReLU6 with its exact int8 range [0, 6], or the wider [0, hi] range planning chose for it
    (``quantize.ranges.xnnpack_safe``) when XNNPACK's scale limits need it; the clamp stays at 6."""
    lo, hi = ctx.ranges.get(name, (0.0, 6.0))
    return ctx.fixed_range(tf.nn.relu6(t), lo, hi, name, calibrated=(lo, hi) != (0.0, 6.0))


@lowers("Relu")
def relu(ctx, node):
    x = ctx.value(node.input[0])
    return [Value(tf.nn.relu(x.t), nhwc=x.nhwc, nonneg=True)]


@lowers("Clip")
def clip(ctx, node):
    x = ctx.value(node.input[0])
    a = attrs(node)
    lo = float(ctx.const(node.input[1])) if len(node.input) > 1 and node.input[1] else a.get("min", -np.inf)
    hi = float(ctx.const(node.input[2])) if len(node.input) > 2 and node.input[2] else a.get("max", np.inf)
    if lo == 0.0 and hi == 6.0:
        y = relu6(ctx, x.t, node.output[0])
    elif lo == 0.0 and np.isinf(hi):
        y = tf.nn.relu(x.t)
    else:
        y = tf.clip_by_value(x.t, np.float32(max(lo, -3.4e38)), np.float32(min(hi, 3.4e38)))
        return [Value(y, nhwc=x.nhwc, nonneg=lo >= 0)]
    return [Value(y, nhwc=x.nhwc, nonneg=True)]


def _hard_sigmoid(ctx, t, alpha: float, beta: float, name: str):
    scale, shift = np.float32(6.0 * alpha), np.float32(6.0 * beta)
    pre = t + shift if scale == 1.0 else t * scale + shift
    y = relu6(ctx, pre, name + "/relu6") * SIXTH
    return ctx.fixed_range(y, 0.0, 1.0, name)


@lowers("HardSigmoid")
def hard_sigmoid(ctx, node):
    x = ctx.value(node.input[0])
    a = attrs(node)
    y = _hard_sigmoid(ctx, x.t, float(a.get("alpha", 0.2)), float(a.get("beta", 0.5)), node.output[0])
    return [Value(y, nhwc=x.nhwc, nonneg=True)]


@lowers("HardSwish")
def hard_swish(ctx, node):
    x = ctx.value(node.input[0])
    # x · hard_sigmoid(x): the gate has the exact range [0, 1] and relu6(x+3)·(1/6) maps scale
    # 6/255 onto 1/255 with a multiplier of exactly 1, so int8 has no rounding ties there (an
    # explicit x·(1/6) tensor made ARM and x86 XNNPACK round .5 ties differently).
    gate = _hard_sigmoid(ctx, x.t, 1.0 / 6.0, 0.5, node.output[0] + "/gate")
    return [Value(x.t * gate, nhwc=x.nhwc)]


@lowers("Sigmoid")
def sigmoid(ctx, node):
    x = ctx.value(node.input[0])
    return [Value(tf.math.sigmoid(x.t), nhwc=x.nhwc, nonneg=True)]


@lowers("Tanh")
def tanh(ctx, node):
    x = ctx.value(node.input[0])
    return [Value(tf.math.tanh(x.t), nhwc=x.nhwc)]


def _const_for(ctx, name: str, other_nhwc: bool) -> np.ndarray:
    """Constant ``name`` laid out to broadcast against an activation as ONNX broadcasts it against
    the NCHW tensor: right-aligned, so a [W] or [H, W] constant is padded to [1, H, W] first."""
    c = ctx.const(name).astype(np.float32)
    if other_nhwc and c.ndim == 4:
        return c.transpose(0, 2, 3, 1)
    if other_nhwc and 1 <= c.ndim <= 3:
        return c.reshape((1,) * (3 - c.ndim) + c.shape).transpose(1, 2, 0)
    return c


def _operand(ctx, name: str, other_nhwc: bool) -> Value:
    """An activation Value, or a constant laid out to broadcast against an NHWC activation."""
    if not ctx.is_const(name):
        return ctx.value(name)
    c = _const_for(ctx, name, other_nhwc)
    return Value(tf.constant(c), nonneg=bool((c >= 0).all()))


def _binary(ctx, node):
    if ctx.is_const(node.input[0]) and ctx.is_const(node.input[1]):
        raise UnsupportedOpError(node.op_type, node.name, "both operands are constants (run onnxsim)")
    nhwc = any(ctx.value(n).nhwc for n in node.input[:2] if not ctx.is_const(n))
    return _operand(ctx, node.input[0], nhwc), _operand(ctx, node.input[1], nhwc), nhwc


@lowers("Add")
def add(ctx, node):
    a, b, nhwc = _binary(ctx, node)
    return [Value(a.t + b.t, nhwc=nhwc, nonneg=a.nonneg and b.nonneg)]


@lowers("Sub")
def sub(ctx, node):
    a, b, nhwc = _binary(ctx, node)
    return [Value(a.t - b.t, nhwc=nhwc)]


@lowers("Mul")
def mul(ctx, node):
    a, b, nhwc = _binary(ctx, node)
    return [Value(a.t * b.t, nhwc=nhwc, nonneg=a.nonneg and b.nonneg)]


@lowers("Div")
def div(ctx, node):
    if ctx.is_const(node.input[1]) and not ctx.is_const(node.input[0]):
        # Division by a constant becomes a multiplication: MUL quantizes and runs everywhere.
        x = ctx.value(node.input[0])
        c = _const_for(ctx, node.input[1], x.nhwc)
        return [Value(x.t * tf.constant(np.float32(1.0) / c), nhwc=x.nhwc, nonneg=x.nonneg and bool((c > 0).all()))]
    a, b, nhwc = _binary(ctx, node)
    return [Value(a.t / b.t, nhwc=nhwc)]


@lowers("PRelu")
def prelu(ctx, node):
    """relu(x) + (−α)·relu(−x) with α shaped [1, 1, C]: the form the TF converter fuses into one PRELU,
    which XNNPACK runs in float. XNNPACK has no int8 PRELU: int8 graphs rewrite PRelu first
    (``prelu.prelu_int8_form``)."""
    x = ctx.value(node.input[0])
    if not ctx.is_const(node.input[1]):
        raise UnsupportedOpError("PRelu", node.name, "only a constant slope is lowered")
    alpha = _const_for(ctx, node.input[1], x.nhwc)
    if x.nhwc and alpha.size == 1:
        alpha = np.full((1, 1, int(x.t.shape[3])), alpha.item(), np.float32)
    y = tf.nn.relu(x.t) + tf.constant(-alpha) * tf.nn.relu(-x.t)
    return [Value(y, nhwc=x.nhwc, nonneg=x.nonneg)]


@lowers("Softmax")
def softmax(ctx, node):
    x = ctx.value(node.input[0])
    axis = int(attrs(node).get("axis", -1))
    if x.nhwc or axis not in (-1, x.rank - 1):
        raise UnsupportedOpError("Softmax", node.name, "only softmax over the last axis of logits is lowered")
    return [Value(tf.nn.softmax(x.t, axis=-1), nonneg=True)]


@lowers("Identity", "Dropout")
def identity(ctx, node):
    return [ctx.value(node.input[0])]
