"""The export's report.json (schema-versioned) and report.md, built from what an export measured."""
from __future__ import annotations

import datetime as _dt
from typing import Any

from mobile_export.artifacts import SCHEMA_VERSION
from mobile_export.report.common import per_layer_lines

def build(*, manifest, config, precision, warnings, stages, fidelity, partitions, ops, latency,
          calibration=None, extra: dict | None = None) -> dict[str, Any]:
    rep = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": config.name,
        "precision": precision.value,
        "trained": manifest["trained"],
        "warnings": list(warnings),
        "stages_s": stages,
        "fidelity": fidelity,
        "xnnpack": partitions,
        "ops": ops,
        "transpose_ops": ops.get("TRANSPOSE", 0),
        "latency": latency,
        "tflite_sha256": manifest["tflite_sha256"],
        "calibration": manifest["calibration"],
    }
    if extra:
        rep.update(extra)
    return rep


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def to_markdown(rep: dict[str, Any]) -> str:
    lines = [f"# mobile-export report: {rep['model']} ({rep['precision']})", ""]
    verdict = "PASS" if rep.get("passed") else "FAIL"
    lines.append(f"**Result: {verdict}**")
    lines.append("")
    for w in rep["warnings"]:
        lines.append(f"> **Warning:** {w}")
        lines.append("")
    fid = rep["fidelity"]
    lines += ["## Fidelity", "", "| comparison | max abs | max rel | cosine (min) | SQNR dB | top-1 agr. | top-5 agr. |",
              "|---|---|---|---|---|---|---|"]
    for key in ("tflite_vs_torch", "tflite_vs_onnxruntime"):
        m = fid[key]
        lines.append(f"| {key.replace('_', ' ')} | {_fmt(m['max_abs'])} | {_fmt(m['max_rel'])} | "
                     f"{_fmt(m['cosine_min'])} | {_fmt(m['sqnr_db'])} | {_fmt(m['top1_agreement'])} | "
                     f"{_fmt(m['top5_agreement'])} |")
    bounds = ", ".join(f"{k} {v:g}" for k, v in fid["bounds"].items()) or "none (int8: judged against fp32 below)"
    lines += ["", f"Bounds against PyTorch: {bounds} → {'met' if fid['passed'] else 'NOT met'}", ""]
    x = rep["xnnpack"]
    lines += ["## Graph", "", f"- XNNPACK partitions: {x['partitions']} (nodes outside: {len(x['outside'])})",
              f"- TRANSPOSE ops: {rep['transpose_ops']}",
              "- ops: " + ", ".join(f"{k}×{v}" for k, v in rep["ops"].items()), ""]
    lat = rep["latency"]
    lines += ["## Latency (host, XNNPACK)", "", "| run | median ms | p90 ms |", "|---|---|---|"]
    for k, v in lat.items():
        if isinstance(v, dict) and "median_ms" in v:
            lines.append(f"| {k} | {v['median_ms']:.3f} | {v['p90_ms']:.3f} |")
    for k, v in lat.items():
        if not isinstance(v, dict):
            lines.append(f"\n{k}: {_fmt(v)}")
    lines += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in rep["stages_s"].items()]
    if rep.get("calibration"):
        c = rep["calibration"]
        lines += ["", f"Calibration: {c['kind']} `{c['source']}`, {c['count']} samples, seed {c['seed']}, sha256 {c['sha256'][:16]}…"]
    if rep.get("accuracy"):
        a = rep["accuracy"]
        d = a["top1_drop"]
        lines += ["", f"## Accuracy on {a['samples']} images: {a['data']}", "",
                  f"Top-1: PyTorch {a['torch']['top1']:.2%}, TFLite {a['tflite']['top1']:.2%}; drop {d['drop_pp']:+.2f} pp "
                  f"(95% CI {d['ci_low_pp']:+.2f} .. {d['ci_high_pp']:+.2f})"]
    if rep.get("int8"):
        lines += int8_lines(rep["int8"])
    return "\n".join(lines) + "\n"


def int8_lines(q: dict[str, Any]) -> list[str]:
    """The int8 section: every attempt of the search, the choice, and the per-layer table."""
    lines = ["", f"## Int8 vs fp32 TFLite on {q['chosen']['samples']} calibration images "
             f"({q['holdout_samples']} of them held back from range fitting)", "",
             f"Fully integer: {'yes' if q['fully_integer'] else 'NO: ' + ', '.join(q['violations'][:5])}"
             + (f" (float at the I/O edges, inside XNNPACK: {', '.join(q['io_boundary'])})" if q.get("io_boundary")
                else ""), "",
             "| range method | SQNR dB | top-1 agr. | top-5 agr. | cosine (mean) | meets bar |", "|---|---|---|---|---|---|"]
    for a in q["attempts"]:
        chosen = " (chosen)" if a == q["chosen"] else ""
        eq = " + equalization" if a.get("equalized") else ""
        if "failed" in a:
            lines.append(f"| {a['method']}{eq} | failed: {a['failed']} | | | | no |")
            continue
        lines.append(f"| {a['method']}{eq}{chosen} | {a['sqnr_db']:.2f} | {a['top1_agreement']:.3f} | "
                     f"{a['top5_agreement']:.3f} | {a['cosine_mean']:.4f} | {'yes' if a['meets_bar'] else 'no'} |")
    if q.get("per_layer"):
        lines += ["", "### Per layer: int8 TFLite vs fp32 (onnxruntime)", "", *per_layer_lines(q["per_layer"])]
    return lines
