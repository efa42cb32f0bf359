"""Validation gates: thresholds a validated artifact must meet, from flags or a small TOML file.

A gate file (read with the stdlib ``tomllib``)::

    # optional validation settings, used when the command line gives none
    data = "cifar10-default"          # --data
    num = 200                         # --num
    latency_runs = 30                 # --latency-runs (0: no timing)

    max_top1_drop_pp = 0.7            # labelled data: top-1 accuracy drop torch − tflite, percentage points
    min_sqnr_db = 20                  # SQNR of the TFLite logits against PyTorch
    min_top1_agreement = 0.99         # share of samples whose top-1 class equals PyTorch's
    max_latency_ratio = 1.0           # TFLite median (1 thread) ÷ the fp32 sibling's, else ÷ onnxruntime's
    max_rel_error = 1e-4              # max |tflite − torch| ÷ max |torch|
    min_cosine = 0.999                # smallest per-sample cosine similarity against PyTorch

    [precision.int8]                  # overrides for one precision (fp32, fp16, int8, dynamic)
    min_sqnr_db = 12

    [models.mobilenet_v3_small]       # overrides for one model ...
    max_top1_drop_pp = 1.0
    [models.mobilenet_v3_small.int8]  # ... and for one model at one precision
    min_sqnr_db = 10

Precedence, lowest first: top level, ``[precision.P]``, ``[models.NAME]``, ``[models.NAME.P]``, then
command-line flags. With neither a gate file nor threshold flags, the default bar of the artifact's
precision applies (``fidelity.default_gate``). Export and validate apply the same checks; every
artifact must also meet ``CONTRACT`` (one XNNPACK partition, nothing outside it, int8 fully integer).

``max_latency_ratio`` compares the artifact's TFLite median latency at 1 thread with its fp32
sibling artifact (``../fp32/model.tflite``) when that exists and the artifact is not itself fp32 —
the question "is the quantized model faster than the float one?" — and with onnxruntime (same
machine, same inputs, 1 thread) otherwise.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mobile_export import fidelity
from mobile_export.errors import UserError
from mobile_export.options import Precision

# key -> (direction, what is measured). "max": measured must be <= allowed; "min": >= allowed.
THRESHOLDS: dict[str, tuple[str, str]] = {
    "max_top1_drop_pp": ("max", "top-1 accuracy drop PyTorch − TFLite (percentage points)"),
    "min_sqnr_db": ("min", "SQNR of TFLite logits vs PyTorch (dB)"),
    "min_top1_agreement": ("min", "top-1 agreement of TFLite with PyTorch"),
    "max_latency_ratio": ("max", "TFLite median latency ÷ reference runtime (1 thread)"),
    "max_rel_error": ("max", "max |TFLite − PyTorch| ÷ max |PyTorch|"),
    "min_cosine": ("min", "smallest per-sample cosine similarity TFLite vs PyTorch"),
}
# Checked on every artifact whatever the gate (not settable): the XNNPACK contract — one partition,
# nothing outside it — and, for int8, no float op inside the graph.
CONTRACT: dict[str, tuple[str, str]] = {
    "max_xnnpack_partitions": ("max", "XNNPACK partitions (DELEGATE nodes)"),
    "max_ops_outside_xnnpack": ("max", "ops no XNNPACK partition covers"),
    "max_float_ops": ("max", "int8: float ops inside the graph (the I/O edges aside)"),
}
SETTINGS = {"data": str, "num": int, "latency_runs": int}
PRECISIONS = tuple(p.value for p in Precision)  # the [precision.X] section names


class GateError(UserError):
    """A gate file is unreadable, or names an unknown key or a bad value (exit 2)."""


@dataclass(frozen=True)
class GateFile:
    """A parsed, checked gate file (sections not yet resolved for a model and precision)."""

    path: str
    top: Mapping[str, Any]
    precision: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def resolve(self, model: str, precision: Precision) -> dict[str, Any]:
        """Thresholds and settings for ``model`` at ``precision`` (precedence in the module doc)."""
        precision = Precision.parse(precision).value
        out = dict(self.top)
        out.update(self.precision.get(precision, {}))
        section = self.models.get(model, {})
        out.update({k: v for k, v in section.items() if k not in PRECISIONS})
        out.update(section.get(precision, {}))
        return out


def _check_values(table: Mapping[str, Any], where: str, path: str, allow: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in allow and isinstance(value, dict):
            out[key] = _check_values(value, f"{where}.{key}", path)
            continue
        if key in THRESHOLDS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise GateError(f"gate file {path}: '{where}{key}' must be a number, got {value!r}.")
            out[key] = float(value)
        elif key in SETTINGS and not where:
            if not isinstance(value, SETTINGS[key]) or isinstance(value, bool):
                raise GateError(f"gate file {path}: '{key}' must be a {SETTINGS[key].__name__}, got {value!r}.")
            out[key] = value
        else:
            known = ", ".join([*THRESHOLDS, *SETTINGS])
            raise GateError(f"gate file {path}: unknown key '{where}{key}'; known keys are {known}.")
    return out


def read_gate_file(path: "str | os.PathLike | GateFile") -> GateFile:
    """Parse and check a gate TOML file; GateError (exit 2) naming the problem otherwise."""
    if isinstance(path, GateFile):
        return path
    label = os.fspath(path)
    try:
        raw = tomllib.loads(Path(label).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GateError(f"gate file {label} does not exist; pass an existing TOML file to --gate.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GateError(f"cannot read gate file {label} ({getattr(e, 'strerror', None) or e}); "
                        "pass a readable TOML file to --gate.") from None
    except tomllib.TOMLDecodeError as e:
        raise GateError(f"gate file {label} is not valid TOML ({e}); fix its syntax.") from None
    precision = raw.pop("precision", {})
    models = raw.pop("models", {})
    if not isinstance(precision, dict) or any(k not in PRECISIONS or not isinstance(v, dict) for k, v in precision.items()):
        raise GateError(f"gate file {label}: [precision.X] sections must name one of {', '.join(PRECISIONS)}.")
    if not isinstance(models, dict) or any(not isinstance(v, dict) for v in models.values()):
        raise GateError(f"gate file {label}: 'models' must hold [models.NAME] tables.")
    return GateFile(
        path=label,
        top=_check_values(raw, "", label),
        precision={p: _check_values(t, f"precision.{p}.", label) for p, t in precision.items()},
        models={m: _check_values(t, f"models.{m}.", label, allow=PRECISIONS) for m, t in models.items()},
    )


def thresholds_for(gate_file: GateFile | None, overrides: Mapping[str, float | None] | None,
                   model: str, precision: Precision) -> tuple[dict[str, float], dict[str, Any], str]:
    """(thresholds, settings, source) for one artifact: file sections, then flag overrides; the
    precision's default gate (``fidelity.default_gate``: the export's own bounds) when neither gives
    any threshold. (validate relaxes a default ``max_rel_error`` to the float32 noise, as export does,
    and holds an untrained fp16 model's ``min_cosine`` to the same graph with fp16-rounded weights.)"""
    precision = Precision.parse(precision)
    resolved = gate_file.resolve(model, precision) if gate_file is not None else {}
    flags = {k: float(v) for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(flags) - set(THRESHOLDS))
    if unknown:
        raise GateError(f"unknown gate threshold {unknown[0]!r}; known ones are {', '.join(THRESHOLDS)}.")
    thresholds = {k: v for k, v in resolved.items() if k in THRESHOLDS}
    thresholds.update(flags)
    settings = {k: v for k, v in resolved.items() if k in SETTINGS}
    if gate_file is None and not flags:
        return fidelity.default_gate(precision), settings, f"default bar for {precision.value}"
    source = " + ".join(s for s in (gate_file and f"gate file {gate_file.path}", flags and "command-line flags") if s)
    return thresholds, settings, source


@dataclass
class Check:
    """One gate check: ``measured`` against ``allowed`` (None measured → skipped, with a reason)."""

    name: str
    allowed: float
    measured: float | None
    passed: bool
    skipped: str | None = None
    description: str = ""

    @property
    def op(self) -> str:
        return "<=" if {**THRESHOLDS, **CONTRACT}[self.name][0] == "max" else ">="

    def sentence(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped ({self.skipped})"
        return f"{self.name}: measured {_num(self.measured)}, allowed {self.op} {_num(self.allowed)}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "allowed": self.allowed, "measured": self.measured, "op": self.op,
                "passed": self.passed, "skipped": self.skipped, "description": self.description}


def _num(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}"


def evaluate(thresholds: Mapping[str, float], measured: Mapping[str, tuple[float | None, str | None]]) -> list[Check]:
    """Apply ``thresholds`` to ``measured`` (key → (value, skip reason)). A skipped check passes."""
    checks = []
    for name, allowed in thresholds.items():
        direction, desc = THRESHOLDS[name]
        value, reason = measured.get(name, (None, "not measured"))
        if value is None:
            checks.append(Check(name, allowed, None, True, reason or "not measured", desc))
            continue
        ok = value <= allowed if direction == "max" else value >= allowed
        if isinstance(value, float) and math.isnan(value):
            ok = False
        checks.append(Check(name, allowed, float(value), bool(ok), None, desc))
    return checks


def contract_checks(graph) -> list[Check]:
    """``CONTRACT`` applied to a ``check.graph.GraphChecks``."""
    measured = {"max_xnnpack_partitions": graph.partitions, "max_ops_outside_xnnpack": len(graph.outside)}
    if graph.int8:
        measured["max_float_ops"] = len(graph.float_ops)
    allowed = {"max_xnnpack_partitions": 1}
    return [Check(k, float(allowed.get(k, 0)), float(v), v <= allowed.get(k, 0), None, CONTRACT[k][1])
            for k, v in measured.items()]
