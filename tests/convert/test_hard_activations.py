"""The int8 forms of hard-swish / hard-sigmoid (``lowering/hard_activations.py``): the function is
unchanged (onnxruntime on the rewritten graph, and the lowering, match onnxruntime on the original),
the elementwise ops shrink as documented, and the 1/6 factors land in weights, not in MUL ops."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from mobile_export.convert.lowering import LoweredGraph
from mobile_export.convert.lowering.hard_activations import defer_hard_activations

from test_passes import G, assert_same, rewrite, run_ort


def op_count(proto, op: str) -> int:
    return sum(n.op_type == op for n in proto.graph.node)


def check(proto, x=None):
    """Rewrite, compare with the original on onnxruntime and through the int8-form lowering."""
    model, recipe = rewrite(proto, defer_hard_activations)
    x = x if x is not None else (np.random.default_rng(1).standard_normal((1, 6, 5, 7)) * 3).astype(np.float32)
    want = run_ort(proto, x)
    assert_same(run_ort(model, x), want, tol=1e-4)
    got = LoweredGraph(proto, int8_forms=True)(tf.constant(x.transpose(0, 2, 3, 1)))
    assert_same({k: v.numpy() for k, v in got.items()}, want, tol=1e-4)
    return model, recipe


def test_hard_swish_between_convs_is_add_and_mul_and_the_sixth_goes_into_weights():
    g = G()
    h = g.op("HardSwish", g.op("Conv", "x", g.w(8, 6, 1, 1), g.w(8)))
    proto = g.model(g.op("Conv", h, g.w(4, 8, 3, 3), pads=[1, 1, 1, 1]))
    model, recipe = check(proto)
    assert op_count(model, "HardSwish") == 0
    assert (op_count(model, "Add"), op_count(model, "Mul"), op_count(model, "Clip")) == (1, 1, 1)
    assert any("weights carry a factor 0.166667" in r for r in recipe)


def test_squeeze_excitation_gate_is_one_add_and_both_sixths_go_into_the_projection():
    """MobileNetV3's SE: hswish features → avgpool → fc1 → relu → fc2 → hardsigmoid → features·gate
    → projection conv. The gate is one ADD with a fused ReLU6, the product carries 1/36, the
    projection's weights take it."""
    g = G()
    feat = g.op("HardSwish", g.op("Conv", "x", g.w(8, 6, 1, 1), g.w(8)))
    z = g.op("Relu", g.op("Conv", g.op("GlobalAveragePool", feat), g.w(4, 8, 1, 1), g.w(4)))
    gate = g.op("HardSigmoid", g.op("Conv", z, g.w(8, 4, 1, 1), g.w(8)), alpha=1 / 6, beta=0.5)
    proto = g.model(g.op("Conv", g.op("Mul", feat, gate), g.w(5, 8, 1, 1), g.w(5)))
    model, recipe = check(proto)
    assert op_count(model, "HardSigmoid") == 0 and op_count(model, "HardSwish") == 0
    assert op_count(model, "Mul") == 2 and op_count(model, "Add") == 2  # hswish MUL + ADD, SE product, gate ADD
    assert any("factor 0.0277778" in r for r in recipe)  # 1/36 into the projection


def test_a_hard_swish_meeting_a_residual_add_is_kept():
    """Restoring x·relu6(x+3) with a MUL by 1/6 would be fused by the TF converter into an int8
    HARD_SWISH, which XNNPACK refuses: such a hard-swish keeps its node."""
    g = G()
    h = g.op("HardSwish", g.op("Conv", "x", g.w(6, 6, 1, 1), g.w(6)))
    proto = g.model(g.op("Add", h, g.op("Conv", h, g.w(6, 6, 1, 1), g.w(6))))
    model, _ = check(proto)
    assert op_count(model, "HardSwish") == 1


def test_a_scaled_graph_output_is_restored_under_its_own_name():
    g = G()
    h = g.op("HardSwish", g.op("Conv", "x", g.w(6, 6, 1, 1), g.w(6)))
    out = g.op("GlobalAveragePool", g.op("MaxPool", h, kernel_shape=[2, 2]))
    proto = g.model(out)
    model, _ = check(proto)
    assert model.graph.node[-1].output[0] == out and model.graph.node[-1].op_type == "Mul"


def test_a_hard_sigmoid_not_fed_by_a_conv_gets_its_own_add():
    g = G()
    proto = g.model(g.op("Conv", g.op("HardSigmoid", "x", alpha=0.2, beta=0.5), g.w(3, 6, 1, 1)))
    model, _ = check(proto)
    assert op_count(model, "HardSigmoid") == 0 and op_count(model, "Add") == 1 and op_count(model, "Clip") == 1


def test_nothing_to_do_leaves_the_graph_alone():
    g = G()
    proto = g.model(g.op("Relu", g.op("Conv", "x", g.w(3, 6, 1, 1))))
    model, recipe = rewrite(proto, defer_hard_activations)
    assert model == proto and recipe == []


def test_a_scaled_tensor_two_ops_need_restored_is_restored_once():
    g = G()
    h = g.op("HardSwish", g.op("Conv", "x", g.w(6, 6, 1, 1), g.w(6)))
    p = g.op("GlobalAveragePool", h)  # carries the 1/6 on
    proto = g.model(g.op("Sigmoid", p), g.op("Tanh", p))
    model, _ = check(proto)
    outs = [o for n in model.graph.node for o in n.output]
    assert len(outs) == len(set(outs)) and sum(o.endswith("__true") for o in outs) == 1
