"""The one table of fidelity bounds per precision, read by export, the gate, the per-layer
comparison and the int8 search — so the four can never drift apart.

Per precision (``BOUNDS``): how close the TFLite logits must be to PyTorch's for an artifact to pass
(``max_rel``: max |error| ÷ max |PyTorch|; ``min_cosine``: smallest per-sample cosine) — the default
bar of export and validate alike (``default_gate``) — and the tolerance past which one layer counts
as diverged in the per-layer table. int8 has no bound against PyTorch (its accuracy depends on the data): it must be
fully integer in one XNNPACK partition, and the int8 search aims for ``INT8_BAR`` against the fp32
TFLite model of the same lowering.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mobile_export.options import Precision


@dataclass(frozen=True)
class Bounds:
    max_rel: float | None = None      # max |TFLite − PyTorch| ÷ max |PyTorch|
    min_cosine: float | None = None   # smallest per-sample cosine similarity with PyTorch
    layer: tuple[str, float] = ("max_rel", 1e-3)  # per-layer: ("min_sqnr_db", dB) or ("max_rel", x)


BOUNDS: dict[Precision, Bounds] = {
    Precision.FP32: Bounds(max_rel=1e-4, min_cosine=0.99999, layer=("max_rel", 1e-3)),
    Precision.FP16: Bounds(min_cosine=0.9999, layer=("min_sqnr_db", 30.0)),
    Precision.DYNAMIC: Bounds(min_cosine=0.99, layer=("min_sqnr_db", 15.0)),
    Precision.INT8: Bounds(layer=("min_sqnr_db", 15.0)),
}


@dataclass(frozen=True)
class Int8Bar:
    """What the int8 search wants of the int8 model against the fp32 TFLite model (calibration images)."""

    min_sqnr_db: float = 20.0
    min_top1_agreement: float = 0.99

    def met(self, m: Mapping[str, float]) -> bool:
        return m["sqnr_db"] >= self.min_sqnr_db and m["top1_agreement"] >= self.min_top1_agreement


INT8_BAR = Int8Bar()
# fp16 is faithful when TFLite matches PyTorch (``BOUNDS``) or, since random weights amplify fp16
# weight rounding far more than trained ones, the same ONNX graph with fp16-rounded weights to this cosine.
FP16_REFERENCE_COSINE = 0.99999
ONNX_MAX_REL = 1e-4        # onnxruntime vs PyTorch right after the ONNX export
REBUILT_REFERENCE_MAX_REL = 1e-3  # validate: the rebuilt PyTorch reference must reproduce model.onnx
NOISE_FACTOR = 4           # no float32 bound is held stricter than 4x PyTorch's own float32 noise


def relaxed_max_rel(bound: float, float32_noise: float) -> float:
    """``bound``, relaxed to NOISE_FACTOR x PyTorch's own float32 noise when that is larger."""
    return max(bound, NOISE_FACTOR * float32_noise)


def default_gate(precision: Precision) -> dict[str, float]:
    """The bar export and validate apply without a gate file or flags: the precision's bounds, as gate
    thresholds. int8 has no real default yet (pass a gate): only its top-1 agreement is reported."""
    b = BOUNDS[precision]
    gate = {}
    if b.max_rel is not None:
        gate["max_rel_error"] = b.max_rel
    if b.min_cosine is not None:
        gate["min_cosine"] = b.min_cosine
    return gate or {"min_top1_agreement": 0.0}


def layer_tolerance(precision: Precision) -> tuple[str, float]:
    return BOUNDS[precision].layer
