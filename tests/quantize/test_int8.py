"""Full-integer int8 export of every registered model: fully integer, one XNNPACK partition, exact
ReLU6 ranges, quantization recorded in the manifest, byte-identical re-export; and the range
estimation methods themselves."""
from __future__ import annotations

import numpy as np
import pytest

from mobile_export.quantize import ranges as Q
from mobile_export.fidelity import Int8Bar
from mobile_export.api import export
from mobile_export.cli import main
from mobile_export.models import get_spec, list_models
from mobile_export.runtimes.host import fully_integer_violations, make_interpreter

SIZE = 64  # int8 properties do not depend on resolution; small inputs keep the suite fast


def shuffle_transposes(manifest) -> int:
    """TRANSPOSE ops the lowering may emit: one per channel shuffle it could not fold into a convolution
    (the shuffle's 5-D transpose); none that changes layout."""
    return sum("lowered as CONCATENATION → RESHAPE → TRANSPOSE" in r for r in manifest["recipe"])


def _int8(name, out, **kw):
    kw.setdefault("input_size", SIZE)
    kw.setdefault("num_calibration", 64)
    kw.setdefault("latency_runs", 0)  # timing is tested in tests/check and tests/validation
    return export(name, precision="int8", out_dir=out, search=False, **kw)


PER_MODEL_CALIBRATION = 16  # int8 structure does not depend on how many images fit the ranges


@pytest.fixture(scope="session")
def golden_or_none(request):
    """The torchvision-golden fill when ../shared holds it, else None (seeded random weights)."""
    from conftest import GOLDEN_DIR, load_script

    return load_script(GOLDEN_DIR / "fill.py", "tv_golden_fill") if (GOLDEN_DIR / "fill.py").is_file() else None


def _relu6_tensors(model: bytes):
    interp = make_interpreter(model, xnnpack=False)
    return [t for t in interp.get_tensor_details()
            if t["name"].split(";")[0].endswith("Relu6") and np.dtype(t["dtype"]) == np.int8]


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_int8_export_is_fully_integer_in_one_partition(name, tmp_path, golden_or_none):
    """Every model's int8 export, with the ARM benchmark's weights where ../shared has them (the
    torchvision-golden fill: large, heavy-tailed activations that once pushed MobileNetV3-large's
    hard-swish ADDs past XNNPACK's scale limit, 23 partitions; seeded random weights otherwise): fully
    integer in one partition, no op past a limit, exact ReLU6 ranges, the I/O contract in the manifest,
    the per-layer table."""
    weights = _golden_weights(name, golden_or_none, tmp_path) if golden_or_none else None
    res = _int8(name, tmp_path, weights=weights, num_calibration=PER_MODEL_CALIBRATION)
    tfl = res.tflite_path.read_bytes()
    assert fully_integer_violations(tfl) == []
    g = res.report.graph
    assert g.float_ops == []
    assert g.partitions == 1 and g.outside == [] and g.limit_violations == [], g
    assert g.ops.get("TRANSPOSE", 0) == shuffle_transposes(res.manifest)
    assert not {"HARD_SWISH", "RELU_0_TO_1", "SPLIT_V"} & set(g.ops)
    if res.manifest["family"] != "efficientnet":  # only real sigmoids (SiLU, SE gates) become LOGISTIC
        assert "LOGISTIC" not in g.ops
    # the default artifact takes uint8 pixels: the only float ops are the I/O edges, inside XNNPACK
    assert [b.split("#")[0] for b in g.io_boundary] == ["DEQUANTIZE", "MUL", "ADD", "QUANTIZE", "DEQUANTIZE"]
    assert (g.ops["QUANTIZE"], g.ops["DEQUANTIZE"]) == (1, 2)
    m = res.manifest
    inp, out = m["inputs"][0], m["outputs"][0]
    assert inp["dtype"] == "uint8" and inp["quantization"] == {"scale": 1.0, "zero_point": 0}
    q = out["dequantized_from"]
    assert out["dtype"] == "float32" and q["scale"] > 0 and -128 <= q["zero_point"] <= 127
    assert m["calibration"]["kind"] == "default" and m["calibration"]["count"] == PER_MODEL_CALIBRATION
    assert any(r.startswith("int8 chosen:") for r in m["recipe"])
    # the export report names each layer's int8 SQNR against the float graph (issue 5, item 5)
    pl = res.report.per_layer
    table = [e for e in pl["layers"] if "skipped" not in e]
    assert pl["compared"] == len(table) >= 3 and pl["samples"] >= 1
    assert all(not np.isnan(e["sqnr_db"]) and e["scope"] for e in table)
    first = pl["first_divergence"]
    assert first is None or (first["sqnr_db"] < pl["tolerance"]["value"] and first in table)
    assert "## Per layer: TFLite vs onnxruntime" in (res.out_dir / "report.md").read_text()
    # ReLU6 outputs carry the exact [0, 6] range (scale 6/255, zero point -128); only hard-swish's gate
    # relu6(x+3), fused into its ADD, may be widened (never narrowed) when x is too wide for XNNPACK's
    # ADD limit, as golden weights make it (quantize.ranges.xnnpack_safe; exact on trained and random
    # weights: test_relu6_outputs_carry_the_exact_range).
    for t in _relu6_tensors(tfl):
        scale, zp = t["quantization"]
        widened_ok = weights is not None and "Add" in t["name"]
        assert zp == -128 and (abs(scale - 6 / 255) < 1e-7 or (widened_ok and scale > 6 / 255)), t["name"]
    if res.manifest["family"] in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3"):
        assert _relu6_tensors(tfl), "ReLU6 family without a ReLU6 tensor"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v1_x0_25", "mobilenet_v2_x0_35", "mobilenet_v3_small"])
