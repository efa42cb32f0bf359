"""How good can any fully-integer int8 model of these weights be? An optimistic simulation beside ours.

    python tools/int8_ceiling.py NAME ... (--golden | --weights W) [--calibration DIR] [--num 200]
        [--out DIST] [--json out.json] [--solo K]

TFLite int8 activations are per-tensor. This tool measures, on the same calibration images the export
judges its int8 model on (fit part + held-back part), the logit SQNR and top-1 agreement vs fp32 of:

- ``ours``: the exported int8 .tflite (the export's chosen candidate, as its report states);
- ``sim``: the lowered float graph with int8 quantize-dequantize only at the tensors we range (every
  tensor TFLite materialises as int8 with an unknown range), ranges planned on the fit part as the
  export does, float weights, exact float arithmetic everywhere else;
- ``oracle``: the same, but each range method's ranges planned on *all* the evaluated images (the
  ranges have seen the test data) and the best method kept.

``sim`` and ``oracle`` leave out weight rounding, requantization and fixed-point kernels and quantize
fewer tensors than TFLite does, so they are upper bounds for per-tensor int8 activations at our ranging
points: when ``oracle`` is far below a fidelity bar, no range choice reaches it and the loss is the
int8 format's on these weights, not the converter's. ``--solo K`` quantizes one tensor at a time
(oracle range) and lists the K that cost most alone: where the format loses. ``--golden`` fills the weights by
``../shared/torchvision-golden/fill.py`` (the ARM benchmark's recipe) at 224×224, 1000 classes.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))


def run_graph(graph, x_nhwc: np.ndarray, batch: int = 8) -> np.ndarray:
    """Logits of a lowered graph (float, or with fake-quant nodes) run eagerly in TF."""
    import tensorflow as tf

    out = graph.output_names[0]
    return np.concatenate([graph(tf.constant(x_nhwc[i:i + batch]))[out].numpy() for i in range(0, len(x_nhwc), batch)])


def figures(got: np.ndarray, ref: np.ndarray) -> dict:
    from mobile_export.metrics import compare

    m = compare(got, ref)
    return {"sqnr_db": round(m["sqnr_db"], 2), "top1_agreement": round(m["top1_agreement"], 4)}


def simulated(proto, ranges: dict[str, tuple[float, float]], x_nhwc: np.ndarray, ref: np.ndarray) -> dict:
    """Figures of ``proto`` lowered with int8 quantize-dequantize at exactly the tensors of ``ranges``."""
    from mobile_export.convert.lowering import LoweredGraph

    return figures(run_graph(LoweredGraph(proto, fake_quant=True, ranges=ranges), x_nhwc), ref)


SOLO_IMAGES = 32  # images the one-tensor-at-a-time runs are judged on


def ceiling(name: str, weights: str, calibration: str | None, num: int, out: Path, solo: int = 0) -> dict:
    """Export ``name`` int8 and measure ours / sim / oracle on its calibration images."""
    import onnx

    from mobile_export import export
    from mobile_export.calibration import load_calibration
    from mobile_export.convert.lowering import LoweredGraph
    from mobile_export.models import configure
    from mobile_export.quantize import ranges as Q
    from mobile_export.quantize.search import split_holdout

    res = export(name, precision="int8", weights=weights, out_dir=out, calibration=calibration,
                 num_calibration=num, input="normalized")
    chosen = res.report.int8.chosen
    proto = onnx.load(str(out / name / "int8" / "model.onnx"))
    config = configure(name, weights=weights)
    calib = load_calibration(calibration, config, num, 0)
    fit, _ = split_holdout(calib)
    fit_x = np.ascontiguousarray(fit.inputs.transpose(0, 2, 3, 1))
    all_x = np.ascontiguousarray(calib.inputs.transpose(0, 2, 3, 1))
    float_graph = LoweredGraph(proto, int8_forms=True)
    ref = run_graph(float_graph, all_x)
    recipe = Q.recipe_for(config.spec.family)
    names = Q.names_to_collect(float_graph.model.graph)
    fit_acts = Q.collect_activations(float_graph, fit_x, names)
    all_acts = Q.collect_activations(float_graph, all_x, names)

    def plan(method, acts, x_fit):
        r = Q.Recipe(recipe.name, method, recipe.percentile, recipe.overrides)
        return Q.plan_ranges(float_graph, x_fit, r, activations=acts)

    row = {"model": name, "images": len(all_x),
           "ours": {"sqnr_db": round(chosen["sqnr_db"], 2), "top1_agreement": round(chosen["top1_agreement"], 4),
                    "method": chosen["method"], "equalized": chosen["equalized"]}}
    sim_ranges = plan(Q.RangeMethod(chosen["method"]), fit_acts, fit_x)
    row["sim"] = {**simulated(proto, sim_ranges, all_x, ref), "method": chosen["method"]}
    oracle_ranges = {m: plan(m, all_acts, all_x) for m in Q.CANDIDATE_METHODS}
    oracle = [{**simulated(proto, r, all_x, ref), "method": m.value} for m, r in oracle_ranges.items()]
    row["oracle"] = max(oracle, key=lambda o: (o["top1_agreement"], o["sqnr_db"]))
    row["oracle_all"] = oracle
    if solo:
        ranges = oracle_ranges[Q.RangeMethod(row["oracle"]["method"])]
        x = all_x[:SOLO_IMAGES]
        costs = []
        for t, rng in ranges.items():
            m = simulated(proto, {t: rng}, x, ref[:SOLO_IMAGES])
            costs.append({"tensor": t, "range": [round(float(v), 3) for v in rng], **m})
        row["solo"] = sorted(costs, key=lambda c: c["sqnr_db"])[:solo]
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | images | ours int8 SQNR / agr. | sim (our ranges) | oracle (ranges fit on the test images) |",
             "|---|---:|---|---|---|"]
    for r in rows:
        cell = lambda d: f"{d['sqnr_db']:.1f} dB / {d['top1_agreement']:.3f}"  # noqa: E731
        lines.append(f"| {r['model']} | {r['images']} | {cell(r['ours'])} | {cell(r['sim'])} | "
                     f"{cell(r['oracle'])} ({r['oracle']['method']}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="+")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--golden", action="store_true", help="weights by the torchvision-golden fill recipe")
    src.add_argument("--weights", help="a registered weights name (e.g. cifar10) or a state_dict path")
    ap.add_argument("--calibration", help="calibration images (default: the embedded set)")
    ap.add_argument("--num", type=int, default=200, help="calibration images (default 200, as the ARM benchmark)")
    ap.add_argument("--out", type=Path, default=Path("dist-ceiling"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--solo", type=int, default=0, metavar="K",
                    help="also quantize one tensor at a time (oracle range, 32 images) and list the K costliest")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from mobile_export.models import list_models

    unknown = [n for n in args.names if n not in list_models()]
    if unknown:
        print(f"int8_ceiling: error: unknown model {unknown[0]!r}; `mobile-export list` names them.", file=sys.stderr)
        return 2
    from mobile_export.errors import UserError

    rows = []
    for name in args.names:
        if args.golden:
            from arm_bench import golden_weights

            weights = str(golden_weights(name, args.out))
        else:
            weights = args.weights
        try:
            rows.append(ceiling(name, weights, args.calibration, args.num, args.out, args.solo))
        except UserError as e:  # bad --weights / --calibration / --out: the library's one sentence
            print(f"int8_ceiling: error: {name}: {e}", file=sys.stderr)
            return e.exit_code
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    for r in rows:
        for c in r.get("solo", []):
            print(f"{r['model']}: {c['tensor']} alone [{c['range'][0]}, {c['range'][1]}]: "
                  f"{c['sqnr_db']:.1f} dB / {c['top1_agreement']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
