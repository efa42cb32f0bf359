"""``LoweredGraph.evaluator``: the float graph run in TensorFlow for calibration statistics. Grouped
convolutions fused with bias + ReLU and strided dilated depthwise convolutions run only in
TensorFlow's oneDNN kernels, which ``mobile_export`` turns on before TensorFlow starts; a TensorFlow
started without them gets one sentence naming the fix, not a kernel traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mobile_export.convert.lowering import LoweredGraph

import onnx_builder
from onnx_builder import run_ort

G = onnx_builder.G


def strided_dilated_depthwise(g: G) -> str:
    """ESPNetv2's strided EESP branch, followed by the grouped conv + bias + ReLU of ShuffleNetV1."""
    dw = g.op("Conv", "x", g.w(4, 1, 3, 3), group=4, strides=[2, 2], dilations=[2, 2], pads=[2, 2, 2, 2])
    return g.op("Relu", g.op("Conv", dw, g.w(4, 2, 1, 1), g.w(4), group=2))


def test_evaluator_returns_the_named_tensors_as_onnxruntime_computes_them():
    g = G((2, 4, 9, 11))
    out = strided_dilated_depthwise(g)
    proto = g.model(out)
    x = g.sample()
    got = LoweredGraph(proto).evaluator([out])(x.transpose(0, 2, 3, 1))
    want = run_ort(proto, x)[out]
    np.testing.assert_allclose(got[out], want, rtol=1e-5, atol=1e-5)  # a graph output: NCHW


SCRIPT = """
import sys
sys.path.insert(0, {here!r})
import tensorflow  # started first, with oneDNN off (the environment says so)
import onnx_builder
from mobile_export.convert.lowering import LoweredGraph
from mobile_export.errors import TensorFlowSetupError
from test_evaluator import strided_dilated_depthwise
g = onnx_builder.G((2, 4, 9, 11))
out = strided_dilated_depthwise(g)
try:
    LoweredGraph(g.model(out)).evaluator([out])(g.sample().transpose(0, 2, 3, 1))
except TensorFlowSetupError as e:
    print("ERROR", e.exit_code, e)
"""


def test_tensorflow_without_onednn_is_told_what_to_set():
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    here = str(Path(__file__).parent)
    res = subprocess.run([sys.executable, "-c", SCRIPT.format(here=here)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith("ERROR 2 "), res.stdout
    assert "TF_ENABLE_ONEDNN_OPTS=1" in line and "\n" not in line
