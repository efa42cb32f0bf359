"""The Python API the CLI is a thin layer over: two front doors over one check engine.

- ``export(name, ...)`` = ``build`` (conversion stages → a frozen ``Built``) → check the artifact
  just built (``check.engine.run``) → write ``OUT/NAME/PRECISION/`` atomically.
- ``validate(tflite_path, ...)`` = load a written artifact (``check.loaded.load``) → rebuild its
  reference → the same check → write ``validation/`` beside it.

``--gate`` is the same check with a gate file's thresholds instead of the precision's default bar.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mobile_export import artifacts, fidelity as F
from mobile_export.build import Built, build
from mobile_export.calibration import (
    CalibrationSet,
    check_source,
    load_calibration,
    load_cifar10_holdout,
    load_default_labelled,
)
from mobile_export.check import devices, engine, gate as gates
from mobile_export.check.loaded import Loaded, load, reference_config, reference_seed
from mobile_export.check.report import Int8Search, Report
from mobile_export.errors import InvalidOptionError, UserError
from mobile_export.models import ModelConfig, check_weights_file, configure
from mobile_export.options import ExportOptions, IOType, Precision, Runtime, ValidateOptions
from mobile_export.reference import build_reference
from mobile_export.report import export_md
from mobile_export.report.html import to_html
from mobile_export.report.junit import validation_junit
from mobile_export.report.validate_md import to_markdown as validation_markdown
from mobile_export.runtimes.arm.adb import DeviceOptions, check_device
from mobile_export.runtimes.onnxruntime import Sessions

log = logging.getLogger(__name__)

CIFAR10_DEFAULT = "cifar10-default"
CIFAR10_HOLDOUT = "cifar10"  # the shipped held-out split (never trained on): real accuracy
PER_LAYER_SAMPLES = 8  # held-back images of the int8 export's per-layer table


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict[str, Any]
    report: Report

    @property
    def passed(self) -> bool:
        return self.report.passed

    @property
    def warnings(self) -> list[str]:
        return self.report.warnings

    @property
    def tflite_path(self) -> Path:
        return self.out_dir / "model.tflite"


@dataclass
class ValidationResult:
    tflite_path: Path
    out_dir: Path | None  # where the reports were written (None: not written)
    report: Report

    @property
    def passed(self) -> bool:
        return self.report.passed

    @property
    def failures(self) -> list:
        return self.report.gate.failures

    def summary_lines(self) -> list[str]:
        return self.report.summary_lines(self.out_dir / "report.md" if self.out_dir else None)


# ----------------------------------------------------------------------------------------------- data


def load_data(data: str | os.PathLike | None, config, *, num: int, seed: int) -> CalibrationSet:
    """Check inputs preprocessed for ``config``: the embedded default set (None), the labelled
    CIFAR-10 part of it (``cifar10-default``), the shipped CIFAR-10 held-out images (``cifar10``), or
    any calibration source."""
    if data is not None and str(data) == CIFAR10_DEFAULT:
        return load_default_labelled(config, num=num, seed=seed)
    if data is not None and str(data) == CIFAR10_HOLDOUT:
        return load_cifar10_holdout(config, num=num, seed=seed)
    return load_calibration(data, config, num=num, seed=seed, flag="--data")


def check_data_source(data, flag: str = "--data") -> None:
    """A --data source (or a gate file's ``data``) checked before any work; the shipped names need no check."""
    if data is not None and str(data) not in (CIFAR10_DEFAULT, CIFAR10_HOLDOUT):
        check_source(data, flag)


def _check_labels(calib, num_classes: int, manifest_labels, warnings: list[str]) -> None:
    if calib.labels is None:
        return
    if calib.class_names is not None and len(calib.class_names) != num_classes:
        raise UserError(f"the data {calib.source} has {len(calib.class_names)} classes but the model has "
                        f"{num_classes}; pass data labelled with the model's classes.")
    if calib.count and int(calib.labels.max()) >= num_classes:
        raise UserError(f"the data {calib.source} has label {int(calib.labels.max())} but the model has only "
                        f"{num_classes} classes; pass data labelled with the model's classes.")
    if manifest_labels and calib.class_names and list(calib.class_names) != list(manifest_labels):
        warnings.append("the data's class names differ from the manifest's labels (same count); "
                        "check that the label order matches.")


def gate_data(loaded: Loaded, config: ModelConfig, data, num: int, seed: int, warnings: list[str]) -> CalibrationSet:
    """The data a gate or validate checks on, preprocessed as the manifest says, cut to a multiple of the batch."""
    pre = loaded.manifest["preprocessing"]
    data_config = dataclasses.replace(config, mean=tuple(pre.get("mean", config.mean)),
                                      std=tuple(pre.get("std", config.std)))
    calib = load_data(data, data_config, num=num, seed=seed)
    warnings += [w for w in calib.warnings if "calibrated on the embedded default set" not in w]
    _check_labels(calib, config.num_classes, loaded.manifest.get("labels"), warnings)
    batch = loaded.batch
    usable = calib.count - calib.count % batch
    if usable == 0:
        raise UserError(f"the model takes batches of {batch} but the data holds only {calib.count} samples; pass more.")
    if usable < calib.count:
        warnings.append(f"used {usable} of {calib.count} samples (a multiple of the model's batch {batch}).")
        calib = calib.split(calib.count - usable)[0]
    return calib


# --------------------------------------------------------------------------------------------- export


def _prepare(name: str, options: ExportOptions | None, kwargs: dict):
    """Options, model configuration, output folder and gate file checked before any heavy work."""
    if options is not None and kwargs:
        raise InvalidOptionError("pass either an ExportOptions or keyword options, not both.")
    options = options or ExportOptions(**kwargs)
    config = configure(name, weights=options.weights, num_classes=options.num_classes, input_size=options.input_size)
    if config.weights is not None and config.weights_spec is None:
        check_weights_file(config.weights)
    artifacts.check_writable(options.out_dir)
    artifacts.check_target_dir(options.out_dir / name / options.precision.value)
    if options.calibration is not None:
        check_source(options.calibration)
    gate_file = gates.read_gate_file(options.gate) if options.gate is not None else None
    if gate_file is not None:
        check_data_source(gate_file.top.get("data"))
    return options, config, gate_file


def _export_plan(b: Built, loaded: Loaded, gate_file, warnings: list[str]) -> tuple[CalibrationSet, engine.Plan]:
    """The data and plan of an export's check: the gate file's data and thresholds, or the export's own
    check inputs (float: seeded noise + embedded images; int8: the held-back calibration images) under
    the precision's default bar."""
    thresholds, settings, source = gates.thresholds_for(gate_file, None, b.config.name, b.precision)
    if gate_file is not None:
        data = gate_data(loaded, b.config, settings.get("data"), int(settings.get("num", 256)), b.options.seed, warnings)
        layer_samples = 4
    elif b.int8 is not None:
        data, layer_samples = b.int8.holdout, PER_LAYER_SAMPLES
    else:
        data = CalibrationSet.build(b.check_x, source="check inputs: seeded noise + embedded images", kind="check",
                                    seed=b.options.seed)
        layer_samples = 0
    accuracy_data = None  # the shipped CIFAR-10 weights are judged on the held-out images unless data has labels
    if data.labels is None and b.config.weights_spec is not None and b.config.weights_spec.name == "cifar10":
        accuracy_data = dataclasses.replace(load_cifar10_holdout(b.config),
                                            source="cifar10 held-out (shipped, never trained on)")
    runs = b.options.latency_runs if b.options.latency_runs is not None else int(settings.get("latency_runs", 30))
    plan = engine.Plan(thresholds, source, gate_file is None, layer_samples=layer_samples, latency_runs=runs,
                       seed=b.options.seed,
                       fp32_sibling=b.int8.float_tflite if b.int8 is not None else None, accuracy_data=accuracy_data)
    return data, plan


def _int8_warning(b: Built, gated: bool) -> str | None:
    chosen = b.int8.chosen
    if chosen["meets_bar"]:
        return None
    how = "gated by --gate" if gated else "not gated: add --gate to fail CI on it"
    return (f"int8 fidelity below the bar on the held-back calibration images: SQNR {chosen['sqnr_db']:.1f} dB, "
            f"top-1 agreement {chosen['top1_agreement']:.3f} vs fp32 (bar >= {F.INT8_BAR.min_sqnr_db:g} dB and "
            f">= {F.INT8_BAR.min_top1_agreement:.0%}); {how}.")


def export(name: str, options: ExportOptions | None = None, **kwargs) -> ExportResult:
    """Export registered model ``name``; ``kwargs`` are ExportOptions fields (``precision="int8"``...)."""
    options, config, gate_file = _prepare(name, options, kwargs)
    final_dir = options.out_dir / name / options.precision.value
    st, sessions = engine.Stages(), Sessions()
    b = build(config, options, st.run, sessions)
    loaded = Loaded(b.tflite, b.proto, {}, final_dir / "model.tflite", sessions)
    q = b.int8
    loaded.manifest = artifacts.build_manifest(config, options, b.tflite, b.proto, loaded.plain, b.lowered,
                                               q.calibration if q else None, q, io=b.io)
    warnings = list(b.warnings)
    if q is not None and (w := _int8_warning(b, gate_file is not None)):
        warnings.append(w)
    data, plan = _export_plan(b, loaded, gate_file, warnings)
    ref = engine.Reference(b.model, config, b.ort_check["float32_noise"])
    rep = engine.run(loaded, ref, data, plan, kind="export", warnings=warnings, st=st)
    rep.calibration, rep.onnx_check = loaded.manifest["calibration"], b.ort_check
    rep.artifact = {"tflite": str(loaded.path), "onnx": str(final_dir / "model.onnx")}
    if q is not None:
        rep.int8 = Int8Search(q.chosen, q.attempts, int(q.holdout.count), q.equalized)
    write_artifact(final_dir, b, loaded.manifest, rep, html=gate_file is not None)
    return ExportResult(final_dir, loaded.manifest, rep)


def write_artifact(final_dir: Path, b: Built, manifest: dict, rep: Report, html: bool = False) -> None:
    """model.onnx, model.tflite, manifest.json, report.json/.md (and report.html with a gate),
    written in a temporary folder renamed into place."""
    doc = rep.to_json()
    with artifacts.atomic_dir(final_dir) as tmp:
        (tmp / "model.onnx").write_bytes(b.proto.SerializeToString())
        (tmp / "model.tflite").write_bytes(b.tflite)
        (tmp / "manifest.json").write_text(artifacts.dumps(manifest))
        (tmp / "report.json").write_text(artifacts.dumps(doc))
        (tmp / "report.md").write_text(export_md.to_markdown(doc))
        if html:
            (tmp / "report.html").write_text(to_html(doc))
    log.info("wrote %s", final_dir)


# ------------------------------------------------------------------------------------------- validate


def _options(options: ValidateOptions | None, kwargs: Mapping[str, Any]) -> ValidateOptions:
    if options is not None and kwargs:
        raise UserError("pass either a ValidateOptions or keyword options, not both.")
    return options or ValidateOptions(**kwargs)


def _check_early(opts: ValidateOptions, gate_file, out_dir: Path) -> None:
    """The data source, the device and every output path, checked before the reference is built or
    anything runs."""
    check_data_source(opts.data if opts.data is not None else (gate_file.top.get("data") if gate_file else None))
    if opts.runtime is Runtime.ADB:  # adb and the device, before the reference is built
        check_device(opts.device or DeviceOptions())
    if opts.write:
        artifacts.check_target_dir(out_dir, "--out")
        if opts.junit is not None:
            artifacts.check_writable_file(Path(opts.junit), "--junit")


def _validate_plan(opts: ValidateOptions, loaded: Loaded, gate_file, warnings: list[str]):
    thresholds, settings, source = gates.thresholds_for(gate_file, opts.thresholds, loaded.manifest["model"],
                                                        loaded.precision)
    num = int(opts.num if opts.num is not None else settings.get("num", 256))
    if num < 1:
        raise UserError(f"--num must be a positive integer, got {num}.")
    runs = int(opts.latency_runs if opts.latency_runs is not None else settings.get("latency_runs", 30))
    wants_sibling = runs > 0 or opts.runtime is not Runtime.HOST
    sibling, sibling_path = (devices.fp32_sibling(loaded.path, loaded.precision, warnings) if wants_sibling
                             else (None, None))
    plan = engine.Plan(thresholds, source, gate_file is None and not any(
        v is not None for v in (opts.thresholds or {}).values()), layer_samples=opts.layer_samples,
        layer_tolerance=opts.layer_tolerance, latency_runs=runs, runtime=opts.runtime, cpu=opts.cpu,
        device=opts.device, seed=opts.seed, fp32_sibling=sibling)
    return plan, opts.data if opts.data is not None else settings.get("data"), num, sibling_path


def validate(tflite_path: str | os.PathLike, reference: str | None = None,
             options: ValidateOptions | None = None, **kwargs) -> ValidationResult:
    """Validate the artifact at ``tflite_path`` against registered model ``reference`` (defaults
    to the manifest's model). ``kwargs`` are ValidateOptions fields: ``data`` (None: embedded
    default set; ``"cifar10"``, ``"cifar10-default"``, an image folder / ImageFolder tree / .npy /
    .npz), ``gate`` (a TOML gate file), ``thresholds`` (``{"min_sqnr_db": 20}``), ``num`` /
    ``latency_runs`` (default: the gate file's settings, else 256 / 30; ``latency_runs=0`` skips
    timing), ``runtime`` (``"host"``, ``"qemu"`` on emulated core ``cpu``, or ``"adb"`` with
    ``device``, a ``runtimes.arm.adb.DeviceOptions``)."""
    opts = _options(options, kwargs)
    gate_file = gates.read_gate_file(opts.gate) if opts.gate is not None else None
    t0 = time.perf_counter()
    loaded = load(tflite_path, reference)
    out_dir = Path(opts.out_dir) if opts.out_dir is not None else loaded.path.parent / "validation"
    _check_early(opts, gate_file, out_dir)
    warnings: list[str] = []
    if not loaded.trained:
        warnings.append("UNTRAINED reference: the artifact was exported without weights; accuracy figures are "
                        "not meaningful.")
    plan, data_source, num, sibling_path = _validate_plan(opts, loaded, gate_file, warnings)
    config = reference_config(loaded.manifest, opts.weights)
    st = engine.Stages()
    model = st.run("build reference", build_reference, config, reference_seed(loaded.manifest))
    data = st.run("load data", gate_data, loaded, config, data_source, num, opts.seed, warnings)
    rep = engine.run(loaded, engine.Reference(model, config), data, plan, kind="validation", warnings=warnings, st=st)
    m = loaded.manifest
    rep.artifact = {"tflite": str(loaded.path), "onnx": str(loaded.path.parent / "model.onnx"),
                    "fp32_sibling": str(sibling_path) if sibling_path else None}
    rep.reference = {"name": m["model"], "weights": m.get("weights"), "seed": reference_seed(m),
                     "num_classes": config.num_classes, "input_size": config.input_size}
    rep.stages_s["total"] = round(time.perf_counter() - t0, 3)
    result = ValidationResult(loaded.path, None, rep)
    if opts.write:
        result.out_dir = out_dir
        write_reports(rep, out_dir, opts.junit)
    return result


def write_reports(rep: Report, out: Path, junit: str | os.PathLike | None = None) -> None:
    """report.json, report.md and report.html into ``out`` (atomically); JUnit XML to ``junit``."""
    doc = rep.to_json()
    if junit is not None:
        jpath = Path(junit)
        try:
            jpath.parent.mkdir(parents=True, exist_ok=True)
            artifacts.write_text(jpath, validation_junit(rep))
        except OSError as e:
            raise UserError(f"cannot write the JUnit file {jpath} ({e.strerror or e}); pass a writable --junit path.") from None
    try:
        with artifacts.atomic_dir(out) as tmp:
            (tmp / "report.json").write_text(artifacts.dumps(doc))
            (tmp / "report.md").write_text(validation_markdown(doc))
            (tmp / "report.html").write_text(to_html(doc))
    except OSError as e:
        raise UserError(f"cannot write reports to {out} ({e.strerror or e}); pass a writable --out.") from None
    log.info("wrote %s", out)


__all__ = ["CIFAR10_DEFAULT", "ExportOptions", "ExportResult", "IOType", "Precision", "ValidationResult", "export",
           "validate", "write_reports"]
