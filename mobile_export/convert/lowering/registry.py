"""The lowering table: one small function per ONNX op type, registered with ``@lowers``.

A lowering function receives the ``LoweringContext`` and the ONNX node, reads its inputs with
``ctx.value`` (activations) / ``ctx.const`` (initializers), and returns one ``Value`` per output.
Activations with 4 dimensions are kept in NHWC (``Value.nhwc``); ONNX's logical layout is NCHW, so
every lowering that names an axis maps it with ``nchw_axis_to_nhwc``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx

from mobile_export.errors import UnsupportedOpError

LOWERINGS: dict[str, Callable] = {}


def lowers(*op_types: str):
    def deco(fn):
        for op in op_types:
            if op in LOWERINGS:
                raise ValueError(f"ONNX op {op} already has a lowering ({LOWERINGS[op].__name__})")
            LOWERINGS[op] = fn
        return fn

    return deco


@dataclass
class Value:
    """A lowered activation: ``t`` is a tf.Tensor; ``nhwc`` says a 4-D tensor is stored NHWC while
    ONNX sees it NCHW; ``nonneg`` records that every element is ≥ 0 (after ReLU/ReLU6), which lets
    pooling pad with zeros."""

    t: object
    nhwc: bool = False
    nonneg: bool = False

    @property
    def rank(self) -> int:
        return len(self.t.shape)


def nchw_axis_to_nhwc(axis: int, rank: int = 4) -> int:
    axis = axis % rank
    return {0: 0, 1: 3, 2: 1, 3: 2}[axis]


def lowering_for(node: onnx.NodeProto) -> Callable:
    fn = LOWERINGS.get(node.op_type)
    if fn is None:
        raise UnsupportedOpError(node.op_type, node.name or node.output[0])
    return fn


def check_supported(nodes) -> None:
    for node in nodes:
        lowering_for(node)


def same_padding(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """The (before, after) padding TensorFlow's SAME uses for one spatial dimension."""
    k_eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + k_eff - size, 0)
    return total // 2, total - total // 2


def as_int_list(a) -> list[int]:
    return [int(v) for v in np.asarray(a).reshape(-1)]
