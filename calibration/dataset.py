"""``CalibrationSet``: preprocessed model inputs plus where they came from."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobile_export.errors import CalibrationError

DEFAULT_SOURCE = "default"
KINDS = ("default", "image-folder", "imagefolder-tree", "npy", "npz", "cifar10-holdout", "check")


def inputs_sha256(inputs: np.ndarray) -> str:
    """sha256 of ``inputs`` as float32, C order (what ``CalibrationSet.sha256`` records)."""
    return hashlib.sha256(np.ascontiguousarray(inputs, dtype=np.float32).tobytes()).hexdigest()


@dataclass(frozen=True, eq=False, repr=False)
class CalibrationSet:
    """Calibration inputs, preprocessed (normalized) for one model config.

    ``inputs`` is float32 NCHW, C-contiguous, in the sampled order (a seeded permutation of the
    sorted source). Treat the arrays as read-only: ``sha256`` is computed once, at construction.
    ``labels`` (int64 class indices) and ``class_names`` are set for labelled sources (ImageFolder
    trees, ``.npz`` with ``labels``); None otherwise, and for the default set (see
    ``load_default_labelled``). Equality is identity (arrays have no single truth value); compare
    ``sha256`` to compare contents.
    """

    inputs: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...] | None
    source: str
    kind: str
    count: int
    seed: int
    sha256: str
    warnings: tuple[str, ...] = ()
    names: tuple[str, ...] | None = None  # per-sample names (file path, default-set id), when known

    @classmethod
    def build(
        cls,
        inputs: np.ndarray,
        *,
        source: str,
        kind: str,
        seed: int,
        labels: np.ndarray | None = None,
        class_names: tuple[str, ...] | None = None,
        warnings: tuple[str, ...] | list[str] = (),
        names: tuple[str, ...] | list[str] | None = None,
    ) -> "CalibrationSet":
        """Construct with ``count`` and ``sha256`` derived from ``inputs``."""
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        if labels is not None:
            labels = np.ascontiguousarray(labels, dtype=np.int64)
        return cls(
            inputs=inputs,
            labels=labels,
            class_names=tuple(class_names) if class_names is not None else None,
            source=str(source),
            kind=kind,
            count=int(inputs.shape[0]),
            seed=int(seed),
            sha256=inputs_sha256(inputs),
            warnings=tuple(warnings),
            names=tuple(str(n) for n in names) if names is not None else None,
        )

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.inputs.ndim != 4 or self.inputs.dtype != np.float32:
            raise ValueError(f"inputs must be float32 NCHW, got {self.inputs.dtype} {self.inputs.shape}")
        if self.count != self.inputs.shape[0]:
            raise ValueError(f"count {self.count} != {self.inputs.shape[0]} inputs")
        if self.labels is not None and self.labels.shape != (self.count,):
            raise ValueError(f"labels must have shape ({self.count},), got {self.labels.shape}")
        if self.names is not None and len(self.names) != self.count:
            raise ValueError(f"names must have {self.count} entries, got {len(self.names)}")

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        shape = "×".join(str(d) for d in self.inputs.shape)
        lab = "" if self.labels is None else f", labelled ({len(self.class_names or ())} classes)"
        return (f"CalibrationSet({self.kind} {self.source!r}: {shape} float32{lab}, seed={self.seed}, "
                f"sha256={self.sha256[:12]}…)")

    def nhwc(self) -> np.ndarray:
        """The inputs as NHWC float32 (the TFLite layout), C-contiguous copy."""
        return np.ascontiguousarray(self.inputs.transpose(0, 2, 3, 1))

    def split(self, holdout: int) -> tuple["CalibrationSet", "CalibrationSet"]:
        """Deterministic split: (the first ``count - holdout`` samples for calibration, the last
        ``holdout`` held back for evaluating the quantized model). The set is already in a seeded
        random order, so the tail is a random subset; the same set and ``holdout`` give the same
        parts. ``holdout`` may be 0 (empty held-back part) but must leave at least one sample."""
        if isinstance(holdout, bool) or not isinstance(holdout, (int, np.integer)):
            raise CalibrationError(f"the hold-back size must be an integer, got {holdout!r}.")
        holdout = int(holdout)
        if holdout < 0 or holdout >= self.count:
            raise CalibrationError(
                f"cannot hold back {holdout} of {self.count} calibration samples; choose a hold-back "
                f"from 0 to {self.count - 1} (or pass more calibration data)."
            )
        cut = self.count - holdout
        return self._part(slice(0, cut)), self._part(slice(cut, self.count))

    def _part(self, sl: slice) -> "CalibrationSet":
        inputs = np.ascontiguousarray(self.inputs[sl])
        labels = None if self.labels is None else np.ascontiguousarray(self.labels[sl])
        names = None if self.names is None else self.names[sl]
        return dataclasses.replace(self, inputs=inputs, labels=labels, count=int(inputs.shape[0]),
                                   sha256=inputs_sha256(inputs), names=names)

    def describe(self) -> dict[str, Any]:
        """The manifest's ``calibration`` entry: source, kind, count, seed, sha256."""
        return {"source": self.source, "kind": self.kind, "count": self.count,
                "seed": self.seed, "sha256": self.sha256}
