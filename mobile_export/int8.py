"""Full-integer int8 export: calibration split, range planning, conversion, and the automatic
sensitivity pass that tries better range methods when int8 fidelity is below the bar.

Fidelity is judged against the fp32 TFLite model of the same lowering on a held-back slice of
the calibration data (never used for ranges): SQNR of the logits and top-1 agreement.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from mobile_export import quantize as Q
from mobile_export.metrics import compare
from mobile_export.options import ExportOptions, Precision

log = logging.getLogger(__name__)

MIN_TOP1_AGREEMENT = 0.99
MIN_SQNR_DB = 20.0
HOLDOUT = 64  # held-back calibration samples (at most a quarter of the set)


@dataclass
class Int8Result:
    tflite: bytes
    lowered: object
    float_tflite: bytes
    calibration: object  # CalibrationSet (the whole set as loaded)
    holdout: object  # CalibrationSet
    attempts: list[dict] = field(default_factory=list)
    chosen: dict = field(default_factory=dict)

    @property
    def decisions(self) -> list[str]:
        out = [f"int8 attempt {a['method']}: SQNR {a['sqnr_db']:.1f} dB, top-1 agreement "
               f"{a['top1_agreement']:.3f} vs fp32 on {a['samples']} held-back samples" for a in self.attempts]
        out.append(f"int8 chosen: {self.chosen['method']} ranges"
                   + ("" if self.chosen["meets_bar"] else
                      f" (below the bar of {MIN_SQNR_DB:g} dB / {MIN_TOP1_AGREEMENT:.0%} top-1 agreement: "
                      "no candidate reached it; every op is still int8)"))
        return out


def split_holdout(calib):
    n = min(HOLDOUT, calib.count // 4)
    if n < 1:
        return calib, calib  # too few samples to hold any back: judge on the calibration data
    return calib.split(n)


def export_int8(proto, config, options: ExportOptions, run_stage) -> Int8Result:
    """Convert ``proto`` to a full-integer model; ``run_stage(name, fn, *args)`` times each stage."""
    from mobile_export.calibration import load_calibration
    from mobile_export.lowering import LoweredGraph
    from mobile_export.runtime import TFLiteModel
    from mobile_export.tflite_convert import convert

    calib = run_stage("load calibration data", load_calibration, options.calibration, config,
                      options.num_calibration, options.seed)
    cal_part, hold = split_holdout(calib)
    cal_nhwc = np.ascontiguousarray(cal_part.inputs.transpose(0, 2, 3, 1))
    hold_nhwc = np.ascontiguousarray(hold.inputs.transpose(0, 2, 3, 1))
    shape = (options.batch, *config.input_shape_nhwc[1:])
    batch = options.batch

    def representative():
        for i in range(0, len(cal_nhwc) - batch + 1, batch):
            yield cal_nhwc[i:i + batch]

    float_graph = LoweredGraph(proto)
    float_tflite = run_stage("convert float reference", convert, float_graph, shape,
                             input_name=config.input_name, precision=Precision.FP32)
    ref = TFLiteModel(float_tflite).run(hold_nhwc)
    recipe = Q.recipe_for(config.spec.family)
    names = Q.names_to_collect(float_graph.model.graph)
    acts = run_stage("collect activations", Q.collect_activations, float_graph, cal_nhwc, names, options.seed)

    methods = [recipe.method] + ([m for m in Q.CANDIDATE_METHODS if m is not recipe.method] if options.search else [])
    result: Int8Result | None = None
    best = None
    for method in methods:
        r = Q.Recipe(recipe.name, method, recipe.percentile, recipe.overrides)
        ranges = Q.plan_ranges(float_graph, cal_nhwc, r, activations=acts)
        lowered = LoweredGraph(proto, fake_quant=True, ranges=ranges)
        tflite = run_stage(f"convert int8 ({method.value} ranges)", convert, lowered, shape,
                           input_name=config.input_name, precision=Precision.INT8,
                           representative=representative, io_type=options.io_type)
        m = compare(TFLiteModel(tflite).run(hold_nhwc), ref)
        attempt = {"method": method.value, **{k: m[k] for k in ("sqnr_db", "top1_agreement", "top5_agreement",
                                                                   "cosine_mean", "samples")}}
        attempt["meets_bar"] = m["sqnr_db"] >= MIN_SQNR_DB and m["top1_agreement"] >= MIN_TOP1_AGREEMENT
        log.info("int8 with %s ranges: SQNR %.1f dB, top-1 agreement %.3f", method.value, m["sqnr_db"],
                 m["top1_agreement"])
        if result is None:
            result = Int8Result(tflite, lowered, float_tflite, calib, hold)
        result.attempts.append(attempt)
        if best is None or (attempt["meets_bar"], m["sqnr_db"]) > (best[0]["meets_bar"], best[0]["sqnr_db"]):
            best = (attempt, tflite, lowered)
        if attempt["meets_bar"]:
            break
    assert result is not None and best is not None
    result.chosen, result.tflite, result.lowered = best
    return result
