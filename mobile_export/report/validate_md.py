"""report.md of a validation: short enough for a pull-request comment, the numbers a reviewer needs."""
from __future__ import annotations

from typing import Any

from mobile_export.report.common import arm_text, device_text, fmt, per_layer_lines


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
    g = rep["gate"]
    lines += [f"## Gate ({g['source']})", "", "| check | measured | allowed | result |", "|---|---|---|---|"]
    checks = sorted(g["checks"], key=lambda c: c["passed"])  # failures first
    for c in checks:
        res = "skipped" if c["skipped"] else ("ok" if c["passed"] else "**FAILED**")
        lines.append(f"| {c['name']} | {fmt(c['measured'])} | {c['op']} {fmt(c['allowed'])} | {res} |")
    if not checks:
        lines.append("| (no thresholds) | | | |")
    lines += ["", "## Outputs", "", "| comparison | max abs | max rel | cosine min | SQNR dB | top-1 agr. | top-5 agr. |",
              "|---|---|---|---|---|---|---|"]
    order = ["tflite_vs_torch", "tflite_vs_onnxruntime", "onnxruntime_vs_torch"]
    for key in order + sorted(set(rep["fidelity"]) - set(order)):
        m = rep["fidelity"][key]
        lines.append(f"| {key.replace('_', ' ')} | {fmt(m['max_abs'])} | {fmt(m['max_rel'])} | {fmt(m['cosine_min'], 6)} | "
                     f"{fmt(m['sqnr_db'])} | {fmt(m['top1_agreement'])} | {fmt(m['top5_agreement'])} |")
    lines += accuracy_lines(rep.get("accuracy"))
    fl = rep["flips"]
    lines += ["", f"Top-1 flips vs PyTorch: {fl['count']} of {d['count']} ({100 * fl['rate']:.1f}%)"
              + (": " + ", ".join(f"#{s['index']}" + (f" `{s['file']}`" if "file" in s else "")
                                  for s in fl["samples"][:10]) + (" …" if fl["count"] > 10 else "") if fl["count"] else "")]
    lines += ["", "## Per layer", "", *per_layer_lines(rep["per_layer"])]
    lines += latency_lines(rep.get("latency"))
    lines += ["", "Stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in rep["stages_s"].items())]
    return "\n".join(lines) + "\n"


def accuracy_lines(acc: dict[str, Any] | None) -> list[str]:
    """Top-1/top-5 per runtime, the drop with its CI and McNemar's test."""
    lines: list[str] = []
    if acc:
        dr, mc = acc["top1_drop"], acc["mcnemar"]
        lines += ["", "## Accuracy", "", "| runtime | top-1 | top-5 |", "|---|---|---|",
                  f"| PyTorch | {acc['torch']['top1']:.4f} | {acc['torch']['top5']:.4f} |",
                  f"| TFLite | {acc['tflite']['top1']:.4f} | {acc['tflite']['top5']:.4f} |", "",
                  f"Top-1 drop (PyTorch − TFLite): **{dr['drop_pp']:+.2f} pp**, {int(dr['level'] * 100)}% CI "
                  f"[{dr['ci_low_pp']:+.2f}, {dr['ci_high_pp']:+.2f}] (paired bootstrap, {dr['resamples']} resamples). "
                  f"McNemar exact p = {mc['p_value']:.3g} ({mc['torch_only_correct']} right only in PyTorch, "
                  f"{mc['tflite_only_correct']} only in TFLite)."]
    return lines


def latency_lines(lat: dict[str, Any] | None) -> list[str]:
    """Median / p90 per runtime and thread count, and the ratios."""
    lines: list[str] = []
    if lat:
        th = lat["threads"]
        lines += ["", f"## Latency (median / p90 ms, {lat['runs']} warm runs, interleaved)", "",
                  "| runtime | " + " | ".join(f"{n} thread{'s' * (n > 1)}" for n in th) + " |",
                  "|---|" + "---|" * len(th)]
        for name, per in lat["runtimes"].items():
            lines.append(f"| {name} | " + " | ".join(f"{per[str(n)]['median_ms']:.2f} / {per[str(n)]['p90_ms']:.2f}"
                                                      for n in th) + " |")
        lines.append("")
        for key, per in lat["ratios"].items():
            lines.append(f"- {key.replace('_', ' ')}: " + ", ".join(f"{per[str(n)]:.2f}× ({n} thr.)" for n in th))
    return lines
