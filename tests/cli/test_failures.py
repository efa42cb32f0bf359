"""Every failure says what it is (issue 17): internal errors exit 3 with a log file, bad input is caught
before any conversion, options that do not apply exit 2, artifacts follow the umask, concurrent
writers both succeed, killed runs' leftovers are removed, and messages name the right flag."""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from mobile_export import api, artifacts
from mobile_export.cli import main
from mobile_export.errors import INTERNAL_ERROR_EXIT, CalibrationError, InvalidOptionError, WeightsError
from mobile_export.options import ExportOptions


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def no_conversion(monkeypatch):
    """Fail the test if the export gets as far as building the reference."""
    def boom(*a, **k):
        raise AssertionError("the bad input was not caught before the conversion started")
    monkeypatch.setattr("mobile_export.reference.build_reference", boom)


def test_an_internal_error_exits_3_with_one_line_and_the_traceback_in_a_log(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MOBILE_EXPORT_CACHE", str(tmp_path / "cache"))

    def broken(*a, **k):
        raise IndexError("list index out of range")
    monkeypatch.setattr(api, "export", broken)
    code, _, err = run(["mobilenet_v2", "--out", str(tmp_path)], capsys)
    assert code == INTERNAL_ERROR_EXIT == 3
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "internal error (IndexError" in lines[0] and "not a fidelity failure" in lines[0]
    log = Path(lines[0].split("the traceback is in ")[1].split(" (please")[0])
    assert log.is_file() and "Traceback" in log.read_text() and "broken" in log.read_text()


def test_a_text_file_as_weights_is_a_weights_error(tmp_path):
    from mobile_export.models import read_state_dict

    p = tmp_path / "w.txt"
    p.write_text("hello world\n")
    with pytest.raises(WeightsError, match="not a plain state_dict"):
        read_state_dict(p)


def test_weights_reasons_lose_colour_codes_and_are_cut_at_a_word():
    from mobile_export.models.weights import short_reason

    e = RuntimeError("\x1b[1mWeights only load failed.\x1b[0m " + "word " * 60 + "\nsecond line")
    r = short_reason(e)
    assert "\x1b" not in r and r.startswith("Weights only load failed.") and r.endswith("word…") and len(r) <= 161


def test_the_num_classes_hint_only_for_a_classifier_mismatch():
    from mobile_export.models import get_model, load_into

    model = get_model("mobilenet_v2", num_classes=10)
    sd = model.state_dict()
    bad_head = dict(sd, **{"classifier.1.weight": torch.zeros(5, 1280), "classifier.1.bias": torch.zeros(5)})
    with pytest.raises(WeightsError, match="--num-classes"):
        load_into(model, bad_head, "x")
    first = next(iter(sd))
    bad_stem = dict(sd, **{first: torch.zeros(32, 1, 3, 3)})
    with pytest.raises(WeightsError) as e:
        load_into(model, bad_stem, "x")
    assert "--num-classes" not in str(e.value)


def test_out_whose_model_folder_is_a_file_fails_before_converting(tmp_path, capsys, no_conversion):
    (tmp_path / "mobilenet_v2").write_text("in the way")
    code, _, err = run(["mobilenet_v2", "--out", str(tmp_path)], capsys)
    assert code == 2 and "is a file" in err and "--out" in err


def test_a_missing_calibration_path_fails_before_converting(tmp_path, capsys, no_conversion):
    code, _, err = run(["mobilenet_v2", "--int8", "--calibration", str(tmp_path / "nope"), "--out", str(tmp_path)],
                       capsys)
    assert code == 2 and "--calibration" in err and "does not exist" in err


@pytest.mark.parametrize("args, flag", [(["--io", "uint8"], "--io"), (["--calibration", "."], "--calibration"),
                                        (["--num-calibration", "16"], "--num-calibration"),
                                        (["--fp16", "--num-calibration", "16"], "--num-calibration")])
def test_int8_options_on_a_float_export_exit_2(tmp_path, capsys, no_conversion, args, flag):
    code, _, err = run(["mobilenet_v2", *args, "--out", str(tmp_path)], capsys)
    assert code == 2 and flag in err and "int8" in err


def test_io_with_pixel_input_and_softmax_with_int8_output_are_refused():
    with pytest.raises(InvalidOptionError, match="--input normalized"):
        ExportOptions(precision="int8", io_type="int8")
    with pytest.raises(InvalidOptionError, match="--softmax"):
        ExportOptions(precision="int8", input="normalized", io_type="int8", softmax=True)
    assert ExportOptions(precision="int8", input="normalized").io_type.value == "int8"
    assert ExportOptions(precision="int8").io_type.value == "float"  # pixels in, float scores out


def test_fewer_than_four_calibration_images_are_refused(tmp_path):
    from mobile_export.calibration import CalibrationSet
    from mobile_export.quantize.search import split_holdout

    one = CalibrationSet.build(np.zeros((1, 3, 8, 8), np.float32), source="one.npy", kind="npy", seed=0)
    with pytest.raises(CalibrationError, match="at least 4"):
        split_holdout(one)
    four = CalibrationSet.build(np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32),
                                source="four.npy", kind="npy", seed=0)
    fit, held = split_holdout(four)
    assert (fit.count, held.count) == (3, 1)
    with pytest.raises(InvalidOptionError, match="at least 4"):
        ExportOptions(precision="int8", num_calibration=1)


