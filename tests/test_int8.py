"""Full-integer int8 export of every registered model: fully integer, one XNNPACK partition, exact
ReLU6 ranges, quantization recorded in the manifest, byte-identical re-export; and the range
estimation methods themselves."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mobile_export import quantize as Q
from mobile_export.api import export
from mobile_export.cli import main
from mobile_export.models import list_models
from mobile_export.runtime import fully_integer_violations, make_interpreter

SIZE = 64  # int8 properties do not depend on resolution; small inputs keep the suite fast


def _int8(name, out, **kw):
    kw.setdefault("input_size", SIZE)
    return export(name, precision="int8", out_dir=out, search=False, num_calibration=64, **kw)


def _relu6_tensors(model: bytes):
    interp = make_interpreter(model, xnnpack=False)
    return [t for t in interp.get_tensor_details()
            if t["name"].split(";")[0].endswith("Relu6") and np.dtype(t["dtype"]) == np.int8]


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_int8_export_is_fully_integer_in_one_partition(name, tmp_path):
    res = _int8(name, tmp_path)
    tfl = res.tflite_path.read_bytes()
    assert fully_integer_violations(tfl) == []
    rep = res.report
    assert rep["int8"]["fully_integer"] is True
    assert rep["xnnpack"]["partitions"] == 1 and rep["xnnpack"]["outside"] == []
    assert rep["transpose_ops"] == 0
    assert not {"QUANTIZE", "DEQUANTIZE", "HARD_SWISH", "RELU_0_TO_1", "SPLIT_V", "LOGISTIC"} & set(rep["ops"])
    m = res.manifest
    for io in m["inputs"] + m["outputs"]:
        assert io["dtype"] == "int8"
        assert io["quantization"]["scale"] > 0 and -128 <= io["quantization"]["zero_point"] <= 127
    assert m["calibration"]["kind"] == "default" and m["calibration"]["count"] == 64
    assert any(r.startswith("int8 chosen:") for r in m["recipe"])
    # the export report names each layer's int8 SQNR against the float graph (issue 5, item 5)
    pl = rep["int8"]["per_layer"]
    table = [e for e in pl["layers"] if "skipped" not in e]
    assert pl["compared"] == len(table) >= 3 and pl["samples"] >= 1
    assert all(not np.isnan(e["sqnr_db"]) and e["scope"] for e in table)
    first = pl["first_divergence"]
    assert first is None or (first["sqnr_db"] < pl["tolerance"]["value"] and first in table)
    assert "### Per layer: int8 TFLite vs fp32" in (res.out_dir / "report.md").read_text()
    # ReLU6 outputs carry the exact [0, 6] range: scale 6/255, zero point -128.
    for t in _relu6_tensors(tfl):
        scale, zp = t["quantization"]
        assert zp == -128 and abs(scale - 6 / 255) < 1e-7, t["name"]
    if res.manifest["family"] in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3"):
        assert _relu6_tensors(tfl), "ReLU6 family without a ReLU6 tensor"


@pytest.mark.slow
def test_int8_reexport_is_byte_identical(tmp_path):
    a = _int8("mobilenet_v3_small", tmp_path / "a")
    b = _int8("mobilenet_v3_small", tmp_path / "b")
    assert a.tflite_path.read_bytes() == b.tflite_path.read_bytes()
    assert (a.out_dir / "manifest.json").read_bytes() == (b.out_dir / "manifest.json").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("io,dtype", [("uint8", "uint8"), ("float", "float32")])
def test_int8_io_types(io, dtype, tmp_path):
    res = _int8("mobilenet_v2_x0_35", tmp_path, io_type=io)
    m = res.manifest
    assert m["io_type"] == io
    assert m["inputs"][0]["dtype"] == dtype and m["outputs"][0]["dtype"] == dtype
    assert fully_integer_violations(res.tflite_path.read_bytes()) == []
    assert res.report["xnnpack"]["partitions"] == 1


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
    assert res.report["fidelity"]["tflite_vs_torch"]["cosine_min"] >= 0.99


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


def test_every_family_has_a_recipe():
    from mobile_export.models import get_spec

    families = {get_spec(n).family for n in list_models()}
    assert families <= set(Q.FAMILY_RECIPES)
