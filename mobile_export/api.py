"""The Python API the CLI is a thin layer over: ``export(name, ...) -> ExportResult``.

Pipeline: registered spec → torch model (+weights) → ONNX (+onnxsim, checked with onnxruntime) →
own NHWC lowering → TFLite (fp32/fp16/int8/dynamic) → fidelity check on the host runtime (XNNPACK)
→ artifacts written atomically to ``OUT/NAME/PRECISION/``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobile_export import artifacts, report
from mobile_export.errors import InvalidOptionError
from mobile_export.metrics import compare
from mobile_export.models import ModelConfig, build_model, configure, estimate_bn_statistics
from mobile_export.options import ExportOptions, IOType, Precision

log = logging.getLogger(__name__)

# Fidelity bounds every export must meet against PyTorch (float exports) — see the README.
BOUNDS = {
    Precision.FP32: {"max_rel": 1e-4, "cosine_min": 0.99999},
    Precision.FP16: {"cosine_min": 0.9999},
    Precision.DYNAMIC: {"cosine_min": 0.99},
    # int8 must be fully integer and in one partition; its fidelity (vs fp32 on the
    # calibration images) is reported with a warning below the bar and gated with --gate.
    Precision.INT8: {},
}

# fp16 exports whose distance to PyTorch is fully explained by rounding the weights to float16 pass:
# TFLite must then match the same ONNX graph with fp16-rounded weights to this cosine.
FP16_REFERENCE_COSINE = 0.99999

PER_LAYER_SAMPLES = 8  # held-back images for the int8 per-layer table (each layer is stored for all of them)

UNTRAINED_WARNING = (
    "UNTRAINED WEIGHTS: no --weights given, so this model has random initial weights; its outputs "
    "mean nothing and accuracy figures are not meaningful. Pass --weights PATH (or a registered name)."
)


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict[str, Any]
    report: dict[str, Any]
    passed: bool
    warnings: list[str] = field(default_factory=list)
    validation: Any = None  # a validation.ValidationReport when export ran with a gate

    @property
    def tflite_path(self) -> Path:
        return self.out_dir / "model.tflite"


class _Stages:
    """Times each pipeline stage and logs it (progress on stderr)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        log.info("%s ...", name)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.times[name] = round(time.perf_counter() - t0, 3)
        log.info("%s done in %.1f s", name, self.times[name])
        return out


