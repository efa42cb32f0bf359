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
