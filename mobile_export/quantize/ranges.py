"""Int8 range estimation: which range each activation gets, and how.

How ranges reach the TFLite model: as ``fake_quant_with_min_max_args`` nodes in the lowered TF
graph. The TF converter keeps a fake-quant node's range as the tensor's quantization range and
calibrates every other tensor from the representative dataset. We chose this over editing
ai-edge-quantizer's recorded ranges because it needs no second tool, the ranges live next to the
op that produces them, and the same lowering serves float and int8.

- ReLU6 outputs get exactly [0, 6] and hard-sigmoid outputs [0, 1] (see ``ops_elementwise``).
- A tensor read only by a saturating gate (squeeze-excitation's relu6(x+3), a sigmoid) gets the gate's
  window, e.g. [-3, 3] (``narrow_saturated``): exact, since int8 saturation beyond it changes nothing.
- Unbounded tensors that TFLite materialises (residual adds, linear bottlenecks, logits, SE
  products, pooled features) get a range from calibration activations by the recipe's method:
  ``minmax``, ``percentile`` or ``mse`` (the clip that minimises int8 quantization error).
- Everything else (intermediates of fused patterns) is left to the converter's own min/max.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from mobile_export.convert.graph import attrs, consumers_of, initializer_arrays, producers_of
from mobile_export.runtimes.xnnpack_limits import ADD_SAFE_MIN_RATIO, ADD_SAFE_RATIO

log = logging.getLogger(__name__)

# ONNX ops whose outputs TFLite materialises as int8 tensors and whose range is not known a priori.
CALIBRATED_OPS = {"Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "HardSwish", "GlobalAveragePool",
                  "ReduceMean", "Relu"}
# A Conv/Gemm whose only consumer is one of these is fused with it: range the activation instead.
FUSED_ACTIVATIONS = {"Relu", "Clip"}
MAX_SAMPLES = 1 << 18  # values kept per tensor for range estimation (exact min/max kept apart)
MAX_COLLECT_INPUTS = 128  # calibration inputs whose activations are collected


class RangeMethod(str, enum.Enum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"


@dataclass(frozen=True)
class Recipe:
    """How a family's unbounded activations are ranged; ``overrides`` maps ONNX tensor → method."""

    name: str
    method: RangeMethod = RangeMethod.MSE
    percentile: float = 99.99
    overrides: dict[str, RangeMethod] = field(default_factory=dict)

    def method_for(self, tensor: str) -> RangeMethod:
        return self.overrides.get(tensor, self.method)


# Per-family defaults. MSE-optimal clipping is robust for deep residual stacks and the
# heavy-tailed SE/hard-swish products of MobileNetV3; min/max suits shallow ReLU nets.
FAMILY_RECIPES = {
    "mobilenet_v1": Recipe("mobilenet_v1", RangeMethod.MINMAX),
    "mobilenet_v2": Recipe("mobilenet_v2", RangeMethod.MSE),
    "mobilenet_v3": Recipe("mobilenet_v3", RangeMethod.MSE),
    "squeezenet": Recipe("squeezenet", RangeMethod.MINMAX),
    "squeezenext": Recipe("squeezenext", RangeMethod.MSE),
    "shufflenet_v1": Recipe("shufflenet_v1", RangeMethod.MSE),
    "shufflenet_v2": Recipe("shufflenet_v2", RangeMethod.MSE),
    "efficientnet": Recipe("efficientnet", RangeMethod.MSE),  # SiLU and sigmoid-gated SE: heavy tails, as V3
    "espnetv2": Recipe("espnetv2", RangeMethod.MSE),  # PReLU residual stacks, hierarchical-fusion sums
    "ghostnet": Recipe("ghostnet", RangeMethod.MSE),  # linear Ghost modules, residual adds, hard-sigmoid SE products
    "fbnet": Recipe("fbnet", RangeMethod.MSE),  # deep inverted-residual stacks, as MobileNetV2
}

CANDIDATE_METHODS = (RangeMethod.MSE, RangeMethod.PERCENTILE, RangeMethod.MINMAX)


def recipe_for(family: str) -> Recipe:
    return FAMILY_RECIPES.get(family, Recipe(family))


