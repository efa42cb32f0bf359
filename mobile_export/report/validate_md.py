"""report.md of a validation: short enough for a pull-request comment, the numbers a reviewer needs."""
from __future__ import annotations

from typing import Any

from mobile_export.report.common import (
    accuracy_lines, arm_text, device_text, fidelity_lines, gate_lines, latency_lines, per_layer_lines,
)


def to_markdown(rep: dict[str, Any]) -> str:
    verdict = "PASS" if rep["passed"] else "FAIL"
    lines = [f"# mobile-export validate: {rep['model']} ({rep['precision']}) — **{verdict}**", ""]
    d = rep["data"]
    lines.append(f"Data: {d['kind']} `{d['source']}`, {d['count']} samples (seed {d['seed']})"
                 f"{', labelled' if d['labelled'] else ''}; runtime {rep['runtime']['kind']} "
                 f"(ai-edge-litert {rep['runtime']['ai_edge_litert']}, {rep['runtime']['delegate']}).")
    lines.append("")
    for w in rep["warnings"]:
        lines += [f"> **Warning:** {w}", ""]
    if rep.get("arm"):
        lines += [arm_text(rep["arm"]) + ".", ""]
    if rep.get("device"):
        lines += [device_text(rep["device"]) + ".", ""]
    lines += gate_lines(rep["gate"])
    lines += ["", *fidelity_lines(rep["fidelity"])]
    lines += accuracy_lines(rep.get("accuracy"))
    fl = rep["flips"]
    lines += ["", f"Top-1 flips vs PyTorch: {fl['count']} of {d['count']} ({100 * fl['rate']:.1f}%)"
              + (": " + ", ".join(f"#{s['index']}" + (f" `{s['file']}`" if "file" in s else "")
                                  for s in fl["samples"][:10]) + (" …" if fl["count"] > 10 else "") if fl["count"] else "")]
    if rep.get("per_layer"):
        lines += ["", "## Per layer", "", *per_layer_lines(rep["per_layer"])]
    lines += latency_lines(rep.get("latency"))
    lines += ["", "Stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in rep["stages_s"].items())]
    return "\n".join(lines) + "\n"
