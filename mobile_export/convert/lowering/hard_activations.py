"""Int8 forms of MobileNetV3's hard activations: fewer elementwise ops, the 1/6 factors in weights.

hard-swish(x) = x·relu6(x+3)/6 and hard-sigmoid(y) = relu6(6αy+6β)/6 (α = 1/6, β = 1/2 in
MobileNetV3). The rewrite stores 6·hard-swish = x·relu6(x+3) (one ADD with a fused ReLU6 and one
MUL) and 6·hard-sigmoid = relu6(y+3) (one ADD with a fused ReLU6; on squeeze-excitation's C-element
gate vector its cost is negligible). Folding the +3 into the producing convolution's bias instead was
tried and dropped: the TF converter clamps an int8 bias that is large against input scale × weight
scale (an untrained MobileNetV3-small's SE bias of 3 came out as 0.85), collapsing the gate. The factor
1/6 is never computed: it is carried forward through ops that commute with a positive scale (pooling,
ReLU, reshapes; products multiply their factors) and folded into the weights of the next
convolution or fully connected layer, which int8 quantizes per channel at no cost. Where a scaled
tensor meets anything else (a graph output, an addition of unequal factors, another activation) one
MUL restores the true value first.

Every tensor whose stored value differs from the original gets a new name (``…__x6``), so the
per-layer comparison never pairs it with the reference's tensor of the old name.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mobile_export.convert.graph import attrs, initializers

PASS_THROUGH = {"GlobalAveragePool", "AveragePool", "MaxPool", "Relu", "Flatten", "Reshape", "Squeeze",
                "Unsqueeze", "Identity", "Dropout", "Transpose", "ReduceMean"}
WEIGHTED = {"Conv", "Gemm", "MatMul"}  # input 0 is the activation, input 1 the weights
SAME_FACTOR = {"Add", "Sub", "Concat"}  # linear when every input carries the same factor


class _Rewrite:
    def __init__(self, graph: onnx.GraphProto, recipe: list[str]) -> None:
        self.graph, self.recipe = graph, recipe
        self.inits = initializers(graph)
        self.factor: dict[str, float] = {}   # stored tensor name → f: true value = f · stored
        self.stored: dict[str, str] = {}     # original tensor name → the name holding f⁻¹ · value
        self.nodes: list[onnx.NodeProto] = []
        self.counter = 0
        self.swish_of: dict[str, str] = {}   # stored hard-swish output → its node's name
        self.restored_swish: set[str] = set()  # hard-swish nodes whose own output had to be restored
        self.true: dict[str, str] = {}       # stored name → the tensor restoring its true value

    def const(self, value, hint: str) -> str:
        self.counter += 1
        name = f"{hint}__c{self.counter}"
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        self.inits[name] = self.graph.initializer[-1]
        return name

    def emit(self, op: str, inputs: list[str], output: str, name: str, **kw) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **kw))
        return output

    def scaled_output(self, original: str, f: float) -> str:
        """The name to store ``original``'s value divided by ``f`` under (``original`` itself when f = 1)."""
        if f == 1.0:
            return original
        name = f"{original}__x{round(1 / f)}"
        self.stored[original], self.factor[name] = name, f
        return name

    def true_value(self, name: str) -> str:
        """A tensor holding the true value of (stored) ``name``: one MUL when it carries a factor."""
        f = self.factor.get(name, 1.0)
        if f == 1.0:
            return name
        if name in self.swish_of:
            self.restored_swish.add(self.swish_of[name])
        if name not in self.true:  # one MUL however many consumers need it
            self.true[name] = self.emit("Mul", [name, self.const(f, name)], f"{name}__true", f"{name}/restore")
        return self.true[name]

    def relu6(self, x: str, out: str, node_name: str) -> str:
        lo, hi = self.const(0.0, out + "_min"), self.const(6.0, out + "_max")
        return self.emit("Clip", [x, lo, hi], out, node_name + "/relu6")


def _hard_swish(rw: _Rewrite, node: onnx.NodeProto) -> None:
    x = rw.true_value(node.input[0])
    out = rw.scaled_output(node.output[0], 1 / 6)
    shifted = rw.emit("Add", [x, rw.const(3.0, node.name + "_three")], f"{out}/shifted", node.name + "/add3")
    gate = rw.relu6(shifted, f"{out}/gate6", node.name)
    rw.emit("Mul", [x, gate], out, node.name + "/mul")
    rw.swish_of[out] = node.name
    rw.recipe.append(f"{node.name}: hard-swish as x·relu6(x+3) (ADD+ReLU6, MUL); its 1/6 folded downstream")


