"""The batch table: one row per cell, as Markdown, JSON, JUnit (one testcase per cell) and HTML with
a plot, written atomically beside the cell folders (``batch.md``, ``batch.json``, ``junit.xml``,
``batch.html``)."""
from __future__ import annotations

import html
import json
from typing import Any

from mobile_export import artifacts
from mobile_export.report.html import CSS, _figure, _img, _png, _table
from mobile_export.report.junit import Case, to_junit

HEADER = ["cell", "samples", "PyTorch top-1", "TFLite top-1", "drop (95% CI)", "SQNR", "agreement",
          "partitions", "latency 1 thr", "result"]


def _pct(v) -> str:
    return "–" if v is None else f"{v:.2%}"


def _drop(d) -> str:
    return "–" if not d else f"{d['drop_pp']:+.2f} pp ({d['ci_low_pp']:+.2f} .. {d['ci_high_pp']:+.2f})"


def cells_of(row: dict) -> list[str]:
    if row["status"] in ("error", "cancelled"):
        return [row["id"], *["–"] * 8, f"{row['status'].upper()}: {row['error']}"]
    lat = "–" if row.get("latency_ms") is None else f"{row['latency_ms']:.2f} ms"
    sq = "–" if row.get("sqnr_db") is None else f"{row['sqnr_db']:.1f} dB"
    agree = "–" if row.get("top1_agreement") is None else f"{row['top1_agreement']:.3f}"
    verdict = "pass" if row["status"] == "pass" else "**FAIL**"
    return [row["id"], str(row["samples"]), _pct(row.get("torch_top1")), _pct(row.get("tflite_top1")),
            _drop(row.get("drop")), sq, agree, f"{row['partitions']} ({row['outside']} outside)", lat,
            verdict + (" (resumed)" if row.get("resumed") else "")]


def markdown(res, matrix) -> str:
    state = "" if res.complete else " — INCOMPLETE (interrupted)"
    lines = [f"# Batch {matrix.path.name}: {len(res.rows)} of {len(matrix.cells)} cells{state}", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells_of(r)) + " |" for r in res.rows]
    fails = [f"- {r['id']}: {s}" for r in res.rows for s in r.get("failed", [])]
    if fails:
        lines += ["", "Failed checks:", *fails]
    lines += ["", f"{sum(r['status'] == 'pass' for r in res.rows)} passed, "
                  f"{sum(r['status'] == 'fail' for r in res.rows)} failed, "
                  f"{sum(r['status'] == 'error' for r in res.rows)} errors; {res.seconds:.0f} s ({res.executor}).",
              "Drop = PyTorch fp32 top-1 − TFLite top-1 on the same images (positive: TFLite is worse)."]
    return "\n".join(lines) + "\n"


def junit(res) -> str:
    cases = []
    for r in res.rows:
        fails = ([f"{r['status']}: {r['error']}"] if r["status"] in ("error", "cancelled") else
                 r.get("failed") or (["failed"] if r["status"] != "pass" else []))
        secs = sum((r.get("seconds") or {}).values())
        model, _, variant = r["id"].partition("/")
        cases.append(Case(f"batch.{model}", variant, secs, fails))
    return to_junit(cases, suite="mobile-export batch", root="mobile-export batch", time_s=res.seconds)


def plot(rows: list[dict]) -> str | None:
    """Top-1 drop with its 95% CI per cell (when labelled), else SQNR per cell."""
    ok = [r for r in rows if r["status"] in ("pass", "fail")]
    if not ok:
        return None
    fig, (ax,) = _figure(8, 0.35 * len(ok) + 1.2)
    y = list(range(len(ok)))[::-1]
    colors = ["#2ca02c" if r["status"] == "pass" else "#d62728" for r in ok]
    if all(r.get("drop") for r in ok):
        d = [r["drop"] for r in ok]
        x = [v["drop_pp"] for v in d]
        err = [[v["drop_pp"] - v["ci_low_pp"] for v in d], [v["ci_high_pp"] - v["drop_pp"] for v in d]]
        ax.errorbar(x, y, xerr=err, fmt="none", ecolor="#555", capsize=3)
        ax.scatter(x, y, c=colors, zorder=3)
        ax.axvline(0, color="#999", lw=0.8)
        ax.set_xlabel("top-1 drop vs PyTorch (pp), 95% CI")
    else:
        ax.barh(y, [r.get("sqnr_db") or 0 for r in ok], color=colors)
        ax.set_xlabel("output SQNR vs PyTorch (dB)")
    ax.set_yticks(y, [r["id"] for r in ok], fontsize=8)
    return _png(fig)


def to_html(res, matrix) -> str:
    e = html.escape
    state = "" if res.complete else ' <span class="fail">INCOMPLETE (interrupted)</span>'
    classes = ["" if r["status"] == "pass" else "div" for r in res.rows]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>batch {e(matrix.path.name)}</title>"
             f"<style>{CSS}</style></head><body><h1>Batch {e(matrix.path.name)}{state}</h1>",
             f"<p>{len(res.rows)} of {len(matrix.cells)} cells, {res.seconds:.0f} s ({e(res.executor)}).</p>",
             _table(HEADER, [[c.replace("**", "") for c in cells_of(r)] for r in res.rows], classes),
             "<h2>Per cell</h2>", _img(plot(res.rows), "plot"), "</body></html>"]
    return "\n".join(parts) + "\n"


def to_json(res, matrix) -> str:
    doc: dict[str, Any] = {"matrix": str(matrix.path), "fingerprint": matrix.fingerprint(),
                           "complete": res.complete, "executor": res.executor, "seconds": res.seconds,
                           "cells": len(matrix.cells), "exit_code": res.exit_code, "rows": res.rows}
    return json.dumps(doc, indent=2, default=str) + "\n"


def write_all(res, matrix) -> None:
    res.out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("batch.md", markdown(res, matrix)), ("batch.json", to_json(res, matrix)),
                       ("junit.xml", junit(res)), ("batch.html", to_html(res, matrix))):
        artifacts.write_text(res.out_dir / name, text)
