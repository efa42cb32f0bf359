"""CLI contract: exit codes, one-sentence errors for bad input, nothing half-written in OUT."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mobile_export.cli import main
from mobile_export.models import get_model


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _error_line(err: str) -> str:
    lines = [l for l in err.strip().splitlines() if l.startswith("mobile-export: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_list_shows_every_model(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0
    from mobile_export.models import list_models

    for name in list_models():
        assert name in out
    assert "MACs" in out and "params" in out


def test_unknown_model_suggests(capsys, tmp_path):
    code, _, err = run(["mobilenet_v3_smal", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert "mobilenet_v3_small" in _error_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size", ["8", "abc", "0", "5000"])
def test_bad_input_size(capsys, tmp_path, size):
    code, _, err = run(["mobilenet_v2", "--input-size", size, "--out", str(tmp_path)], capsys)
    assert code == 2
    assert "input-size" in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_dir(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = run(["squeezenet1_1", "--out", str(blocker / "sub")], capsys)
    assert code == 2
    assert "--out" in _error_line(err)


def test_missing_weights(capsys, tmp_path):
    code, _, err = run(["squeezenet1_1", "--weights", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "does not exist" in _error_line(err)
    assert not (tmp_path / "o" / "squeezenet1_1").exists()


def test_corrupt_weights(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04garbage" * 10)
    code, _, err = run(["squeezenet1_1", "--weights", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "state_dict" in _error_line(err)
    assert not (tmp_path / "o" / "squeezenet1_1").exists()


def test_pickled_module_is_refused(capsys, tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    code, _, err = run(["squeezenet1_1", "--weights", str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "state_dict" in _error_line(err)


def test_mismatched_weights_name_keys(capsys, tmp_path):
    path = tmp_path / "v2.pt"
    torch.save(get_model("mobilenet_v2").state_dict(), path)
    code, _, err = run(["squeezenet1_1", "--weights", str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    line = _error_line(err)
    assert "missing keys" in line and "features." in line


def test_wrong_num_classes_hints(capsys, tmp_path):
    path = tmp_path / "sq10.pt"
    torch.save(get_model("squeezenet1_1", num_classes=10).state_dict(), path)
    code, _, err = run(["squeezenet1_1", "--weights", str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "--num-classes" in _error_line(err)


def test_checkpoint_with_nested_state_dict_loads(tmp_path):
    path = tmp_path / "ckpt.pt"
    sd = get_model("squeezenet1_1", num_classes=10).state_dict()
    torch.save({"epoch": 3, "state_dict": sd}, path)
    model = get_model("squeezenet1_1", num_classes=10, weights=str(path))
    assert torch.equal(model.state_dict()["classifier.1.weight"], sd["classifier.1.weight"])


def test_float16_checkpoint_loads_as_float32(tmp_path):
    """Shipped checkpoints are stored in float16 (tools/pack_checkpoint.py); the model stays float32."""
    path = tmp_path / "half.pt"
    sd = get_model("squeezenet1_1", num_classes=10).state_dict()
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}, path)
    model = get_model("squeezenet1_1", num_classes=10, weights=str(path))
    got = model.state_dict()["classifier.1.weight"]
    assert got.dtype == torch.float32
    assert torch.equal(got, sd["classifier.1.weight"].half().float())


def test_conflicting_precisions_exit_2(capsys):
    code, _, err = run(["mobilenet_v2", "--int8", "--fp16"], capsys)
    assert code == 2
    assert "not allowed with argument" in _error_line(err)


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "mobile_export.cli", "list", "--family", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no models in family 'nope'" in proc.stderr