def check_inputs(config: ModelConfig, count: int, seed: int) -> np.ndarray:
    """Inputs for the built-in fidelity check: seeded normal noise in the normalized input space
    plus real images from the embedded default set (so real activation statistics are exercised)."""
    rng = np.random.default_rng(seed)
    n_rand = max(1, count // 2)
    x = [rng.standard_normal((n_rand, *config.input_shape_nchw[1:]), dtype=np.float32)]
    if count > n_rand:
        from mobile_export.calibration import load_calibration

        x.append(load_calibration(None, config, num=count - n_rand, seed=seed).inputs)
    return np.concatenate(x).astype(np.float32)


def build_reference(config: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """The PyTorch reference of an export, built the one way both ``export`` and ``validate`` use:
    weights loaded when ``config`` names any; otherwise random weights drawn after
    ``torch.manual_seed(seed)`` and BN statistics estimated on ``check_inputs(config, 32, seed + 1)``
    (so activations are well scaled). The caller's torch RNG state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config)
        if config.weights is None:
            estimate_bn_statistics(model, torch.from_numpy(check_inputs(config, 32, seed + 1)))
    return model.eval()


def export(name: str, options: ExportOptions | None = None, **kwargs) -> ExportResult:
    """Export registered model ``name``; ``kwargs`` are ExportOptions fields (``precision="int8"``...)."""
    from mobile_export.lowering import LoweredGraph
    from mobile_export.onnx_export import check_onnx_against_torch, export_onnx, run_onnxruntime
    from mobile_export.int8 import MIN_SQNR_DB, MIN_TOP1_AGREEMENT
    from mobile_export.runtime import TFLiteModel, fully_integer_violations, op_histogram, xnnpack_partitions
    from mobile_export.tflite_convert import convert

    if options is not None and kwargs:
        raise InvalidOptionError("pass either an ExportOptions or keyword options, not both.")
    options = options or ExportOptions(**kwargs)
    config = configure(name, weights=options.weights, num_classes=options.num_classes, input_size=options.input_size)
    precision = options.precision
    final_dir = options.out_dir / name / precision.value
    artifacts.check_writable(options.out_dir)
    warnings: list[str] = []
    if config.weights is None:
        warnings.append(UNTRAINED_WARNING)
        log.warning(UNTRAINED_WARNING)

    gate = None
    if options.gate is not None:  # read the gate file now: a bad one fails before minutes of conversion
        from mobile_export.gate import read_gate_file

        gate = read_gate_file(options.gate)
    st = _Stages()
    model = st.run("build reference model", build_reference, config, options.seed)
    in_shape = (options.batch, *config.input_shape_nchw[1:])
    proto = st.run("export ONNX + onnxsim", export_onnx, model, in_shape, input_name=config.input_name,
                   output_name=config.output_name, opset=options.opset)
    x = check_inputs(config, options.check_samples * options.batch, options.seed)
    ort_check = st.run("check onnxruntime vs PyTorch", check_onnx_against_torch, proto, model, x, config.input_name)

    calib, int8 = None, None
    if precision is Precision.INT8:
        from mobile_export.int8 import export_int8

        int8 = export_int8(proto, config, options, st.run)
        calib, lowered, tflite = int8.calibration, int8.lowered, int8.tflite
        # equalized when the sensitivity pass chose that (same function, other weights); never the
        # bias-corrected graph, whose changed biases exist only in the int8 model
        proto = int8.proto
        warnings.extend(calib.warnings)
        x = int8.holdout.inputs  # judge int8 on real held-back images, not on noise
    else:
        lowered = LoweredGraph(proto)
        tflite = st.run(f"convert to TFLite {precision.value}", convert, lowered,
                        (options.batch, *config.input_shape_nhwc[1:]), input_name=config.input_name,
                        precision=precision, io_type=options.io_type)

    tfl = TFLiteModel(tflite)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = st.run("run TFLite (XNNPACK)", tfl.run, x.transpose(0, 2, 3, 1))
    ort_out = run_onnxruntime(proto, x, config.input_name)
    fidelity = {
        "tflite_vs_torch": compare(got, ref),
        "tflite_vs_onnxruntime": compare(got, ort_out),
        "onnxruntime_vs_torch": ort_check,
    }
    bounds = dict(BOUNDS[precision])
    if "max_rel" in bounds:  # never stricter than 4x PyTorch's own float32 rounding noise
        bounds["max_rel"] = max(bounds["max_rel"], ort_check["allowed_max_rel"])
    fidelity["bounds"] = bounds
    fidelity["passed"] = _within(fidelity["tflite_vs_torch"], bounds)
    if precision is Precision.FP16:
        # Untrained (random) networks amplify fp16 weight rounding far more than trained ones. The
        # conversion is faithful when TFLite matches the same graph with fp16-rounded weights.
        from mobile_export.onnx_export import with_fp16_weights

        fp16_out = run_onnxruntime(with_fp16_weights(proto), x, config.input_name)
        fp16_ref = compare(got, fp16_out)
        fidelity["tflite_vs_fp16_weights_reference"] = fp16_ref
        fidelity["fp16_weights_reference_vs_torch"] = compare(fp16_out, ref)
        explained = fp16_ref["cosine_min"] >= FP16_REFERENCE_COSINE
        fidelity["passed_by"] = "torch" if fidelity["passed"] else ("fp16_weights_reference" if explained else None)
        fidelity["passed"] = fidelity["passed"] or explained
    partitions = xnnpack_partitions(tflite)
    ops = op_histogram(tflite)
    graph_ok = partitions["partitions"] == 1 and not partitions["outside"]
    if not graph_ok:
        warnings.append(f"XNNPACK splits the graph into {partitions['partitions']} partitions; "
                        f"outside: {', '.join(partitions['outside'][:5])}")
    latency = {"tflite_1_thread": tfl.latency_ms()}
    extra = {}
    if int8 is not None:
        offending = fully_integer_violations(tflite)
        if offending:
            warnings.append(f"not fully integer: {', '.join(offending[:5])}")
        if not int8.chosen["meets_bar"]:
            warnings.append(
                f"int8 fidelity below the bar on the calibration images: SQNR {int8.chosen['sqnr_db']:.1f} dB, "
                f"top-1 agreement {int8.chosen['top1_agreement']:.3f} vs fp32 (want >= {MIN_SQNR_DB:g} dB and "
                f">= {MIN_TOP1_AGREEMENT:.0%}); use --gate to fail CI on it.")
        latency["fp32_tflite_1_thread"] = TFLiteModel(int8.float_tflite).latency_ms()
        latency["int8_over_fp32"] = latency["tflite_1_thread"]["median_ms"] / latency["fp32_tflite_1_thread"]["median_ms"]
        extra["int8"] = {"fully_integer": not offending, "violations": offending, "chosen": int8.chosen,
                         "attempts": int8.attempts, "holdout_samples": int(int8.holdout.count),
                         "equalized": int8.equalized,
                         "per_layer": st.run("per-layer int8 vs fp32", int8_per_layer, tflite, proto, lowered,
                                             int8.holdout.inputs, config, options.batch)}
        graph_ok = graph_ok and not offending

    if config.weights_spec is not None and config.weights_spec.name == "cifar10":
        extra["accuracy"] = st.run("accuracy on held-out CIFAR-10", cifar10_accuracy, config, model, tfl)
    manifest = build_manifest(config, precision, options, tflite, proto, tfl, lowered, calib, int8)
    rep = report.build(
        manifest=manifest, config=config, precision=precision, warnings=warnings, stages=st.times,
        fidelity=fidelity, partitions=partitions, ops=ops, latency=latency, calibration=calib, extra=extra,
    )
    passed = bool(fidelity["passed"] and graph_ok)
    rep["passed"] = passed
    with artifacts.atomic_dir(final_dir) as tmp:
        (tmp / "model.onnx").write_bytes(proto.SerializeToString())
        (tmp / "model.tflite").write_bytes(tflite)
        (tmp / "manifest.json").write_text(artifacts.dumps(manifest))
        (tmp / "report.json").write_text(artifacts.dumps(rep))
        (tmp / "report.md").write_text(report.to_markdown(rep))
    log.info("wrote %s", final_dir)
    result = ExportResult(final_dir, manifest, rep, passed, warnings)
    if gate is not None:  # validate the written artifact and apply the gate (mobile_export.validation)
        from mobile_export.validation import validate

        result.validation = validate(result.tflite_path, reference=name, weights=options.weights, gate=gate)
        result.passed = passed and result.validation.passed
    return result


def cifar10_accuracy(config: ModelConfig, model: torch.nn.Module, tfl) -> dict:
    """Top-1 of PyTorch and the TFLite model on the 1,000 shipped held-out CIFAR-10 images (never
    trained on), and the drop in percentage points with a paired-bootstrap 95% interval."""
    from mobile_export import metrics
    from mobile_export.calibration import load_cifar10_holdout

    data = load_cifar10_holdout(config)
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(data.inputs[i:i + 64])).numpy()
                              for i in range(0, data.count, 64)])
    got = tfl.run(np.ascontiguousarray(data.inputs.transpose(0, 2, 3, 1)))
    c_ref, c_got = metrics.topk_correct(ref, data.labels, 1), metrics.topk_correct(got, data.labels, 1)
    drop = metrics.paired_bootstrap_drop(c_ref, c_got, resamples=2000, seed=0)
    return {"data": "cifar10 held-out (shipped, never trained on)", "samples": int(data.count),
            "torch_top1": float(c_ref.mean()), "tflite_top1": float(c_got.mean()), "top1_drop": drop}


def _within(metrics: dict, bounds: dict) -> bool:
    for key, bound in bounds.items():
        if key.startswith("max_"):
            if metrics[key] > bound:
                return False
        elif metrics[key] < bound:
            return False
    return True


def int8_per_layer(tflite: bytes, proto, lowered, x: np.ndarray, config, batch: int) -> dict:
    """Per-layer SQNR of the int8 model against the float graph (onnxruntime) on a few held-back
    images, with the first layer past the int8 tolerance named (the validator's table)."""
    from mobile_export.per_layer import compare_layers

    k = max(batch, min(PER_LAYER_SAMPLES, len(x)) // batch * batch)
    return compare_layers(tflite, proto, lowered.layers(), x[:k], input_name=config.input_name, precision="int8")


def build_manifest(config, precision, options, tflite: bytes, proto, tfl, lowered, calib, int8=None) -> dict:
    weights = None
    if config.weights_spec is not None:
        weights = {"name": config.weights_spec.name, "sha256": artifacts.sha256_file(config.weights_spec.path)}
    elif config.weights is not None:
        weights = {"path": Path(config.weights).name, "sha256": artifacts.sha256_file(config.weights)}

    def io(info, name):
        d = info.as_dict()
        d["tensor"], d["name"] = d["name"], name  # signature name (stable) and TFLite tensor name
        d["layout"] = "NHWC" if len(info.shape) == 4 else "NC"
        return d

    recipe = list(lowered.recipe)
    if int8 is not None:
        recipe += int8.decisions + [
            f"{r.tensor}: int8 range [{r.lo:.6g}, {r.hi:.6g}] ({'calibrated' if r.calibrated else 'exact bound'})"
            for r in lowered.fixed_ranges]
    return {
        "schema_version": 1,
        "model": config.name,
        "family": config.spec.family,
        "precision": precision.value,
        "io_type": options.io_type.value if precision is Precision.INT8 else "float",
        "num_classes": config.num_classes,
        "weights": weights,
        "trained": weights is not None,
        "seed": options.seed,  # the reference's seed: validate rebuilds an untrained model from it
        "tflite_sha256": artifacts.sha256_bytes(tflite),
        "onnx_sha256": artifacts.sha256_bytes(proto.SerializeToString()),
        "inputs": [io(tfl.inputs[0], config.input_name)],
        "outputs": [io(tfl.outputs[0], config.output_name)],
        "preprocessing": config.preprocessing(),
        "labels": list(config.labels) if config.labels else None,
        "calibration": None if calib is None else {
            "source": calib.source, "kind": calib.kind, "count": calib.count,
            "seed": calib.seed, "sha256": calib.sha256,
        },
        "recipe": recipe,
        "layers": lowered.layers(),
        "versions": artifacts.versions(),
    }


__all__ = ["ExportOptions", "ExportResult", "IOType", "Precision", "build_reference", "export"]
