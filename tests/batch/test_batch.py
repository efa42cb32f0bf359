"""``mobile-export batch``: matrix files checked before anything runs, the same cells serial and on a
local Ray (same table, byte-identical artifacts), failures as rows, retries of killed workers,
--resume, and an interrupted run's partial table."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from mobile_export.batch import load_matrix, run_batch
from mobile_export.batch.cell import run_cell
from mobile_export.cli import main

FOUR = """
models = ["squeezenet1_1", "mobilenet_v1_x0_5"]
precisions = ["fp32", "int8"]
weights = "cifar10"
data = "cifar10"
num = 100
num_calibration = 32
latency_runs = 0
"""


def _matrix(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --- the matrix file -------------------------------------------------------------------------

def test_cells_are_the_product_with_per_model_overrides(tmp_path):
    (tmp_path / "calib").mkdir()
    m = load_matrix(_matrix(tmp_path, """
models = ["mobilenet_v3_*", "squeezenet1_1"]
precisions = ["fp32", "int8"]
input_sizes = [96, 128]
calibration = "calib"
[model."mobilenet_v3_large"]
precisions = ["int8"]
input_sizes = [224]
"""))
    ids = [c.id for c in m.cells]
    assert ids == ["mobilenet_v3_large/int8-224", "mobilenet_v3_small/fp32-96", "mobilenet_v3_small/fp32-128",
                   "mobilenet_v3_small/int8-96", "mobilenet_v3_small/int8-128", "squeezenet1_1/fp32-96",
                   "squeezenet1_1/fp32-128", "squeezenet1_1/int8-96", "squeezenet1_1/int8-128"]
    c = m.cells[3]
    assert c.calibration == str(tmp_path / "calib") and c.spec()["calibration"] == "calib"
    assert c.export_options().calibration == str(tmp_path / "calib")
    assert m.cells[1].export_options().calibration is None  # float cells do not calibrate


@pytest.mark.parametrize("text,needle", [
    ('models = ["mobilenet_v9"]', "'mobilenet_v9' matches no registered model"),
    ('models = ["squeezenet1_1"]\nprecision = ["fp32"]', "unknown key 'precision'"),
    ('models = ["squeezenet1_1"]\nprecisions = ["int4"]', "cell squeezenet1_1/int4: precision must be one of"),
    ('models = ["squeezenet1_1"]\ndata = "nope/"', "cell squeezenet1_1/fp32: data nope/ does not exist"),
    ('models = ["squeezenet1_0"]\nweights = "cifar10"', "cell squeezenet1_0/fp32: weights cifar10 does not exist"),
    ('models = ["squeezenet1_1"]\ndata = "${ME_TEST_UNSET}/x"', "${ME_TEST_UNSET}, which is not set"),
    ('models = ["squeezenet1_1"]\nnum = "many"', "'num' must be int"),
    ('models = ["squeezenet1_1"]\ninput_sizes = [8]', "cell squeezenet1_1/fp32-8:"),
    ('models = ["squeezenet1_1"]\nprecisions = ["fp32", "fp32"]', "appears twice"),
    ('models = [', "is not valid TOML"),
    ('precisions = ["fp32"]', "no 'models' list"),
    ('models = ["squeezenet1_1"]\n[model."resnet*"]\nnum = 3', "[model.\"resnet*\"]: 'resnet*' matches no"),
])
def test_bad_matrix_is_one_sentence_exit_2(tmp_path, capsys, text, needle):
    code = main(["batch", str(_matrix(tmp_path, text)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_missing_matrix_file_exit_2(tmp_path, capsys):
    assert main(["batch", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_core_export_does_not_import_ray():
    import subprocess

    code = "import sys, mobile_export.api, mobile_export.cli; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- running it --------------------------------------------------------------------------------

def _table(out: Path) -> list[tuple]:
    rows = json.loads((out / "batch.json").read_text())["rows"]
    return [(r["id"], r["status"], r["tflite_top1"], r["drop"]["drop_pp"], r["partitions"], r["outside"],
             round(r["sqnr_db"], 0)) for r in rows]


@pytest.mark.slow
def test_serial_and_local_ray_give_the_same_table_and_bytes(tmp_path):
    m = load_matrix(_matrix(tmp_path, FOUR))
    serial = run_batch(m, tmp_path / "serial", serial=True)
    ray_res = run_batch(m, tmp_path / "ray", num_cpus=2)
    assert serial.exit_code == ray_res.exit_code == 0, (serial.rows, ray_res.rows)
    assert _table(tmp_path / "serial") == _table(tmp_path / "ray")
    assert len(ray_res.rows) == 4
    for cell in m.cells:
        for f in ("model.tflite", "manifest.json"):
            assert (tmp_path / "serial" / cell.id / f).read_bytes() == (tmp_path / "ray" / cell.id / f).read_bytes()
        assert (tmp_path / "ray" / cell.id / "validation" / "report.json").is_file()
    for f in ("batch.md", "batch.html", "junit.xml"):
        assert (tmp_path / "ray" / f).is_file()
    junit = (tmp_path / "ray" / "junit.xml").read_text()
    assert junit.count("<testcase") == 4 and "<failure" not in junit
    # --resume: every cell matches, nothing runs again
    again = run_batch(m, tmp_path / "serial", serial=True, resume=True, cell_fn=_must_not_run)
    assert [r.get("resumed") for r in again.rows] == [True] * 4 and again.exit_code == 0


def _must_not_run(cell, blobs):
    raise AssertionError(f"--resume ran {cell.id} again")


def _crash_first_attempt(cell, blobs):
    """Kills its worker process on the first attempt of each cell (a lost worker), then runs it."""
    marker = Path(os.environ["ME_BATCH_TEST_DIR"]) / (cell.id.replace("/", "_") + ".attempts")
    with open(marker, "a") as f:
        f.write("x")
    if marker.read_text() == "x" and cell.precision == "fp32":
        os._exit(1)
    return run_cell(cell, blobs)


@pytest.mark.slow
def test_failing_cell_is_a_row_and_killed_worker_is_retried(tmp_path, monkeypatch):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    monkeypatch.setenv("ME_BATCH_TEST_DIR", str(tmp_path))
    m = load_matrix(_matrix(tmp_path, """
