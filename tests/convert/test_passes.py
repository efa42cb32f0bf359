"""The ONNX rewrites run before lowering (``lowering/passes.py``) and the shared graph utilities
(``convert/graph.py``): each pass rewrites its pattern as documented, leaves other graphs alone, and
keeps the function (the rewritten graph, through onnxruntime or the lowering, matches onnxruntime
on the original)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import tensorflow as tf
from onnx import helper, numpy_helper

from mobile_export.convert import graph as gu  # the shared ONNX graph utilities
from mobile_export.convert.lowering import LoweredGraph
from mobile_export.convert.lowering import passes

import onnx_builder
from onnx_builder import run_ort

INT64_MAX = 2**63 - 1


class G(onnx_builder.G):
    def __init__(self, shape=(1, 6, 5, 7), seed: int = 0):
        super().__init__(shape, seed=seed)


def run_lowered(proto: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    out = LoweredGraph(proto)(tf.constant(x.transpose(0, 2, 3, 1)))
    return {k: v.numpy() for k, v in out.items()}


def assert_same(got: dict, want: dict, tol: float = 1e-5):
    assert set(got) == set(want)
    for name, ref in want.items():
        assert got[name].shape == ref.shape, name
        np.testing.assert_allclose(got[name], ref, rtol=tol, atol=tol, err_msg=name)


def rewrite(proto: onnx.ModelProto, fn) -> tuple[onnx.ModelProto, list[str]]:
    """Apply one pass to a copy of ``proto``; return the copy and the recipe lines it appended."""
    model, recipe = gu.copy_model(proto), []
    fn(model.graph, recipe)
    return model, recipe


def op_types(proto: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in proto.graph.node]


def shuffle_pattern(g: G, src: str, groups: int, channels: int, perm=(0, 2, 1, 3, 4), last=None) -> list[str]:
    """Reshape(1,g,C/g,H,W) → Transpose(perm) → Reshape(1,C,H,W); returns the three outputs."""
    h, w = g.shape[2:]
    r1 = g.op("Reshape", src, g.ints(1, groups, channels // groups, h, w))
    tr = g.op("Transpose", r1, perm=list(perm))
    return [r1, tr, g.op("Reshape", tr, g.ints(*(last or (1, channels, h, w))))]


# --- constants_to_initializers ------------------------------------------------------------------------

def test_constants_to_initializers():
    g = G()
    c = np.linspace(-1, 1, 6, dtype=np.float32).reshape(1, 6, 1, 1)
    g.nodes.append(helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(c)))
    proto = g.model(g.op("Mul", g.op("Relu", "x"), "k"))
    model = gu.copy_model(proto)
    passes.constants_to_initializers(model.graph)
    assert op_types(model) == ["Relu", "Mul"]
    np.testing.assert_array_equal(gu.initializer_arrays(model.graph)["k"], c)
    x = g.sample()
    want = run_ort(proto, x)
    assert_same(run_ort(model, x), want)
    assert_same(run_lowered(proto, x), want)


def test_constants_to_initializers_keeps_other_constant_forms():
    g = G()
    g.nodes.append(helper.make_node("Constant", [], ["s"], value_float=2.0))  # not `value`: stays a node
    proto = g.model(g.op("Mul", "x", "s"))
    model = gu.copy_model(proto)
    passes.constants_to_initializers(model.graph)
    assert model == proto


# --- slices_to_split -------------------------------------------------------------------------------

def _slices(g: G, bounds, axis: int = 1, steps: bool = False) -> list[str]:
    outs = []
    for s, e in bounds:
        ins = ["x", g.ints(s), g.ints(e), g.ints(axis)] + ([g.ints(1)] if steps else [])
        outs.append(g.op("Slice", *ins))
    return outs


@pytest.mark.parametrize("bounds, axis, steps", [
    ([(0, 3), (3, 6)], 1, False),
    ([(0, 2), (2, 4), (4, 6)], -3, True),  # negative axis, explicit unit steps
])
def test_slices_to_split(bounds, axis, steps):
    g = G()
    outs = _slices(g, bounds, axis, steps)
    proto = g.model(*[g.op("Relu", o) for o in outs])
    model, recipe = rewrite(proto, passes.slices_to_split)
    assert op_types(model) == ["Split"] + ["Relu"] * len(bounds)
    split = model.graph.node[0]
    assert list(split.input) == ["x"] and list(split.output) == outs
    assert gu.attr(split, "axis") == 1
    assert recipe == [f"{split.name}: {len(bounds)} channel slices of x merged into one SPLIT"]
    x = g.sample()
    want = run_ort(proto, x)
    assert_same(run_ort(model, x), want)
    assert_same(run_lowered(proto, x), want)


@pytest.mark.parametrize("bounds, axis", [
    pytest.param([(0, 2), (2, 6)], 1, id="unequal"),
    pytest.param([(0, 2), (3, 5)], 1, id="gap"),
    pytest.param([(1, 3), (3, 5)], 1, id="not-from-0"),
    pytest.param([(0, 3)], 1, id="single"),
    pytest.param([(0, 2), (2, 4)], 2, id="height-axis"),
    pytest.param([(0, 3), (3, INT64_MAX)], 1, id="open-end"),
])
def test_slices_to_split_leaves_other_slices(bounds, axis):
    g = G()
    proto = g.model(*_slices(g, bounds, axis))
    model, recipe = rewrite(proto, passes.slices_to_split)
    assert model == proto and recipe == []


def test_slices_to_split_leaves_strided_slices():
    g = G()
    proto = g.model(*[g.op("Slice", "x", g.ints(s), g.ints(s + 3), g.ints(1), g.ints(2)) for s in (0, 3)])
    model, recipe = rewrite(proto, passes.slices_to_split)
    assert model == proto and recipe == []


def test_slices_to_split_partial_cover_keeps_function():
    g = G()
    proto = g.model(*_slices(g, [(0, 2), (2, 4)]))
    model, _ = rewrite(proto, passes.slices_to_split)
    x = g.sample()
    assert_same(run_ort(model, x), run_ort(proto, x))


def is_sorted(proto: onnx.ModelProto) -> bool:
    """Every node reads only graph inputs, initializers and outputs of earlier nodes."""
    known = {i.name for i in proto.graph.input} | {t.name for t in proto.graph.initializer}
    for n in proto.graph.node:
        if not all(i in known for i in n.input if i):
            return False
        known.update(n.output)
    return True


def test_slices_to_split_slices_out_of_channel_order():
    g = G()
    outs = [g.op("Relu", g.op("Slice", "x", g.ints(s), g.ints(s + 2), g.ints(1))) for s in (2, 0, 4)]
    proto = g.model(*outs)
    model, recipe = rewrite(proto, passes.slices_to_split)
    assert op_types(model).count("Split") == 1 and len(recipe) == 1
    x = g.sample()
    assert_same(run_ort(model, x), run_ort(proto, x))  # onnxruntime sorts the graph itself
    assert is_sorted(model)  # the lowering does not: it replays the nodes in order


# --- push_relu_through_concat ----------------------------------------------------------------------

def test_push_relu_through_concat():
    g = G()
    cat = g.op("Concat", g.op("Conv", "x", g.w(4, 6, 1, 1)), "x", axis=1)
    out = g.op("Relu", cat)
    proto = g.model(out)
    model, recipe = rewrite(proto, passes.push_relu_through_concat)
    assert op_types(model) == ["Conv", "Relu", "Relu", "Concat"]
    concat = model.graph.node[-1]
    assert concat.output[0] == out
    assert list(concat.input) == [n.output[0] for n in model.graph.node[1:3]]
    assert [n.input[0] for n in model.graph.node[1:3]] == ["conv0_0", "x"]
    assert recipe == ["/m/Relu_2: ReLU moved before concatenation /m/Concat_1 (fuses into its producers)"]
    x = g.sample()
    want = run_ort(proto, x)
    assert_same(run_ort(model, x), want)
    assert_same(run_lowered(proto, x), want)


def test_push_relu_through_nested_concats():
    g = G()
    inner = g.op("Concat", "x", g.op("Sigmoid", "x"), axis=1)
    proto = g.model(g.op("Relu", g.op("Concat", inner, g.op("Tanh", "x"), axis=1)))
    model, recipe = rewrite(proto, passes.push_relu_through_concat)
    producers = gu.producers_of(model.graph)
    relus = [n for n in model.graph.node if n.op_type == "Relu"]
    assert len(relus) == 3 and len(recipe) == 2
    assert {producers[r.input[0]].op_type if r.input[0] in producers else r.input[0] for r in relus} == {
        "x", "Sigmoid", "Tanh"}
    x = g.sample()
    assert_same(run_ort(model, x), run_ort(proto, x))


@pytest.mark.parametrize("case", ["concat-used-twice", "concat-is-output", "not-relu"])
def test_push_relu_through_concat_leaves_other_graphs(case):
    g = G()
    cat = g.op("Concat", "x", g.op("Tanh", "x"), axis=1)
    act = g.op("Sigmoid" if case == "not-relu" else "Relu", cat)
    extra = {"concat-used-twice": [g.op("Tanh", cat)], "concat-is-output": [cat]}.get(case, [])
    proto = g.model(act, *extra)
    model, recipe = rewrite(proto, passes.push_relu_through_concat)
    assert model == proto and recipe == []


# --- fuse_channel_shuffle / fold_channel_shuffle -----------------------------------------------------

@pytest.mark.parametrize("groups, last", [(2, None), (3, (1, -1, 5, 7))])
def test_fuse_channel_shuffle(groups, last):
    g = G()
    *_, out = shuffle_pattern(g, g.op("Relu", "x"), groups, 6, last=last)
    proto = g.model(out)
    model, recipe = rewrite(proto, passes.fuse_channel_shuffle)
    assert op_types(model) == ["Relu", "ChannelShuffle"]
    sh = model.graph.node[1]
    assert sh.domain == passes.DOMAIN and gu.attrs(sh) == {"groups": groups}
    assert list(sh.input) == ["relu0_0"] and list(sh.output) == [out]
    assert recipe == [f"{sh.name}: reshape→transpose→reshape fused into ChannelShuffle(groups={groups})"]
    x = g.sample()
    assert_same(run_lowered(model, x), run_ort(proto, x))


@pytest.mark.parametrize("case", ["other-perm", "reshape-used-twice", "transpose-is-output", "not-4d"])
def test_fuse_channel_shuffle_leaves_other_graphs(case):
    g = G()
    perm = (0, 2, 1, 4, 3) if case == "other-perm" else (0, 2, 1, 3, 4)
    last = (1, 6, 35) if case == "not-4d" else None
    r1, tr, out = shuffle_pattern(g, "x", 2, 6, perm=perm, last=last)
    extra = {"reshape-used-twice": [g.op("Relu", r1)], "transpose-is-output": [tr]}.get(case, [])
    proto = g.model(out, *extra)
    model, recipe = rewrite(proto, passes.fuse_channel_shuffle)
    assert model == proto and recipe == []


def test_shuffle_permutation():
    x = np.arange(12)
    perm = passes.shuffle_permutation(12, 3)
    assert sorted(perm) == list(range(12))
    np.testing.assert_array_equal(x[perm], x.reshape(3, 4).T.reshape(-1))


def _shuffle_then(g: G, groups: int, *consumers) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """x → Relu → shuffle pattern → each ``consumer(g, shuffled)``: the model, and a copy with the
    pattern fused into one ChannelShuffle node."""
    *_, sh = shuffle_pattern(g, g.op("Relu", "x"), groups, 6)
    proto = g.model(*[c(g, sh) for c in consumers])
    fused, _ = rewrite(proto, passes.fuse_channel_shuffle)
    assert "ChannelShuffle" in op_types(fused)
    return proto, fused


def test_fold_channel_shuffle():
    g = G()
    proto, fused = _shuffle_then(
        g, 3,
        lambda g, s: g.op("Conv", s, g.w(4, 6, 3, 3, name="W1"), g.w(4), pads=[1, 1, 0, 2]),
        lambda g, s: g.op("Conv", s, g.w(5, 6, 1, 1, name="W2"), strides=[2, 2]))
    model, recipe = rewrite(fused, passes.fold_channel_shuffle)
    assert op_types(model) == ["Relu", "Conv", "Conv"]
    convs = model.graph.node[1:]
    assert [c.input[0] for c in convs] == ["relu0_0"] * 2
    assert [c.input[1] for c in convs] == ["W1__unshuffled", "W2__unshuffled"]
    assert {"W1", "W2"}.isdisjoint(gu.initializers(model.graph))
    assert recipe == [f"{fused.graph.node[1].name}: folded into the input channels of /m/Conv_4, /m/Conv_5"]
    x = g.sample()
    want = run_ort(proto, x)
    assert_same(run_ort(model, x), want)  # no custom-domain node left: onnxruntime runs it
    assert_same(run_lowered(proto, x), want)


@pytest.mark.parametrize("consumer", [
    pytest.param(lambda g, s: g.op("Conv", s, g.w(6, 1, 3, 3), group=6, pads=[1, 1, 1, 1]), id="depthwise-conv"),
    pytest.param(lambda g, s: g.op("Conv", s, g.w(6, 3, 1, 1), group=2), id="grouped-conv"),
    pytest.param(lambda g, s: g.op("Relu", s), id="relu"),
])
def test_fold_channel_shuffle_keeps_shuffle_before_other_consumers(consumer):
    g = G()
    proto, fused = _shuffle_then(g, 2, consumer, lambda g, s: g.op("Conv", s, g.w(4, 6, 1, 1)))
    model, recipe = rewrite(fused, passes.fold_channel_shuffle)
    assert list(model.graph.node) == list(fused.graph.node)
    assert len(recipe) == 1 and "lowered as CONCATENATION → RESHAPE → TRANSPOSE" in recipe[0]
    x = g.sample()
    assert_same(run_lowered(fused, x), run_ort(proto, x))


def test_fold_channel_shuffle_keeps_shuffle_that_is_an_output():
    g = G()
    *_, sh = shuffle_pattern(g, "x", 2, 6)
    proto = g.model(sh, g.op("Conv", sh, g.w(4, 6, 1, 1)))
    fused, _ = rewrite(proto, passes.fuse_channel_shuffle)
    model, recipe = rewrite(fused, passes.fold_channel_shuffle)
    assert list(model.graph.node) == list(fused.graph.node) and recipe == []


def test_fold_channel_shuffle_convs_sharing_a_weight():
    """Two convs after the shuffle that share one weight: the result stays equivalent and valid."""
    g = G()
    w = g.w(4, 6, 1, 1, name="W")
    proto, fused = _shuffle_then(g, 2, lambda g, s: g.op("Conv", s, w),
                                 lambda g, s: g.op("Conv", s, w, strides=[2, 2]))
    model, _ = rewrite(fused, passes.fold_channel_shuffle)
    assert "ChannelShuffle" not in op_types(model)
    x = g.sample()
    assert_same(run_ort(model, x), run_ort(proto, x))
    names = [t.name for t in model.graph.initializer]
    assert len(names) == len(set(names)), names


# --- run_passes ----------------------------------------------------------------------------------

def test_run_passes_all_patterns():
    """Every pattern in one graph: the original is untouched, the recipe follows the pass order, and
    the lowered result still matches onnxruntime on the original."""
    g = G((1, 6, 5, 7))
    k = numpy_helper.from_array(np.full((1, 6, 1, 1), 0.5, np.float32))
    g.nodes.append(helper.make_node("Constant", [], ["k"], value=k))
    a, b = _slices(g, [(0, 3), (3, 6)])
    cat = g.op("Concat", g.op("Conv", a, g.w(3, 3, 1, 1)), b, axis=1)
    relu = g.op("Relu", cat)
    grouped = g.op("Conv", relu, g.w(6, 3, 3, 3), group=2, pads=[1, 1, 1, 1])
    *_, sh = shuffle_pattern(g, g.op("Add", grouped, "k"), 3, 6)
    proto = g.model(g.op("Conv", sh, g.w(4, 6, 1, 1)))
    before = proto.SerializeToString()
    model, recipe = passes.run_passes(proto)
    assert proto.SerializeToString() == before
    assert [line.split(": ", 1)[1].split(" ")[0:2] for line in recipe] == [
        ["2", "channel"], ["ReLU", "moved"], ["reshape→transpose→reshape", "fused"], ["folded", "into"]]
    # the grouped conv stays one Conv (lowered to one grouped CONV_2D)
    assert op_types(model) == ["Split", "Conv", "Relu", "Relu", "Concat", "Conv", "Add", "Conv"]
    assert "k" in gu.initializers(model.graph)
    lg = LoweredGraph(proto)
    assert lg.recipe == recipe and lg.op_types() == op_types(model)
    x = g.sample()
    want = run_ort(proto, x)
    assert_same(run_ort(model, x), want)
    assert_same({k: v.numpy() for k, v in lg(tf.constant(x.transpose(0, 2, 3, 1))).items()}, want)


# --- graph.py utilities --------------------------------------------------------------------------

def _two_convs(shared_bias: bool = True) -> tuple[onnx.ModelProto, list[onnx.NodeProto]]:
    g = G()
    b = g.const(np.zeros(4), name="B")
    c1 = g.op("Conv", "x", g.w(4, 6, 1, 1, name="W1"), b, pads=[0, 0, 0, 0], strides=[1, 1])
    c2 = g.op("Conv", "x", g.w(4, 6, 1, 1, name="W2"), b if shared_bias else g.const(np.ones(4), name="B2"))
    proto = g.model(g.op("Add", c1, c2))
    return proto, list(proto.graph.node)


def test_consumers_and_producers():
    proto, (c1, c2, add) = _two_convs()
    cons = gu.consumers_of(proto.graph)
    assert [n.name for n in cons["x"]] == [c1.name, c2.name]
    assert [n.name for n in cons["B"]] == [c1.name, c2.name]
    assert cons[c1.output[0]] == [add] and cons["nothing"] == [] and cons[add.output[0]] == []
    prods = gu.producers_of(proto.graph)
    assert prods[c2.output[0]] is c2 and prods[add.output[0]] is add
    assert "x" not in prods and "W1" not in prods


def test_attrs_and_attr():
    node = helper.make_node("Foo", ["a"], ["b"], i=3, f=0.5, ints=[1, 2], s="same", t=numpy_helper.from_array(
        np.ones(2, np.float32)))
    a = gu.attrs(node)
    assert a["i"] == 3 and a["f"] == 0.5 and a["ints"] == [1, 2] and a["s"] == b"same"
    np.testing.assert_array_equal(numpy_helper.to_array(a["t"]), np.ones(2))
    assert gu.attr(node, "ints") == [1, 2] and gu.attr(node, "missing") is None and gu.attr(node, "missing", 7) == 7


def test_initializers_and_set_initializers():
    proto, _ = _two_convs()
    inits = gu.initializers(proto.graph)
    assert set(inits) == {"B", "W1", "W2"} and inits["B"] is proto.graph.initializer[0]
    gu.set_initializers(inits, {"B": np.arange(4, dtype=np.float64)})
    arrays = gu.initializer_arrays(proto.graph)
    assert arrays["B"].dtype == np.float32 and arrays["B"].tolist() == [0, 1, 2, 3]
    assert arrays["W1"].shape == (4, 6, 1, 1)


def test_own_bias_copies_a_shared_bias():
    proto, _ = _two_convs(shared_bias=True)
    x = np.random.default_rng(1).standard_normal((1, 6, 5, 7)).astype(np.float32)
    want = run_ort(proto, x)
    inits = gu.initializers(proto.graph)
    bias = gu.own_bias(proto, inits, proto.graph.node[1])
    np.testing.assert_array_equal(bias, np.zeros(4))
    assert proto.graph.node[1].input[2] == "W2_bias" and proto.graph.node[0].input[2] == "B"
    assert "W2_bias" in inits and "W2_bias" in gu.initializers(proto.graph)
    assert_same(run_ort(proto, x), want)  # a copy: same function
    gu.set_initializers(inits, {"W2_bias": np.ones(4)})  # edits the second conv only
    assert gu.initializer_arrays(proto.graph)["B"].tolist() == [0, 0, 0, 0]
    # A bias only this conv reads is returned as is, without a copy.
    n_inits = len(proto.graph.initializer)
    gu.own_bias(proto, inits, proto.graph.node[1])
    assert proto.graph.node[1].input[2] == "W2_bias" and len(proto.graph.initializer) == n_inits


def test_copy_model_is_independent():
    proto, _ = _two_convs()
    before = proto.SerializeToString()
    copy = gu.copy_model(proto)
    assert copy == proto and copy is not proto
    copy.graph.node[0].input[0] = "y"
    copy.graph.initializer.pop()
    assert proto.SerializeToString() == before


def test_with_outputs_returns_intermediates():
    proto, (c1, _, add) = _two_convs()
    before = proto.SerializeToString()
    model = gu.with_outputs(proto, [c1.output[0], add.output[0]])
    assert proto.SerializeToString() == before
    assert [o.name for o in model.graph.output] == [add.output[0], c1.output[0]]  # no duplicate output
    dims = [d.dim_value for d in model.graph.output[1].type.tensor_type.shape.dim]
    assert dims == [1, 4, 5, 7]  # shape inferred
    x = np.random.default_rng(1).standard_normal((1, 6, 5, 7)).astype(np.float32)
    out = run_ort(model, x)
    w1 = gu.initializer_arrays(proto.graph)["W1"][:, :, 0, 0]
    np.testing.assert_allclose(out[c1.output[0]], np.einsum("oc,nchw->nohw", w1, x), rtol=1e-5, atol=1e-5)
    assert_same({add.output[0]: out[add.output[0]]}, run_ort(proto, x))
    # Shape inference failing (a custom-domain node without its opset import) still adds the output.
    g = G()
    relu = g.op("Relu", "x")
    shuffled = g.model(g.op("ChannelShuffle", relu, domain=passes.DOMAIN, groups=2))
    del shuffled.opset_import[1:]
    assert [o.name for o in gu.with_outputs(shuffled, [relu]).graph.output] == ["channelshuffle1_0", relu]


def test_with_fp16_weights():
    g = G()
    values = [1.0 + 2**-12, 0.1, 65504.0, 3.0]
    w = g.const(values, name="W")
    shape = g.ints(1, 4, 1, 1)
    proto = g.model(g.op("Mul", "x", g.op("Reshape", w, shape)))
    before = proto.SerializeToString()
    out = gu.with_fp16_weights(proto)
    assert proto.SerializeToString() == before
    arrays = gu.initializer_arrays(out.graph)
    assert arrays["W"].dtype == np.float32
    np.testing.assert_array_equal(arrays["W"], np.array(values, np.float16).astype(np.float32))
    assert arrays["W"][0] == 1.0 and arrays["W"][1] != np.float32(0.1)  # rounded
    assert arrays[shape].dtype == np.int64 and arrays[shape].tolist() == [1, 4, 1, 1]  # ints untouched


def test_drop_unused_initializers():
    proto, _ = _two_convs()
    proto.graph.initializer.append(numpy_helper.from_array(np.ones(3, np.float32), "unused"))
    gu.drop_unused_initializers(proto.graph)
    assert [t.name for t in proto.graph.initializer] == ["B", "W1", "W2"]
