"""``export(name, ...) -> ExportResult``: the export pipeline the CLI is a thin layer over.

The stages, in order: reference (torch model + weights) → ONNX (+onnxsim, checked with
onnxruntime) → own NHWC lowering → TFLite (fp32/fp16/dynamic; int8 through the sensitivity search)
→ check (fidelity on the host runtime, XNNPACK partitions, fully integer) → write the artifact
atomically to ``OUT/NAME/PRECISION/``. With ``gate`` the validation runs as a sibling step on the
artifact just built, with the same reference and the same runtime outputs (nothing is built or run
twice), and its reports go into the artifact's ``validation/`` folder.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobile_export import artifacts, fidelity as F
from mobile_export.errors import InvalidOptionError
from mobile_export.metrics import as_output, compare
from mobile_export.models import ModelConfig, configure
from mobile_export.options import ExportOptions, IOType, Precision, ValidateOptions
from mobile_export.report import export_md

log = logging.getLogger(__name__)

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


@dataclass
class Build:
    """What the conversion stages produced, handed from stage to stage."""

    config: ModelConfig
    options: ExportOptions
    model: Any                 # the PyTorch reference (eval mode)
    proto: Any                 # the ONNX graph the TFLite model approximates
    ort_check: dict
    check_x: Any = None        # the check inputs of the ONNX export (noise + real images)
    tflite: bytes = b""
    lowered: Any = None
    int8: Any = None           # quantize.search.Int8Result
    facts: Any = None          # convert.metadata.IOFacts: the I/O contract written into the .tflite
    output_dequantized_from: dict | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def precision(self) -> Precision:
        return self.options.precision

    def io_manifest(self) -> dict:
        """The I/O facts the manifest states (the same the .tflite's metadata carries)."""
        f = self.facts
        return {"input_name": f.input_name, "output_name": f.output_name, "pixels": f.pixels,
                "output_dequantized_from": self.output_dequantized_from}


def to_onnx(b: Build, st: _Stages) -> None:
    """torch → ONNX → onnxsim, checked against PyTorch with onnxruntime."""
    from mobile_export.convert.to_onnx import check_onnx_against_torch, export_onnx
    from mobile_export.reference import check_inputs

    o, c = b.options, b.config
    b.proto = st.run("export ONNX + onnxsim", export_onnx, b.model, (o.batch, *c.input_shape_nchw[1:]),
                     input_name=c.input_name, output_name=c.output_name, opset=o.opset)
    b.check_x = check_inputs(c, o.check_samples * o.batch, o.seed)
    b.ort_check = st.run("check onnxruntime vs PyTorch", check_onnx_against_torch, b.proto, b.model, b.check_x,
                         c.input_name)


def to_tflite(b: Build, st: _Stages) -> None:
    """The lowering and the TF converter (int8 through the sensitivity search), then the shipped form:
    pixel prologue, softmax, names, TFLite metadata and labels (``convert.tflite_edit.finish``)."""
    from mobile_export.convert.metadata import facts_for
    from mobile_export.convert.finish import finish

    convert_tflite(b, st)
    b.facts = facts_for(b.config, b.options)
    if not b.facts.pixels and len(set(b.facts.client_normalization[1])) > 1:
        b.warnings.append("--input normalized with per-channel mean/std: MediaPipe Tasks refuses per-channel "
                          "normalization, so only the Interpreter API can run this model (the default "
                          "--input pixels normalizes inside the model).")
    b.tflite, b.output_dequantized_from = st.run("write TFLite metadata", finish, b.tflite, b.facts,
                                                 int8=b.precision is Precision.INT8)


def convert_tflite(b: Build, st: _Stages) -> None:
    if b.precision is Precision.INT8:
        from mobile_export.quantize.search import export_int8

        b.int8 = export_int8(b.proto, b.config, b.options, st.run)
        b.tflite, b.lowered = b.int8.tflite, b.int8.lowered
        # equalized when the search chose that (same function, other weights); never the
        # bias-corrected graph, whose changed biases exist only in the int8 model
        b.proto = b.int8.proto
        b.warnings.extend(b.int8.calibration.warnings)
        return
    from mobile_export.convert.lowering import LoweredGraph
    from mobile_export.convert.to_tflite import convert

    b.lowered = LoweredGraph(b.proto)
    b.tflite = st.run(f"convert to TFLite {b.precision.value}", convert, b.lowered,
                      (b.options.batch, *b.config.input_shape_nhwc[1:]), input_name=b.config.input_name,
                      precision=b.precision, io_type=b.options.io_type)


def check_inputs_for(b: Build) -> np.ndarray:
    """The export's own check inputs: noise + real images (float), the held-back real images (int8)."""
    if b.int8 is not None:
        return b.int8.holdout.inputs  # judge int8 on real held-back images, not on noise
    return b.check_x


def run_check(b: Build, tfl, st: _Stages, x: np.ndarray):
    """PyTorch, onnxruntime and TFLite (XNNPACK) on the check inputs, once each."""
    from mobile_export.reference import run_torch
    from mobile_export.runtimes.onnxruntime import run_onnxruntime
    from mobile_export.validation import Outputs

    kind = b.facts.output_name  # probabilities: compare with the references' softmax
    ref = as_output(run_torch(b.model, x), kind)
    got = st.run("run TFLite (XNNPACK)", tfl.run, x.transpose(0, 2, 3, 1))
    return Outputs(ref, as_output(run_onnxruntime(b.proto, x, b.config.input_name), kind), got)


def fidelity_section(b: Build, outs, x: np.ndarray) -> dict[str, Any]:
    """TFLite vs PyTorch and onnxruntime, against the precision's bounds (``fidelity.BOUNDS``)."""
    fid = {"tflite_vs_torch": compare(outs.tflite, outs.torch),
           "tflite_vs_onnxruntime": compare(outs.tflite, outs.onnxruntime),
           "onnxruntime_vs_torch": b.ort_check}
    fid["bounds"] = F.export_bounds(b.precision, b.ort_check["float32_noise"])
    fid["passed"] = F.within(fid["tflite_vs_torch"], fid["bounds"])
    if b.precision is Precision.FP16:
        # Untrained (random) networks amplify fp16 weight rounding far more than trained ones. The
        # conversion is faithful when TFLite matches the same graph with fp16-rounded weights.
        from mobile_export.convert.graph import with_fp16_weights
        from mobile_export.runtimes.onnxruntime import run_onnxruntime

        fp16_out = as_output(run_onnxruntime(with_fp16_weights(b.proto), x, b.config.input_name), b.facts.output_name)
        fp16_ref = compare(outs.tflite, fp16_out)
        fid["tflite_vs_fp16_weights_reference"] = fp16_ref
        fid["fp16_weights_reference_vs_torch"] = compare(fp16_out, outs.torch)
        explained = fp16_ref["cosine_min"] >= F.FP16_REFERENCE_COSINE
        fid["passed_by"] = "torch" if fid["passed"] else ("fp16_weights_reference" if explained else None)
        fid["passed"] = fid["passed"] or explained
    return fid


def graph_section(b: Build, graph) -> tuple[dict, dict, list[str]]:
    """XNNPACK partitions, op counts, and what keeps an int8 model from being fully integer, all read
    from ``graph`` (the model's ``runtimes.host.GraphView``) but the partitions."""
    from mobile_export.runtimes.host import fully_integer_violations, op_histogram, xnnpack_partitions
    from mobile_export.runtimes.xnnpack_limits import violations

    partitions = xnnpack_partitions(b.tflite)
    partitions["limit_violations"] = [v.sentence() for v in violations(graph)]
    if partitions["partitions"] != 1 or partitions["outside"]:
        b.warnings.append(f"XNNPACK splits the graph into {partitions['partitions']} partitions; "
                          f"outside: {', '.join(partitions['outside'][:5])}")
    b.warnings += partitions["limit_violations"][:5]
    offending = fully_integer_violations(graph) if b.int8 is not None else []
    if offending:
        b.warnings.append(f"not fully integer: {', '.join(offending[:5])}")
    return partitions, op_histogram(graph), offending


def int8_section(b: Build, st: _Stages, graph, offending: list[str], per_layer: dict | None) -> dict[str, Any]:
    """The search's attempts and choice, and the per-layer table against the float graph."""
    q = b.int8
    if not q.chosen["meets_bar"]:
        gated = "gated by --gate below" if b.options.gate is not None else "not gated: add --gate to fail CI on it"
        b.warnings.append(
            f"int8 fidelity below the bar on the held-back calibration images: SQNR {q.chosen['sqnr_db']:.1f} dB, "
            f"top-1 agreement {q.chosen['top1_agreement']:.3f} vs fp32 (bar >= {F.INT8_BAR.min_sqnr_db:g} dB and "
            f">= {F.INT8_BAR.min_top1_agreement:.0%}); {gated}.")
    if per_layer is None:
        per_layer = st.run("per-layer int8 vs fp32", int8_per_layer, b, q.holdout.inputs)
    from mobile_export.runtimes.host import io_boundary

    return {"fully_integer": not offending, "violations": offending, "io_boundary": io_boundary(graph),
            "chosen": q.chosen, "attempts": q.attempts,
            "holdout_samples": int(q.holdout.count), "equalized": q.equalized, "per_layer": per_layer}


def int8_per_layer(b: Build, x: np.ndarray) -> dict:
    """Per-layer SQNR of the int8 model against the float graph (onnxruntime) on a few held-back
    images, with the first layer past the int8 tolerance named (the validator's table)."""
    from mobile_export.validation.per_layer import compare_layers

    k = max(b.options.batch, min(PER_LAYER_SAMPLES, len(x)) // b.options.batch * b.options.batch)
    return compare_layers(b.tflite, b.proto, b.lowered.layers(), x[:k], input_name=b.config.input_name,
                          precision=Precision.INT8)


def cifar10_accuracy(b: Build, tfl) -> dict:
    """Top-1 of PyTorch and the TFLite model on the 1,000 shipped held-out CIFAR-10 images (never
    trained on), and the drop in percentage points with a paired-bootstrap 95% interval."""
    from mobile_export.calibration import load_cifar10_holdout
    from mobile_export.reference import run_torch
    from mobile_export.validation.accuracy import accuracy

    data = load_cifar10_holdout(b.config)
    got = tfl.run(np.ascontiguousarray(data.inputs.transpose(0, 2, 3, 1)))
    return accuracy(run_torch(b.model, data.inputs), got, data.labels,
                    data="cifar10 held-out (shipped, never trained on)")


def measurements(b: Build, tfl, st: _Stages, graph, offending: list[str], gate=None) -> tuple[dict, dict]:
    """Latency on the host (and, for int8, the fp32 model's and the ratio), the int8 section, and
    the accuracy on held-out CIFAR-10 images for the shipped CIFAR-10 weights."""
    from mobile_export.runtimes.host import TFLiteModel

    latency, extra = {"tflite_1_thread": tfl.latency_ms()}, {}
    if b.int8 is not None:
        latency["fp32_tflite_1_thread"] = TFLiteModel(b.int8.float_tflite).latency_ms()
        latency["int8_over_fp32"] = latency["tflite_1_thread"]["median_ms"] / latency["fp32_tflite_1_thread"]["median_ms"]
        extra["int8"] = int8_section(b, st, graph, offending, gate.per_layer() if gate else None)
    if b.config.weights_spec is not None and b.config.weights_spec.name == "cifar10":
        extra["accuracy"] = st.run("accuracy on held-out CIFAR-10", cifar10_accuracy, b, tfl)
    return latency, extra


def _prepare(name: str, options: ExportOptions | None, kwargs: dict) -> tuple[ExportOptions, ModelConfig, Any]:
    """Options, model configuration, output folder and gate file checked before any heavy work."""
    if options is not None and kwargs:
        raise InvalidOptionError("pass either an ExportOptions or keyword options, not both.")
    options = options or ExportOptions(**kwargs)
    config = configure(name, weights=options.weights, num_classes=options.num_classes, input_size=options.input_size)
    artifacts.check_writable(options.out_dir)
    artifacts.check_target_dir(options.out_dir / name / options.precision.value)
    if options.calibration is not None:
        from mobile_export.calibration import check_source

        check_source(options.calibration)
    gate_file = None
    if options.gate is not None:  # read the gate file now: a bad one fails before minutes of conversion
        from mobile_export.validation.gate import read_gate_file

        gate_file = read_gate_file(options.gate)
    return options, config, gate_file


def export(name: str, options: ExportOptions | None = None, **kwargs) -> ExportResult:
    """Export registered model ``name``; ``kwargs`` are ExportOptions fields (``precision="int8"``...)."""
    from mobile_export.reference import build_reference
    from mobile_export.runtimes.host import GraphView, TFLiteModel

    options, config, gate_file = _prepare(name, options, kwargs)
    final_dir = options.out_dir / name / options.precision.value
    st = _Stages()
    b = Build(config, options, st.run("build reference model", build_reference, config, options.seed), None, {})
    if config.weights is None:
        b.warnings.append(UNTRAINED_WARNING)
        log.warning(UNTRAINED_WARNING)
    to_onnx(b, st)
    to_tflite(b, st)
    tfl = TFLiteModel(b.tflite)
    manifest = artifacts.build_manifest(config, options, b.tflite, b.proto, tfl, b.lowered,
                                        b.int8.calibration if b.int8 else None, b.int8, io=b.io_manifest())
    gate = Gate(b, tfl, final_dir, manifest, gate_file) if gate_file is not None else None
    x = gate.inputs() if gate else check_inputs_for(b)
    outs = gate.outputs(st) if gate else run_check(b, tfl, st, x)
    fid = fidelity_section(b, outs, x)
    graph = GraphView.of(b.tflite)  # one read of the stored graph for every check below
    partitions, ops, offending = graph_section(b, graph)
    latency, extra = measurements(b, tfl, st, graph, offending, gate)
    passed = bool(fid["passed"] and partitions["partitions"] == 1 and not partitions["outside"] and not offending)
    rep = export_md.build(manifest=manifest, config=config, precision=b.precision, warnings=b.warnings,
                          stages=st.times, fidelity=fid, partitions=partitions, ops=ops, latency=latency,
                          calibration=manifest["calibration"], extra=extra)
    rep["passed"] = passed
    validation = gate.finish() if gate else None
    write_artifact(final_dir, b, manifest, rep, validation)
    result = ExportResult(final_dir, manifest, rep, passed, b.warnings, validation)
    if validation is not None:
        validation.out_dir = final_dir / "validation"
        result.passed = passed and validation.passed
    return result


def write_artifact(final_dir: Path, b: Build, manifest: dict, rep: dict, validation=None) -> None:
    """model.onnx, model.tflite, manifest.json, report.json/.md (and validation/ with a gate),
    written in a temporary folder renamed into place."""
    with artifacts.atomic_dir(final_dir) as tmp:
        (tmp / "model.onnx").write_bytes(b.proto.SerializeToString())
        (tmp / "model.tflite").write_bytes(b.tflite)
        (tmp / "manifest.json").write_text(artifacts.dumps(manifest))
        (tmp / "report.json").write_text(artifacts.dumps(rep))
        (tmp / "report.md").write_text(export_md.to_markdown(rep))
        if validation is not None:
            from mobile_export.validation import write_report_files

            (tmp / "validation").mkdir()
            write_report_files(validation.report, tmp / "validation")
    log.info("wrote %s", final_dir)


class Gate:
    """Export's ``--gate``: the validation stages on the artifact being built, sharing the reference
    model, the inputs and each runtime's outputs with the export's own check."""

    def __init__(self, b: Build, tfl, final_dir: Path, manifest: dict, gate_file) -> None:
        from mobile_export.validation import Artifact, Validation

        art = Artifact(final_dir / "model.tflite", b.tflite, manifest, b.proto)
        self.v = Validation(art, b.config, b.model, ValidateOptions(weights=b.options.weights, write=False),
                            gate_file, tfl=tfl)
        self.b = b
        self.data = self.v.load_data()
        self._outs, self._per_layer = None, None

    def inputs(self) -> np.ndarray:
        return self.data.inputs

    def outputs(self, st: _Stages):
        self._outs = st.run("run PyTorch, onnxruntime, TFLite on the gate's data", self.v.run_models,
                            self.data.inputs)
        return self._outs

    def per_layer(self) -> dict:
        self._per_layer = self.v.per_layer(self.data.inputs)
        return self._per_layer

    def finish(self):
        return self.v.run(self.data, self._outs, per_layer=self._per_layer)


__all__ = ["ExportOptions", "ExportResult", "IOType", "Precision", "export"]
