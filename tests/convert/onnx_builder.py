"""A tiny ONNX graph builder the converter's tests share (one node or a few, float32, NCHW input ``x``)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class G:
    """A tiny ONNX graph under construction: input ``x`` of ``shape`` (NCHW), nodes, initializers."""

    def __init__(self, shape=(1, 4, 6, 7), opset: int = 17, seed: int = 0):
        self.shape, self.opset = tuple(shape), opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, value, dtype=np.float32, name: str | None = None) -> str:
        name = name or f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def w(self, *shape, lo: float | None = None, name: str | None = None) -> str:
        """A random float constant; ``lo`` > 0 keeps |values| in [lo, lo + 1] (safe divisors)."""
        if lo is None:
            return self.const(self.rng.standard_normal(shape) * 0.5, name=name)
        mag = self.rng.uniform(lo, lo + 1, shape)
        return self.const(mag * self.rng.choice([-1.0, 1.0], shape), name=name)

    def ints(self, *values) -> str:
        return self.const(list(values), np.int64)

    def op(self, op_type: str, *inputs: str, outputs: int = 1, domain: str | None = None, **attrs):
        i = len(self.nodes)
        names = [f"{op_type.lower()}{i}_{k}" for k in range(outputs)]
        kw = {"domain": domain} if domain else {}
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=f"/m/{op_type}_{i}", **kw, **attrs))
        return names[0] if outputs == 1 else names

    def model(self, *outputs) -> onnx.ModelProto:
        """The model returning ``outputs`` (names, or one list of names)."""
        if len(outputs) == 1 and not isinstance(outputs[0], str):
            outputs = tuple(outputs[0])
        graph = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.shape))],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], self.inits)
        opsets = [helper.make_opsetid("", self.opset), helper.make_opsetid("mobile_export", 1)]
        return helper.make_model(graph, opset_imports=opsets)

    def sample(self, scale: float = 2.0) -> np.ndarray:
        return (self.rng.standard_normal(self.shape) * scale).astype(np.float32)


def run_ort(proto: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of ``proto`` on input ``x``, by onnxruntime (the reference)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"x": x})))
