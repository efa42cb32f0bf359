"""``build(config, options) -> Built``: the conversion stages of an export, ending in a frozen
result that nothing changes later — reference (torch model + weights) → ONNX (+onnxsim, checked
with onnxruntime) → own NHWC lowering → TFLite (fp32 / fp16 / dynamic; int8 through the
sensitivity search) → the shipped form (pixel prologue, softmax, names, TFLite metadata).
What the artifact is worth is measured afterwards by the check engine (``check``)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobile_export.convert.finish import finish
from mobile_export.convert.lowering import LoweredGraph
from mobile_export.convert.metadata import facts_for
from mobile_export.convert.to_onnx import check_onnx_against_torch, export_onnx
from mobile_export.convert.to_tflite import convert
from mobile_export.models import ModelConfig
from mobile_export.options import ExportOptions, Precision
from mobile_export.quantize.search import Int8Result, export_int8
from mobile_export.reference import build_reference, check_inputs
from mobile_export.runtimes.onnxruntime import Sessions

log = logging.getLogger(__name__)

UNTRAINED_WARNING = (
    "UNTRAINED WEIGHTS: no --weights given, so this model has random initial weights; its outputs "
    "mean nothing and accuracy figures are not meaningful. Pass --weights PATH (or a registered name)."
)
PER_CHANNEL_WARNING = (
    "--input normalized with per-channel mean/std: MediaPipe Tasks refuses per-channel normalization, so "
    "only the Interpreter API can run this model (the default --input pixels normalizes inside the model).")


@dataclass(frozen=True)
class Built:
    """What the conversion stages produced."""

    config: ModelConfig
    options: ExportOptions
    model: Any                 # the PyTorch reference (eval mode)
    proto: Any                 # the ONNX graph the TFLite model approximates (equalized when int8 chose it)
    ort_check: dict            # onnxruntime vs PyTorch right after the ONNX export
    check_x: np.ndarray        # the float check inputs: seeded noise + embedded images
    tflite: bytes              # the shipped model
    lowered: LoweredGraph
    int8: Int8Result | None
    io: dict                   # the I/O facts the manifest states (the same the .tflite's metadata carries)
    warnings: tuple[str, ...]

    @property
    def precision(self) -> Precision:
        return self.options.precision


def _float_tflite(proto, config: ModelConfig, options: ExportOptions, run) -> tuple[bytes, LoweredGraph]:
    lowered = LoweredGraph(proto)
    tflite = run(f"convert to TFLite {options.precision.value}", convert, lowered,
                 (options.batch, *config.input_shape_nhwc[1:]), input_name=config.input_name,
                 precision=options.precision, io_type=options.io_type)
    return tflite, lowered


def build(config: ModelConfig, options: ExportOptions, run, sessions: Sessions | None = None) -> Built:
    """Every conversion stage; ``run(name, fn, *args)`` times each (``check.engine.Stages.run``);
    ``sessions``: the command's onnxruntime sessions (the check engine reuses the ONNX check's)."""
    warnings: list[str] = []
    model = run("build reference model", build_reference, config, options.seed)
    if config.weights is None:
        warnings.append(UNTRAINED_WARNING)
        log.warning(UNTRAINED_WARNING)
    proto = run("export ONNX + onnxsim", export_onnx, model, (options.batch, *config.input_shape_nchw[1:]),
                input_name=config.input_name, output_name=config.output_name, opset=options.opset)
    check_x = check_inputs(config, options.check_samples * options.batch, options.seed)
    ort_check = run("check onnxruntime vs PyTorch", check_onnx_against_torch, proto, model, check_x, config.input_name,
                    sessions)
    int8 = None
    if options.precision is Precision.INT8:
        int8 = export_int8(proto, config, options, run)
        # equalized when the search chose that (same function, other weights); never the
        # bias-corrected graph, whose changed biases exist only in the int8 model
        tflite, lowered, proto = int8.tflite, int8.lowered, int8.proto
        warnings.extend(int8.calibration.warnings)
    else:
        tflite, lowered = _float_tflite(proto, config, options, run)
    facts = facts_for(config, options)
    if not facts.pixels and len(set(facts.client_normalization[1])) > 1:
        warnings.append(PER_CHANNEL_WARNING)
    tflite, dequantized_from = run("write TFLite metadata", finish, tflite, facts, int8=int8 is not None)
    io = {"input_name": facts.input_name, "output_name": facts.output_name, "pixels": facts.pixels,
          "output_dequantized_from": dequantized_from}
    return Built(config, options, model, proto, ort_check, check_x, tflite, lowered, int8, io, tuple(warnings))
