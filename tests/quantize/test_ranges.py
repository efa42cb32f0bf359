"""Range-planning rules of ``quantize/ranges.py`` on small ONNX graphs, one test per rule."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mobile_export.quantize.ranges import SIGMOID_WINDOW, narrow_saturated
from mobile_export.runtimes.xnnpack_limits import ADD_SAFE_RATIO


def _init(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _se_gate(weight_scale: float, gate: str = "hard", extra_consumer: bool = False):
    """SE tail: p → Conv(w) → x → relu6(x + 3) (hard) or sigmoid(x), times the feature map f."""
    w = np.full((4, 2, 1, 1), weight_scale * 127.0, np.float32)  # per-channel int8 scale = weight_scale
    nodes = [helper.make_node("Conv", ["p", "w"], ["x"])]
    inits = [_init("w", w)]
    if gate == "hard":
        inits += [_init("three", 3.0), _init("lo", 0.0), _init("hi", 6.0)]
        nodes += [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "lo", "hi"], ["g"])]
    else:
        nodes.append(helper.make_node("Sigmoid", ["x"], ["g"]))
    nodes.append(helper.make_node("Mul", ["f", "g"], ["y"]))
    if extra_consumer:
        nodes.append(helper.make_node("Relu", ["x"], ["x2"]))
    return helper.make_graph(nodes, "se", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "pf"],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


@pytest.mark.parametrize("gate, window", [("hard", (-3.0, 3.0)), ("sigmoid", SIGMOID_WINDOW)])
def test_a_gate_input_gets_the_gate_window(gate, window):
    ranges = {"p": (0.0, 10.0), "x": (-1000.0, 1000.0)}
    narrow_saturated(_se_gate(0.001, gate), ranges)
    assert ranges["x"] == pytest.approx(window)
    assert ranges["p"] == (0.0, 10.0)


def test_the_window_never_widens_a_narrower_calibrated_range():
    ranges = {"p": (0.0, 10.0), "x": (-1.0, 2.0)}
    narrow_saturated(_se_gate(0.001), ranges)
    assert ranges["x"] == (-1.0, 2.0)


def test_the_window_widens_only_as_far_as_the_convolution_limit_needs():
    """Input scale 2e5/255 x weight scale 0.01 / (6/255) = 333 ≥ 2⁷: the output range grows until the
    ratio is at the safe bound, centred as the window, and stays far narrower than calibrated."""
    ranges = {"p": (0.0, 2e5), "x": (-1e6, 1e6)}
    narrow_saturated(_se_gate(0.01), ranges)
    lo, hi = ranges["x"]
    ratio = (2e5 / 255.0) * 0.01 / ((hi - lo) / 255.0)
    assert ratio == pytest.approx(ADD_SAFE_RATIO) and lo == pytest.approx(-hi)
    assert 6.0 < hi - lo < 20.0


@pytest.mark.parametrize("case", ["second consumer", "unknown input range"])
def test_a_tensor_read_elsewhere_or_unchecked_keeps_its_range(case):
    ranges = {"p": (0.0, 10.0), "x": (-1000.0, 1000.0)}
    if case == "unknown input range":
        del ranges["p"]
    narrow_saturated(_se_gate(0.001, extra_consumer=case == "second consumer"), ranges)
    assert ranges["x"] == (-1000.0, 1000.0)
