"""ONNX graph utilities every stage shares: consumer maps, node attributes, initializers, copies.

One place for what passes, equalization, bias correction, range planning and the per-layer
comparison all need, so each reads a graph the same way.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper


DOMAIN = "mobile_export"  # the ONNX domain of our own nodes (ChannelShuffle)


def channel_counts(graph: onnx.GraphProto) -> dict[str, int]:
    """Tensor → its axis-1 size, for the 4-D tensors whose shape the graph records."""
    out = {}
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            out[vi.name] = dims[1].dim_value
    return out


def consumers_of(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name → the nodes reading it, in graph order (a missing name reads as no consumer)."""
    out: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in graph.node:
        for i in n.input:
            out[i].append(n)
    return out


def producers_of(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Tensor name → the node writing it."""
    return {o: n for n in graph.node for o in n.output}


def attrs(node: onnx.NodeProto) -> dict:
    """All attributes of ``node`` as Python values."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def attr(node: onnx.NodeProto, name: str, default=None):
    """One attribute of ``node`` as a Python value, ``default`` when absent."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializer name → TensorProto (edit it in place with ``set_initializers``)."""
    return {t.name: t for t in graph.initializer}


def initializer_arrays(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializer name → its value as a numpy array."""
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def set_initializers(inits: dict[str, onnx.TensorProto], values: dict[str, np.ndarray]) -> None:
    """Overwrite initializers (by name, in ``inits`` from ``initializers``) with float32 values."""
    for name, value in values.items():
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))


def own_bias(model: onnx.ModelProto, inits: dict, node: onnx.NodeProto) -> np.ndarray:
    """The conv's bias; a bias other nodes share (onnxsim keeps one all-zero bias for untrained
    BN-folded convs) is first copied so that changing it touches this conv only."""
    bias = numpy_helper.to_array(inits[node.input[2]])
    if sum(node.input[2] in n.input for n in model.graph.node) > 1:
        own = f"{node.input[1]}_bias"
        model.graph.initializer.append(numpy_helper.from_array(bias, own))
        inits[own] = model.graph.initializer[-1]
        node.input[2] = own
    return bias


def copy_model(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of ``proto`` to edit without touching the original."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def with_outputs(proto: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``proto`` that also returns the intermediate tensors ``names`` (shapes inferred when
    possible), e.g. to compare every layer with another runtime."""
    model = copy_model(proto)
    existing = {o.name for o in model.graph.output}
    try:
        inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    except Exception:  # shape inference is a nicety here: outputs without shapes work too
        inferred = {}
    for n in names:
        if n not in existing:
            model.graph.output.append(inferred.get(n) or helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    return model


def with_fp16_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose float initializers are rounded to float16 and back: what an fp16-weights
    model computes in exact arithmetic otherwise (weights after BN folding, as TFLite stores them)."""
    out = copy_model(proto)
    for i, t in enumerate(out.graph.initializer):
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32:
            out.graph.initializer[i].CopyFrom(numpy_helper.from_array(a.astype(np.float16).astype(np.float32), t.name))
    return out


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove initializers no node reads."""
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
