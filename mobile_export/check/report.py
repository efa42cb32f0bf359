"""The typed report of export and validate: one ``Report`` of sections (dataclasses) that every
reader (the CLI, batch, Markdown, HTML, JUnit) reads by field, and whose ``to_json()`` is the
documented report.json schema (``REPORT_SCHEMA_VERSION`` in ``artifacts``).

Sections that are tables of measurements (per layer, latency, accuracy, flips, ARM / device runs)
stay the JSON records their measuring modules document; the headline figures are fields."""
from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mobile_export.artifacts import REPORT_SCHEMA_VERSION
from mobile_export.report.common import arm_text, device_text, fused_text

from .fidelity import Fidelity
from .gate import Check
from .graph import GraphChecks


@dataclass(frozen=True)
class DataInfo:
    """The inputs the checks ran on."""

    source: str
    kind: str
    count: int
    seed: int
    sha256: str
    labelled: bool
    classes: list[str] | None

    @classmethod
    def of(cls, calib) -> "DataInfo":
        return cls(calib.source, calib.kind, calib.count, calib.seed, calib.sha256, calib.labels is not None,
                   list(calib.class_names) if calib.class_names else None)


@dataclass(frozen=True)
class Gate:
    source: str                      # "default bar for int8", "gate file X", "command-line flags"
    thresholds: dict[str, float]
    latency_ratio_vs: str | None
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict:
        return {"source": self.source, "thresholds": self.thresholds, "latency_ratio_vs": self.latency_ratio_vs,
                "checks": [c.to_dict() for c in self.checks], "passed": self.passed}


@dataclass(frozen=True)
class Int8Search:
    """The int8 search's attempts and choice (export only)."""

    chosen: dict
    attempts: list[dict]
    holdout_samples: int
    equalized: list[dict]


@dataclass
class Report:
    """What one export or validation measured, and its verdict."""

    kind: str                        # "export" | "validation"
    model: str
    precision: str
    trained: bool
    tflite_sha256: str
    data: DataInfo
    fidelity: Fidelity
    graph: GraphChecks
    gate: Gate
    flips: dict
    per_layer: dict | None = None
    accuracy: dict | None = None
    latency: dict | None = None
    arm: dict | None = None
    device: dict | None = None
    int8: Int8Search | None = None
    calibration: dict | None = None
    onnx_check: dict | None = None   # export: onnxruntime vs PyTorch right after the ONNX export
    artifact: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stages_s: dict[str, float] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def passed(self) -> bool:
        return self.gate.passed

    def latency_ms(self, runtime: str = "tflite", threads: int | None = None) -> float | None:
        """A runtime's median latency (default: the artifact at the fewest threads measured)."""
        if not self.latency or runtime not in self.latency["runtimes"]:
            return None
        n = threads if threads is not None else min(self.latency["threads"])
        return self.latency["runtimes"][runtime][str(n)]["median_ms"]

    def to_json(self) -> dict[str, Any]:
        g = self.graph
        int8 = None
        if g.int8:
            int8 = {"fully_integer": not g.float_ops, "violations": g.float_ops, "io_boundary": g.io_boundary}
            if self.int8 is not None:
                int8.update(asdict(self.int8))
        return {
            "schema_version": REPORT_SCHEMA_VERSION, "kind": self.kind, "created_at": self.created_at,
            "model": self.model, "precision": self.precision, "trained": self.trained,
            "tflite_sha256": self.tflite_sha256, "warnings": self.warnings, "stages_s": self.stages_s,
            "artifact": self.artifact, "reference": self.reference, "runtime": self.runtime,
            "data": asdict(self.data), "calibration": self.calibration, "onnx_check": self.onnx_check,
            "fidelity": self.fidelity.to_json(), "xnnpack": g.xnnpack_json(), "ops": g.ops,
            "transpose_ops": g.ops.get("TRANSPOSE", 0), "int8": int8, "per_layer": self.per_layer,
            "accuracy": self.accuracy, "flips": self.flips, "latency": self.latency, "arm": self.arm,
            "device": self.device, "gate": self.gate.to_json(), "passed": self.passed,
        }

    def summary_lines(self, report_path: Path | None = None) -> list[str]:
        """Failing checks first (measured vs allowed), then the headline numbers and the verdict."""
        lines = [f"FAILED {c.sentence()}" for c in self.gate.failures]
        f = self.fidelity.tflite_vs_torch
        lines.append(f"{self.model} ({self.precision}) vs PyTorch on {self.data.count} samples: max rel "
                     f"{f.max_rel:.2e}, SQNR {f.sqnr_db:.1f} dB, cosine min {f.cosine_min:.5f}, top-1 agreement "
                     f"{f.top1_agreement:.3f}, flips {self.flips['count']}; XNNPACK partitions {self.graph.partitions} "
                     f"(outside {len(self.graph.outside)})")
        acc = self.accuracy
        if acc:
            d = acc["top1_drop"]
            on = f" on {acc['samples']} {acc['data']}" if acc.get("data") else ""
            lines.append(f"  accuracy{on}: PyTorch {acc['torch']['top1']:.2%}, TFLite {acc['tflite']['top1']:.2%}; "
                         f"drop {d['drop_pp']:+.2f} pp (95% CI {d['ci_low_pp']:+.2f} .. {d['ci_high_pp']:+.2f}), "
                         f"McNemar p = {acc['mcnemar']['p_value']:.3g}")
        first = (self.per_layer or {}).get("first_divergence")
        if first:
            lines.append(f"  first divergent layer: {first['scope']} ({first['op_type']}, module "
                         f"{first['module'] or '-'}{fused_text(first)}): SQNR {first['sqnr_db']:.1f} dB, "
                         f"max rel {first['max_rel']:.2e}")
        if self.arm:
            lines.append(f"  {arm_text(self.arm)}")
        if self.device:
            lines.append(f"  {device_text(self.device)}")
        if self.latency:
            t1 = min(self.latency["threads"])
            parts = [f"{k} {self.latency_ms(k, t1):.2f} ms" for k in self.latency["runtimes"]]
            lines.append(f"  latency (median, {t1} thread): " + ", ".join(parts))
        lines += [f"  {c.sentence()}" for c in self.gate.checks if c.skipped]
        lines += [f"  WARNING: {w}" for w in self.warnings]
        where = f"{report_path} -> " if report_path else ""
        lines.append(f"  {self.gate.source}: {where}{'PASS' if self.passed else 'FAIL'}")
        return lines