def tensors_to_calibrate(graph) -> list[str]:
    """ONNX output names of the unbounded tensors that get a calibrated fake-quant range."""
    consumers = consumers_of(graph)
    graph_outputs = {o.name for o in graph.output}
    names = []
    for n in graph.node:
        if n.op_type not in CALIBRATED_OPS:
            continue
        out = n.output[0]
        users = consumers.get(out, [])
        if out not in graph_outputs and len(users) == 1 and users[0].op_type in FUSED_ACTIVATIONS:
            continue  # fused into the following activation, which carries the range
        names.append(out)
    return names


def _qerror(values: np.ndarray, lo: float, hi: float) -> float:
    scale = max(hi - lo, 1e-12) / 255.0
    q = np.clip(np.round((values - lo) / scale), 0, 255) * scale + lo
    return float(np.mean((q - values) ** 2))


def estimate_range(values: np.ndarray, method: RangeMethod, percentile: float = 99.99) -> tuple[float, float]:
    """The [lo, hi] an int8 tensor should cover; always contains 0 (TFLite needs an exact zero)."""
    v = values.astype(np.float32).ravel()
    lo, hi = float(v.min()), float(v.max())
    if method is RangeMethod.PERCENTILE:
        lo = float(np.percentile(v, 100.0 - percentile)) if lo < 0 else lo
        hi = float(np.percentile(v, percentile)) if hi > 0 else hi
    elif method is RangeMethod.MSE:
        best = (_qerror(v, min(lo, 0.0), max(hi, 0.0)), lo, hi)
        for frac in np.linspace(0.3, 0.98, 18):
            cand_lo, cand_hi = lo * frac, hi * frac
            err = _qerror(v, min(cand_lo, 0.0), max(cand_hi, 0.0))
            if err < best[0]:
                best = (err, cand_lo, cand_hi)
        _, lo, hi = best
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    return lo, hi


def subsample(values: np.ndarray, rng: np.random.Generator, limit: int = MAX_SAMPLES) -> np.ndarray:
    v = values.ravel()
    if v.size > limit:
        v = v[rng.integers(0, v.size, limit)]  # with replacement: O(limit), not O(size)
    return v


