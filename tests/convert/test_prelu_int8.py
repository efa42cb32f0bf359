"""The int8 form of PReLU (``lowering/prelu.py``): the function is unchanged for slopes below 0, in
[0, 1], equal to 1 and above 1; the ops are the documented ones; and converted, the float model has
one PRELU while the int8 model has none and runs in one XNNPACK partition, fully integer."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import tensorflow as tf

from mobile_export.convert.lowering import LoweredGraph
from mobile_export.convert.lowering.prelu import prelu_int8_form

from test_passes import G, assert_same, op_types, rewrite, run_ort

SLOPES = {
    "below-one": [0.25, -0.5, 0.0, 0.9, 0.25, 1.0],
    "mixed": [0.25, -0.5, 1.5, 1.0, 3.0, 0.1],
    "above-one": [1.5, 2.0, 1.1, 4.0, 1.5, 1.25],
}
OPS = {"below-one": ["Conv", "Relu", "Add"], "mixed": ["Conv", "Relu", "Add", "Conv", "Relu", "Sub"],
       "above-one": ["Conv", "Relu", "Sub"]}


def prelu_between_convs(slopes, shared: bool = False) -> onnx.ModelProto:
    g = G()
    x = g.op("Conv", "x", g.w(6, 6, 1, 1), g.w(6))
    slope = g.const([slopes[0]]) if shared else g.const(np.reshape(slopes, (6, 1, 1)))
    proto = g.model(g.op("Conv", g.op("PRelu", x, slope), g.w(4, 6, 3, 3), pads=[1, 1, 1, 1]))
    return onnx.shape_inference.infer_shapes(proto)


def check(proto):
    model, recipe = rewrite(proto, prelu_int8_form)
    x = (np.random.default_rng(1).standard_normal((1, 6, 5, 7)) * 3).astype(np.float32)
    want = run_ort(proto, x)
    assert_same(run_ort(model, x), want, tol=1e-4)
    got = LoweredGraph(proto, int8_forms=True)(tf.constant(x.transpose(0, 2, 3, 1)))
    assert_same({k: v.numpy() for k, v in got.items()}, want, tol=1e-4)
    return model, recipe


@pytest.mark.parametrize("case", list(SLOPES))
def test_prelu_int8_form_keeps_the_function(case):
    model, recipe = check(prelu_between_convs(SLOPES[case]))
    assert op_types(model)[1:-1] == OPS[case]
    assert len(recipe) == 1 and "PReLU as x + relu" in recipe[0]


def test_shared_slope_and_identity():
    model, _ = check(prelu_between_convs([0.2] * 6, shared=True))
    assert "PRelu" not in op_types(model) and op_types(model).count("Add") == 1
    model, _ = check(prelu_between_convs([1.0] * 6))
    assert op_types(model) == ["Conv", "Identity", "Conv"]


def test_float_is_one_prelu_and_int8_stays_in_xnnpack():
    from mobile_export.convert.to_tflite import convert
    from mobile_export.options import Precision
    from mobile_export.runtimes.host import fully_integer_violations, op_histogram, xnnpack_partitions

    proto = prelu_between_convs(SLOPES["mixed"])
    rng = np.random.default_rng(0)
    rep = lambda: (rng.standard_normal((1, 5, 7, 6)).astype(np.float32) for _ in range(8))  # noqa: E731
    fp32 = convert(LoweredGraph(proto), (1, 5, 7, 6), input_name="x", precision=Precision.FP32)
    assert op_histogram(fp32).get("PRELU") == 1
    assert xnnpack_partitions(fp32)["outside"] == []
    int8 = convert(LoweredGraph(proto, fake_quant=True), (1, 5, 7, 6), input_name="x", precision=Precision.INT8,
                   representative=rep)
    assert "PRELU" not in op_histogram(int8) and fully_integer_violations(int8) == []
    parts = xnnpack_partitions(int8)
    assert parts["partitions"] == 1 and parts["outside"] == []
