"""The one measurement engine behind export and validate: ``run(loaded, reference, data, plan)``
runs every runtime once on the data, then each check on the shared outputs and runtimes —
fidelity, graph, per layer, accuracy, ARM / device, latency — and applies the gate (the default
bar of the precision, or a gate file's thresholds) plus the XNNPACK contract."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from mobile_export import fidelity as F
from mobile_export.convert.to_onnx import float32_noise
from mobile_export.options import Runtime
from mobile_export.reference import run_torch
from mobile_export.runtimes.host import runtime_version

from . import devices, fidelity, gate as gates, graph as graphs, latency as lat
from .accuracy import accuracy, flips
from .per_layer import compare_layers
from .report import DataInfo, Gate, Report
from .runs import Outputs, run_all, run_tflite

log = logging.getLogger(__name__)

NO_LABELS = "the data has no labels: use an ImageFolder tree, an .npz with labels, or --data cifar10-default"


@dataclass(frozen=True)
class Reference:
    """The PyTorch reference the artifact is checked against."""

    model: torch.nn.Module
    config: Any                       # models.ModelConfig
    float32_noise: float | None = None  # PyTorch's own float32 error, when already measured


@dataclass(frozen=True)
class Plan:
    """What to check and how: the resolved gate, and the optional stages' settings."""

    thresholds: dict[str, float]
    gate_source: str
    default_bar: bool
    layer_samples: int = 4            # 0: no per-layer comparison
    layer_tolerance: tuple | None = None
    latency_runs: int = 30            # 0: no timing
    runtime: Runtime = Runtime.HOST
    cpu: str = "cortex-a76"
    device: Any = None
    seed: int = 0
    fp32_sibling: bytes | None = None  # timed (and counted on ARM) beside the artifact
    accuracy_data: Any = None         # labelled data for accuracy when the check data has no labels


@dataclass
class Stages:
    """Times each stage (seconds) and logs it."""

    times: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn: Callable, *args, **kwargs):
        log.info("%s ...", name)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.times[name] = round(time.perf_counter() - t0, 3)
        log.info("%s done in %.1f s", name, self.times[name])
        return out


def _accuracy(ref: Reference, loaded, data, outs: Outputs, plan: Plan) -> dict | None:
    if data.labels is not None:
        return accuracy(outs.torch, outs.tflite, data.labels, plan.seed, ort_out=outs.onnxruntime)
    extra = plan.accuracy_data
    if extra is None:
        return None
    got = run_tflite(loaded.xnnpack(1), extra.inputs)
    return accuracy(run_torch(ref.model, extra.inputs), got, extra.labels, data=extra.source)


def _per_layer(loaded, ref: Reference, x: np.ndarray, plan: Plan, warnings: list[str]) -> dict:
    layers = loaded.manifest.get("layers") or []
    if not layers:
        warnings.append("the manifest has no 'layers' table, so no per-layer comparison was made.")
    b = loaded.batch
    k = max(b, min(plan.layer_samples, len(x)) // b * b)
    return compare_layers(loaded, layers, x[:k], input_name=ref.config.input_name, precision=loaded.precision,
                          tolerance=plan.layer_tolerance)


def _on_arm(loaded, x: np.ndarray, host_out: np.ndarray, plan: Plan, st: Stages) -> tuple[dict | None, dict | None]:
    if plan.runtime is Runtime.QEMU:
        return st.run("emulated ARM", devices.run_on_emulated_arm, loaded, x, host_out, plan.cpu,
                      fp32=plan.fp32_sibling), None
    if plan.runtime is Runtime.ADB:
        return None, st.run("device (adb)", devices.run_on_device, loaded, x, host_out, plan.device,
                            fp32=plan.fp32_sibling)
    return None, None


def _gate(loaded, ref: Reference, fid, acc, latency, graph, x: np.ndarray, plan: Plan) -> Gate:
    """The gate's thresholds over the measured figures, then the XNNPACK contract."""
    limits = dict(plan.thresholds)
    ratio, ratio_key = lat.gate_ratio(latency, loaded.precision) if latency else (None, None)
    if "max_rel_error" in limits and plan.default_bar:  # never stricter than PyTorch's own float32 noise
        noise = ref.float32_noise if ref.float32_noise is not None else float32_noise(ref.model, x[:2])
        limits["max_rel_error"] = F.relaxed_max_rel(limits["max_rel_error"], noise)
    f = fid.tflite_vs_torch
    cosine = f.cosine_min
    ref16 = fid.tflite_vs_fp16_weights
    if ref16 is not None and plan.default_bar and ref16.cosine_min >= F.FP16_REFERENCE_COSINE:
        cosine = max(cosine, ref16.cosine_min)  # the distance to PyTorch is the fp16 weights' rounding
    measured = {
        "max_top1_drop_pp": (acc["top1_drop"]["drop_pp"], None) if acc else (None, NO_LABELS),
        "min_sqnr_db": (f.sqnr_db, None), "min_top1_agreement": (f.top1_agreement, None),
        "max_rel_error": (f.max_rel, None), "min_cosine": (cosine, None),
        "max_latency_ratio": (ratio, None if ratio is not None else "latency was not measured"),
    }
    checks = gates.evaluate(limits, measured) + gates.contract_checks(graph)
    return Gate(plan.gate_source, limits, ratio_key, checks)


def run(loaded, ref: Reference, data, plan: Plan, *, kind: str, warnings: list[str], st: Stages) -> Report:
    """Every check of ``loaded`` against ``ref`` on ``data`` (a CalibrationSet: NCHW inputs, labels
    when known), as ``plan`` says; each runtime opened once (``loaded``) and run once on the data."""
    x = data.inputs
    outs = st.run("run PyTorch, onnxruntime, TFLite", run_all, ref.model, loaded, x, ref.config.input_name)
    fid = fidelity.measure(loaded, outs, x, ref.config.input_name)
    graph = graphs.measure(loaded)
    warnings.extend(graph.warnings())
    acc = (st.run("accuracy", _accuracy, ref, loaded, data, outs, plan) if plan.accuracy_data is not None
           else _accuracy(ref, loaded, data, outs, plan))
    per_layer = (st.run("per-layer comparison", _per_layer, loaded, ref, x, plan, warnings) if plan.layer_samples > 0
                 else None)
    arm, device = _on_arm(loaded, x, outs.tflite, plan, st)
    latency = None
    if plan.latency_runs > 0:
        latency = st.run("latency", lat.measure, loaded, ref.model, input_name=ref.config.input_name,
                         fp32_sibling=plan.fp32_sibling, runs=plan.latency_runs)
    gate = _gate(loaded, ref, fid, acc, latency, graph, x, plan)
    m = loaded.manifest
    return Report(kind=kind, model=m["model"], precision=loaded.precision.value, trained=loaded.trained,
                  tflite_sha256=m["tflite_sha256"], data=DataInfo.of(data), fidelity=fid, graph=graph, gate=gate,
                  flips=flips(outs.torch, outs.tflite, data), per_layer=per_layer, accuracy=acc, latency=latency,
                  arm=arm, device=device, warnings=warnings, stages_s=st.times,
                  runtime={"kind": plan.runtime.value, "ai_edge_litert": runtime_version(), "delegate": "XNNPACK"})


__all__ = ["Plan", "Reference", "Stages", "run"]
