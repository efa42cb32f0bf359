"""Registers the checkpoints shipped in ``weights/`` (trained on CIFAR-10), one JSON sidecar each."""
from __future__ import annotations

import json
from pathlib import Path

from .registry import DEFAULT_REGISTRY, WeightsSpec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _register_shipped() -> None:
    if not WEIGHTS_DIR.is_dir():
        return
    for meta_path in sorted(WEIGHTS_DIR.glob("*.json")):
        meta = json.loads(meta_path.read_text())
        pt = meta_path.with_suffix(".pt")
        if not pt.is_file():
            continue
        DEFAULT_REGISTRY.add_weights(
            meta["model"],
            WeightsSpec(
                name=meta["weights_name"],
                path=str(pt),
                num_classes=int(meta["num_classes"]),
                input_size=int(meta["input_size"]),
                mean=tuple(meta["mean"]),
                std=tuple(meta["std"]),
                labels=tuple(meta["labels"]) if meta.get("labels") else None,
                meta=meta,
            ),
        )


_register_shipped()
