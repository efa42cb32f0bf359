"""Output-agreement metrics between a candidate and a reference (both [N, classes] floats)."""
from __future__ import annotations

import numpy as np


def compare(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    got = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    if got.shape != ref.shape:
        raise ValueError(f"shape mismatch: {got.shape} vs {ref.shape}")
    diff = got - ref
    scale = max(float(np.abs(ref).max()), 1e-12)
    noise = float((diff ** 2).sum())
    signal = float((ref ** 2).sum())
    cos = (got * ref).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1), 1e-30)
    k = min(5, ref.shape[1])
    top5_ref = np.argsort(-ref, axis=1)[:, :k]
    top1_got = got.argmax(1)
    return {
        "max_abs": float(np.abs(diff).max()),
        "max_rel": float(np.abs(diff).max()) / scale,
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "sqnr_db": float(10 * np.log10(signal / noise)) if noise > 0 else float("inf"),
        "top1_agreement": float((top1_got == ref.argmax(1)).mean()),
        "top5_agreement": float(np.mean([t in row for t, row in zip(top1_got, top5_ref)])),
        "samples": int(len(ref)),
    }
