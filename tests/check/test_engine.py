"""The check engine behind export and validate: each runtime opened once per command and shared,
and the two front doors giving the same figures for the same artifact and data."""
from __future__ import annotations

import hashlib
from collections import Counter

import pytest

import mobile_export.runtimes.host as host
from mobile_export.api import export, validate
from mobile_export.cli import main

MODEL = "mobilenet_v3_small"


@pytest.fixture
def opened(monkeypatch):
    """Counts LiteRT interpreters per model content and onnxruntime sessions per (graph, threads)."""
    import onnxruntime as ort

    counts = {"tflite": Counter(), "ort": Counter()}
    real_interp, real_session = host.make_interpreter, ort.InferenceSession

    def interp(model, **kw):
        counts["tflite"][hashlib.sha256(model).hexdigest()] += 1
        return real_interp(model, **kw)

    def session(data, opts=None, **kw):
        counts["ort"][(hashlib.sha256(data).hexdigest(), opts.intra_op_num_threads)] += 1
        return real_session(data, opts, **kw)

    monkeypatch.setattr(host, "make_interpreter", interp)
    monkeypatch.setattr(ort, "InferenceSession", session)
    return counts


@pytest.mark.slow
def test_int8_export_then_validate_open_each_runtime_once(tmp_path, opened):
    res = export(MODEL, precision="int8", input_size=64, out_dir=tmp_path, num_calibration=32, search=False)
    final = hashlib.sha256(res.tflite_path.read_bytes()).hexdigest()
    assert opened["tflite"][final] <= 3, opened["tflite"][final]  # plain + XNNPACK at 1 and 2 threads
    assert max(opened["ort"].values()) == 1, opened["ort"]  # one session per graph and thread count
    opened["tflite"].clear()
    opened["ort"].clear()
    v = validate(res.tflite_path, reference=MODEL, num=16, latency_runs=3)
    assert opened["tflite"][final] <= 3, opened["tflite"][final]
    assert max(opened["ort"].values()) == 1, opened["ort"]
    # the same engine: export's and validate's reports have the same sections and figures' meaning
    assert set(v.report.to_json()) == set(res.report.to_json())
    assert v.report.graph == res.report.graph


def test_cli_reads_typed_reports_not_dict_keys():
    from pathlib import Path

    import mobile_export.cli as cli

    assert '["' not in Path(cli.__file__).read_text()


def test_export_fp32_cli_prints_the_bar_it_applied(tmp_path, capsys):
    code = main([MODEL, "--input-size", "64", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "default bar for fp32" in out and out.rstrip().endswith("PASS")
