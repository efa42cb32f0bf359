"""Where the instructions go: per-layer instruction counts of an int8 (or fp32) model on emulated ARM.

XNNPACK runs the whole graph as one delegate node, so per-op costs are measured by difference: the
graph is cut after ONNX node k (the prefix's outputs are every tensor a later node still reads),
lowered and converted exactly as the export does (int8: the same planned ranges pinned by fake-quant
nodes, the same calibration images for the rest), and its instructions per inference counted under
qemu; node k costs count(prefix k) − count(prefix k−1). Costs at a cut include writing the prefix's
outputs, so a row is the layer's cost to within one output copy; the total is the whole model's.
The ONNX graph is an artifact's ``model.onnx``; the registered model gives its input size and
normalization.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx

from mobile_export.calibration import load_calibration
from mobile_export.convert.lowering import LoweredGraph
from mobile_export.convert.to_tflite import convert
from mobile_export.errors import UserError
from mobile_export.models import configure
from mobile_export.options import Precision
from mobile_export.quantize import ranges as Q
from mobile_export.runtimes.arm import run_tflite
from mobile_export.runtimes.host import TFLiteModel

log = logging.getLogger(__name__)


def live_tensors(nodes, k: int, graph_outputs: set[str]) -> list[str]:
    """Tensors produced by nodes[:k+1] that nodes[k+1:] read (or that are graph outputs)."""
    later = {i for n in nodes[k + 1:] for i in n.input}
    return sorted({o for n in nodes[:k + 1] for o in n.output if o in later or o in graph_outputs})


def _cut(lowered, live: list[str]):
    return lambda t: {n: v for n, v in lowered(t, extra_outputs=live).items() if n in live}


def profile(proto, config, calib_nhwc: np.ndarray | None, cpu: str, every: int) -> list[dict]:
    """One row per cut: the ONNX nodes since the previous cut, the prefix's count and the difference."""
    int8 = calib_nhwc is not None
    ranges = None
    if int8:
        ranges = Q.plan_ranges(LoweredGraph(proto, int8_forms=True), calib_nhwc, Q.recipe_for(config.spec.family))
    lowered = LoweredGraph(proto, fake_quant=int8, ranges=ranges)
    nodes, outputs = list(lowered.model.graph.node), {o.name for o in lowered.model.graph.output}
    shape = lowered.input_shape
    rep = (lambda: (calib_nhwc[i:i + 1] for i in range(len(calib_nhwc)))) if int8 else None
    x = calib_nhwc[:1] if int8 else np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    rows, prev, prev_k = [], 0, -1
    for k in sorted(set(range(every - 1, len(nodes), every)) | {len(nodes) - 1}):
        tfl = convert(_cut(lowered, live_tensors(nodes, k, outputs)), shape, input_name=lowered.input_names[0],
                      precision=Precision.INT8 if int8 else Precision.FP32, representative=rep)
        host = TFLiteModel(tfl, xnnpack=False)
        count = run_tflite(tfl, host.quantize_input(x), cpu=cpu, host=host).median_instructions or 0
        rows.append({"cut": k, "nodes": [f"{n.op_type} {n.name}" for n in nodes[prev_k + 1:k + 1]],
                     "instructions": count, "delta": count - prev})
        prev, prev_k = count, k
        log.info("%4d %8.3fM %+8.3fM  %s", k, count / 1e6, rows[-1]["delta"] / 1e6, rows[-1]["nodes"][-1][:90])
    return rows


def bypass(proto, op_types: set[str]):
    """A copy of ``proto`` in which every node of ``op_types`` passes through its input of the output's
    shape, and nodes left without readers are pruned: a wrong function, kept only as a bound — what the
    remaining ops cost with the bypassed ones free (e.g. ``Add,Mul,HardSwish``: convolutions alone)."""
    model = onnx.shape_inference.infer_shapes(proto)
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*g.value_info, *g.input, *g.output]}
    shapes.update({i.name: list(i.dims) for i in g.initializer})
    alias: dict[str, str] = {}
    resolve = lambda n: resolve(alias[n]) if n in alias else n  # noqa: E731
    kept = []
    for node in g.node:
        if node.op_type in op_types:
            out = node.output[0]
            alias[out] = next((i for i in node.input if shapes.get(i) == shapes.get(out)), node.input[0])
            continue
        node.input[:] = [resolve(i) for i in node.input]
        kept.append(node)
    for o in g.output:
        if o.name in alias:
            kept.append(onnx.helper.make_node("Identity", [resolve(o.name)], [o.name]))
    while True:
        read = {i for n in kept for i in n.input} | {o.name for o in g.output}
        live = [n for n in kept if any(o in read for o in n.output)]
        if len(live) == len(kept):
            break
        kept = live
    del g.node[:]
    g.node.extend(kept)
    read = {i for n in kept for i in n.input}
    inits = [i for i in g.initializer if i.name in read]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    return model


def by_op(rows: list[dict]) -> dict[str, float]:
    """Instructions per ONNX op type (a cut's delta split evenly over its nodes)."""
    out: dict[str, float] = defaultdict(float)
    for r in rows:
        for n in r["nodes"]:
            out[n.split()[0]] += r["delta"] / len(r["nodes"])
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run(onnx_path: Path, name: str, *, int8: bool, calibration: str | None = None, num: int = 64,
        cpu: str = "cortex-a76", every: int = 1, bypass_ops: str = "") -> dict:
    """Profile ``onnx_path`` (an artifact's model.onnx of registered model ``name``); ``bypass_ops``:
    comma-separated ONNX op types made pass-throughs. Returns ``{"total", "rows", "by_op"}``."""
    if not Path(onnx_path).is_file():
        raise UserError(f"{onnx_path} does not exist; pass the model.onnx of an exported artifact.")
    proto = onnx.load(str(onnx_path))
    if bypass_ops:
        types = set(bypass_ops.split(","))
        missing = sorted(types - {n.op_type for n in proto.graph.node})
        if missing:
            raise UserError(f"--bypass names {', '.join(missing)}, which {onnx_path} has no node of; give ONNX op "
                            "types of the model (e.g. Add,Mul,HardSwish).")
        proto = bypass(proto, types)
    size = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim][2]
    classes = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim][-1]
    config = configure(name, input_size=size, num_classes=classes)
    calib = load_calibration(calibration, config, num, 0).nhwc() if int8 else None
    rows = profile(proto, config, calib, cpu, every)
    return {"model": name, "precision": "int8" if int8 else "fp32", "cpu": cpu, "total": rows[-1]["instructions"],
            "rows": rows, "by_op": by_op(rows)}


def table(result: dict) -> str:
    """Markdown: instructions per ONNX op type and their share."""
    ops = result["by_op"]
    total = sum(ops.values()) or 1
    lines = [f"{result['model']} {result['precision']} on emulated {result['cpu']}: {result['total'] / 1e6:.2f}M "
             "instructions per inference", "", "| ONNX op | instructions | share |", "|---|---|---|"]
    lines += [f"| {op} | {n / 1e6:.2f}M | {100 * n / total:.1f}% |" for op, n in ops.items()]
    return "\n".join(lines) + "\n"
