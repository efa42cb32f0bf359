"""Formatting shared by every report (export and validation; Markdown, HTML and the CLI summary):
numbers, the per-layer section, and one-sentence summaries of ARM and device runs."""
from __future__ import annotations

from typing import Any

LAYER_ROWS = 12  # per-layer rows shown around the first divergence (the full table is in report.json)


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "∞" if v > 0 else "−∞"
        return f"{v:.{digits}g}"
    return str(v)


def fused_text(entry: dict[str, Any]) -> str:
    """'; fused with n011_Conv (features.2.block.0.0)' for a TFLite op that holds several nodes."""
    fused = entry.get("fused") or []
    if not fused:
        return ""
    return "; fused with " + ", ".join(f"{f['scope']} ({f['module'] or '-'})" for f in fused)


def layer_window(per_layer: dict[str, Any], rows: int = LAYER_ROWS) -> list[dict]:
    """The per-layer rows worth showing: a window ending a little after the first divergence (or
    the worst layers when nothing diverged)."""
    table = [e for e in per_layer.get("layers", []) if "skipped" not in e]
    first = per_layer.get("first_divergence")
    if first is None:
        return sorted(table, key=lambda e: e["sqnr_db"])[: rows // 2]
    pos = next(i for i, e in enumerate(table) if e["position"] == first["position"])
    lo = max(0, pos - rows + 3)
    return table[lo:pos + 3]


def per_layer_lines(pl: dict[str, Any]) -> list[str]:
    """The per-layer section (validate and the int8 export report): tolerance, the first layer past
    it named by scope and PyTorch module, and a window of the table around it."""
    tol = pl["tolerance"]
    first = pl.get("first_divergence")
    lines = [f"{pl['compared']} layers compared on {pl['samples']} samples; tolerance: "
             f"{'SQNR ≥ ' + fmt(tol['value']) + ' dB' if tol['kind'] == 'min_sqnr_db' else 'max rel ≤ ' + fmt(tol['value'])}."]
    if first:
        lines.append(f"**First divergent layer: `{first['scope']}`** ({first['op_type']}, module "
                     f"`{first['module'] or '-'}`{fused_text(first)}, TFLite {first['tflite_op']}): "
                     f"SQNR {fmt(first['sqnr_db'])} dB, "
                     f"cosine {fmt(first['cosine_mean'], 6)}, max rel {fmt(first['max_rel'])}.")
    else:
        lines.append("No layer is past the tolerance.")
    lines += ["", "| # | scope | module | TFLite op | SQNR dB | cosine | max rel |", "|---|---|---|---|---|---|---|"]
    for e in layer_window(pl):
        mark = " ⚠" if e["diverged"] else ""
        lines.append(f"| {e['position']} | {e['scope']}{mark} | {e['module'] or '-'} | {e['tflite_op']} | "
                     f"{fmt(e['sqnr_db'])} | {fmt(e['cosine_mean'], 6)} | {fmt(e['max_rel'])} |")
    return lines


def arm_text(arm: dict[str, Any]) -> str:
    """One sentence on an emulated-ARM run: identity with the host, instructions, int8/fp32 ratio."""
    ident = "bit-identical to the host" if arm["bit_identical"] else \
        f"{arm['differing_elements']} of {arm['elements']} output elements differ from the host"
    instr = (f"{arm['instructions_median'] / 1e6:.2f}M instructions per inference" if "instructions_median" in arm
             else arm.get("instructions_note", "no instruction count"))
    ratio = "".join(f", {k.split('_over')[0]}/fp32 {v:.2f}" for k, v in arm.items() if k.endswith("_over_fp32_instructions"))
    return f"emulated ARM {arm['cpu']} ({arm['samples']} samples): {ident}; {instr}{ratio}"


def device_text(dev: dict[str, Any]) -> str:
    """One sentence on an adb device run: identity with the host, per-invoke and benchmark_model times."""
    parts = [f"device {dev['serial']} ({dev['abi']})"]
    if "bit_identical" in dev:
        parts.append(f"{dev['samples']} samples " + ("bit-identical to the host" if dev["bit_identical"] else
                     f"with {dev['differing_elements']} of {dev['elements']} output elements differing from the host"))
    if "python_invoke_median_ms" in dev:
        parts.append(f"Python invoke median {dev['python_invoke_median_ms']:.2f} ms")
    b = dev.get("benchmark")
    if b:
        ratio = f", {b['over_fp32']:.2f}x the fp32 model's {b['fp32_avg_ms']:.2f} ms" if "over_fp32" in b else ""
        parts.append(f"benchmark_model avg {b['avg_ms']:.2f} ms over {b.get('runs', '?')} runs{ratio}")
    return "; ".join(parts) + "".join(f" ({n})" for n in dev.get("notes", []))


def gate_lines(g: dict[str, Any]) -> list[str]:
    """The gate table: every check, failures first, measured vs allowed."""
    lines = [f"## Gate ({g['source']})", "", "| check | measured | allowed | result |", "|---|---|---|---|"]
    checks = sorted(g["checks"], key=lambda c: c["passed"])  # failures first
    for c in checks:
        res = "skipped" if c["skipped"] else ("ok" if c["passed"] else "**FAILED**")
        lines.append(f"| {c['name']} | {fmt(c['measured'])} | {c['op']} {fmt(c['allowed'])} | {res} |")
    if not checks:
        lines.append("| (no thresholds) | | | |")
    return lines


def fidelity_lines(fidelity: dict[str, Any]) -> list[str]:
    """The output comparisons (TFLite vs PyTorch, vs onnxruntime, ...)."""
    lines = ["## Outputs", "", "| comparison | max abs | max rel | cosine min | SQNR dB | top-1 agr. | top-5 agr. |",
             "|---|---|---|---|---|---|---|"]
    order = ["tflite_vs_torch", "tflite_vs_onnxruntime", "onnxruntime_vs_torch"]
    for key in order + sorted(set(fidelity) - set(order)):
        m = fidelity[key]
        lines.append(f"| {key.replace('_', ' ')} | {fmt(m['max_abs'])} | {fmt(m['max_rel'])} | {fmt(m['cosine_min'], 6)} | "
                     f"{fmt(m['sqnr_db'])} | {fmt(m['top1_agreement'])} | {fmt(m['top5_agreement'])} |")
    return lines


def accuracy_lines(acc: dict[str, Any] | None) -> list[str]:
    """Top-1/top-5 per runtime, the drop with its CI and McNemar's test."""
    lines: list[str] = []
    if acc:
        dr, mc = acc["top1_drop"], acc["mcnemar"]
        lines += ["", "## Accuracy", ""]
        if acc.get("data"):
            lines += [f"On {acc['samples']} images: {acc['data']}.", ""]
        lines += ["| runtime | top-1 | top-5 |", "|---|---|---|",
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
