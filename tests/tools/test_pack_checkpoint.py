"""tools/pack_checkpoint.py: shipped checkpoints stored as float16, re-measured on the held-out split."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = REPO / "models" / "weights"
SOURCE = WEIGHTS / "squeezenet1_1_cifar10.json"  # the cheapest shipped model to evaluate (32 px)


@pytest.fixture(scope="module")
def pack_tool(tool):
    return tool("pack_checkpoint")


@pytest.mark.skipif(not SOURCE.is_file(), reason="the squeezenet1_1 CIFAR-10 checkpoint is not shipped")
def test_pack_halves_the_file_and_remeasures(pack_tool, cifar10_tar, tmp_path, capsys):
    meta = json.loads(SOURCE.read_text())
    shutil.copy(WEIGHTS / meta["metadata"]["dataset"]["holdout_list"], tmp_path)
    side = tmp_path / SOURCE.name
    md = meta["metadata"]
    md.pop("storage", None)
    md["holdout_top1"] = md.pop("holdout_top1_float32", md["holdout_top1"])
    side.write_text(json.dumps(meta))
    half = torch.load(SOURCE.with_suffix(".pt"), weights_only=True)
    torch.save({k: v.float() if v.is_floating_point() else v for k, v in half.items()}, side.with_suffix(".pt"))
    size32 = side.with_suffix(".pt").stat().st_size

    pack_tool.main([str(side), "--data", str(cifar10_tar)])

    sd = torch.load(side.with_suffix(".pt"), weights_only=True)
    assert {v.dtype for v in sd.values() if v.is_floating_point()} == {torch.float16}
    assert side.with_suffix(".pt").stat().st_size < 0.55 * size32
    got = json.loads(side.read_text())["metadata"]
    assert "float16" in got["storage"]
    assert got["holdout_top1_float32"] == md["holdout_top1"]
    # measured again on the rounded weights: the shipped figure, which was measured the same way
    assert got["holdout_top1"] == json.loads(SOURCE.read_text())["metadata"]["holdout_top1"]
    assert abs(got["holdout_top1"] - got["holdout_top1_float32"]) < 0.003
    assert not list(tmp_path.glob("*.tmp"))

    before = side.read_text(), side.with_suffix(".pt").read_bytes()
    assert pack_tool.main([str(side), "--data", str(cifar10_tar)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "packed already" in err[0] and "Traceback" not in err[0]
    assert (side.read_text(), side.with_suffix(".pt").read_bytes()) == before


def test_pack_bad_input_is_one_sentence_and_exit_2(pack_tool, tmp_path, capsys):
    side = tmp_path / "nope_cifar10.json"
    assert pack_tool.main([str(side)]) == 2
    assert "is not a sidecar with a .pt beside it" in capsys.readouterr().err
    side.write_text("{}")
    side.with_suffix(".pt").write_bytes(b"")
    assert pack_tool.main([str(side), "--data", str(tmp_path / "missing.tar.gz")]) == 2
    err = capsys.readouterr().err
    assert "pack_checkpoint: error:" in err and "Traceback" not in err