def test_artifacts_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        final = tmp_path / "m" / "int8"
        with artifacts.atomic_dir(final) as tmp:
            (tmp / "model.tflite").write_bytes(b"x")
            (tmp / "validation").mkdir()
            artifacts.write_text(tmp / "validation" / "junit.xml", "<x/>")
        assert stat.S_IMODE(final.stat().st_mode) == 0o755
        assert stat.S_IMODE((final / "model.tflite").stat().st_mode) == 0o644
        assert stat.S_IMODE((final / "validation").stat().st_mode) == 0o755
        assert stat.S_IMODE((final / "validation" / "junit.xml").stat().st_mode) == 0o644
        artifacts.write_text(tmp_path / "junit.xml", "<x/>")
        assert stat.S_IMODE((tmp_path / "junit.xml").stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_concurrent_writers_both_succeed_and_the_last_one_wins(tmp_path):
    final = tmp_path / "m" / "int8"
    barrier, errors = threading.Barrier(4), []

    def writer(i: int) -> None:
        try:
            for _ in range(20):
                with artifacts.atomic_dir(final) as tmp:
                    payload = os.urandom(64)
                    (tmp / "model.tflite").write_bytes(payload)
                    (tmp / "manifest.json").write_text(artifacts.sha256_bytes(payload))
                    barrier.wait(timeout=10)  # everybody reaches the swap at the same moment
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (final / "manifest.json").read_text() == artifacts.sha256_bytes((final / "model.tflite").read_bytes())
    assert sorted(p.name for p in final.parent.iterdir()) == ["int8"]


def test_a_killed_runs_leftovers_are_removed_by_the_next_run(tmp_path):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    final = tmp_path / "m" / "int8"
    final.parent.mkdir(parents=True)
    for kind in ("tmp", "old"):
        (final.parent / f".int8.{kind}-{dead.pid}-abc").mkdir()
    live = final.parent / f".int8.tmp-{os.getpid()}-live"
    live.mkdir()
    with artifacts.atomic_dir(final) as tmp:
        (tmp / "f").write_text("x")
    assert sorted(p.name for p in final.parent.iterdir()) == [live.name, "int8"]


def test_validate_data_errors_name_data_not_calibration(tmp_path):
    from mobile_export.calibration import load_calibration
    from mobile_export.models import configure

    config = configure("mobilenet_v2", num_classes=10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError) as e:
        load_calibration(tmp_path / "empty", config, flag="--data")
    assert "--data" in str(e.value) and "--calibration" not in str(e.value)


def test_the_default_set_is_not_announced_as_calibration(caplog):
    import logging

    from mobile_export.models import configure
    from mobile_export.reference import check_inputs

    with caplog.at_level(logging.INFO):
        check_inputs(configure("mobilenet_v2", num_classes=10), 4, 0)
    assert "calibrated on the embedded default set" not in caplog.text
