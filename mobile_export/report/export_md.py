"""report.md of an export: the verdict and the bar it was judged by, the output comparisons, the
graph, latency, accuracy and (int8) the search's attempts and the per-layer table — rendered from
the report's JSON (``check.report.Report.to_json``, the schema)."""
from __future__ import annotations

from typing import Any

from mobile_export.report.common import (
    accuracy_lines, fidelity_lines, fmt, gate_lines, latency_lines, per_layer_lines,
)


def to_markdown(rep: dict[str, Any]) -> str:
    lines = [f"# mobile-export report: {rep['model']} ({rep['precision']})", "",
             f"**Result: {'PASS' if rep['passed'] else 'FAIL'}**", ""]
    for w in rep["warnings"]:
        lines += [f"> **Warning:** {w}", ""]
    d = rep["data"]
    lines += [f"Checked on {d['count']} samples: {d['kind']} `{d['source']}`.", ""]
    lines += gate_lines(rep["gate"])
    lines += ["", *fidelity_lines(rep["fidelity"]), ""]
    x = rep["xnnpack"]
    lines += ["## Graph", "", f"- XNNPACK partitions: {x['partitions']} (nodes outside: {len(x['outside'])})",
              f"- TRANSPOSE ops: {rep['transpose_ops']}",
              "- ops: " + ", ".join(f"{k}×{v}" for k, v in rep["ops"].items())]
    lines += latency_lines(rep.get("latency"))
    if rep.get("calibration"):
        c = rep["calibration"]
        lines += ["", f"Calibration: {c['kind']} `{c['source']}`, {c['count']} samples, seed {c['seed']}, "
                      f"sha256 {c['sha256'][:16]}…"]
    lines += accuracy_lines(rep.get("accuracy"))
    if rep.get("int8"):
        lines += int8_lines(rep["int8"])
    if rep.get("per_layer"):
        lines += ["", "## Per layer: TFLite vs onnxruntime", "", *per_layer_lines(rep["per_layer"])]
    lines += ["", "Stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in rep["stages_s"].items())]
    return "\n".join(lines) + "\n"


def int8_lines(q: dict[str, Any]) -> list[str]:
    """The int8 section: integer-ness, every attempt of the search and the choice."""
    lines = ["", "## Int8", "",
             f"Fully integer: {'yes' if q['fully_integer'] else 'NO: ' + ', '.join(q['violations'][:5])}"
             + (f" (float at the I/O edges, inside XNNPACK: {', '.join(q['io_boundary'])})" if q.get("io_boundary")
                else "")]
    if not q.get("attempts"):
        return lines
    lines += ["", f"Search: int8 vs fp32 TFLite on {q['chosen']['samples']} calibration images "
                  f"({q['holdout_samples']} of them held back from range fitting).", "",
              "| attempt | SQNR dB | top-1 agr. | top-5 agr. | cosine (mean) | meets bar |", "|---|---|---|---|---|---|"]
    for a in q["attempts"]:
        chosen = " (chosen)" if a == q["chosen"] else ""
        label = a["method"] + (" + equalization" if a.get("equalized") else "") + (
            " + bias correction" if a.get("bias_corrected") else "")
        if "failed" in a:
            lines.append(f"| {label} | failed: {a['failed']} | | | | no |")
            continue
        lines.append(f"| {label}{chosen} | {a['sqnr_db']:.2f} | {fmt(a['top1_agreement'], 3)} | "
                     f"{fmt(a['top5_agreement'], 3)} | {a['cosine_mean']:.4f} | {'yes' if a['meets_bar'] else 'no'} |")
    return lines
