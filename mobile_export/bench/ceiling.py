"""How good can any fully-integer int8 model of these weights be? An optimistic simulation beside ours.

TFLite int8 activations are per tensor. On the images the int8 search judges its candidates on (its
fit part and held-back part, from the search's own starting point, ``quantize.search.prepare``), this
measures the logit SQNR and top-1 agreement against the fp32 model of:

- ``ours``: the exported int8 model (the search's chosen candidate, as its report states);
- ``sim``: the lowered float graph with int8 quantize-dequantize only at the tensors we range, ranges
  planned on the fit part as the export does, float weights and exact float arithmetic elsewhere;
- ``oracle``: the same with each range method's ranges planned on *all* the evaluated images (the
  ranges have seen the test data), the best method kept.

``sim`` and ``oracle`` leave out weight rounding, requantization and fixed-point kernels and quantize
fewer tensors than TFLite does, so they are upper bounds for per-tensor int8 activations at our
ranging points: when ``oracle`` is far below a bar, no range choice reaches it and the loss is the
format's on these weights, not the converter's. ``solo=K`` quantizes one tensor at a time (oracle
range) and lists the K that cost most alone: where the format loses.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import tensorflow as tf

from mobile_export.api import export
from mobile_export.check.engine import Stages
from mobile_export.convert.lowering import LoweredGraph
from mobile_export.metrics import compare
from mobile_export.models import configure
from mobile_export.options import ExportOptions
from mobile_export.quantize import ranges as Q
from mobile_export.quantize.search import prepare

log = logging.getLogger(__name__)
SOLO_IMAGES = 32  # images the one-tensor-at-a-time runs are judged on


def run_graph(graph, x_nhwc: np.ndarray, batch: int = 8) -> np.ndarray:
    """Logits of a lowered graph (float, or with fake-quant nodes) run eagerly in TF."""
    out = graph.output_names[0]
    return np.concatenate([graph(tf.constant(x_nhwc[i:i + batch]))[out].numpy() for i in range(0, len(x_nhwc), batch)])


def figures(got: np.ndarray, ref: np.ndarray) -> dict:
    m = compare(got, ref)
    return {"sqnr_db": round(m["sqnr_db"], 2), "top1_agreement": round(m["top1_agreement"], 4)}


def simulated(proto, ranges: dict[str, tuple[float, float]], x_nhwc: np.ndarray, ref: np.ndarray) -> dict:
    """Figures of ``proto`` lowered with int8 quantize-dequantize at exactly the tensors of ``ranges``."""
    return figures(run_graph(LoweredGraph(proto, fake_quant=True, ranges=ranges), x_nhwc), ref)


def _solo(proto, ranges: dict, x: np.ndarray, ref: np.ndarray, k: int) -> list[dict]:
    costs = [{"tensor": t, "range": [round(float(v), 3) for v in rng], **simulated(proto, {t: rng}, x, ref)}
             for t, rng in ranges.items()]
    return sorted(costs, key=lambda c: c["sqnr_db"])[:k]


def ceiling(name: str, weights: str | None, calibration: str | None, num: int, out: Path, solo: int = 0) -> dict:
    """Export ``name`` int8 and measure ours / sim / oracle on its calibration images."""
    opts = ExportOptions(precision="int8", weights=weights, out_dir=out, calibration=calibration,
                         num_calibration=num, input="normalized")
    chosen = export(name, opts).report.int8.chosen
    proto = onnx.load(str(out / name / "int8" / "model.onnx"))
    config = configure(name, weights=weights)
    s, _, _ = prepare(proto, config, opts, Stages().run)  # the search's own images, split and float graph
    graph, all_x = s.float_graph, s.eval_nhwc
    ref = run_graph(graph, all_x)
    all_acts = Q.collect_activations(graph, all_x, Q.names_to_collect(graph.model.graph))

    def plan(method, acts, x_fit):
        r = Q.Recipe(s.recipe.name, method, s.recipe.percentile, s.recipe.overrides)
        return Q.plan_ranges(graph, x_fit, r, activations=acts)

    row = {"model": name, "images": len(all_x),
           "ours": {"sqnr_db": round(chosen["sqnr_db"], 2), "top1_agreement": round(chosen["top1_agreement"], 4),
                    "method": chosen["method"], "equalized": chosen["equalized"]}}
    row["sim"] = {**simulated(proto, plan(Q.RangeMethod(chosen["method"]), s.acts, s.cal_nhwc), all_x, ref),
                  "method": chosen["method"]}
    oracle_ranges = {m: plan(m, all_acts, all_x) for m in Q.CANDIDATE_METHODS}
    row["oracle_all"] = [{**simulated(proto, r, all_x, ref), "method": m.value} for m, r in oracle_ranges.items()]
    row["oracle"] = max(row["oracle_all"], key=lambda o: (o["top1_agreement"], o["sqnr_db"]))
    if solo:
        ranges = oracle_ranges[Q.RangeMethod(row["oracle"]["method"])]
        row["solo"] = _solo(proto, ranges, all_x[:SOLO_IMAGES], ref[:SOLO_IMAGES], solo)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | images | ours int8 SQNR / agr. | sim (our ranges) | oracle (ranges fit on the test images) |",
             "|---|---:|---|---|---|"]
    for r in rows:
        cell = lambda d: f"{d['sqnr_db']:.1f} dB / {d['top1_agreement']:.3f}"  # noqa: E731
        lines.append(f"| {r['model']} | {r['images']} | {cell(r['ours'])} | {cell(r['sim'])} | "
                     f"{cell(r['oracle'])} ({r['oracle']['method']}) |")
    for r in rows:
        lines += [f"\n{r['model']}: {c['tensor']} alone [{c['range'][0]}, {c['range'][1]}]: "
                  f"{c['sqnr_db']:.1f} dB / {c['top1_agreement']:.3f}" for c in r.get("solo", [])]
    return "\n".join(lines) + "\n"
