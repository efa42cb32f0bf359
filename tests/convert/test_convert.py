"""Every registered model converts to fp32 and fp16 TFLite within the fidelity bounds, in one
XNNPACK partition with nothing outside it and no layout TRANSPOSE (only channel shuffles transpose); artifacts are complete and
reproducible."""
from __future__ import annotations

import json

import pytest
from onnx import TensorProto, helper

from mobile_export.fidelity import BOUNDS
from mobile_export.api import export
from mobile_export.errors import UnsupportedOpError
from mobile_export.models import list_models
from mobile_export.options import Precision

pytestmark = pytest.mark.slow


def shuffle_transposes(manifest) -> int:
    """TRANSPOSE ops the lowering may emit: one per channel shuffle it could not fold into a convolution
    (the shuffle's 5-D transpose); none that changes layout."""
    return sum("lowered as CONCATENATION → RESHAPE → TRANSPOSE" in r for r in manifest["recipe"])


def _check_artifact(res, precision: Precision):
    out = res.out_dir
    assert out.name == precision.value and out.parent.name == res.manifest["model"]
    for f in ("model.onnx", "model.tflite", "manifest.json", "report.json", "report.md"):
        assert (out / f).is_file(), f
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temp dirs left behind"
    rep = res.report
    fid = rep.fidelity.tflite_vs_torch
    if precision is Precision.FP32:
        allowed = {c.name: c.allowed for c in rep.gate.checks}["max_rel_error"]
        # the bound, relaxed only to 4x PyTorch's own float32 noise
        assert allowed == max(BOUNDS[Precision.FP32].max_rel, 4 * rep.onnx_check["float32_noise"])
        assert fid.max_rel <= allowed, (fid, allowed)
        assert fid.cosine_min >= BOUNDS[Precision.FP32].min_cosine, fid
    else:
        # Either within the bound against PyTorch, or (random weights amplify rounding) TFLite
        # reproduces the same graph with fp16-rounded weights.
        ref16 = rep.fidelity.tflite_vs_fp16_weights
        assert fid.cosine_min >= BOUNDS[Precision.FP16].min_cosine or ref16.cosine_min >= 0.99999, (fid, ref16)
    g = rep.graph
    assert g.partitions == 1 and g.outside == [], g
    assert g.ops.get("TRANSPOSE", 0) == shuffle_transposes(res.manifest), g.ops
    # Float HARD_SWISH (the converter fuses x*relu6(x+3)/6 into it) runs in XNNPACK; int8 HARD_SWISH,
    # RELU_0_TO_1 and SPLIT_V do not (tests/quantize/test_int8.py forbids HARD_SWISH there).
    assert "SPLIT_V" not in g.ops and "RELU_0_TO_1" not in g.ops
    assert res.passed
    m = json.loads((out / "manifest.json").read_text())
    assert m["inputs"][0]["layout"] == "NHWC" and m["inputs"][0]["shape"][3] == 3
    assert m["preprocessing"]["mean"] and m["preprocessing"]["std"]
    assert m["versions"]["torch"].startswith("2.13")
    assert m["trained"] is False and "UNTRAINED" in (out / "report.md").read_text()


@pytest.mark.parametrize("name", list_models())
def test_fp32_export(name, tmp_path):
    # at the default 224 px; timing is tested in tests/check and tests/validation
    _check_artifact(export(name, precision="fp32", out_dir=tmp_path, latency_runs=0), Precision.FP32)


@pytest.mark.parametrize("name", list_models())
def test_fp16_export(name, tmp_path):
    res = export(name, precision="fp16", out_dir=tmp_path, input_size=96, latency_runs=0)
    _check_artifact(res, Precision.FP16)


def test_reexport_is_byte_identical(tmp_path):
    a = export("mobilenet_v3_small", precision="fp32", out_dir=tmp_path / "a", latency_runs=0)
    b = export("mobilenet_v3_small", precision="fp32", out_dir=tmp_path / "b", latency_runs=0)
    assert a.tflite_path.read_bytes() == b.tflite_path.read_bytes()
    assert (a.out_dir / "manifest.json").read_bytes() == (b.out_dir / "manifest.json").read_bytes()


def test_reexport_replaces_previous_artifact(tmp_path):
    export("squeezenet1_1", precision="fp32", out_dir=tmp_path, input_size=64, latency_runs=0)
    res = export("squeezenet1_1", precision="fp32", out_dir=tmp_path, input_size=96, latency_runs=0)
    assert res.manifest["inputs"][0]["shape"] == [1, 96, 96, 3]
    assert sorted(p.name for p in (tmp_path / "squeezenet1_1").iterdir()) == ["fp32"]


def test_unsupported_op_names_op_and_node():
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    node = helper.make_node("LRN", ["input"], ["y"], name="my_lrn", size=3)
    proto = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    from mobile_export.convert.lowering import LoweredGraph

    with pytest.raises(UnsupportedOpError) as ei:
        LoweredGraph(proto)
    assert "'LRN'" in str(ei.value) and "'my_lrn'" in str(ei.value)
