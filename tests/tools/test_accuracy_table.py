"""tools/accuracy_table.py, the CI accuracy table of issue 8: the table, JUnit and exit codes."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest


@pytest.fixture(scope="module")
def table(tool):
    return tool("accuracy_table")


def _row(model, drop_pp, passed):
    def prec(torch_top1, tfl_top1, ok, fails=()):
        return {"torch_top1": torch_top1, "tflite_top1": tfl_top1, "samples": 5000, "sqnr_db": 30.0,
                "top1_agreement": 0.99, "passed": ok, "export_s": 1.0, "validate_s": 2.0,
                "drop": {"drop_pp": (torch_top1 - tfl_top1) * 100, "ci_low_pp": drop_pp - 0.3, "ci_high_pp": drop_pp + 0.3},
                "checks": [{"name": "max_top1_drop_pp", "passed": ok, "skipped": None,
                            "sentence": f"max_top1_drop_pp: measured {drop_pp}, allowed <= 0.3" if not ok else "ok"}]}
    return {"model": model, "passed": passed, "fp32": prec(0.70, 0.70, True),
            "int8": prec(0.70, 0.70 - drop_pp / 100, passed)}


def test_markdown_and_junit_name_the_failing_model(table):
    rows = [_row("mobilenet_v2", 0.1, True), _row("shufflenet_v2_x1_0", 0.5, False),
            {"model": "squeezenet1_1", "error": "the archive is unreadable", "passed": False}]
    md = table.markdown(rows, "test data")
    assert "| mobilenet_v2 | 5000 | 70.00% | 70.00% | 69.90% | +0.10 pp (-0.20 .. +0.40) | ≤ 0.3 pp | 30.0 dB | pass |" in md
    assert "| shufflenet_v2_x1_0 |" in md and "**FAIL**" in md
    assert "- shufflenet_v2_x1_0 int8: max_top1_drop_pp: measured 0.5, allowed <= 0.3" in md
    assert "ERROR: the archive is unreadable" in md
    root = ET.fromstring(table.junit(rows, 12.0).split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite.get("tests") == "6" and suite.get("failures") == "3"
    failed = {(c.get("classname"), c.get("name")) for c in suite.iter("testcase") if c.find("failure") is not None}
    assert failed == {("accuracy.shufflenet_v2_x1_0", "int8"), ("accuracy.squeezenet1_1", "fp32"),
                      ("accuracy.squeezenet1_1", "int8")}


def test_gate_file_sets_the_issue_limits(table):
    assert table.gate_of("mobilenet_v2") == 0.3
    assert table.gate_of("shufflenet_v2_x1_0") == 0.3
    assert table.gate_of("mobilenet_v3_small") == 0.7


def test_unknown_model_is_exit_2(table, tmp_path, capsys):
    assert table.main(["--out", str(tmp_path), "--models", "resnet50"]) == 2
    assert "no shipped cifar10 weights for resnet50" in capsys.readouterr().err
    assert not (tmp_path / "accuracy.md").exists()


@pytest.mark.slow
def test_one_model_end_to_end_on_the_shipped_holdout(table, tmp_path):
    """Without the archive the table falls back to the 1,000 shipped held-out images; every output
    is written and the exit code follows the gate."""
    code = table.main(["--out", str(tmp_path), "--models", "squeezenet1_1", "--data", str(tmp_path / "none.tar.gz")])
    rep = json.loads((tmp_path / "accuracy.json").read_text())
    row = rep["rows"][0]
    assert rep["source"].startswith("1,000 shipped held-out images")
    assert row["fp32"]["samples"] == 1000 and row["int8"]["samples"] == 1000
    assert row["fp32"]["torch_top1"] == row["fp32"]["tflite_top1"]  # fp32 TFLite classifies like PyTorch
    assert 0.5 < row["int8"]["tflite_top1"] < 1.0
    assert code == (0 if row["passed"] else 1)
    assert "| squeezenet1_1 | 1000 |" in (tmp_path / "accuracy.md").read_text()
    assert ET.parse(tmp_path / "junit.xml").getroot().find("testsuite").get("tests") == "2"