models = ["squeezenet1_1", "mobilenet_v1_x0_5"]
precisions = ["fp32"]
weights = "cifar10"
data = "cifar10"
num = 50
latency_runs = 0
[model."mobilenet_v1_x0_5"]
weights = "bad.pt"
"""))
    res = run_batch(m, tmp_path / "out", num_cpus=2, cell_fn=_crash_first_attempt)
    ok, bad = res.rows
    attempts = {c.model: tmp_path / (c.id.replace("/", "_") + ".attempts") for c in m.cells}
    assert ok["status"] == "pass" and attempts["squeezenet1_1"].read_text() == "xx"
    assert bad["status"] == "error" and "not a plain state_dict" in bad["error"], bad
    assert "bad.pt" in bad["error"]
    # a path as weights: the model's default input size (224); crashed, then raised: 2 attempts
    assert m.cells[1].input_size == 224 and attempts["mobilenet_v1_x0_5"].read_text() == "xx"
    assert res.exit_code == 2  # a bad input, not a gate failure
    md = (tmp_path / "out" / "batch.md").read_text()
    assert "ERROR:" in md and (tmp_path / "out" / m.cells[0].id / "model.tflite").is_file()


def _interrupt_second(cell, blobs):
    if cell.precision == "int8":
        raise KeyboardInterrupt
    return run_cell(cell, blobs)


@pytest.mark.slow
def test_interrupt_writes_the_partial_table_marked_incomplete(tmp_path):
    m = load_matrix(_matrix(tmp_path, FOUR.replace('"mobilenet_v1_x0_5"', "")
                            .replace('["squeezenet1_1", ]', '["squeezenet1_1"]')))
    res = run_batch(m, tmp_path / "out", serial=True, cell_fn=_interrupt_second)
    assert not res.complete and res.exit_code == 130
    doc = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert doc["complete"] is False and [r["status"] for r in doc["rows"]] == ["pass", "cancelled"]
    assert "INCOMPLETE" in (tmp_path / "out" / "batch.md").read_text()
    assert (tmp_path / "out" / m.cells[0].id / "model.tflite").is_file()


def test_table_names_failed_and_errored_cells(tmp_path):
    from mobile_export.batch import table
    from mobile_export.batch.runner import BatchResult

    m = load_matrix(_matrix(tmp_path, 'models = ["squeezenet1_1", "mobilenet_v1_x0_5"]\nprecisions = ["int8"]'
                                      '\nweights = "cifar10"'))
    drop = {"drop_pp": 0.5, "ci_low_pp": 0.2, "ci_high_pp": 0.8}
    fail = {"id": m.cells[0].id, "status": "fail", "samples": 100, "torch_top1": 0.7, "tflite_top1": 0.695,
            "drop": drop, "sqnr_db": 30.0, "top1_agreement": 0.98, "partitions": 1, "outside": 0,
            "latency_ms": 0.5, "failed": ["max_top1_drop_pp: measured 0.5, allowed <= 0.3"], "seconds": {"export": 1}}
    err = {"id": m.cells[1].id, "status": "error", "error": "WeightsError: bad file", "exit_code": 2}
    res = BatchResult(tmp_path / "out", [fail, err], seconds=3.0)
    assert res.exit_code == 2
    table.write_all(res, m)
    md = (tmp_path / "out" / "batch.md").read_text()
    assert f"| {m.cells[0].id} | 100 | 70.00% | 69.50% | +0.50 pp (+0.20 .. +0.80) | 30.0 dB |" in md
    assert "**FAIL**" in md and "ERROR: WeightsError: bad file" in md
    assert f"- {m.cells[0].id}: max_top1_drop_pp: measured 0.5" in md
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert junit.count("<testcase") == 2 and junit.count("<failure") == 2
    assert "<img" in (tmp_path / "out" / "batch.html").read_text()
    assert json.loads((tmp_path / "out" / "batch.json").read_text())["exit_code"] == 2
    assert BatchResult(tmp_path, [fail]).exit_code == 1 and BatchResult(tmp_path, [], complete=False).exit_code == 130


def _refuse(cell, blobs):
    raise ValueError("not run in this test")


def test_quiet_batch_draws_no_progress_bar(tmp_path, capsys):
    m = load_matrix(_matrix(tmp_path, 'models = ["squeezenet1_1"]\nprecisions = ["fp32", "int8"]'))
    run_batch(m, tmp_path / "a", serial=True, progress=False, cell_fn=_refuse)
    assert "batch (serial)" not in capsys.readouterr().err
    run_batch(m, tmp_path / "b", serial=True, cell_fn=_refuse)
    assert "batch (serial)" in capsys.readouterr().err