def test_relu6_outputs_carry_the_exact_range(name, tmp_path):
    """With seeded random weights (activations of a trained network's scale) every ReLU6 output of the
    ReLU6 families is int8 with the exact range [0, 6]: scale 6/255, zero point -128."""
    tensors = _relu6_tensors(_int8(name, tmp_path, num_calibration=PER_MODEL_CALIBRATION).tflite_path.read_bytes())
    assert tensors
    for t in tensors:
        scale, zp = t["quantization"]
        assert zp == -128 and abs(scale - 6 / 255) < 1e-7, t["name"]


@pytest.mark.slow
def test_int8_reexport_is_byte_identical(tmp_path):
    a = _int8("mobilenet_v3_small", tmp_path / "a")
    b = _int8("mobilenet_v3_small", tmp_path / "b")
    assert a.tflite_path.read_bytes() == b.tflite_path.read_bytes()
    assert (a.out_dir / "manifest.json").read_bytes() == (b.out_dir / "manifest.json").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("io,dtype", [("int8", "int8"), ("uint8", "uint8"), ("float", "float32")])
def test_int8_io_types(io, dtype, tmp_path):
    res = _int8("mobilenet_v2_x0_35", tmp_path, io_type=io, input="normalized")
    m = res.manifest
    assert m["io_type"] == io
    assert m["inputs"][0]["dtype"] == dtype and m["outputs"][0]["dtype"] == dtype
    assert fully_integer_violations(res.tflite_path.read_bytes()) == []
    assert res.report.graph.partitions == 1


@pytest.mark.slow
def test_int8_with_user_npy_calibration(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (40, SIZE, SIZE, 3), dtype=np.uint8)  # raw NHWC pixels
    np.save(tmp_path / "calib.npy", arr)
    res = _int8("squeezenet1_1", tmp_path / "out", calibration=str(tmp_path / "calib.npy"))
    c = res.manifest["calibration"]
    assert c["kind"] == "npy" and c["count"] == 40 and len(c["sha256"]) == 64


@pytest.mark.slow
def test_dynamic_range_export(tmp_path):
    res = export("mobilenet_v2_x0_35", precision="dynamic", out_dir=tmp_path, input_size=SIZE)
    assert res.manifest["precision"] == "dynamic"
    assert res.report.fidelity.tflite_vs_torch.cosine_min >= 0.99


