"""One small test per ONNX op the NHWC lowering registers: a tiny float32 graph (opset 17, NCHW
activations with H != W != C so layout mistakes show) runs through ``LoweredGraph`` and must match
onnxruntime on the same graph; attribute combinations the lowering rejects raise
``UnsupportedOpError``."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import tensorflow as tf

from mobile_export.convert.lowering import LOWERINGS, LoweredGraph, xnn
from mobile_export.errors import UnsupportedOpError

import onnx_builder
from onnx_builder import run_ort

INT64_MAX = 2**63 - 1
TESTED: set[str] = set()  # op types some test below lowers; must equal set(LOWERINGS)


G = onnx_builder.G
def run_lowered(proto: onnx.ModelProto, x: np.ndarray, **kw) -> dict[str, np.ndarray]:
    out = LoweredGraph(proto, **kw)(tf.constant(x.transpose(0, 2, 3, 1)))
    return {k: v.numpy() for k, v in out.items()}


def assert_matches(proto: onnx.ModelProto, x: np.ndarray, want: dict | None = None, tol: float = 1e-5):
    want = run_ort(proto, x) if want is None else want
    got = run_lowered(proto, x)
    assert set(got) == set(want)
    for name, ref in want.items():
        assert got[name].shape == ref.shape, name
        np.testing.assert_allclose(got[name], ref, rtol=tol, atol=tol, err_msg=name)


def cases(op: str, *params):
    """Parametrize builders ``fn(G) -> output name(s)``, given as ``(id, fn[, shape[, opset[, marks]]])``."""
    TESTED.add(op)
    out = []
    for p in params:
        cid, fn, shape, opset, marks = (*p, *((1, 4, 6, 7), 17, ())[len(p) - 2:])
        out.append(pytest.param(fn, shape, opset, id=cid, marks=marks))
    return pytest.mark.parametrize("build, shape, opset", out)


def rejects(op: str, *params):
    """Parametrize builders whose graph the lowering must refuse with UnsupportedOpError."""
    TESTED.add(op)
    return pytest.mark.parametrize(
        "build, shape", [pytest.param(fn, shape, id=cid) for cid, fn, shape in
                         ((*p, (1, 4, 6, 7))[:3] for p in params)])


def check_case(build, shape, opset):
    g = G(shape, opset)
    assert_matches(g.model(build(g)), g.sample())


def check_rejected(build, shape):
    g = G(shape)
    proto = g.model(build(g))
    with pytest.raises(UnsupportedOpError):
        run_lowered(proto, g.sample())


def flat(g: G) -> str:
    return g.op("Flatten", "x")


def gap(g: G, src: str = "x") -> str:
    return g.op("GlobalAveragePool", src)


# --- convolution, fully connected, pooling -------------------------------------------------------

@cases("Conv",
       ("1x1", lambda g: g.op("Conv", "x", g.w(5, 4, 1, 1))),
       ("3x3-pad1-bias",
        lambda g: g.op("Conv", "x", g.w(5, 4, 3, 3), g.w(5), pads=[1, 1, 1, 1], kernel_shape=[3, 3])),
       ("stride2-pad1", lambda g: g.op("Conv", "x", g.w(5, 4, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1])),
       ("stride2-same-asym", lambda g: g.op("Conv", "x", g.w(5, 4, 3, 3), g.w(5), strides=[2, 2], pads=[0, 0, 1, 1]),
        (1, 4, 6, 8)),
       ("asym-pads", lambda g: g.op("Conv", "x", g.w(5, 4, 3, 3), pads=[1, 0, 2, 1])),
       ("dilation2", lambda g: g.op("Conv", "x", g.w(5, 4, 3, 3), g.w(5), dilations=[2, 2], pads=[2, 2, 2, 2])),
       ("kernel3x1-stride2x1", lambda g: g.op("Conv", "x", g.w(5, 4, 3, 1), strides=[2, 1], pads=[1, 0, 1, 0])),
       ("depthwise", lambda g: g.op("Conv", "x", g.w(4, 1, 3, 3), g.w(4), group=4, pads=[1, 1, 1, 1])),
       ("depthwise-stride2",
        lambda g: g.op("Conv", "x", g.w(4, 1, 3, 3), group=4, strides=[2, 2], pads=[1, 1, 1, 1])),
       ("depthwise-mult2", lambda g: g.op("Conv", "x", g.w(8, 1, 3, 3), g.w(8), group=4, pads=[0, 1, 1, 0])),
       ("grouped2-bias", lambda g: g.op("Conv", "x", g.w(6, 2, 3, 3), g.w(6), group=2, pads=[1, 1, 1, 1])),
       # ESPNetv2's strided EESP branches: stride 2 with dilation d and padding d (even and odd sizes)
       ("depthwise-stride2-dilation3", lambda g: g.op("Conv", "x", g.w(4, 1, 3, 3), g.w(4), group=4,
                                                       strides=[2, 2], dilations=[3, 3], pads=[3, 3, 3, 3]),
        (1, 4, 10, 7)),
       ("depthwise-stride2-dilation2", lambda g: g.op("Conv", "x", g.w(4, 1, 3, 3), group=4, strides=[2, 2],
                                                       dilations=[2, 2], pads=[2, 2, 2, 2]), (1, 4, 9, 12)),
       ("depthwise-dilation4", lambda g: g.op("Conv", "x", g.w(4, 1, 3, 3), group=4, dilations=[4, 4],
                                               pads=[4, 4, 4, 4]), (1, 4, 9, 12)),
       ("stride2-dilation3", lambda g: g.op("Conv", "x", g.w(5, 4, 3, 3), strides=[2, 2], dilations=[3, 3],
                                             pads=[3, 3, 3, 3]), (1, 4, 10, 7)),
       ("after-relu", lambda g: g.op("Conv", g.op("Relu", "x"), g.w(5, 4, 1, 1))))
def test_conv(build, shape, opset):
    check_case(build, shape, opset)


@pytest.mark.parametrize("group, w_shape, bias", [(2, (6, 2, 3, 3), True), (4, (8, 2, 3, 3), False),
                                                  (8, (8, 2, 3, 3), True)])
def test_conv_grouped_is_one_conv(group, w_shape, bias):
    """A grouped (not depthwise) Conv lowers to one TF convolution whose filter has C/groups input
    channels, stride and padding kept; converted, one CONV_2D, fp32 and int8, in one XNNPACK partition."""
    g = G((1, 2 * group, 6, 7))
    ins = ["x", g.w(*w_shape)] + ([g.w(w_shape[0])] if bias else [])
    proto = g.model(g.op("Conv", *ins, group=group, pads=[1, 1, 1, 1], strides=[1, 2]))
    assert LoweredGraph(proto).op_types() == ["Conv"]
    assert_matches(proto, g.sample())
    from mobile_export.convert.to_tflite import convert
    from mobile_export.options import Precision
    from mobile_export.runtimes.host import fully_integer_violations, op_histogram, xnnpack_partitions

    shape = (1, 6, 7, 2 * group)
    rep = lambda: (np.random.default_rng(i).standard_normal(shape).astype(np.float32) for i in range(4))  # noqa: E731
    fp32 = convert(LoweredGraph(proto), shape, input_name="x", precision=Precision.FP32)
    int8 = convert(LoweredGraph(proto, fake_quant=True), shape, input_name="x", precision=Precision.INT8,
                   representative=rep)
    for tfl in (fp32, int8):  # (the TRANSPOSE gives the NCHW graph output back)
        assert op_histogram(tfl) == {"CONV_2D": 1, "TRANSPOSE": 1}
        assert xnnpack_partitions(tfl) == {"partitions": 1, "outside": [], "nodes": 2}
    assert fully_integer_violations(int8) == []


@rejects("Conv",
         ("auto_pad", lambda g: g.op("Conv", "x", g.w(5, 4, 3, 3), auto_pad="SAME_UPPER")),
         ("conv1d", lambda g: g.op("Conv", g.op("Squeeze", "x", g.ints(2)), g.w(5, 4, 3)), (1, 4, 1, 7)))
def test_conv_rejects(build, shape):
    check_rejected(build, shape)


@cases("Gemm",
       ("transB-bias", lambda g: g.op("Gemm", flat(g), g.w(10, 168), g.w(10), transB=1)),
       ("plain-alpha", lambda g: g.op("Gemm", flat(g), g.w(168, 10), alpha=0.5)),
       ("beta-bias2d", lambda g: g.op("Gemm", flat(g), g.w(168, 10), g.w(1, 10), beta=2.0)),
       ("after-gap", lambda g: g.op("Gemm", g.op("Flatten", gap(g)), g.w(3, 4), g.w(3), transB=1)))
def test_gemm(build, shape, opset):
    check_case(build, shape, opset)


@rejects("Gemm", ("transA", lambda g: g.op("Gemm", flat(g), g.w(1, 10), transA=1)))
def test_gemm_rejects(build, shape):
    check_rejected(build, shape)


@cases("MatMul",
       ("flatten", lambda g: g.op("MatMul", flat(g), g.w(168, 10))),
       ("after-gap", lambda g: g.op("MatMul", g.op("Reshape", gap(g), g.ints(1, -1)), g.w(4, 3))))
def test_matmul(build, shape, opset):
    check_case(build, shape, opset)


@cases("MaxPool",
       ("k2s2", lambda g: g.op("MaxPool", "x", kernel_shape=[2, 2], strides=[2, 2])),
       ("k3s2-pad1-negative", lambda g: g.op("MaxPool", "x", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
       ("k3s2-pad1-after-relu",
        lambda g: g.op("MaxPool", g.op("Relu", "x"), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
       ("k3s1-same", lambda g: g.op("MaxPool", "x", kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
       ("k3x2-asym", lambda g: g.op("MaxPool", "x", kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 2, 0])),
       ("ceil", lambda g: g.op("MaxPool", "x", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
       ("ceil-pad-drops-last-window",
        lambda g: g.op("MaxPool", "x", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
        (1, 4, 5, 7)))
def test_max_pool(build, shape, opset):
    check_case(build, shape, opset)


@rejects("MaxPool",
         ("dilations", lambda g: g.op("MaxPool", "x", kernel_shape=[2, 2], dilations=[2, 2])),
         ("indices", lambda g: g.op("MaxPool", "x", kernel_shape=[2, 2], outputs=2)[0]))
def test_max_pool_rejects(build, shape):
    check_rejected(build, shape)


@cases("AveragePool",
       ("k2s2", lambda g: g.op("AveragePool", "x", kernel_shape=[2, 2], strides=[2, 2])),
       ("k3s1-pad1-count-pad",
        lambda g: g.op("AveragePool", "x", kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)),
       ("k3s2-pad1-count-pad",
        lambda g: g.op("AveragePool", "x", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                       count_include_pad=1)),
       ("asym-count-pad",
        lambda g: g.op("AveragePool", "x", kernel_shape=[2, 3], pads=[0, 2, 1, 0], count_include_pad=1)),
       ("k3s1-same-exclude-pad", lambda g: g.op("AveragePool", "x", kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
       ("k3s2-same-exclude-pad",
        lambda g: g.op("AveragePool", "x", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), (1, 4, 7, 5)))
def test_average_pool(build, shape, opset):
    check_case(build, shape, opset)


@rejects("AveragePool",
         ("ceil_mode", lambda g: g.op("AveragePool", "x", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
         ("exclude-pad-not-same",
          lambda g: g.op("AveragePool", "x", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])))
def test_average_pool_rejects(build, shape):
    check_rejected(build, shape)


def bn(g: G, src: str, c: int, **kw) -> str:
    """Inference BatchNormalization with random scale, shift, mean and a positive variance."""
    return g.op("BatchNormalization", src, g.w(c), g.w(c), g.w(c), g.const(g.rng.uniform(0.5, 1.5, c)), **kw)


@cases("BatchNormalization",
       ("nchw", lambda g: bn(g, "x", 4, epsilon=1e-3)),
       ("after-concat", lambda g: bn(g, g.op("Concat", "x", g.op("Relu", "x"), axis=1), 8)),
       ("2d", lambda g: bn(g, flat(g), 168)))
def test_batch_norm(build, shape, opset):
    check_case(build, shape, opset)


@rejects("BatchNormalization", ("training", lambda g: bn(g, "x", 4, training_mode=1)))
def test_batch_norm_rejects(build, shape):
    check_rejected(build, shape)


@cases("GlobalAveragePool", ("plain", gap), ("after-relu", lambda g: gap(g, g.op("Relu", "x"))))
def test_global_average_pool(build, shape, opset):
    check_case(build, shape, opset)


@cases("GlobalMaxPool", ("plain", lambda g: g.op("GlobalMaxPool", "x")))
def test_global_max_pool(build, shape, opset):
    check_case(build, shape, opset)


# --- activations and elementwise --------------------------------------------------------------------

UNARY = ["Relu", "Sigmoid", "Tanh", "HardSwish", "Identity", "Dropout"]
TESTED.update(UNARY)


@pytest.mark.parametrize("op", UNARY)
def test_unary(op):
    g = G()
    assert_matches(g.model(g.op(op, "x")), g.sample(3.0))


@cases("Clip",
       ("relu6", lambda g: g.op("Clip", "x", g.const(0.0), g.const(6.0))),
       ("min-only-relu", lambda g: g.op("Clip", "x", g.const(0.0))),
       ("range", lambda g: g.op("Clip", "x", g.const(-1.0), g.const(1.5))),
       ("max-only", lambda g: g.op("Clip", "x", "", g.const(0.5))),
       ("relu6-attrs-opset6", lambda g: g.op("Clip", "x", min=0.0, max=6.0), (1, 4, 6, 7), 6),
       ("range-attrs-opset6", lambda g: g.op("Clip", "x", min=-0.5, max=0.25), (1, 4, 6, 7), 6))
def test_clip(build, shape, opset):
    g = G(shape, opset)
    assert_matches(g.model(build(g)), g.sample(5.0))


@cases("HardSigmoid",
       ("default", lambda g: g.op("HardSigmoid", "x")),
       ("torch-alpha", lambda g: g.op("HardSigmoid", "x", alpha=1.0 / 6.0, beta=0.5)),
       ("custom", lambda g: g.op("HardSigmoid", "x", alpha=0.25, beta=0.4)))
def test_hard_sigmoid(build, shape, opset):
    g = G(shape, opset)
    assert_matches(g.model(build(g)), g.sample(5.0))


def test_clip_relu6_fake_quant_pins_range():
    """With fake_quant, ReLU6 gets the exact int8 range [0, 6] and ``ranges`` adds calibrated ones."""
    g = G()
    conv = g.op("Conv", "x", g.w(5, 4, 1, 1))
    proto = g.model(g.op("Clip", conv, g.const(0.0), g.const(6.0)))
    x = g.sample(4.0)
    ref = run_ort(proto, x)["clip1_0"]
    lg = LoweredGraph(proto, fake_quant=True, ranges={conv: (-2.0, 2.0)})
    got = lg(tf.constant(x.transpose(0, 2, 3, 1)))["clip1_0"].numpy()
    ranges = {(r.tensor, r.lo, r.hi, r.calibrated) for r in lg.fixed_ranges}
    assert ranges == {(conv, -2.0, 2.0, True), ("clip1_0", 0.0, 6.0, False)}
    step = 6.0 / 255
    np.testing.assert_allclose(got / step, np.round(got / step), atol=1e-3)  # on the int8 grid
    np.testing.assert_allclose(got, np.clip(ref, 0, 2.0), atol=step)  # conv output clamped to ±2
    # Without fake_quant the ranges are recorded but the values are exact.
    assert_matches(proto, x)


@cases("PRelu",
       ("per-channel", lambda g: g.op("PRelu", "x", g.const([[[0.25]], [[-0.5]], [[1.5]], [[0.0]]]))),
       ("shared", lambda g: g.op("PRelu", "x", g.const([0.1]))),
       ("after-conv", lambda g: g.op("PRelu", g.op("Conv", "x", g.w(5, 4, 1, 1)), g.w(5, 1, 1))),
       ("2d", lambda g: g.op("PRelu", flat(g), g.w(168))))
def test_prelu(build, shape, opset):
    check_case(build, shape, opset)


@rejects("PRelu", ("activation-slope", lambda g: g.op("PRelu", "x", g.op("Sigmoid", "x"))))
def test_prelu_rejects(build, shape):
    check_rejected(build, shape)


def _binary_cases(op: str):
    lo = 0.5 if op == "Div" else None  # divisors kept away from 0
    return cases(
        op,
        ("two-activations", lambda g: g.op(op, "x", g.op("Sigmoid", "x"))),
        ("se-broadcast", lambda g: g.op(op, "x", g.op("Sigmoid", gap(g)))),
        ("const-per-channel", lambda g: g.op(op, "x", g.w(1, 4, 1, 1, lo=lo))),
        ("const-chw", lambda g: g.op(op, "x", g.w(4, 1, 1, lo=lo))),
        ("const-full", lambda g: g.op(op, "x", g.w(1, 4, 6, 7, lo=lo))),
        ("const-scalar", lambda g: g.op(op, "x", g.const(1.75))),
        ("const-along-w", lambda g: g.op(op, "x", g.w(7, lo=lo))),
        ("const-hw", lambda g: g.op(op, "x", g.w(6, 7, lo=lo))),
        ("const-left", lambda g: g.op(op, g.w(1, 4, 1, 1, lo=0.5), g.op("Sigmoid", "x"))),
        ("plain-2d", lambda g: g.op(op, flat(g), g.w(168, lo=lo))),
    )


@_binary_cases("Add")
def test_add(build, shape, opset):
    check_case(build, shape, opset)


@_binary_cases("Sub")
def test_sub(build, shape, opset):
    check_case(build, shape, opset)


@_binary_cases("Mul")
def test_mul(build, shape, opset):
    check_case(build, shape, opset)


@_binary_cases("Div")
def test_div(build, shape, opset):
    check_case(build, shape, opset)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_rejects_two_constants(op):
    check_rejected(lambda g: [g.op("Relu", "x"), g.op(op, g.w(1, 4, 1, 1), g.w(1, 4, 1, 1))], (1, 4, 6, 7))


@cases("Softmax",
       ("last-axis", lambda g: g.op("Softmax", g.op("Gemm", flat(g), g.w(10, 168), transB=1))),
       ("axis1-of-2d", lambda g: g.op("Softmax", g.op("Gemm", flat(g), g.w(10, 168), transB=1), axis=1)))
def test_softmax(build, shape, opset):
    check_case(build, shape, opset)


@rejects("Softmax", ("nchw-channels", lambda g: g.op("Softmax", "x", axis=1)))
def test_softmax_rejects(build, shape):
    check_rejected(build, shape)


# --- shape, concatenation, split, reduction, padding -------------------------------------------------

@cases("Reshape",
       ("noop-zero-copy", lambda g: g.op("Reshape", "x", g.ints(0, -1, 6, 7))),
       ("noop-last-inferred", lambda g: g.op("Reshape", "x", g.ints(1, 4, 6, -1))),
       ("flatten-4d", lambda g: g.op("Reshape", "x", g.ints(1, -1))),
       ("flatten-1x1", lambda g: g.op("Reshape", gap(g), g.ints(1, -1))),
       ("to-3d", lambda g: g.op("Reshape", "x", g.ints(1, 4, 42))),
       ("4d-to-4d", lambda g: g.op("Reshape", "x", g.ints(1, 8, 3, 7))),
       ("to-5d", lambda g: g.op("Relu", g.op("Reshape", "x", g.ints(1, 2, 2, 6, 7)))),
       ("2d-to-4d-then-conv",
        lambda g: g.op("Conv", g.op("Reshape", g.op("Flatten", gap(g)), g.ints(1, 4, 1, 1)), g.w(3, 4, 1, 1))),
       ("1x1-to-4d", lambda g: g.op("Reshape", gap(g), g.ints(1, 2, 2, 1))),
       ("1x1-to-4d-then-conv",
        lambda g: g.op("Conv", g.op("Reshape", gap(g), g.ints(1, 2, 2, 1)), g.w(3, 2, 1, 1))),
       ("1x1-to-1x1-then-conv",
        lambda g: g.op("Conv", g.op("Reshape", gap(g), g.ints(1, 4, 1, 1)), g.w(3, 4, 1, 1))))
def test_reshape(build, shape, opset):
    check_case(build, shape, opset)


@cases("Flatten",
       ("axis1", flat),
       ("axis1-after-gap", lambda g: g.op("Flatten", gap(g))),
       ("axis0", lambda g: g.op("Flatten", "x", axis=0)),
       ("axis2", lambda g: g.op("Flatten", "x", axis=2)),
       ("axis-1", lambda g: g.op("Flatten", "x", axis=-1)))
def test_flatten(build, shape, opset):
    check_case(build, shape, opset)


@cases("Squeeze",
       ("gap-hw", lambda g: g.op("Squeeze", gap(g), g.ints(2, 3))),
       ("h", lambda g: g.op("Squeeze", "x", g.ints(2)), (1, 4, 1, 5)),
       ("all-ones", lambda g: g.op("Squeeze", "x"), (1, 4, 1, 5)))
def test_squeeze(build, shape, opset):
    check_case(build, shape, opset)


@cases("Unsqueeze",
       ("2d-to-4d-then-conv",
        lambda g: g.op("Conv", g.op("Unsqueeze", g.op("Flatten", gap(g)), g.ints(2, 3)), g.w(3, 4, 1, 1))),
       ("4d-to-5d", lambda g: g.op("Unsqueeze", "x", g.ints(2))))
def test_unsqueeze(build, shape, opset):
    check_case(build, shape, opset)


@cases("Transpose",
       ("to-nhwc", lambda g: g.op("Transpose", "x", perm=[0, 2, 3, 1])),
       ("swap-hw", lambda g: g.op("Transpose", "x", perm=[0, 1, 3, 2])),
       ("swap-hw-then-conv",
        lambda g: g.op("Conv", g.op("Transpose", "x", perm=[0, 1, 3, 2]), g.w(3, 4, 3, 1), strides=[2, 1])),
       ("2d", lambda g: g.op("Transpose", flat(g), perm=[1, 0])))
def test_transpose(build, shape, opset):
    check_case(build, shape, opset)


@cases("Concat",
       ("channels", lambda g: g.op("Concat", "x", g.op("Relu", "x"), axis=1)),
       ("channels-neg", lambda g: g.op("Concat", "x", g.op("Conv", "x", g.w(3, 4, 1, 1)), axis=-3)),
       ("height", lambda g: g.op("Concat", "x", g.op("Sigmoid", "x"), axis=2)),
       ("width", lambda g: g.op("Concat", "x", g.op("Tanh", "x"), g.op("Relu", "x"), axis=3)),
       ("width-neg", lambda g: g.op("Concat", "x", g.op("Relu", "x"), axis=-1)),
       ("six-inputs", lambda g: g.op("Concat", *(["x", g.op("Relu", "x"), g.op("Tanh", "x")] * 2), axis=1)),
       ("plain-2d", lambda g: g.op("Concat", flat(g), g.op("Relu", flat(g)), axis=1)))
def test_concat(build, shape, opset):
    check_case(build, shape, opset)


@rejects("Concat", ("mixed-layouts", lambda g: g.op("Concat", "x", g.op("Reshape", "x", g.ints(1, 4, 42)), axis=1)))
def test_concat_rejects(build, shape):
    check_rejected(build, shape)


@cases("Split",
       ("channels-equal", lambda g: g.op("Split", "x", axis=1, outputs=2)),
       ("channels-sizes", lambda g: g.op("Split", "x", g.ints(1, 3), axis=1, outputs=2)),
       ("height-sizes", lambda g: g.op("Split", "x", g.ints(2, 4), axis=2, outputs=2)),
       ("width-neg-sizes", lambda g: g.op("Split", "x", g.ints(3, 4), axis=-1, outputs=2)),
       ("channels-8-way", lambda g: g.op("Split", "x", axis=1, outputs=8), (1, 8, 5, 7)),
       ("channels-attr-opset11", lambda g: g.op("Split", "x", split=[3, 1], axis=1, outputs=2), (1, 4, 6, 7), 11),
       ("plain-2d", lambda g: g.op("Split", flat(g), axis=1, outputs=3)))
def test_split(build, shape, opset):
    check_case(build, shape, opset)


@cases("Slice",
       ("channel", lambda g: g.op("Slice", "x", g.ints(1), g.ints(3), g.ints(1))),
       ("ghost-module-concat-then-channel-slice",  # GhostModule: cat([primary, cheap], 1)[:, :out], out odd
        lambda g: g.op("Slice", g.op("Concat", "x", g.op("Relu", "x"), axis=1), g.ints(0), g.ints(7), g.ints(1))),
       ("height-neg-start-max-end", lambda g: g.op("Slice", "x", g.ints(-4), g.ints(INT64_MAX), g.ints(2))),
       ("h-and-w", lambda g: g.op("Slice", "x", g.ints(1, 2), g.ints(-1, 6), g.ints(2, -1), g.ints(1, 1))),
       ("all-axes-implicit", lambda g: g.op("Slice", "x", g.ints(0, 1, 0, 2), g.ints(1, 4, 5, 7))),
       ("plain-2d", lambda g: g.op("Slice", flat(g), g.ints(10), g.ints(50), g.ints(1))))
def test_slice(build, shape, opset):
    check_case(build, shape, opset)


@rejects("Slice", ("strided", lambda g: g.op("Slice", "x", g.ints(0), g.ints(6), g.ints(2), g.ints(2))))
def test_slice_rejects(build, shape):
    check_rejected(build, shape)


@cases("ReduceMean",
       ("hw-keepdims", lambda g: g.op("ReduceMean", "x", axes=[2, 3])),
       ("hw-no-keepdims", lambda g: g.op("ReduceMean", "x", axes=[2, 3], keepdims=0)),
       ("neg-axes-no-keepdims", lambda g: g.op("ReduceMean", "x", axes=[-1, -2], keepdims=0)),
       ("channels-keepdims", lambda g: g.op("ReduceMean", "x", axes=[1])),
       ("width-keepdims", lambda g: g.op("ReduceMean", "x", axes=[3])),
       ("plain-2d", lambda g: g.op("ReduceMean", flat(g), axes=[1], keepdims=0)),
       ("axes-input-opset18", lambda g: g.op("ReduceMean", "x", g.ints(2, 3), keepdims=0), (1, 4, 6, 7), 18))
def test_reduce_mean(build, shape, opset):
    check_case(build, shape, opset)


@rejects("ReduceMean", ("channels-no-keepdims", lambda g: g.op("ReduceMean", "x", axes=[1], keepdims=0)))
def test_reduce_mean_rejects(build, shape):
    check_rejected(build, shape)


@cases("Pad",
       ("hw-asym", lambda g: g.op("Pad", "x", g.ints(0, 0, 1, 2, 0, 0, 2, 0))),
       ("value", lambda g: g.op("Pad", "x", g.ints(0, 0, 0, 1, 0, 0, 1, 1), g.const(1.5))),
       ("channels", lambda g: g.op("Pad", "x", g.ints(0, 1, 0, 0, 0, 2, 0, 0))),
       ("after-relu-then-maxpool",
        lambda g: g.op("MaxPool", g.op("Pad", g.op("Relu", "x"), g.ints(0, 0, 1, 1, 0, 0, 1, 1)),
                       kernel_shape=[3, 3], strides=[2, 2])))
def test_pad(build, shape, opset):
    check_case(build, shape, opset)


@rejects("Pad", ("reflect", lambda g: g.op("Pad", "x", g.ints(0, 0, 1, 1, 0, 0, 1, 1), mode="reflect")))
def test_pad_rejects(build, shape):
    check_rejected(build, shape)


# --- channel shuffle ------------------------------------------------------------------------------

def shuffle_pattern(g: G, src: str, groups: int, channels: int, last=None) -> str:
    """ShuffleNet's Reshape(1,g,C/g,H,W) → Transpose(0,2,1,3,4) → Reshape(1,C,H,W) (fused by the passes)."""
    h, w = g.shape[2:]
    r1 = g.op("Reshape", src, g.ints(1, groups, channels // groups, h, w))
    tr = g.op("Transpose", r1, perm=[0, 2, 1, 3, 4])
    return g.op("Reshape", tr, g.ints(*(last or (1, channels, h, w))))


def numpy_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


@pytest.mark.parametrize("groups, shape", [(2, (1, 8, 5, 7)), (4, (1, 8, 5, 7)), (8, (1, 16, 3, 5))])
def test_channel_shuffle_node(groups, shape):
    """The custom node (domain mobile_export, unknown to onnxruntime) against numpy."""
    g = G(shape)
    proto = g.model(g.op("ChannelShuffle", "x", domain="mobile_export", groups=groups))
    assert LoweredGraph(proto).op_types() == ["ChannelShuffle"]
    x = g.sample()
    assert_matches(proto, x, {"channelshuffle0_0": numpy_shuffle(x, groups)})


@cases("ChannelShuffle",
       ("pattern-g2", lambda g: shuffle_pattern(g, "x", 2, 8), (1, 8, 5, 7)),
       ("pattern-g4-last-inferred", lambda g: shuffle_pattern(g, "x", 4, 8, (1, -1, 5, 7)), (1, 8, 5, 7)),
       ("pattern-of-concat", lambda g: shuffle_pattern(
           g, g.op("Concat", g.op("Relu", "x"), g.op("Conv", "x", g.w(4, 4, 1, 1)), axis=1), 2, 8), (1, 4, 5, 7)),
       ("pattern-of-concat-g3",
        lambda g: shuffle_pattern(g, g.op("Concat", "x", g.op("Relu", "x"), g.op("Tanh", "x"), axis=1), 3, 12),
        (1, 4, 5, 7)))
def test_channel_shuffle_pattern(build, shape, opset):
    """The ONNX pattern, fused into ChannelShuffle by the passes, against onnxruntime on the pattern."""
    g = G(shape, opset)
    proto = g.model(build(g))
    assert "ChannelShuffle" in LoweredGraph(proto).op_types()
    assert_matches(proto, g.sample())


# --- registry, unknown ops, XNNPACK-shaped split/concat ---------------------------------------------

def test_every_registered_op_is_tested():
    registered = set(LOWERINGS)
    assert TESTED == registered, (f"lowerings without a test: {sorted(registered - TESTED)}; "
                                  f"tests of unregistered ops: {sorted(TESTED - registered)}")


def test_unknown_op_raises_unsupported():
    g = G()
    proto = g.model(g.op("LRN", g.op("Relu", "x"), size=3))
    with pytest.raises(UnsupportedOpError) as ei:
        LoweredGraph(proto)
    assert ei.value.op_type == "LRN" and ei.value.node_name == "/m/LRN_1"
    assert "'LRN'" in str(ei.value)


def _fan(fn, *args) -> tuple[list, list[int], list[int]]:
    """Run ``fn`` in a tf.function; return its result and the fan-out / fan-in of every SPLIT / CONCAT."""
    traced = tf.function(fn).get_concrete_function(*args)
    ops = traced.graph.get_operations()
    splits = [op.get_attr("num_split") for op in ops if op.type == "Split"]
    concats = [op.get_attr("N") for op in ops if op.type == "ConcatV2"]
    return traced(*args), splits, concats


@pytest.mark.parametrize("n", [2, 4, 6, 8, 12, 16, 5])
def test_xnn_split_concat_fan(n):
    x = tf.constant(np.arange(2 * 3 * n * 2, dtype=np.float32).reshape(2, 3, n * 2))
    parts, splits, _ = _fan(lambda t: xnn.split(t, n, axis=2), x)
    assert len(parts) == n
    for got, want in zip(parts, tf.split(x, n, axis=2)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    if n == 5:  # a prime above MAX_FAN stays one wide SPLIT (documented: it leaves the delegate)
        assert splits == [5]
    else:
        assert splits and max(splits) <= xnn.MAX_FAN
    pieces = [x[..., i:i + 1] for i in range(n)]
    joined, _, concats = _fan(lambda *ts: xnn.concat(list(ts), axis=2), *pieces)
    np.testing.assert_array_equal(joined.numpy(), tf.concat(pieces, axis=2).numpy())
    assert concats and max(concats) <= xnn.MAX_FAN
    assert xnn.split(x, 1, axis=2)[0] is x and xnn.concat([x], axis=2) is x
