"""tools/train_reference.py: what a fine-tune records about the checkpoint it started from."""
from __future__ import annotations

import json

import torch


def test_fine_tune_records_the_chain_it_started_from(tool, tmp_path):
    tr = tool("train_reference")
    assert tr.init_provenance(None) is None
    first = tmp_path / "m_cifar10.pt"
    torch.save({"w": torch.zeros(2)}, first)
    bare = tr.init_provenance(first)  # no sidecar beside it: the file and its hash only
    assert bare == {"file": "m_cifar10.pt", "sha256": tr.sha256_file(first)}
    md = {"recipe": {"epochs": 14, "lr": 0.1}, "history": [{"epoch": 1}], "holdout_top1": 0.79,
          "training_wall_time_s": 4771.9, "seed": 0, "dataset": {"images": 50000}}
    first.with_suffix(".json").write_text(json.dumps({"metadata": md}))
    got = tr.init_provenance(first)
    assert got["recipe"] == md["recipe"] and got["history"] == md["history"] and got["holdout_top1"] == 0.79
    assert "dataset" not in got  # the split is the fine-tune's own, recorded at the top level
    # a second fine-tune nests the first one's provenance, and the total time adds up
    second = tmp_path / "ft_cifar10.pt"
    torch.save({"w": torch.ones(2)}, second)
    second.with_suffix(".json").write_text(json.dumps({"metadata": {
        "recipe": {"epochs": 5}, "training_wall_time_s": 1403.7, "training_wall_time_total_s": 6175.6,
        "init_from": got}}))
    chain = tr.init_provenance(second)
    assert chain["init_from"]["sha256"] == tr.sha256_file(first)
    assert chain["training_wall_time_total_s"] == 6175.6


def test_low_res_trains_the_first_epochs_small_then_at_the_input_size(tool, tmp_path, monkeypatch):
    """--low-res S:N: epochs 1..N see S px batches, the rest --input-size; the sidecar says so; the
    held-out figure is measured at --input-size."""
    import numpy as np
    import pytest
    from PIL import Image

    tr = tool("train_reference")
    monkeypatch.setattr(tr, "CACHE", tmp_path / "cache")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "data" / c / f"{i}.png")
    seen = []

    class Recording(tr.TrainTransform):
        def __call__(self, batch, rng):
            out = super().__call__(batch, rng)
            seen.append(out.shape[-1])
            return out

    monkeypatch.setattr(tr, "TrainTransform", Recording)
    out = tmp_path / "out"
    args = ["mobilenet_v1_x0_5", "--data", str(tmp_path / "data"), "--holdout", "4", "--batch", "4",
            "--input-size", "32", "--epochs", "3", "--low-res", "16:2", "--out", str(out),
            "--workdir", str(tmp_path / "work")]
    assert tr.main(args) == 0
    steps = 20 // 4
    assert seen == [16] * (2 * steps) + [32] * steps
    meta = json.loads((out / "mobilenet_v1_x0_5_cifar10.json").read_text())["metadata"]
    assert meta["recipe"]["low_res"] == "the first 2 epochs at 16 px" and len(meta["history"]) == 3
    with pytest.raises(SystemExit, match="leaves no epoch"):
        tr.main([*args[:-4], "--epochs", "2", "--out", str(out), "--workdir", str(tmp_path / "work2")])
    with pytest.raises(SystemExit):
        tr.main([*args, "--low-res", "16"])  # not S:N: argparse exits 2
