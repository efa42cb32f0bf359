"""report.html of a validation: one self-contained file (plots embedded as base64 PNG).

Plots are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend switch):
per-layer SQNR and relative error, latency bars, and top-1 flips per class.
"""
from __future__ import annotations

import base64
import html
import io
from collections import Counter
from typing import Any

import numpy as np

from mobile_export import lazy
from mobile_export.report.common import fmt, fused_text

FLIP_TABLE_ROWS = 200
RUNTIME_ORDER = ["tflite", "tflite_fp32", "onnxruntime", "torch"]
RUNTIME_COLORS = {"tflite": "#1f77b4", "tflite_fp32": "#9ecae1", "onnxruntime": "#ff7f0e", "torch": "#2ca02c"}
FIDELITY_ORDER = ["tflite_vs_torch", "tflite_vs_onnxruntime", "onnxruntime_vs_torch"]
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:.9em} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3} .pass{color:#0a7a28;font-weight:bold} .fail{color:#c00;font-weight:bold}
.skip{color:#888} tr.div td{background:#fde8e8} .warn{background:#fff6d6;padding:6px 10px;border-left:4px solid #e0b000}
img{max-width:100%;border:1px solid #eee;margin:6px 0} code{background:#f4f4f4;padding:0 3px}
"""


def _png(fig) -> str:
    lazy.load("matplotlib.backends.backend_agg").FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float, h: float, rows: int = 1):
    fig = lazy.load("matplotlib.figure").Figure(figsize=(w, h))
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    return fig, axes


def plot_layers(per_layer: dict[str, Any]) -> str | None:
    rows = [e for e in per_layer.get("layers", []) if "skipped" not in e]
    if not rows:
        return None
    pos = np.array([e["position"] for e in rows])
    sqnr = np.array([e["sqnr_db"] for e in rows], dtype=float)
    finite = sqnr[np.isfinite(sqnr)]
    top = (finite.max() if finite.size else 0.0) + 10
    sqnr = np.clip(np.nan_to_num(sqnr, posinf=top, neginf=-20), -20, top)
    rel = np.maximum(np.array([e["max_rel"] for e in rows], dtype=float), 1e-12)
    fig, (a1, a2) = _figure(11, 5.2, rows=2)
    a1.plot(pos, sqnr, "-o", ms=3, lw=1, color="#1f5fbf")
    a1.set_ylabel("SQNR (dB)")
    a2.semilogy(pos, rel, "-o", ms=3, lw=1, color="#b55d00")
    a2.set_ylabel("max rel error")
    a2.set_xlabel("layer (graph order)")
    tol = per_layer["tolerance"]
    tol_ax = a1 if tol["kind"] == "min_sqnr_db" else a2
    tol_ax.axhline(tol["value"], color="#c00", ls="--", lw=1, label="tolerance")
    first = per_layer.get("first_divergence")
    if first:
        for ax in (a1, a2):
            ax.axvline(first["position"], color="#c00", lw=1, alpha=.6)
        a1.annotate(f"first divergence: {first['scope']}\n{first['module'] or ''}", (first["position"], a1.get_ylim()[1]),
                    xytext=(5, -28), textcoords="offset points", color="#c00", fontsize=8)
    tol_ax.legend(loc="lower left", fontsize=8)
    a1.grid(alpha=.3)
    a2.grid(alpha=.3)
    a1.set_title("TFLite vs onnxruntime, per layer")
    return _png(fig)


def plot_latency(latency: dict[str, Any] | None) -> str | None:
    if not latency or not latency.get("runtimes"):
        return None
    names = sorted(latency["runtimes"], key=lambda n: (RUNTIME_ORDER.index(n) if n in RUNTIME_ORDER else 99, n))
    threads = latency["threads"]
    fig, (ax,) = _figure(8, 3.6)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        med = [latency["runtimes"][name][str(n)]["median_ms"] for n in threads]
        p90 = [latency["runtimes"][name][str(n)]["p90_ms"] for n in threads]
        x = np.arange(len(threads)) + i * width
        bars = ax.bar(x, med, width, label=name, color=RUNTIME_COLORS.get(name))
        ax.bar_label(bars, labels=[f"{m:.2f}" for m in med], fontsize=7, padding=2)
        ax.errorbar(x, med, yerr=[np.zeros(len(med)), np.maximum(np.array(p90) - med, 0)], fmt="none", ecolor="#333",
                    capsize=3, lw=1)
    ax.set_xticks(np.arange(len(threads)) + width * (len(names) - 1) / 2)
    ax.set_xticklabels([f"{n} thread{'s' * (n > 1)}" for n in threads])
    ax.set_yscale("log")  # runtimes differ by 10x and more: keep the small bars readable
    ax.set_ylabel("ms, log scale (median, whisker p90)")
    ax.set_title("Latency, interleaved warm runs")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=.3)
    return _png(fig)


def plot_flips(rep: dict[str, Any]) -> str | None:
    flips = rep["flips"]["samples"]
    if not flips:
        return None
    classes = rep["data"].get("classes")
    labelled = rep["data"]["labelled"]

    def name(i: int) -> str:
        return classes[i] if classes and i < len(classes) else str(i)

    fig, (ax,) = _figure(9, 3.4)
    if labelled:
        broke = Counter(s["label"] for s in flips if s["torch_top1"] == s["label"])
        fixed = Counter(s["label"] for s in flips if s["tflite_top1"] == s["label"])
        other = Counter(s["label"] for s in flips if s["label"] not in (s["torch_top1"], s["tflite_top1"]))
        keys = sorted(set(broke) | set(fixed) | set(other))[:30]
        x = np.arange(len(keys))
        b1 = np.array([broke[k] for k in keys])
        b2 = np.array([fixed[k] for k in keys])
        b3 = np.array([other[k] for k in keys])
        ax.bar(x, b1, label="PyTorch right → TFLite wrong", color="#c0392b")
        ax.bar(x, b2, bottom=b1, label="PyTorch wrong → TFLite right", color="#27ae60")
        ax.bar(x, b3, bottom=b1 + b2, label="both wrong, different", color="#95a5a6")
        ax.set_xlabel("true class")
    else:
        counts = Counter(s["torch_top1"] for s in flips).most_common(30)
        keys = [k for k, _ in counts]
        x = np.arange(len(keys))
        ax.bar(x, [c for _, c in counts], color="#8e44ad", label="flipped samples")
        ax.set_xlabel("PyTorch top-1 class (30 most flipped)")
    ax.set_xticks(x)
    ax.set_xticklabels([name(k) for k in keys], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("top-1 flips")
    ax.set_title("Top-1 flips per class")
    ax.legend(fontsize=8)
    return _png(fig)


def _img(b64: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">' if b64 else f"<p>(no {alt})</p>"


class _Raw(str):
    """A table cell that is already HTML (not escaped)."""


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{c if isinstance(c, _Raw) else html.escape(str(c))}</td>" for c in r) + "</tr>")
    return "\n".join(out) + "</table>"


def to_html(rep: dict[str, Any]) -> str:
    e = html.escape
    verdict = '<span class="pass">PASS</span>' if rep["passed"] else '<span class="fail">FAIL</span>'
    d = rep["data"]
    kind = "validate" if rep["kind"] == "validation" else "export"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{kind} {e(rep['model'])} "
             f"{e(rep['precision'])}</title><style>{CSS}</style></head><body>",
             f"<h1>mobile-export {kind}: {e(rep['model'])} ({e(rep['precision'])}) — {verdict}</h1>",
             f"<p>Artifact <code>{e(rep['artifact']['tflite'])}</code> · data {e(d['kind'])} <code>{e(d['source'])}</code>, "
             f"{d['count']} samples{' (labelled)' if d['labelled'] else ''} · runtime {e(rep['runtime']['kind'])} "
             f"(ai-edge-litert {e(str(rep['runtime']['ai_edge_litert']))}) · {e(rep['created_at'])}</p>"]
    parts += [f"<p class='warn'>{e(w)}</p>" for w in rep["warnings"]]
    g = rep["gate"]
    rows, cls = [], []
    for c in sorted(g["checks"], key=lambda c: c["passed"]):
        res = _Raw(('<span class="skip">skipped: ' + e(c["skipped"]) + "</span>") if c["skipped"] else (
            '<span class="pass">ok</span>' if c["passed"] else '<span class="fail">FAILED</span>'))
        rows.append([c["name"], fmt(c["measured"]), f"{c['op']} {fmt(c['allowed'])}", res])
        cls.append("" if c["passed"] else "div")
    parts += [f"<h2>Gate <small>({e(g['source'])})</small></h2>",
              _table(["check", "measured", "allowed", "result"], rows, cls) if rows else "<p>No thresholds.</p>"]
    parts.append("<h2>Outputs</h2>" + _table(
        ["comparison", "max abs", "max rel", "cosine min", "SQNR dB", "top-1 agr.", "top-5 agr."],
        [[k.replace("_", " "), fmt(m["max_abs"]), fmt(m["max_rel"]), fmt(m["cosine_min"], 6), fmt(m["sqnr_db"]),
          fmt(m["top1_agreement"]), fmt(m["top5_agreement"])]
         for k, m in sorted(rep["fidelity"].items(), key=lambda kv: FIDELITY_ORDER.index(kv[0]) if kv[0] in FIDELITY_ORDER else 9)]))
    acc = rep.get("accuracy")
    if acc:
        dr, mc = acc["top1_drop"], acc["mcnemar"]
        parts.append("<h2>Accuracy</h2>" + _table(["runtime", "top-1", "top-5"], [
            ["PyTorch", f"{acc['torch']['top1']:.4f}", f"{acc['torch']['top5']:.4f}"],
            ["TFLite", f"{acc['tflite']['top1']:.4f}", f"{acc['tflite']['top5']:.4f}"]]))
        parts.append(f"<p>Top-1 drop (PyTorch − TFLite): <b>{dr['drop_pp']:+.2f} pp</b>, {int(dr['level'] * 100)}% CI "
                     f"[{dr['ci_low_pp']:+.2f}, {dr['ci_high_pp']:+.2f}] (paired bootstrap, {dr['resamples']} resamples, "
                     f"seed {dr['seed']}). McNemar exact p = {mc['p_value']:.3g}.</p>")
    pl = rep["per_layer"] or {"layers": [], "tolerance": {"kind": "max_rel", "value": 0}}
    first = pl.get("first_divergence")
    parts.append("<h2>Per layer</h2>")
    parts.append(f"<p><b>First divergent layer: <code>{e(first['scope'])}</code></b> ({e(first['op_type'])}, module "
                 f"<code>{e(first['module'] or '-')}</code>{e(fused_text(first))}, TFLite tensor "
                 f"<code>{e(first['tflite_tensor'])}</code>): "
                 f"SQNR {fmt(first['sqnr_db'])} dB, max rel {fmt(first['max_rel'])}.</p>" if first else
                 "<p>No layer is past the tolerance.</p>")
    parts.append(_img(plot_layers(pl), "per-layer plot"))
    layer_rows = [[x["position"], x["scope"], x["module"] or "-", x["tflite_op"], fmt(x.get("sqnr_db")),
                   fmt(x.get("cosine_mean"), 6), fmt(x.get("max_rel")), x.get("skipped", "")] for x in pl["layers"]]
    parts.append(f"<details><summary>All {len(layer_rows)} mapped layers</summary>" + _table(
        ["#", "scope", "module", "TFLite op", "SQNR dB", "cosine", "max rel", "note"], layer_rows,
        ["div" if x["diverged"] else "" for x in pl["layers"]]) + "</details>")
    lat = rep.get("latency")
    if lat:
        parts.append("<h2>Latency</h2>" + _img(plot_latency(lat), "latency plot"))
        parts.append("<ul>" + "".join(
            f"<li>{e(k.replace('_', ' '))}: " + ", ".join(f"{v[str(n)]:.2f}× ({n} thr.)" for n in lat["threads"]) + "</li>"
            for k, v in lat["ratios"].items()) + "</ul>")
    fl = rep["flips"]
    parts.append(f"<h2>Top-1 flips</h2><p>{fl['count']} of {d['count']} samples ({100 * fl['rate']:.1f}%) changed "
                 "their top-1 class against PyTorch.</p>")
    if fl["samples"]:
        parts.append(_img(plot_flips(rep), "flips plot"))
        parts.append("<details><summary>Flipped samples</summary>" + _table(
            ["index", "file", "label", "PyTorch top-1", "TFLite top-1"],
            [[s["index"], s.get("file", ""), s.get("label", ""), s["torch_top1"], s["tflite_top1"]]
             for s in fl["samples"][:FLIP_TABLE_ROWS]]) + "</details>")
    parts.append("<p><small>Stages (s): " + e(", ".join(f"{k} {v:.1f}" for k, v in rep["stages_s"].items())) +
                 "</small></p></body></html>")
    return "\n".join(parts) + "\n"
