"""XNNPACK's limits on int8 requantization scales, as data, and the check of a TFLite model against them.

An int8 op whose scales fall outside its limit is refused by the delegate and runs on TFLite's
reference kernels in a partition of its own (and the graph splits around it). The limits, from
XNNPACK's operator constructors and the TFLite delegate's node checks:

- ADD / SUB: every input's scale ÷ the output's scale in [2⁻¹⁰, 2⁸);
- MUL: the product of the input scales ÷ the output's scale in [2⁻¹⁶, 2⁸);
- CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED: input scale × weight scale (per channel) ÷ output
  scale in [2⁻³², 2⁸).

``violations(tflite)`` names each op past its limit with the measured ratio, so the export can say
why an op would leave the delegate instead of only counting partitions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobile_export.runtimes.host import GraphView


@dataclass(frozen=True)
class Limit:
    what: str           # the ratio, in words
    low: float
    high: float         # exclusive


LIMITS: dict[str, Limit] = {
    "ADD": Limit("input scale / output scale", 2.0 ** -10, 2.0 ** 8),
    "SUB": Limit("input scale / output scale", 2.0 ** -10, 2.0 ** 8),
    "MUL": Limit("input scale x input scale / output scale", 2.0 ** -16, 2.0 ** 8),
    "CONV_2D": Limit("input scale x weight scale / output scale", 2.0 ** -32, 2.0 ** 8),
    "DEPTHWISE_CONV_2D": Limit("input scale x weight scale / output scale", 2.0 ** -32, 2.0 ** 8),
    "FULLY_CONNECTED": Limit("input scale x weight scale / output scale", 2.0 ** -32, 2.0 ** 8),
}
ADD_SAFE_RATIO = 2.0 ** 7  # range planning keeps ADD ratios below this: half the limit, for rounding
ADD_SAFE_MIN_RATIO = 2.0 ** -9  # ... and above this: twice the lower limit


@dataclass(frozen=True)
class Violation:
    op: str             # e.g. "ADD#12"
    ratio: float
    limit: Limit

    def sentence(self) -> str:
        side = "≥" if self.ratio >= self.limit.high else "<"
        bound = self.limit.high if self.ratio >= self.limit.high else self.limit.low
        return (f"{self.op}: {self.limit.what} = {self.ratio:.4g} {side} {bound:.4g}, outside XNNPACK's limit "
                "(it runs on reference kernels, outside the delegate)")


def ratios(op: str, scales: list[np.ndarray]) -> list[float]:
    """The ratios XNNPACK checks for ``op`` given the scales of its (inputs..., output), each an array
    (one value, or one per channel for weights)."""
    out = scales[-1].max()
    if op in ("ADD", "SUB"):
        return [float(s.max() / out) for s in scales[:-1]]
    if op == "MUL":
        return [float(scales[0].max() * scales[1].max() / out)]
    return [float(r) for r in (scales[0].max() * scales[1] / out)]  # conv: per weight channel


def check(op: str, scales: list[np.ndarray]) -> float | None:
    """The first ratio of ``op`` outside its limit, or None when all are inside (or ``op`` has none)."""
    limit = LIMITS.get(op)
    if limit is None:
        return None
    return next((r for r in ratios(op, scales) if not limit.low <= r < limit.high), None)


def violations(tflite) -> list[Violation]:
    """Every int8 op of the model (bytes, or a ``host.GraphView`` of it) whose scales are outside
    XNNPACK's limits."""
    graph = GraphView.of(tflite)
    tensors = graph.tensors
    found = []
    for op in graph.ops:
        name = op["op_name"]
        if name not in LIMITS:
            continue
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        idx = ins[:2] + [int(op["outputs"][0])]
        scales = [np.asarray(tensors[i].get("quantization_parameters", {}).get("scales", ()), dtype=np.float64)
                  for i in idx]
        if any(s.size == 0 for s in scales) or any(np.dtype(tensors[i]["dtype"]) != np.int8 for i in idx[:1] + idx[-1:]):
            continue  # a float op, or weights without scales: no int8 requantization to check
        ratio = check(name, scales)
        if ratio is not None:
            found.append(Violation(f"{name}#{op['index']}", ratio, LIMITS[name]))
    return found