def collect_activations(lowered, inputs_nhwc: np.ndarray, names: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    """Run the float lowered graph on ``inputs_nhwc`` and keep (a sample of) each named tensor.
    Min and max are always kept exactly, whatever is subsampled."""
    fn = lowered.evaluator(names)
    rng = np.random.default_rng(seed)
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    extremes: dict[str, list[float]] = {n: [np.inf, -np.inf] for n in names}
    batch = int(lowered.input_shape[0])
    inputs_nhwc = inputs_nhwc[:MAX_COLLECT_INPUTS]
    steps = max(len(inputs_nhwc) // batch, 1)
    per_step = max(MAX_SAMPLES // steps, 1)
    for i in tqdm(range(0, len(inputs_nhwc) - batch + 1, batch), desc="collect activations", unit="batch",
                  leave=False, disable=None):
        outs = fn(inputs_nhwc[i:i + batch])
        for n in names:
            a = outs[n]
            extremes[n] = [min(extremes[n][0], float(a.min())), max(extremes[n][1], float(a.max()))]
            chunks[n].append(subsample(a, rng, per_step))
    result = {}
    for n in names:
        result[n] = np.concatenate([np.asarray(extremes[n], np.float32), *chunks[n]])  # exact extremes first
    return result


# Ops whose int8 inputs and outputs must share one scale, or TFLite inserts requantizing QUANTIZE ops.
SAME_SCALE_OPS = {"Concat", "Split", "ChannelShuffle", "Reshape", "Flatten", "Slice", "MaxPool", "AveragePool", "Pad"}


def _same_scale(node) -> bool:
    """An AveragePool is lowered as a depthwise convolution, which requantizes freely (tying its input
    to what its output is concatenated with only coarsens the input: ESPNetv2's down-samplers), unless
    it excludes zero padding: then it is an AVERAGE_POOL_2D, whose int8 input and output share a scale."""
    if node.op_type == "AveragePool":
        a = attrs(node)
        return any(a.get("pads", [])) and not a.get("count_include_pad", 0)
    return node.op_type in SAME_SCALE_OPS


def shared_scale_groups(graph) -> list[list[str]]:
    """Groups of ONNX tensors that must carry one int8 range: everything a concatenation joins (and
    what splits, shuffles and reshapes pass through unchanged). Only groups with a Concat count."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    has_concat: set[str] = set()
    for n in graph.node:
        if not _same_scale(n):
            continue
        members = [n.input[0]] + list(n.output) if n.op_type != "Concat" else list(n.input) + list(n.output)
        for m in members[1:]:
            parent[find(m)] = find(members[0])
        if n.op_type == "Concat":
            has_concat.add(n.output[0])
    groups: dict[str, list[str]] = {}
    for name in parent:
        groups.setdefault(find(name), []).append(name)
    roots = {find(c) for c in has_concat}
    return [sorted(g) for r, g in groups.items() if r in roots]


def plan_ranges(lowered, calib_nhwc: np.ndarray, recipe: Recipe, seed: int = 0,
                activations: dict[str, np.ndarray] | None = None) -> dict[str, tuple[float, float]]:
    """ONNX tensor → (lo, hi) for every unbounded tensor, by the recipe's methods; tensors that a
    concatenation joins get one common range (the union), so no requantization is needed."""
    names = names_to_collect(lowered.model.graph)
    acts = activations if activations is not None else collect_activations(lowered, calib_nhwc, names, seed)
    ranges = {n: estimate_range(acts[n], recipe.method_for(n), recipe.percentile)
              for n in tensors_to_calibrate(lowered.model.graph)}
    graph_inputs = {i.name for i in lowered.model.graph.input}
    for group in shared_scale_groups(lowered.model.graph):
        members = [m for m in group if m in acts and m not in graph_inputs]
        if not members:
            continue
        los, his = zip(*(estimate_range(acts[m], recipe.method_for(m), recipe.percentile) for m in members))
        for m in members:
            ranges[m] = (min(los), max(his))
    narrow_saturated(lowered.model.graph, ranges)
    xnnpack_safe(lowered.model.graph, ranges)
    return ranges


# An int8 LOGISTIC's output (scale 1/256) is 0 or 255/256 for |x| ≥ ln(511) ≈ 6.24: beyond, x is irrelevant.
SIGMOID_WINDOW = (-6.25, 6.25)


def saturation_window(node, consumers, inits) -> tuple[str, float, float] | None:
    """``(x, lo, hi)`` when ``node`` is a gate outside whose window [lo, hi] its output no longer changes
    with its input x: ``clip(x + c, a, b)`` (hard-sigmoid's relu6(x+3)) or an int8 sigmoid."""
    if node.op_type == "Sigmoid":
        return node.input[0], *SIGMOID_WINDOW
    if node.op_type != "Add" or len(consumers.get(node.output[0], [])) != 1:
        return None
    clip, (x, c) = consumers[node.output[0]][0], node.input
    if c not in inits:
        x, c = c, x
    if clip.op_type != "Clip" or c not in inits or x in inits or len(clip.input) < 3:
        return None
    if not all(b in inits for b in clip.input[1:3]) or inits[c].size != 1:
        return None
    shift, a, b = (float(inits[i]) for i in (c, *clip.input[1:3]))
    return x, a - shift, b - shift


def _min_width_for_producer(producer, ranges, inits) -> float | None:
    """The narrowest int8 range a Conv/Gemm output may get before its requantization ratio (input scale x
    weight scale / output scale) passes XNNPACK's safe bound; None when it cannot be known here."""
    if producer is None or producer.op_type not in ("Conv", "Gemm", "MatMul") or len(producer.input) < 2:
        return None
    x, w = producer.input[0], producer.input[1]
    if x not in ranges or w not in inits:
        return None
    w_scale = float(np.abs(inits[w]).max()) / 127.0  # the largest per-channel int8 weight scale
    in_scale = (ranges[x][1] - ranges[x][0]) / 255.0
    return 255.0 * in_scale * w_scale / ADD_SAFE_RATIO


def narrow_saturated(graph, ranges: dict[str, tuple[float, float]]) -> None:
    """Pin the range of a tensor whose only use is a saturating gate (squeeze-excitation's relu6(x+3) or
    sigmoid) to the gate's window: int8 saturation beyond it gives the same gate, so the narrowing is
    exact and the window gets all 256 steps. With a wide calibrated x (untrained or golden weights: x
    spans thousands) this is also what keeps relu6(x+3)'s ADD inside XNNPACK without coarsening the
    gate to a step of several units. Widened again only as far as the producing convolution's
    requantization limit needs; a producer whose limit cannot be checked keeps the calibrated range."""
    consumers, producers = consumers_of(graph), producers_of(graph)
    inits = initializer_arrays(graph)
    grouped = {m for g in shared_scale_groups(graph) for m in g}
    for node in graph.node:
        found = saturation_window(node, consumers, inits)
        if found is None or found[0] not in ranges or found[0] in grouped or len(consumers[found[0]]) != 1:
            continue
        x, lo, hi = found
        lo, hi = max(ranges[x][0], min(lo, 0.0)), min(ranges[x][1], max(hi, 0.0))
        need = _min_width_for_producer(producers.get(x), ranges, inits)
        if need is None or hi - lo <= 0:
            continue
        if hi - lo < need:
            f = need / (hi - lo)
            lo, hi = lo * f, hi * f
        if hi - lo < ranges[x][1] - ranges[x][0]:
            ranges[x] = (lo, hi)


def xnnpack_safe(graph, ranges: dict[str, tuple[float, float]]) -> None:
    """Widen the [0, 6] range of a ReLU6 fused into an ADD (``x + c`` → ReLU6: hard-swish's gate)
    when the ADD's input x is so wide that input scale / output scale would pass XNNPACK's limit
    (``runtimes.xnnpack_limits``): the op would leave the delegate. The clamp stays at 6; only the
    int8 step of the gate grows."""
    consumers, producers = consumers_of(graph), producers_of(graph)
    inits = {i.name for i in graph.initializer}
    for clip in graph.node:
        add = producers.get(clip.input[0]) if clip.op_type == "Clip" else None
        if add is None or add.op_type != "Add" or len(consumers[add.output[0]]) != 1:
            continue
        wide = [ranges[i] for i in add.input if i not in inits and i in ranges]
        if not wide:
            continue
        lo, hi = ranges.get(clip.output[0], (0.0, 6.0))
        need = max(h - l for l, h in wide) / ADD_SAFE_RATIO
        if hi - lo < need:
            ranges[clip.output[0]] = (lo, lo + need)
    widen_small_addends(graph, ranges)


def widen_small_addends(graph, ranges: dict[str, tuple[float, float]]) -> None:
    """Widen the range of an ADD/SUB input that is tiny against the sum (input scale / output scale
    below XNNPACK's 2⁻¹⁰, e.g. ESPNetv2's input reinforcement beside a much larger feature map, or a
    PReLU int8 term whose slopes are all near 1): the op would leave the delegate. The addend's int8
    step grows to at most 2⁻⁹ of the sum's, below the sum's own rounding. Consumers are visited before
    producers, so a widened sum's own addends are checked against its final range; a concatenation's
    members are widened together (they share one scale)."""
    group_of = {m: g for g in shared_scale_groups(graph) for m in g}
    for node in reversed(graph.node):
        if node.op_type not in ("Add", "Sub") or node.output[0] not in ranges:
            continue
        lo, hi = ranges[node.output[0]]
        need = (hi - lo) * ADD_SAFE_MIN_RATIO
        for name in node.input:
            if name not in ranges or ranges[name][1] - ranges[name][0] >= need:
                continue
            a, b = ranges[name]
            f = need / max(b - a, 1e-12)
            for m in group_of.get(name, [name]):
                if m in ranges:
                    ranges[m] = (ranges[m][0] * f, ranges[m][1] * f)


def names_to_collect(graph) -> list[str]:
    """Every tensor whose activations range planning needs."""
    graph_inputs = {i.name for i in graph.input}
    names = list(tensors_to_calibrate(graph))
    for group in shared_scale_groups(graph):
        names += [m for m in group if m not in graph_inputs and m not in names]
    return names