def test_missing_calibration_source_exit_2(capsys, tmp_path):
    code = main(["mobilenet_v2", "--int8", "--calibration", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "mobilenet_v2").exists()


def test_empty_calibration_dir_exit_2(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code = main(["mobilenet_v2", "--int8", "--calibration", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert not (tmp_path / "o" / "mobilenet_v2").exists()


def test_wrong_shape_npy_exit_2(capsys, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 10, 10), np.float32))
    code = main(["mobilenet_v2", "--int8", "--calibration", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "shape" in err


# --- range estimation -------------------------------------------------------------------------

def test_minmax_range_covers_everything_and_zero():
    v = np.array([0.5, 2.0, 3.0], np.float32)
    assert Q.estimate_range(v, Q.RangeMethod.MINMAX) == (0.0, 3.0)


def test_percentile_clips_outliers():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.standard_normal(100_000), [80.0]]).astype(np.float32)
    lo, hi = Q.estimate_range(v, Q.RangeMethod.PERCENTILE, 99.9)
    assert 2.5 < hi < 5.0 and -5.0 < lo < -2.5


def test_mse_range_beats_minmax_on_heavy_tails():
    rng = np.random.default_rng(0)
    v = (rng.standard_t(2, 200_000)).astype(np.float32)
    mm = Q.estimate_range(v, Q.RangeMethod.MINMAX)
    mse = Q.estimate_range(v, Q.RangeMethod.MSE)
    assert mse[1] - mse[0] < mm[1] - mm[0]
    assert Q._qerror(v, *mse) < Q._qerror(v, *mm)


def _graph(*nodes):
    from onnx import helper

    return helper.make_graph(list(nodes), "g", [], [])


def test_tiny_addends_are_widened_to_xnnpack_add_limit():
    """An addend whose range is < 2⁻¹⁰ of the sum's would put the ADD outside XNNPACK: it is widened
    (keeping its zero point) to 2⁻⁹, consumers before producers; a concatenation's members together."""
    from onnx import helper

    g = _graph(helper.make_node("Concat", ["p", "q"], ["b"], axis=1), helper.make_node("Add", ["a", "b"], ["c"]),
               helper.make_node("Sub", ["c", "d"], ["y"]))
    ranges = {"a": (-1.0, 1.0), "p": (-0.001, 0.002), "q": (-0.001, 0.002), "b": (-0.001, 0.002),
              "c": (-1.0, 1.0), "d": (-50.0, 50.0), "y": (-1000.0, 1000.0)}
    Q.widen_small_addends(g, ranges)
    need_y = 2000.0 * 2.0 ** -9
    assert ranges["y"] == (-1000.0, 1000.0) and ranges["d"] == (-50.0, 50.0)
    assert ranges["c"] == pytest.approx((-need_y / 2, need_y / 2))  # widened against y first
    assert ranges["a"] == (-1.0, 1.0)
    need_c = need_y * 2.0 ** -9
    for m in "pqb":  # then against c's new range, the concat group as one
        assert ranges[m] == pytest.approx((-need_c / 3, 2 * need_c / 3))


def test_a_depthwise_average_pool_does_not_share_its_inputs_scale():
    """AveragePool lowers to a depthwise convolution (it requantizes) unless it excludes zero padding
    (AVERAGE_POOL_2D): only then is its input tied to the concatenation its output joins."""
    from onnx import helper

    def groups(**kw):
        pool = helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[3, 3], strides=[2, 2], **kw)
        return Q.shared_scale_groups(_graph(pool, helper.make_node("Concat", ["p", "z"], ["c"], axis=1)))

    assert groups(pads=[1, 1, 1, 1], count_include_pad=1) == [["c", "p", "z"]]
    assert groups() == [["c", "p", "z"]]
    assert groups(pads=[1, 1, 1, 1]) == [["c", "p", "x", "z"]]


def test_every_family_has_a_recipe():
    from mobile_export.models import get_spec

    families = {get_spec(n).family for n in list_models()}
    assert families <= set(Q.FAMILY_RECIPES)


@pytest.mark.parametrize("name,dw_pw,pw_dw", [("shufflenet_v2_x0_5", 16 + 3, 16), ("shufflenet_v1_g3", 16, 16),
                                               ("mobilenet_v3_small", 2, 2)])
def test_cross_layer_equalization_keeps_the_function(name, dw_pw, pw_dw):
    """Depthwise → 1x1 and 1x1 → ReLU (→ shuffle) → depthwise pairs are rescaled per channel: the float
    outputs stay the same and the channel ranges of the int8 activation between them get closer.
    ShuffleNetV2: every branch (16 blocks, 3 stride-2 side branches) and every 1x1 → depthwise;
    ShuffleNetV1: every unit, into a grouped 1x1 conv, and every grouped 1x1 → shuffle → depthwise;
    MobileNetV3-small: its ReLU expansions (the hard-swish ones are not scale-equivariant)."""
    from mobile_export.quantize.equalize import PW_TO_DW, equalize, find_pairs
    from mobile_export.convert.lowering import LoweredGraph
    from mobile_export.models import build_model, configure
    from mobile_export.convert.to_onnx import export_onnx
    from mobile_export.runtimes.onnxruntime import run_onnxruntime

    cfg = configure(name, input_size=SIZE, num_classes=10)
    proto = export_onnx(build_model(cfg).eval(), (1, 3, SIZE, SIZE), input_name=cfg.input_name,
                        output_name=cfg.output_name)
    pairs = find_pairs(proto.graph)
    assert len(pairs) == dw_pw + pw_dw
    assert sum(p.kind == PW_TO_DW for p in pairs) == pw_dw
    x = np.random.default_rng(0).standard_normal((8, 3, SIZE, SIZE)).astype(np.float32)
    eq, done = equalize(proto, LoweredGraph(proto), np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    a, b = run_onnxruntime(proto, x, cfg.input_name), run_onnxruntime(eq, x, cfg.input_name)
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()
    assert len(done) == len(pairs)
    assert all(d["channel_spread_after"] <= d["channel_spread_before"] + 1e-6 for d in done)
    assert np.median([d["channel_spread_after"] / d["channel_spread_before"] for d in done]) < 0.8
    # 1x1 → depthwise: every live channel gets the tensor's full range unless that needs k > 32
    for d in done:
        if d["kind"] == PW_TO_DW:
            assert d["channel_spread_after"] <= max(1.0 + 1e-6, d["channel_spread_before"] / 32 + 1e-6)
    assert find_pairs(configure_proto("mobilenet_v2")) == [], "ReLU6 between the pair is not scale-equivariant"


@pytest.mark.slow
def test_a_candidate_that_fails_to_load_is_recorded_and_the_search_goes_on(tmp_path, monkeypatch):
    """If the equalized model fails to load (XNNPACK refusing a rescaled layer), the attempt is
    recorded as failed, bias correction is still tried on the best model so far, and one is chosen."""
    from mobile_export.quantize import search as int8
    from mobile_export.convert import to_tflite as tflite_convert
    from mobile_export.errors import ArtifactError

    monkeypatch.setattr(int8, "INT8_BAR", Int8Bar(min_sqnr_db=1e9))
    real, calls = tflite_convert.convert, []

    def convert(*args, **kw):
        calls.append(kw.get("precision"))
        if len(calls) == 5:  # fp32 reference, mse, percentile, minmax, then the equalized model
            raise ArtifactError("XNNPACK refused the model (simulated)")
        return real(*args, **kw)

    monkeypatch.setattr(int8, "convert", convert)
    res = export("shufflenet_v2_x0_5", precision="int8", input_size=SIZE, out_dir=tmp_path, search=True,
                 num_calibration=64)
    attempts = res.report.int8.attempts
    assert attempts[3] == {"method": attempts[3]["method"], "equalized": True, "bias_corrected": False,
                           "failed": "XNNPACK refused the model (simulated)"}
    assert attempts[4]["bias_corrected"] and not attempts[4]["equalized"] and "failed" not in attempts[4]
    assert not res.report.int8.chosen["equalized"]
    assert any("failed (XNNPACK refused" in r for r in res.manifest["recipe"])


def test_bias_correction_targets_linear_convs_and_only_moves_their_biases():
    """ShuffleNetV1: every depthwise conv and every grouped 1x1 feeding an add or concat is linear
    (its own int8 tensor); convs fused with a ReLU are not corrected (their tensor is post-ReLU)."""
    import onnx
    from onnx import numpy_helper

    from mobile_export.quantize import bias_correction as BC
    from mobile_export.models import build_model, configure
    from mobile_export.convert.to_onnx import export_onnx

    cfg = configure("shufflenet_v1_g3", input_size=SIZE, num_classes=10)
    proto = export_onnx(build_model(cfg).eval(), (1, 3, SIZE, SIZE), input_name=cfg.input_name,
                        output_name=cfg.output_name)
    convs = BC.linear_convs(proto)
    assert len(convs) == 16 + 16  # 16 depthwise, 16 second grouped 1x1 convs
    assert all("dwconv" in o or "gconv2" in o for o in convs)
    target = next(o for o in convs if "stage3.2/dwconv" in o)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    shift = np.linspace(-0.1, 0.1, inits[convs[target].input[2]].size)
    fixed = BC.corrected(proto, {target: shift})
    node = next(n for n in fixed.graph.node if n.output[0] == target)
    after = {i.name: numpy_helper.to_array(i) for i in fixed.graph.initializer}
    np.testing.assert_allclose(after[node.input[2]], inits[next(
        n for n in proto.graph.node if n.output[0] == target).input[2]] - shift, rtol=1e-6, atol=1e-7)
    changed = [k for k in inits if k in after and not np.array_equal(inits[k], after[k])]
    assert len(changed) <= 1  # only that conv's bias (a shared bias is copied first)
    assert isinstance(fixed, onnx.ModelProto) and len(fixed.graph.node) == len(proto.graph.node)
    s = BC.summary({target: shift})
    assert s["convs"] == 1 and abs(s["max_abs_shift"] - 0.1) < 1e-9


def configure_proto(name):
    from mobile_export.models import build_model, configure
    from mobile_export.convert.to_onnx import export_onnx

    cfg = configure(name, input_size=SIZE, num_classes=10)
    return export_onnx(build_model(cfg).eval(), (1, 3, SIZE, SIZE), input_name=cfg.input_name,
                       output_name=cfg.output_name).graph


@pytest.mark.slow
def test_sensitivity_pass_tries_equalization_when_below_the_bar(tmp_path, monkeypatch):
    """With a bar no model meets, the search tries every range method, then equalization with the
    best one, then bias correction of the best so far; records each attempt; the saved ONNX is the
    float graph the chosen model came from (never the bias-corrected one: that is not the reference)."""
    import onnx

    from mobile_export.quantize import search as int8
    from mobile_export.runtimes.onnxruntime import run_onnxruntime

    monkeypatch.setattr(int8, "INT8_BAR", Int8Bar(min_sqnr_db=1e9))
    res = export("shufflenet_v2_x0_5", precision="int8", input_size=SIZE, out_dir=tmp_path, search=True,
                 num_calibration=64)
    attempts = res.report.int8.attempts
    assert [(a["method"], a["equalized"]) for a in attempts][:3] == [("mse", False), ("percentile", False),
                                                                     ("minmax", False)]
    assert len(attempts) == 5 and attempts[3]["equalized"] and not any(a["meets_bar"] for a in attempts)
    assert attempts[4]["bias_corrected"] and attempts[4]["bias_shift"]["convs"] > 10
    assert attempts[4]["equalized"] == (attempts[3]["sqnr_db"] > max(a["sqnr_db"] for a in attempts[:3]))
    assert all(np.isfinite(a["sqnr_median_db"]) for a in attempts)
    chosen = res.report.int8.chosen
    assert chosen["sqnr_db"] == max(a["sqnr_db"] for a in attempts)
    saved = onnx.load(str(res.out_dir / "model.onnx"))
    fp32 = export("shufflenet_v2_x0_5", precision="fp32", input_size=SIZE, out_dir=tmp_path / "fp32")
    reference = onnx.load(str(fp32.out_dir / "model.onnx"))
    x = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    want, got = (run_onnxruntime(m, x, reference.graph.input[0].name) for m in (reference, saved))
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), "model.onnx is not the reference function"
    if chosen["equalized"]:
        assert res.report.int8.equalized and any("cross-layer equalization of" in r for r in res.manifest["recipe"])
    assert fully_integer_violations(res.tflite_path.read_bytes()) == []
    # per-layer figures compare against the graph the model came from: were the unequalized graph used,
    # the rescaled depthwise outputs would be off by per-channel factors (SQNR near 0 dB)
    layers = [e for e in res.report.per_layer["layers"] if "skipped" not in e]
    assert len(layers) > 50 and min(e["sqnr_db"] for e in layers) > 5, min(e["sqnr_db"] for e in layers)
    names = {i.name for i in saved.graph.initializer}
    assert {n.input[1] for n in saved.graph.node if n.op_type == "Conv"} <= names


def _golden_weights(name: str, golden_fill, folder) -> str:
    import torch

    from mobile_export.models import get_model

    path = folder / f"{name}_golden.pt"
    torch.save(golden_fill.fill_state_dict(get_model(name).state_dict()), path)
    return str(path)


@pytest.mark.slow
def test_golden_ghostnet_se_gates_stay_inside_xnnpack_and_alive(tmp_path, golden_fill):
    """At 128 px the golden-filled GhostNet's SE projections span ~10⁵. Calibrated to that range, the
    hard-sigmoid gate relu6(x+3) needed a step of tens (every gate 0) and its ADD fell below XNNPACK's
    2⁻¹⁰ scale limit: 2 partitions, 3.9 dB. The gate input now gets the gate's window [-3, 3]
    (quantize.ranges.narrow_saturated): one partition, 10.2 dB."""
    res = _int8("ghostnet_1_0", tmp_path, input_size=128, weights=_golden_weights("ghostnet_1_0", golden_fill, tmp_path))
    x = res.report.graph
    assert x.partitions == 1 and x.outside == [] and x.limit_violations == [], x
    assert res.report.int8.chosen["sqnr_db"] > 8.0
