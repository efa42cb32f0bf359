"""Replays a (simplified, rewritten) ONNX graph as TensorFlow ops in NHWC.

``LoweredGraph(proto)(x_nhwc)`` is meant to be traced inside a ``tf.function``; every weight becomes
a graph constant (no variables, so no READ_VARIABLE ops reach the TFLite model).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import tensorflow as tf

from mobile_export import lazy
from mobile_export.convert.graph import attrs, initializer_arrays, producers_of
from mobile_export.errors import TensorFlowSetupError

from . import ops_conv, ops_elementwise, ops_shape  # noqa: F401  (register the lowerings)
from .passes import run_passes
from .registry import Value, check_supported, lowering_for


@dataclass
class FixedRange:
    tensor: str
    lo: float
    hi: float
    calibrated: bool = False  # False: exact bound of ReLU6/hard-sigmoid; True: from calibration data


@dataclass
class LoweringContext:
    consts: dict[str, np.ndarray]
    shapes: dict[str, list[int]]
    producers: dict[str, onnx.NodeProto]
    fake_quant: bool = False
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # planned int8 ranges by tensor
    env: dict[str, Value] = field(default_factory=dict)
    fixed_ranges: list[FixedRange] = field(default_factory=list)
    pinned: set[str] = field(default_factory=set)  # tensors whose range a lowering already pinned

    def value(self, name: str) -> Value:
        return self.env[name]

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str) -> np.ndarray:
        return self.consts[name]

    def shape_of(self, name: str) -> list[int] | None:
        return self.shapes.get(name)

    def concat_pieces(self, name: str) -> list[Value] | None:
        """The channel-axis operands of the Concat that produced ``name``, if one did."""
        node = self.producers.get(name)
        if node is None or node.op_type != "Concat" or int(attrs(node)["axis"]) not in (1, -3):
            return None
        return [self.env[i] for i in node.input]

    def fixed_range(self, t, lo: float, hi: float, name: str, calibrated: bool = False):
        """Pin an int8 range on ``t`` (a fake-quant node the TF converter reads): the exact bound
        of a clamping activation, or a range planned from calibration data."""
        self.fixed_ranges.append(FixedRange(name, lo, hi, calibrated))
        self.pinned.add(name)
        if not self.fake_quant:
            return t
        return tf.quantization.fake_quant_with_min_max_args(t, min=lo, max=hi, num_bits=8)


def scope_name(index: int, node: onnx.NodeProto) -> str:
    """A TF-safe, unique scope name for an ONNX node, e.g. ``n012_Conv``."""
    return f"n{index:03d}_{re.sub(r'[^A-Za-z0-9_]', '_', node.op_type)}"


def module_path(node_name: str) -> str:
    """PyTorch module path from a TorchScript-exported node name:
    ``/features/features.1/block/block.0/block.0.0/Conv`` → ``features.1.block.0.0``."""
    segments: list[str] = []
    for comp in [p for p in node_name.split("/") if p][:-1]:
        if segments and comp.startswith(segments[-1].split(".")[0] + ".") and comp.count(".") > segments[-1].count("."):
            segments[-1] = comp  # "features" then "features.1": the same attribute, one level deeper
        else:
            segments.append(comp)
    return ".".join(segments)


class LoweredGraph:
    def __init__(self, proto: onnx.ModelProto, *, fake_quant: bool = False,
                 ranges: dict[str, tuple[float, float]] | None = None, int8_forms: bool | None = None):
        """``int8_forms`` (default: ``fake_quant``) lowers the graph in the forms int8 runs best in
        (see ``passes.run_passes``); the float graph an int8 model's ranges are planned on needs it too."""
        self.model, self.recipe = run_passes(proto, int8_forms=fake_quant if int8_forms is None else int8_forms)
        self.ranges = dict(ranges or {})
        g = self.model.graph
        check_supported(g.node)
        self.fake_quant = fake_quant
        self.consts = initializer_arrays(g)
        inferred = onnx.shape_inference.infer_shapes(proto)  # before our custom-domain nodes exist
        self.shapes = {
            vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
        }
        self.producers = producers_of(g)
        init_names = set(self.consts)
        self.input_names = [i.name for i in g.input if i.name not in init_names]
        first = next(i for i in g.input if i.name == self.input_names[0])
        dims = [d.dim_value for d in first.type.tensor_type.shape.dim]
        self.input_shape = (dims[0], dims[2], dims[3], dims[1])  # NHWC
        self.output_names = [o.name for o in g.output]
        self.fixed_ranges: list[FixedRange] = []
        self.scopes = [scope_name(i, n) for i, n in enumerate(g.node)]

    def layers(self) -> list[dict]:
        """Scope ↔ ONNX node ↔ PyTorch module path, for per-layer comparisons."""
        return [
            {"scope": sc, "onnx_node": n.name, "op_type": n.op_type, "outputs": list(n.output),
             "module": module_path(n.name)}
            for sc, n in zip(self.scopes, self.model.graph.node)
        ]

    def __call__(self, x, extra_outputs: list[str] | None = None) -> dict[str, tf.Tensor]:
        """Lower the graph on NHWC input ``x``. ``extra_outputs`` names ONNX tensors to return too
        (as stored, NHWC for 4-D), e.g. to collect calibration statistics."""
        ctx = LoweringContext(self.consts, self.shapes, self.producers, fake_quant=self.fake_quant, ranges=self.ranges)
        ctx.env[self.input_names[0]] = Value(x, nhwc=True)
        for i, node in enumerate(self.model.graph.node):
            # One name scope per ONNX node: TFLite tensor names keep it (fused ops join names with
            # ';'), which maps every TFLite tensor back to its ONNX node and PyTorch module.
            with tf.name_scope(self.scopes[i]):
                outs = lowering_for(node)(ctx, node)
            for name, v in zip(node.output, outs):
                if self.fake_quant and name in self.ranges and name not in ctx.pinned:
                    lo, hi = self.ranges[name]
                    with tf.name_scope(self.scopes[i]):
                        v = Value(ctx.fixed_range(v.t, lo, hi, name, calibrated=True), v.nhwc, v.nonneg)
                ctx.env[name] = v
        self.fixed_ranges = ctx.fixed_ranges
        result = {n: ctx.env[n].t for n in extra_outputs or ()}
        for name in self.output_names:
            v = ctx.env[name]
            result[name] = tf.transpose(v.t, [0, 3, 1, 2]) if v.nhwc else v.t
        return result

    def evaluator(self, names: list[str]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        """A compiled ``x_nhwc → {name: array}`` that runs the graph in TensorFlow and returns the
        named ONNX tensors (calibration statistics, equalization)."""
        fn = tf.function(lambda x: self(x, extra_outputs=names), autograph=False)

        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            try:
                out = fn(tf.constant(x))
            except tf.errors.UnimplementedError as e:
                if onednn_enabled():
                    raise
                raise TensorFlowSetupError(e.message.splitlines()[0].split("}} ")[-1].rstrip(".")) from e
            return {n: out[n].numpy() for n in names}

        return run

    def op_types(self) -> list[str]:
        return [n.op_type for n in self.model.graph.node]


def onednn_enabled() -> bool:
    """Whether this TensorFlow runs the oneDNN CPU kernels (see ``mobile_export/__init__.py``)."""
    return bool(lazy.load("tensorflow.python.util._pywrap_util_port").IsMklEnabled())
