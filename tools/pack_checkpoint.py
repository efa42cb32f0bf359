#!/usr/bin/env python
"""Store a trained checkpoint's floating tensors as float16 and re-measure it (issue 8).

Shipped checkpoints live in git; ``tests/models/test_shipped_weights.py`` keeps them under a size budget.
Halving a large model's file (MobileNetV3-large: 17 MB → 8.5 MB) keeps it shippable.
``models.weights.read_state_dict`` upcasts float16 tensors to float32 on load, so the exporter and
PyTorch reference see float32 weights equal to the rounded ones. Because the rounding can move
predictions, the held-out top-1 in the sidecar is measured again on the rounded weights, with the
same split and preprocessing as training (the training figure is kept as ``holdout_top1_float32``)::

    python tools/pack_checkpoint.py models/weights/mobilenet_v3_large_cifar10.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cifar_data  # noqa: E402

log = logging.getLogger("pack_checkpoint")


class PackError(Exception):
    """Bad input: one sentence naming what to fix (exit 2)."""


def to_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.half().contiguous() if v.is_floating_point() else v) for k, v in state.items()}


def pack(sidecar: Path, data: Path) -> dict:
    from mobile_export.models import get_model, load_into, read_state_dict

    try:
        meta = json.loads(sidecar.read_text())
    except ValueError as e:
        raise PackError(f"'{sidecar}' is not JSON ({e}); pass the .json tools/train_reference.py wrote.") from None
    md = meta.get("metadata", {}) if isinstance(meta, dict) else {}
    split = md.get("dataset", {})
    missing = ([k for k in ("model", "num_classes", "input_size", "mean", "std", "metadata") if k not in meta]
               + [f"metadata.{k}" for k in ("holdout_top1", "dataset") if k not in md]
               + [f"metadata.dataset.{k}" for k in ("holdout_images", "split_seed", "holdout_list") if k not in split])
    if missing:
        raise PackError(f"'{sidecar}' lacks {', '.join(missing)}; pass the .json tools/train_reference.py wrote.")
    pt = sidecar.with_suffix(".pt")
    try:
        raw = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for unreadable files
        raise PackError(f"'{pt}' is not a state_dict torch.load(weights_only=True) can read "
                        f"({type(e).__name__}); pass the .pt tools/train_reference.py wrote.") from None
    if all(v.dtype != torch.float32 for v in raw.values() if v.is_floating_point()):
        raise PackError(f"{pt} holds no float32 tensors: it is packed already.")
    half = to_half(raw)

    ds = cifar_data.load_dataset(data)
    _, hold_idx = cifar_data.holdout_split(ds, split["holdout_images"], split["split_seed"])
    listed = (sidecar.parent / split["holdout_list"]).read_text().split()
    if list(ds["files"][hold_idx]) != listed:
        raise PackError(f"the held-out split of {data} differs from {split['holdout_list']}; "
                        "pass the archive the checkpoint was trained on with --data.")
    x = cifar_data.eval_inputs(ds["images"][hold_idx], meta["input_size"], meta["mean"], meta["std"])
    y = torch.from_numpy(ds["labels"][hold_idx])

    model = get_model(meta["model"], num_classes=meta["num_classes"])
    tmp = pt.with_name(pt.name + ".half.tmp")
    torch.save(half, tmp)
    try:
        load_into(model, read_state_dict(tmp), str(tmp))   # exactly the shipped path: read, upcast, load
        acc = cifar_data.evaluate(model, x, y)
        acc10 = cifar_data.evaluate(model, x[::10].contiguous(), y[::10])
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    before = md["holdout_top1"]
    md["holdout_top1_float32"] = before
    md["holdout_top1"] = round(acc, 4)
    md["holdout_top1_every10th"] = round(acc10, 4)
    md["storage"] = "float16 state_dict (models.weights.read_state_dict upcasts to float32 on load)"
    log.info("%s: held-out top-1 float32 %.4f → float16 %.4f; %.1f MB → %.1f MB", meta["model"], before,
             acc, pt.stat().st_size / 1e6, tmp.stat().st_size / 1e6)
    tmp.replace(pt)
    cifar_data.atomic_write(sidecar, json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sidecars", nargs="+", type=Path, help="<model>_<weights>.json beside its .pt")
    ap.add_argument("--data", type=Path, default=cifar_data.DEFAULT_DATA, help="the archive the checkpoint was trained on")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        for s in args.sidecars:  # all checked before any is rewritten
            if not s.is_file() or not s.with_suffix(".pt").is_file():
                raise PackError(f"'{s}' is not a sidecar with a .pt beside it; pass models/weights/<model>_<name>.json.")
        for s in args.sidecars:
            pack(s, args.data)
    except (PackError, SystemExit) as e:  # SystemExit: train_reference's data loader names a bad --data
        if isinstance(e, SystemExit) and not isinstance(e.code, str):
            raise
        print(f"pack_checkpoint: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
