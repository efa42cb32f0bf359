"""XNNPACK's int8 scale limits (``runtimes/xnnpack_limits.py``): one test per rule, the checker on a
real converted model, and range planning keeping hard-swish's ADD inside the limit."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper

from mobile_export.runtimes import xnnpack_limits as X


def s(*v):
    return np.array(v, dtype=np.float64)


@pytest.mark.parametrize("op", ["ADD", "SUB"])
def test_add_and_sub_bound_each_input_to_output_ratio(op):
    assert X.check(op, [s(1.0), s(0.5), s(0.01)]) is None                   # ratios 100, 50
    assert X.check(op, [s(3.0), s(0.5), s(0.01)]) == pytest.approx(300.0)   # 300 >= 2**8
    assert X.check(op, [s(1e-6), s(0.5), s(0.01)]) == pytest.approx(1e-4)   # below 2**-10
    assert X.check(op, [s(2.0 ** 8 * 0.01 * 0.999), s(0.5), s(0.01)]) is None


def test_mul_bounds_the_product_to_output_ratio():
    assert X.check("MUL", [s(2.0), s(3.0), s(0.1)]) is None                 # 60
    assert X.check("MUL", [s(20.0), s(3.0), s(0.1)]) == pytest.approx(600)  # >= 256
    assert X.check("MUL", [s(1e-3), s(1e-3), s(100.0)]) == pytest.approx(1e-8)


@pytest.mark.parametrize("op", ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"])
def test_convolutions_bound_every_weight_channel(op):
    assert X.check(op, [s(0.5), s(0.01, 0.02, 0.04), s(0.001)]) is None     # 5, 10, 20
    assert X.check(op, [s(0.5), s(0.01, 0.9), s(0.001)]) == pytest.approx(450)


def test_ops_without_a_rule_pass():
    assert X.check("CONCATENATION", [s(1.0), s(1e-9)]) is None


def test_the_checker_names_an_add_past_the_limit_in_a_converted_model():
    """x spans ±1000 and x+3 is pinned to [0, 6]: input/output scale ratio 333 — the hard-swish
    failure of MobileNetV3-large. The checker and the partition count agree."""
    from mobile_export.convert.to_tflite import convert
    from mobile_export.options import Precision
    from mobile_export.runtimes.host import xnnpack_partitions

    def fn(x):
        x = tf.quantization.fake_quant_with_min_max_args(x * 1000.0, min=-1000.0, max=1000.0)
        y = tf.quantization.fake_quant_with_min_max_args(tf.nn.relu6(x + 3.0), min=0.0, max=6.0)
        return {"y": y * x}

    data = np.random.default_rng(0).uniform(-1, 1, (8, 1, 4, 4, 2)).astype(np.float32)
    tfl = convert(fn, (1, 4, 4, 2), input_name="x", precision=Precision.INT8, representative=lambda: iter(data))
    found = X.violations(tfl)
    assert [v.op.split("#")[0] for v in found] == ["ADD"] and found[0].ratio >= 256
    assert "outside XNNPACK's limit" in found[0].sentence()
    assert any(o.startswith("ADD") for o in xnnpack_partitions(tfl)["outside"])


def test_range_planning_widens_a_fused_relu6_after_a_wide_add():
    from mobile_export.quantize.ranges import xnnpack_safe

    three = numpy_helper.from_array(np.array(3.0, np.float32), "three")
    lo, hi = (numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((0.0, "lo"), (6.0, "hi")))
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "lo", "hi"], ["r"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, None)], [three, lo, hi])
    narrow = {"x": (-10.0, 10.0)}
    xnnpack_safe(graph, narrow)
    assert "r" not in narrow  # 20/6 is far inside the limit: ReLU6 keeps [0, 6]
    wide = {"x": (-1000.0, 1000.0)}
    xnnpack_safe(graph, wide)
    r_lo, r_hi = wide["r"]
    assert r_lo == 0.0 and 2000.0 / r_hi <= X.ADD_SAFE_RATIO


def test_the_graph_checks_share_one_read_of_the_stored_graph(monkeypatch):
    """The export reads its model's graph once (``host.GraphView``): op counts, integer-ness, the I/O
    boundary and the scale limits given the view open no further interpreter, and say what they say on bytes."""
    from mobile_export.convert.to_tflite import convert
    from mobile_export.options import Precision
    from mobile_export.runtimes import host

    def fn(x):
        x = tf.quantization.fake_quant_with_min_max_args(x * 1000.0, min=-1000.0, max=1000.0)
        return {"y": tf.quantization.fake_quant_with_min_max_args(tf.nn.relu6(x + 3.0), min=0.0, max=6.0) * x}

    data = np.random.default_rng(0).uniform(-1, 1, (8, 1, 4, 4, 2)).astype(np.float32)
    tfl = convert(fn, (1, 4, 4, 2), input_name="x", precision=Precision.INT8, representative=lambda: iter(data))
    on_bytes = (host.op_histogram(tfl), host.fully_integer_violations(tfl), host.io_boundary(tfl), X.violations(tfl))
    opened = []
    real = host.make_interpreter
    monkeypatch.setattr(host, "make_interpreter", lambda *a, **k: opened.append(k) or real(*a, **k))
    view = host.GraphView.of(tfl)
    on_view = (host.op_histogram(view), host.fully_integer_violations(view), host.io_boundary(view), X.violations(view))
    assert len(opened) == 1 and on_view == on_bytes
    assert on_view[0]["ADD"] == 1 and [v.op.split("#")[0] for v in on_view[3]] == ["ADD"]
