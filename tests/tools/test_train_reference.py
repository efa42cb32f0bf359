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
    assert bare == {"file": "m_cifar10.pt", "sha256": tr.cifar_data.sha256_file(first)}
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
    assert chain["init_from"]["sha256"] == tr.cifar_data.sha256_file(first)
    assert chain["training_wall_time_total_s"] == 6175.6


def test_low_res_trains_the_first_epochs_small_then_at_the_input_size(tool, tmp_path, monkeypatch):
    """--low-res S:N: epochs 1..N see S px batches, the rest --input-size; the sidecar says so; the
    held-out figure is measured at --input-size."""
    import pytest

    tr = tool("train_reference")
    monkeypatch.setattr(tr.cifar_data, "CACHE", tmp_path / "cache")  # the decoded-data cache
    _tiny_tree(tmp_path / "data")
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


def _tiny_tree(root, classes=("a", "b"), per_class=12):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_an_interrupted_run_resumes_where_it_stopped(tool, tmp_path, monkeypatch):
    """A run killed after epoch 1 continues with --resume from last.pt: the finished sidecar holds both
    epochs, the first as it was measured before the interruption; other settings are refused."""
    import pytest

    tr = tool("train_reference")
    monkeypatch.setattr(tr.cifar_data, "CACHE", tmp_path / "cache")
    data = _tiny_tree(tmp_path / "data")
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["mobilenet_v1_x0_5", "--data", str(data), "--holdout", "4", "--batch", "4", "--input-size", "32",
            "--epochs", "2", "--out", str(out), "--workdir", str(work)]
    real = tr._train_epoch

    def killed_in_epoch_2(r, epoch, rng):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(r, epoch, rng)

    monkeypatch.setattr(tr, "_train_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        tr.main(args)
    assert (work / "last.pt").is_file() and not (out / "mobilenet_v1_x0_5_cifar10.pt").exists()
    first = torch.load(work / "last.pt", weights_only=False)["history"]
    assert [h["epoch"] for h in first] == [1]
    monkeypatch.setattr(tr, "_train_epoch", real)
    with pytest.raises(SystemExit, match="other settings"):
        tr.main([*args, "--lr", "0.05", "--resume"])
    assert tr.main([*args, "--resume"]) == 0
    meta = json.loads((out / "mobilenet_v1_x0_5_cifar10.json").read_text())["metadata"]
    assert [h["epoch"] for h in meta["history"]] == [1, 2] and meta["history"][0] == first[0]
    with pytest.raises(SystemExit, match="no checkpoint"):
        tr.main([*args, "--workdir", str(tmp_path / "empty"), "--resume"])


def test_bench_times_steps_and_writes_nothing(tool, tmp_path, monkeypatch, capsys):
    tr = tool("train_reference")
    monkeypatch.setattr(tr.cifar_data, "CACHE", tmp_path / "cache")
    data = _tiny_tree(tmp_path / "data")
    out = tmp_path / "out"
    assert tr.main(["mobilenet_v1_x0_5", "--data", str(data), "--holdout", "4", "--batch", "4",
                    "--input-size", "32", "--bench", "3", "--out", str(out)]) == 0
    assert "ms/step" in capsys.readouterr().out and not out.exists()
