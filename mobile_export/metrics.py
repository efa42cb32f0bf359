"""Output-agreement metrics between a candidate and a reference (both [N, classes] floats), accuracy
statistics, and the one summary of a list of timings."""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from math import comb

import numpy as np


def as_output(logits: np.ndarray, output: str) -> np.ndarray:
    """A reference's logits as the artifact's output kind: unchanged for ``logits``, softmax over the
    last axis (float64, then float32) for ``probabilities``."""
    if output != "probabilities":
        return logits
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def compare(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    got = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    if got.shape != ref.shape:
        raise ValueError(f"shape mismatch: {got.shape} vs {ref.shape}")
    diff = got - ref
    scale = max(float(np.abs(ref).max()), 1e-12)
    noise = float((diff ** 2).sum())
    signal = float((ref ** 2).sum())
    per_sample = 10 * np.log10(np.maximum((ref ** 2).sum(1), 1e-30) / np.maximum((diff ** 2).sum(1), 1e-30))
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
        # the typical sample's SQNR: unlike sqnr_db, not dominated by a few samples with huge outputs
        "sqnr_median_db": float(np.median(per_sample)),
        "top1_agreement": float((top1_got == ref.argmax(1)).mean()),
        "top5_agreement": float(np.mean([t in row for t, row in zip(top1_got, top5_ref)])),
        "samples": int(len(ref)),
    }


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-sample bool: is the label among the ``k`` largest logits?"""
    logits = np.asarray(logits).reshape(len(logits), -1)
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k] if k < logits.shape[1] else np.tile(
        np.arange(logits.shape[1]), (len(logits), 1))
    return (top == np.asarray(labels)[:, None]).any(1)


def paired_bootstrap_drop(correct_ref: np.ndarray, correct_got: np.ndarray, *, resamples: int = 2000,
                          seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Accuracy drop ref − got in percentage points with a paired-bootstrap confidence interval.

    Resampling samples with replacement keeps each sample's (ref, got) pair together. Only the
    per-sample difference d ∈ {−1, 0, +1} matters, so a resample is a multinomial draw of the three
    counts: exact, and O(resamples) whatever the number of samples. Seeded: same inputs, same CI."""
    ref = np.asarray(correct_ref, dtype=bool)
    got = np.asarray(correct_got, dtype=bool)
    n = int(ref.size)
    if n == 0:
        raise ValueError("no samples")
    d = ref.astype(np.int64) - got.astype(np.int64)
    p = np.array([(d == 1).sum(), (d == -1).sum(), (d == 0).sum()], dtype=np.float64) / n
    counts = np.random.default_rng(seed).multinomial(n, p, size=resamples)
    drops = 100.0 * (counts[:, 0] - counts[:, 1]) / n
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(drops, [alpha, 1.0 - alpha])
    return {"drop_pp": float(100.0 * d.mean()), "ci_low_pp": float(lo), "ci_high_pp": float(hi),
            "level": level, "resamples": int(resamples), "seed": int(seed)}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` (ref right, got wrong) and ``c`` (ref wrong, got
    right) discordant pairs: a binomial test of min(b, c) under p = 1/2. 1.0 when there are none."""
    n = int(b) + int(c)
    if n == 0:
        return 1.0
    k = min(int(b), int(c))
    tail = sum(comb(n, i) for i in range(k + 1))
    return float(min(1.0, 2 * tail / 2 ** n))


def latency_summary(times_ms: list[float]) -> dict[str, float]:
    """Median and 90th percentile (interpolated) of timed runs, in milliseconds."""
    s = sorted(times_ms)
    return {"median_ms": float(statistics.median(s)), "p90_ms": float(np.percentile(s, 90)), "runs": len(s)}


@dataclass(frozen=True)
class Comparison:
    """``compare``'s figures as a typed record (what reports and the CLI read)."""

    max_abs: float
    max_rel: float
    cosine_min: float
    cosine_mean: float
    sqnr_db: float
    sqnr_median_db: float
    top1_agreement: float
    top5_agreement: float
    samples: int

    @classmethod
    def of(cls, got: np.ndarray, ref: np.ndarray) -> "Comparison":
        return cls(**compare(got, ref))

    def to_json(self) -> dict[str, float]:
        return asdict(self)
