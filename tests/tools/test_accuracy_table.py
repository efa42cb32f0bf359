"""The CI accuracy table (issues 8 and 19): tools/ci_accuracy.toml run by `mobile-export batch`,
its data folders from tools/accuracy_table.py, the gate and exit codes."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from pathlib import Path


@pytest.fixture(scope="module")
def table(tool):
    return tool("accuracy_table")


def test_ci_matrix_covers_every_shipped_checkpoint(table, tmp_path, monkeypatch):
    from mobile_export.batch import load_matrix
    from mobile_export.models import get_spec, list_models

    (tmp_path / "holdout").mkdir()
    (tmp_path / "calibration").mkdir()
    monkeypatch.setenv(table.DATA_ENV, str(tmp_path))
    m = load_matrix(table.MATRIX)
    shipped = {n for n in list_models() if "cifar10" in get_spec(n).weights}
    assert {(c.model, c.precision) for c in m.cells} == {(n, p) for n in shipped for p in ("fp32", "int8")}
    for c in m.cells:
        assert c.weights == "cifar10" and c.num == 5000 and c.gate.endswith("accuracy_gate.toml")
        assert c.data == str(tmp_path / "holdout")
        assert c.export_options().calibration == (str(tmp_path / "calibration") if c.precision == "int8" else None)


def test_gate_file_sets_the_issue_limits():
    from mobile_export.check import gate as gates

    g = gates.read_gate_file(Path(__file__).parents[2] / "tools" / "accuracy_gate.toml")
    drop = {n: gates.thresholds_for(g, None, n, "int8")[0]["max_top1_drop_pp"]
            for n in ("mobilenet_v2", "shufflenet_v2_x1_0", "mobilenet_v3_small", "mobilenet_v3_large",
                      "efficientnet_b0", "ghostnet_1_0")}
    assert drop == {"mobilenet_v2": 0.3, "shufflenet_v2_x1_0": 0.3, "mobilenet_v3_small": 0.7,
                    "mobilenet_v3_large": 0.7, "efficientnet_b0": 0.7, "ghostnet_1_0": 0.3}


def test_prepare_writes_lossless_image_folders(table, tmp_path):
    split = table.shipped_split()
    folder = table.prepare(split, tmp_path / "data")
    pngs = sorted((folder / "holdout").rglob("*.png"))
    assert len(pngs) == 1000 and len(list((folder / "calibration").glob("*.png"))) == table.CALIBRATION
    first = split["images"][0]
    cls = split["class_names"][int(split["labels"][0])]
    got = np.asarray(Image.open(folder / "holdout" / cls / (Path(str(split["files"][0])).stem + ".png")))
    assert np.array_equal(got, first)
    assert table.prepare(split, tmp_path / "data") == folder  # reused, not rewritten


def test_unknown_model_is_exit_2(table, tmp_path, capsys):
    assert table.main(["--out", str(tmp_path / "o"), "--models", "resnet50",
                       "--data", str(tmp_path / "none.tar.gz")]) == 2
    assert "resnet50 not in ci_accuracy.toml" in capsys.readouterr().err
    assert not (tmp_path / "o" / "batch.md").exists()


@pytest.mark.slow
def test_one_model_end_to_end_on_the_shipped_holdout(table, tmp_path):
    """Without the archive the table falls back to the 1,000 shipped held-out images; every output
    is written and the exit code follows the gate."""
    code = table.main(["--out", str(tmp_path), "--models", "squeezenet1_1", "--data", str(tmp_path / "none.tar.gz"),
                       "--serial"])
    rep = json.loads((tmp_path / "batch.json").read_text())
    fp32, int8 = rep["rows"]
    assert fp32["samples"] == 1000 and int8["samples"] == 1000
    assert fp32["torch_top1"] == fp32["tflite_top1"]  # fp32 TFLite classifies like PyTorch
    assert 0.5 < int8["tflite_top1"] < 1.0
    assert code == (0 if fp32["status"] == int8["status"] == "pass" else 1)
    assert f"| {int8['id']} | 1000 |" in (tmp_path / "batch.md").read_text() and int8["id"].startswith("squeezenet1_1/int8-")
    assert ET.parse(tmp_path / "junit.xml").getroot().find("testsuite").get("tests") == "2"
