"""Labelled accuracy of PyTorch vs TFLite on the same images — top-1/top-5, the drop with a
paired-bootstrap CI and McNemar's exact test — and the samples whose top-1 class flipped. One JSON
shape for both the validation report and the export's CIFAR-10 check."""
from __future__ import annotations

from typing import Any

import numpy as np

from mobile_export import metrics

MAX_LISTED_FLIPS = 1000
BOOTSTRAP_RESAMPLES = 2000


def accuracy(torch_out: np.ndarray, tflite_out: np.ndarray, labels: np.ndarray, seed: int = 0,
             ort_out: np.ndarray | None = None, data: str | None = None) -> dict[str, Any]:
    ct1, cl1 = metrics.topk_correct(torch_out, labels, 1), metrics.topk_correct(tflite_out, labels, 1)
    b, c = int((ct1 & ~cl1).sum()), int((~ct1 & cl1).sum())
    out = {
        "samples": int(len(labels)),
        "torch": {"top1": float(ct1.mean()), "top5": float(metrics.topk_correct(torch_out, labels, 5).mean())},
        "tflite": {"top1": float(cl1.mean()), "top5": float(metrics.topk_correct(tflite_out, labels, 5).mean())},
        "top1_drop": metrics.paired_bootstrap_drop(ct1, cl1, resamples=BOOTSTRAP_RESAMPLES, seed=seed),
        "mcnemar": {"torch_only_correct": b, "tflite_only_correct": c, "p_value": metrics.mcnemar_exact(b, c)},
    }
    if ort_out is not None:
        out["onnxruntime"] = {"top1": float(metrics.topk_correct(ort_out, labels, 1).mean())}
    if data is not None:
        out["data"] = data
    return out


def flips(torch_out: np.ndarray, tflite_out: np.ndarray, calib) -> dict[str, Any]:
    """The samples whose top-1 class differs between PyTorch and TFLite (file names and labels when known)."""
    pt, pl = torch_out.argmax(1), tflite_out.argmax(1)
    idx = np.flatnonzero(pt != pl)
    samples = []
    for i in idx[:MAX_LISTED_FLIPS]:
        s = {"index": int(i), "torch_top1": int(pt[i]), "tflite_top1": int(pl[i])}
        if calib.names is not None:
            s["file"] = calib.names[i]
        if calib.labels is not None:
            s["label"] = int(calib.labels[i])
        samples.append(s)
    return {"count": int(len(idx)), "rate": float(len(idx) / max(len(pt), 1)), "listed": len(samples),
            "samples": samples}
