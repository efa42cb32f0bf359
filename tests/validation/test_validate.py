"""The validator: statistics, gate files, tensor mapping, and end-to-end runs on small (96×96)
mobilenet_v3_small artifacts — correct ones pass, deliberately broken ones fail and name the broken
layer, bad input exits 2 with one sentence."""
from __future__ import annotations

import base64
import json
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mobile_export import artifacts
from mobile_export.cli import main
from mobile_export.check.gate import Check, GateError, read_gate_file, thresholds_for
from mobile_export.report.junit import gate_cases, to_junit
from mobile_export.metrics import mcnemar_exact, paired_bootstrap_drop
from mobile_export.runtimes.tensor_map import map_tensors, tensor_scope

MODEL = "mobilenet_v3_small"
GATE = """
num = 16
latency_runs = 5

[precision.fp32]
max_rel_error = 1e-4
min_sqnr_db = 60
min_top1_agreement = 0.99
min_cosine = 0.9999
max_latency_ratio = 50.0

[precision.int8]
min_sqnr_db = 4
min_cosine = 0.5
max_latency_ratio = 50.0
max_top1_drop_pp = 100

[models.mobilenet_v3_small.int8]
min_top1_agreement = 0.1
"""


def _error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("mobile-export: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    msg = lines[0].removeprefix("mobile-export: error: ")
    assert msg.endswith(".") and msg.count(". ") <= 1, msg  # one sentence
    return msg


# ---------------------------------------------------------------- statistics (fast)

def test_bootstrap_identical_predictions_give_zero_drop_and_ci():
    correct = np.random.default_rng(0).random(300) < 0.7
    r = paired_bootstrap_drop(correct, correct, seed=0)
    assert (r["drop_pp"], r["ci_low_pp"], r["ci_high_pp"]) == (0.0, 0.0, 0.0)


def test_bootstrap_ci_is_sane_and_seeded():
    rng = np.random.default_rng(1)
    ref = rng.random(1000) < 0.7
    got = ref.copy()
    got[rng.choice(1000, 50, replace=False)] = False  # TFLite loses up to 50 correct answers
    r = paired_bootstrap_drop(ref, got, seed=3)
    assert r["drop_pp"] == pytest.approx(100 * (ref.mean() - got.mean()))
    assert 0 < r["ci_low_pp"] < r["drop_pp"] < r["ci_high_pp"] < 2 * r["drop_pp"]
    assert r == paired_bootstrap_drop(ref, got, seed=3)


def test_mcnemar_exact():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(10, 3) == pytest.approx(2 * (1 + 13 + 78 + 286) / 8192)
    assert mcnemar_exact(3, 10) == mcnemar_exact(10, 3)
    assert mcnemar_exact(7, 7) == 1.0


def test_python_api_is_exported_lazily():
    import mobile_export
    import mobile_export.api

    from mobile_export import ValidationResult, export, validate

    assert callable(validate) and validate is mobile_export.api.validate and export is mobile_export.api.export
    assert {"passed", "failures", "summary_lines"} <= set(dir(ValidationResult))


# ---------------------------------------------------------------- gate files, mapping, JUnit (fast)

def test_gate_file_precedence(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text("min_sqnr_db = 20\nmax_rel_error = 1e-4\n[precision.int8]\nmin_sqnr_db = 12\n"
                 "[models.m]\nmax_rel_error = 0.5\n[models.m.int8]\nmin_sqnr_db = 9\n")
    g = read_gate_file(f)
    assert thresholds_for(g, None, "other", "fp32")[0] == {"min_sqnr_db": 20, "max_rel_error": 1e-4}
    assert thresholds_for(g, None, "other", "int8")[0]["min_sqnr_db"] == 12
    assert thresholds_for(g, None, "m", "int8")[0] == {"min_sqnr_db": 9, "max_rel_error": 0.5}
    assert thresholds_for(g, {"min_sqnr_db": 30, "min_cosine": None}, "m", "int8")[0]["min_sqnr_db"] == 30
    limits, _, source = thresholds_for(None, None, "m", "fp32")
    assert "max_rel_error" in limits and source.startswith("default")


@pytest.mark.parametrize("text, needle", [
    ("max_foo = 1\n", "unknown key 'max_foo'"),
    ("[models.m]\nmin_sqnr = 3\n", "unknown key 'models.m.min_sqnr'"),
    ("min_sqnr_db = 'high'\n", "must be a number"),
    ("min_sqnr_db = \n", "not valid TOML"),
    ("[precision.int4]\nmin_sqnr_db = 1\n", "[precision.X]"),
])
def test_bad_gate_files(tmp_path, text, needle):
    f = tmp_path / "g.toml"
    f.write_text(text)
    with pytest.raises(GateError, match=None) as e:
        read_gate_file(f)
    assert needle in str(e.value) and e.value.exit_code == 2


def test_tensor_scope_takes_the_last_fused_scope():
    known = {"n005_Conv": 5, "n006_Relu": 6, "n007_Conv": 7, "n008_HardSigmoid": 8}
    assert tensor_scope("n006_Relu/Relu;n005_Conv/Conv2D", known) == "n006_Relu"
    assert tensor_scope("n008_HardSigmoid/Relu6;n008_HardSigmoid/add;n007_Conv/Conv2D;1", known) == "n008_HardSigmoid"
    assert tensor_scope("serving_default_input:0", known) is None
    layers = [{"scope": s, "outputs": [f"{s}_out"], "op_type": s.split("_")[1]} for s in known]
    ops = [  # a PAD of n005 whose conv is fused under n006's Relu; hard-sigmoid in three ops
        {"op_index": 0, "op_name": "PAD", "tensor": 10, "name": "n005_Conv/Pad"},
        {"op_index": 1, "op_name": "CONV_2D", "tensor": 11, "name": "n006_Relu/Relu;n005_Conv/Conv2D"},
        {"op_index": 2, "op_name": "CONV_2D", "tensor": 12, "name": "n008_HardSigmoid/Relu6;n007_Conv/Conv2D"},
        {"op_index": 3, "op_name": "MUL", "tensor": 13, "name": "n008_HardSigmoid/mul"},
    ]
    rows = map_tensors(ops, layers, {f"{s}_out" for s in known})
    assert [(r["layer"]["scope"], r["tflite"]["tensor"]) for r in rows] == [("n006_Relu", 11), ("n008_HardSigmoid", 13)]


def test_junit_has_one_testcase_per_check():
    checks = [Check("min_sqnr_db", 20.0, 25.0, True), Check("max_rel_error", 1e-4, 0.3, False, description="err"),
              Check("max_top1_drop_pp", 0.7, None, True, skipped="no labels")]
    cases = gate_cases(checks, model="m", precision="int8")
    root = ET.fromstring(to_junit(cases, suite="mobile-export validate m int8").split("?>", 1)[1])
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["min_sqnr_db", "max_rel_error", "max_top1_drop_pp"]
    assert cases[1].find("failure").get("message") == "measured 0.3, allowed <= 0.0001"
    assert cases[2].find("skipped") is not None and root.find("testsuite").get("failures") == "1"


# ---------------------------------------------------------------- end to end (slow)

def _copy_artifact(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("model.tflite", "model.onnx", "manifest.json"):
        shutil.copy(src / name, dst / name)
    return dst / "model.tflite"


def _rewrite_manifest(tflite: Path, **changes) -> None:
    mpath = tflite.parent / "manifest.json"
    m = json.loads(mpath.read_text())
    m.update(changes)
    mpath.write_text(json.dumps(m))


def _validate(args, capsys):
    code = main(["validate", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """fp32 (exported with --gate, so the export hook runs the validator) and int8 siblings at 96×96."""
    from mobile_export.api import export

    root = tmp_path_factory.mktemp("dist")
    gate = root / "gate.toml"
    gate.write_text(GATE)
    fp32 = export(MODEL, precision="fp32", input_size=96, out_dir=root / "out", gate=str(gate))
    int8 = export(MODEL, precision="int8", input_size=96, out_dir=root / "out", num_calibration=32)
    return SimpleNamespace(root=root, gate=gate, fp32=fp32, int8=int8)


@pytest.fixture(scope="module")
def healthy_int8(dist):
    """The correct int8 artifact through the CLI: exit code and report."""
    junit = dist.root / "int8-junit.xml"
    code = main(["validate", str(dist.int8.tflite_path), "--reference", MODEL, "--gate", str(dist.gate),
                 "--junit", str(junit), "--out", str(dist.root / "int8-validation")])
    rep = json.loads((dist.root / "int8-validation" / "report.json").read_text())
    return SimpleNamespace(code=code, report=rep, junit=junit, out=dist.root / "int8-validation")


def test_export_gate_and_fp32_pass(dist, capsys, tmp_path):
    """export --gate is the same check with the gate file's thresholds (and the XNNPACK contract)."""
    g = dist.fp32.report.gate
    assert dist.fp32.passed, [c.sentence() for c in g.failures]
    assert g.source.startswith("gate file") and dist.fp32.report.data.count == 16
    assert {c.name for c in g.checks} == {"max_rel_error", "min_sqnr_db", "min_top1_agreement", "min_cosine",
                                          "max_latency_ratio", "max_xnnpack_partitions", "max_ops_outside_xnnpack"}
    assert (dist.fp32.out_dir / "report.html").is_file()
    junit = tmp_path / "j.xml"
    code, out, _ = _validate([dist.fp32.tflite_path, "--reference", MODEL, "--gate", dist.gate, "--junit", junit,
                              "--out", tmp_path / "rep"], capsys)
    assert code == 0, out
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["schema_version"] == 2 and rep["passed"] and rep["per_layer"]["first_divergence"] is None
    assert rep["fidelity"]["onnxruntime_vs_torch"]["max_rel"] < 1e-4  # the rebuilt reference is the exported one
    assert rep["per_layer"]["compared"] > 50
    cases = ET.parse(junit).getroot().findall("./testsuite/testcase")
    assert sorted(c.get("name") for c in cases) == sorted(c["name"] for c in rep["gate"]["checks"])
    assert not any(c.find("failure") is not None for c in cases)


@pytest.mark.slow
def test_int8_passes_with_reports(healthy_int8, dist):
    rep = healthy_int8.report
    assert healthy_int8.code == 0, [c for c in rep["gate"]["checks"] if not c["passed"]]
    assert rep["precision"] == "int8" and rep["data"]["count"] == 16
    assert rep["gate"]["latency_ratio_vs"] == "tflite_vs_tflite_fp32"  # the fp32 sibling was timed
    assert set(rep["latency"]["runtimes"]) == {"tflite", "onnxruntime", "torch", "tflite_fp32"}
    skipped = [c for c in rep["gate"]["checks"] if c["skipped"]]
    assert [c["name"] for c in skipped] == ["max_top1_drop_pp"]  # unlabelled default data
    cases = ET.parse(healthy_int8.junit).getroot().findall("./testsuite/testcase")
    assert len(cases) == len(rep["gate"]["checks"]) == 5 + 3  # the gate file's and the XNNPACK contract (int8: 3)
    assert sum(c.find("skipped") is not None for c in cases) == 1
    md = (healthy_int8.out / "report.md").read_text()
    assert "## Gate" in md and "## Per layer" in md and "## Latency" in md


@pytest.mark.slow
def test_html_report_is_one_file_with_plots(healthy_int8):
    text = (healthy_int8.out / "report.html").read_text()

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.imgs, self.stack = [], []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs)["src"])

    p = P()
    p.feed(text)
    assert len(p.imgs) >= 2  # per-layer, latency (+ flips when any)
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in text and "https://" not in text  # nothing to fetch


REQUANTIZING = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "MEAN", "FULLY_CONNECTED"}


def _consumers(model: bytes, tensor_name: str) -> set[str]:
    from mobile_export.runtimes.host import TFLiteModel

    interp = TFLiteModel(model, xnnpack=False).interp
    index = next(d["index"] for d in interp.get_tensor_details() if d["name"] == tensor_name)
    return {op["op_name"] for op in interp._get_ops_details() if index in [int(i) for i in op["inputs"]]}


def _target_row(report: dict, precision: str, accept=lambda row: True) -> dict:
    """A CONV_2D layer well inside the tolerance, before the correct model's first divergence."""
    pl = report["per_layer"]
    limit = pl["first_divergence"]["position"] if pl["first_divergence"] else 10 ** 9
    if precision == "int8":
        good = [e for e in pl["layers"] if e.get("sqnr_db", -1) >= pl["tolerance"]["value"] + 4]
    else:
        good = [e for e in pl["layers"] if e.get("max_rel", 1) < pl["tolerance"]["value"] / 10]
    rows = [e for e in good if e["tflite_op"] == "CONV_2D" and 0 < e["position"] < limit and accept(e)]
    assert rows, "no CONV_2D layer to break"
    # int8: the earliest such layer, so the damage propagates through the whole network and the
    # (deliberately loose, untrained-model) int8 gate fails however good the healthy int8 model is.
    return rows[0] if precision == "int8" else rows[len(rows) // 2]


def _op_of(model: bytes, tensor_name: str) -> dict:
    from mobile_export.runtimes.host import TFLiteModel

    interp = TFLiteModel(model, xnnpack=False).interp
    names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    return next(op for op in interp._get_ops_details() if names[int(op["outputs"][0])] == tensor_name)


def _broken_copy(src_tflite: Path, dst: Path, patch) -> Path:
    tfl = _copy_artifact(src_tflite.parent, dst)
    data = patch(tfl.read_bytes())
    tfl.write_bytes(data)
    _rewrite_manifest(tfl, tflite_sha256=artifacts.sha256_bytes(data))  # a consistent, but wrong, artifact
    return tfl


@pytest.mark.slow
@pytest.mark.parametrize("breakage", ["fp32-weights", "int8-weights", "int8-zero-point"])
def test_broken_artifact_fails_and_names_the_layer(breakage, dist, healthy_int8, capsys, tmp_path):
    from tflite_patch import negate_weights, set_zero_point

    precision = breakage.split("-")[0]
    src = dist.fp32 if precision == "fp32" else dist.int8
    if precision == "fp32":
        healthy = json.loads((src.out_dir / "report.json").read_text())
    else:
        healthy = healthy_int8.report
    model = src.tflite_path.read_bytes()
    # A wrong zero point is only a silent error where every consumer requantizes its input
    # (PAD, RESHAPE ... must share their input's quantization: XNNPACK refuses them, exit 2).
    accept = (lambda e: True) if breakage.endswith("weights") else (
        lambda e: _consumers(model, e["tflite_tensor"]) <= REQUANTIZING)
    row = _target_row(healthy, precision, accept)
    op = _op_of(model, row["tflite_tensor"])
    if breakage.endswith("weights"):
        patch = lambda b: negate_weights(b, int(op["inputs"][1]))  # noqa: E731
    else:
        patch = lambda b: set_zero_point(b, int(op["outputs"][0]), 127)  # noqa: E731  (was -128/near 0)
    tfl = _broken_copy(src.tflite_path, tmp_path / MODEL / precision, patch)
    junit = tmp_path / "j.xml"
    code, out, err = _validate([tfl, "--reference", MODEL, "--gate", dist.gate, "--junit", junit,
                                "--latency-runs", "0"], capsys)
    assert code == 1, out + err
    assert out.startswith("FAILED "), out  # failing checks first, measured vs allowed
    assert "measured" in out.splitlines()[0] and "allowed" in out.splitlines()[0]
    rep = json.loads((tfl.parent / "validation" / "report.json").read_text())
    first = rep["per_layer"]["first_divergence"]
    assert first is not None and first["scope"] == row["scope"], (first, row)
    assert f"first divergent layer: {row['scope']}" in out and row["module"] in out
    assert row["scope"] in (tfl.parent / "validation" / "report.md").read_text()
    failures = ET.parse(junit).getroot().findall("./testsuite/testcase/failure")
    assert failures and all("allowed" in f.get("message") for f in failures)


@pytest.mark.slow
def test_labelled_npz_gives_accuracy_ci_mcnemar_and_flips(dist, capsys, tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "labelled.npz"
    np.savez(npz, inputs=rng.integers(0, 256, (24, 96, 96, 3), dtype=np.uint8),
             labels=rng.integers(0, 1000, 24))
    code, out, _ = _validate([dist.int8.tflite_path, "--reference", MODEL, "--data", npz, "--max-top1-drop", "100",
                              "--latency-runs", "0", "--out", tmp_path / "rep"], capsys)
    assert code == 0, out
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    acc = rep["accuracy"]
    assert acc["samples"] == 24 and 0 <= acc["mcnemar"]["p_value"] <= 1
    d = acc["top1_drop"]
    assert d["ci_low_pp"] <= d["drop_pp"] <= d["ci_high_pp"]
    assert d["drop_pp"] == pytest.approx(100 * (acc["torch"]["top1"] - acc["tflite"]["top1"]))
    assert [c["name"] for c in rep["gate"]["checks"]] == ["max_top1_drop_pp", "max_xnnpack_partitions",
                                                          "max_ops_outside_xnnpack", "max_float_ops"]
    assert not rep["gate"]["checks"][0]["skipped"]
    for s in rep["flips"]["samples"]:
        assert s["file"] == f"row {s['file'].split()[1]}" and "label" in s and s["torch_top1"] != s["tflite_top1"]
    assert "drop (PyTorch − TFLite)" in out or "drop" in out


# ---------------------------------------------------------------- bad input → exit 2, one sentence

@pytest.fixture
def fp32_copy(dist, tmp_path):
    return _copy_artifact(dist.fp32.out_dir, tmp_path / "a")


@pytest.mark.slow
@pytest.mark.parametrize("case, needle", [
    ("not-tflite", "TFL3"),
    ("truncated", "truncated"),
    ("no-manifest", "manifest.json"),
    ("sha-mismatch", "tflite_sha256"),
    ("input-shape", "input"),
    ("labels-count", "labels"),
    ("reference", "--reference mobilenet_v3_small"),
    ("gate-missing", "gate file"),
    ("gate-unknown-key", "unknown key 'max_speed'"),
    ("data-classes", "10 classes but the model has 1000"),
    ("data-missing", "--data"),
    ("out-is-a-file", "--out"),
    ("junit-is-a-dir", "--junit"),
])
def test_bad_input_exits_2_with_one_sentence(case, needle, fp32_copy, capsys, tmp_path, monkeypatch):
    tfl, args = fp32_copy, ["--reference", MODEL]
    if case == "not-tflite":
        tfl.write_bytes(b"this is not a flatbuffer at all")
    elif case == "truncated":
        tfl.write_bytes(tfl.read_bytes()[: tfl.stat().st_size // 2])
    elif case == "no-manifest":
        (tfl.parent / "manifest.json").unlink()
    elif case == "sha-mismatch":
        _rewrite_manifest(tfl, tflite_sha256="0" * 64)
    elif case == "input-shape":
        m = json.loads((tfl.parent / "manifest.json").read_text())
        _rewrite_manifest(tfl, inputs=[{**m["inputs"][0], "shape": [1, 224, 224, 3]}])
    elif case == "labels-count":
        _rewrite_manifest(tfl, labels=["cat", "dog"])
    elif case == "reference":
        args = ["--reference", "mobilenet_v2"]
    elif case == "gate-missing":
        args += ["--gate", tmp_path / "nope.toml"]
    elif case == "gate-unknown-key":
        (tmp_path / "g.toml").write_text("max_speed = 3\n")
        args += ["--gate", tmp_path / "g.toml"]
    elif case == "data-classes":
        args += ["--data", "cifar10-default", "--num", "8", "--latency-runs", "0"]
    elif case == "data-missing":
        args += ["--data", tmp_path / "no-such-folder"]
    elif case == "out-is-a-file":
        (tmp_path / "f").write_text("x")
        args += ["--out", tmp_path / "f" / "reports"]
    elif case == "junit-is-a-dir":
        args += ["--junit", tmp_path]
    if case in ("data-missing", "out-is-a-file", "junit-is-a-dir"):  # caught before the reference is built
        def boom(*a, **k):
            raise AssertionError("not caught early")
        monkeypatch.setattr("mobile_export.reference.build_reference", boom)
    code, out, err = _validate([tfl, *args], capsys)
    assert code == 2, out + err
    assert needle in _error_line(err)
    assert not (tfl.parent / "validation").exists()


def test_export_with_bad_gate_fails_before_converting(capsys, tmp_path):
    (tmp_path / "g.toml").write_text("[models.x]\nmax_nope = 1\n")
    code = main([MODEL, "--gate", str(tmp_path / "g.toml"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "unknown key 'models.x.max_nope'" in _error_line(capsys.readouterr().err)
    assert not (tmp_path / "o" / MODEL).exists()