def _hard_sigmoid(rw: _Rewrite, node: onnx.NodeProto) -> None:
    a = attrs(node)
    scale, shift = 6.0 * float(a.get("alpha", 0.2)), 6.0 * float(a.get("beta", 0.5))
    out = rw.scaled_output(node.output[0], 1 / 6)
    y = rw.true_value(node.input[0])
    if abs(scale - 1.0) > 1e-6:  # α is stored as float32: 6 · float32(1/6) is 1 + 3e-8
        y = rw.emit("Mul", [y, rw.const(scale, node.name + "_scale")], f"{out}/scaled", node.name + "/scale")
    pre = rw.emit("Add", [y, rw.const(shift, node.name + "_shift")], f"{out}/shifted", node.name + "/shift")
    rw.relu6(pre, out, node.name)
    rw.recipe.append(f"{node.name}: hard-sigmoid as relu6(y+3) (one ADD with a fused ReLU6); its 1/6 folded downstream")


def _weighted(rw: _Rewrite, node: onnx.NodeProto) -> None:
    """A Conv/Gemm/MatMul reading a scaled activation takes the factor into a copy of its weights."""
    f = rw.factor.get(node.input[0], 1.0)
    if f != 1.0 and len(node.input) > 1 and node.input[1] in rw.inits and rw.factor.get(node.input[1], 1.0) == 1.0:
        w = numpy_helper.to_array(rw.inits[node.input[1]])
        node.input[1] = rw.const(w * f, node.input[1])
        rw.recipe.append(f"{node.name}: weights carry a factor {f:.6g} of its input")
    else:
        node.input[0] = rw.true_value(node.input[0])
    rw.nodes.append(node)


def _forward(rw: _Rewrite, node: onnx.NodeProto) -> None:
    """Ops that commute with a positive scale pass the factor on; everything else gets true values."""
    factors = [rw.factor.get(i, 1.0) for i in node.input if i]
    if node.op_type in PASS_THROUGH and all(f == 1.0 for f in factors[1:]):
        f = factors[0] if factors else 1.0
    elif node.op_type == "Mul" and len(factors) == 2:
        f = factors[0] * factors[1]
    elif (node.op_type in SAME_FACTOR and len(set(factors)) == 1
          and not any(i in rw.inits for i in node.input)):
        f = factors[0]
    else:
        f = 1.0
        for k, i in enumerate(node.input):
            node.input[k] = rw.true_value(i) if i else i
    if f != 1.0:
        node.output[0] = rw.scaled_output(node.output[0], f)
    rw.nodes.append(node)


def defer_hard_activations(graph: onnx.GraphProto, recipe: list[str]) -> None:
    """Rewrite HardSwish / HardSigmoid as in the module doc, in place. A hard-swish whose own
    output would need restoring (it meets a residual ADD, say) keeps its HardSwish node: the TF
    converter would fuse x·relu6(x+3)·(1/6) into an int8 HARD_SWISH, which XNNPACK does not run."""
    if not any(n.op_type in ("HardSwish", "HardSigmoid") for n in graph.node):
        return
    keep: set[str] = set()
    while True:  # find the hard-swishes to keep on a copy; each round only adds to the set
        trial = onnx.GraphProto()
        trial.CopyFrom(graph)
        restored = _rewrite(trial, [], keep).restored_swish
        if restored <= keep:
            break
        keep |= restored
    _rewrite(graph, recipe, keep)


def _rewrite(graph: onnx.GraphProto, recipe: list[str], keep: set[str]) -> _Rewrite:
    rw = _Rewrite(graph, recipe)
    for node in list(graph.node):
        for k, i in enumerate(node.input):
            node.input[k] = rw.stored.get(i, i)
        if node.op_type == "HardSwish" and node.name in keep:
            _forward(rw, node)
        elif node.op_type == "HardSwish":
            _hard_swish(rw, node)
        elif node.op_type == "HardSigmoid":
            _hard_sigmoid(rw, node)
        elif node.op_type in WEIGHTED:
            _weighted(rw, node)
        else:
            _forward(rw, node)
    for out in graph.output:  # graph outputs hold their true values under their own names
        if out.name in rw.stored:
            s = rw.stored[out.name]
            rw.emit("Mul", [s, rw.const(rw.factor[s], s)], out.name, f"{out.name}/restore")
    del graph.node[:]
    graph.node.extend(rw.nodes)
    return rw
