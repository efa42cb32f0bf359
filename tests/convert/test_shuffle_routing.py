"""``lowering/shuffle_routing.py``: a ShuffleNetV2 unit's concat → shuffle → split keeps its function
with only the identity half shuffled, and other shapes are left alone."""
from __future__ import annotations

import numpy as np
import onnx
import tensorflow as tf

from mobile_export.convert.lowering import LoweredGraph
from mobile_export.convert.lowering.passes import run_passes

import onnx_builder
from onnx_builder import run_ort


def unit(next_conv_group: int = 1):
    """x (2n channels) → chunk → branch conv+relu on the second half → concat → channel shuffle (the
    torchvision reshape/transpose/reshape) → chunk → identity half out, branch half into a conv."""
    g = onnx_builder.G(shape=(1, 8, 5, 6))
    a, x2 = g.op("Split", "x", outputs=2, axis=1)
    b = g.op("Relu", g.op("Conv", x2, g.w(4, 4, 1, 1), g.w(4)))
    cat = g.op("Concat", a, b, axis=1)
    shuffled = g.op("Reshape", g.op("Transpose", g.op("Reshape", cat, g.ints(1, 2, 4, 5, 6)), perm=[0, 2, 1, 3, 4]),
                    g.ints(1, 8, 5, 6))
    y1, y2 = g.op("Split", shuffled, outputs=2, axis=1)
    w = g.w(4, 4 // next_conv_group, 1, 1)
    proto = g.model(g.op("Relu", y1), g.op("Conv", y2, w, group=next_conv_group))
    return onnx.shape_inference.infer_shapes(proto), g.sample()


def test_the_branch_half_is_not_shuffled_and_the_function_is_kept():
    proto, x = unit()
    model, recipe = run_passes(proto)
    assert any("routed" in r for r in recipe)
    shuffles = [n for n in model.graph.node if n.op_type == "ChannelShuffle"]
    assert len(shuffles) == 1 and shuffles[0].input[0].endswith("/lo")  # only the identity half
    want = run_ort(proto, x)
    got = LoweredGraph(proto)(tf.constant(x.transpose(0, 2, 3, 1)))
    for name, ref in want.items():
        np.testing.assert_allclose(got[name].numpy(), ref, rtol=1e-5, atol=1e-5, err_msg=name)


def test_a_branch_half_read_by_a_grouped_conv_is_left_alone():
    proto, _ = unit(next_conv_group=2)
    _, recipe = run_passes(proto)
    assert not any("routed" in r for r in recipe)
