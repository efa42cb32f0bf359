"""``validate(tflite_path, reference=NAME, ...) -> ValidationReport``: prove a written artifact
matches its PyTorch reference.

Reads the manifest beside the ``.tflite`` (preprocessing, quantization, labels, weights, class
count, input size), rebuilds the reference exactly as export built it (``reference.build_reference``),
feeds the same preprocessed inputs to PyTorch, onnxruntime (``model.onnx`` beside the ``.tflite``)
and the TFLite interpreter, and reports output agreement, labelled accuracy (with a paired-bootstrap
CI of the drop and McNemar's exact test), the first layer where TFLite diverges, side-by-side latency
and a gate verdict. Reports go to ``--out`` (default ``validation/`` beside the ``.tflite``):
report.json, report.md, report.html; JUnit XML on request.

The stages (``Validation``): data → run every runtime once → fidelity and accuracy → per layer →
ARM / device → latency → gate. Export's ``--gate`` runs the same stages on the artifact it just built,
with the reference it already has (``validate_artifact``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mobile_export.metrics import as_output
from tqdm import tqdm

from mobile_export import artifacts, fidelity as F, metrics
from mobile_export.errors import ArtifactError, UserError
from mobile_export.options import Precision, Runtime, ValidateOptions
from mobile_export.report.common import arm_text, device_text, fused_text
from mobile_export.validation import gate as gates
from mobile_export.validation.accuracy import accuracy, flips
from mobile_export.validation.artifact import Artifact, load_artifact, reference_config, reference_seed

log = logging.getLogger(__name__)

CIFAR10_DEFAULT = "cifar10-default"
CIFAR10_HOLDOUT = "cifar10"  # the shipped held-out split (never trained on): real accuracy
NO_LABELS = ("the data has no labels: use an ImageFolder tree, an .npz with labels, or --data "
             f"{CIFAR10_DEFAULT}")


@dataclass
class ValidationReport:
    """What ``validate`` measured: ``report`` is the report.json content; ``checks`` the gate."""

    tflite_path: Path
    out_dir: Path | None
    report: dict[str, Any]
    checks: list[gates.Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[gates.Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return self.report

    def summary_lines(self) -> list[str]:
        """Failing checks first (measured vs allowed), then the headline numbers."""
        r = self.report
        lines = [f"FAILED {c.sentence()}" for c in self.failures]
        f = r["fidelity"]["tflite_vs_torch"]
        lines.append(f"{self.tflite_path} ({r['precision']}) vs PyTorch on {r['data']['count']} samples: "
                     f"max rel {f['max_rel']:.2e}, SQNR {f['sqnr_db']:.1f} dB, cosine min {f['cosine_min']:.5f}, "
                     f"top-1 agreement {f['top1_agreement']:.3f}, flips {r['flips']['count']}")
        acc = r.get("accuracy")
        if acc:
            d = acc["top1_drop"]
            lines.append(f"  accuracy top-1: torch {acc['torch']['top1']:.4f}, tflite {acc['tflite']['top1']:.4f}; "
                         f"drop {d['drop_pp']:+.2f} pp (95% CI {d['ci_low_pp']:+.2f} .. {d['ci_high_pp']:+.2f}), "
                         f"McNemar p = {acc['mcnemar']['p_value']:.3g}")
        first = r["per_layer"].get("first_divergence")
        if first:
            lines.append(f"  first divergent layer: {first['scope']} ({first['op_type']}, module "
                         f"{first['module'] or '-'}{fused_text(first)}): SQNR {first['sqnr_db']:.1f} dB, "
                         f"max rel {first['max_rel']:.2e}")
        if r.get("arm"):
            lines.append(f"  {arm_text(r['arm'])}")
        if r.get("device"):
            lines.append(f"  {device_text(r['device'])}")
        lat = r.get("latency") or {}
        if lat.get("runtimes"):
            t1 = str(min(lat["threads"]))
            parts = [f"{k} {v[t1]['median_ms']:.2f} ms" for k, v in lat["runtimes"].items()]
            lines.append(f"  latency (median, {t1} thread): " + ", ".join(parts))
        lines += [f"  {c.sentence()}" for c in self.checks if c.skipped]
        lines += [f"  WARNING: {w}" for w in r["warnings"]]
        where = f"{self.out_dir / 'report.md'} -> " if self.out_dir else ""
        lines.append(f"  gate ({r['gate']['source']}): {where}{'PASS' if self.passed else 'FAIL'}")
        return lines


@dataclass
class Outputs:
    """Each runtime's logits on the same inputs, run once."""

    torch: np.ndarray
    onnxruntime: np.ndarray
    tflite: np.ndarray


def load_data(data: str | os.PathLike | None, config, *, num: int, seed: int):
    """Validation inputs preprocessed for ``config``: the embedded default set (None), the
    labelled CIFAR-10 part of it (``cifar10-default``), the shipped CIFAR-10 held-out images
    (``cifar10``), or any calibration source."""
    from mobile_export.calibration import load_calibration, load_cifar10_holdout, load_default_labelled

    if data is not None and str(data) == CIFAR10_DEFAULT:
        return load_default_labelled(config, num=num, seed=seed)
    if data is not None and str(data) == CIFAR10_HOLDOUT:
        return load_cifar10_holdout(config, num=num, seed=seed)
    return load_calibration(data, config, num=num, seed=seed, flag="--data")


def _check_labels(calib, num_classes: int, manifest_labels: list[str] | None, warnings: list[str]) -> None:
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


def _batched(fn, x: np.ndarray, batch: int, desc: str) -> np.ndarray:
    outs = []
    for i in tqdm(range(0, len(x), batch), desc=desc, unit="batch", leave=False,
                  disable=None if len(x) > batch else True):
        outs.append(np.asarray(fn(x[i:i + batch])))
    return np.concatenate(outs)


def run_runtimes(model, art: Artifact, tfl, x: np.ndarray, input_name: str) -> Outputs:
    """PyTorch, onnxruntime and the TFLite model (``tfl``, XNNPACK) on NCHW inputs ``x``, once each."""
    import torch

    from mobile_export.runtimes.onnxruntime import run_onnxruntime

    batch = tfl.inputs[0].shape[0]
    with torch.no_grad():
        torch_out = _batched(lambda b: model(torch.from_numpy(b)).numpy(), x, 16, "PyTorch")
    ort_out = _batched(lambda b: run_onnxruntime(art.onnx, b, input_name), x, 16 * batch, "onnxruntime")
    tfl_out = _batched(lambda b: tfl.run(np.ascontiguousarray(b.transpose(0, 2, 3, 1))), x, 16 * batch, "TFLite")
    kind = art.manifest.get("output", "logits")  # probabilities: compare with the references' softmax
    return Outputs(as_output(torch_out, kind), as_output(ort_out, kind), tfl_out)


class Validation:
    """One validation of a loaded artifact against a built reference; ``run()`` goes through the
    stages and returns the report. Export's gate builds one with the reference it already has."""

    def __init__(self, art: Artifact, config, model, options: ValidateOptions, gate_file=None, tfl=None):
        """``tfl``: the artifact already loaded in the host runtime (export's gate), else loaded on use."""
        self.art, self.config, self.model, self.opts = art, config, model, options
        self.t_start = time.perf_counter()
        self.stages: dict[str, float] = {}
        self.warnings: list[str] = []
        if not art.trained:
            self.warnings.append("UNTRAINED reference: the artifact was exported without weights; accuracy "
                                 "figures are not meaningful.")
        self.limits, settings, self.gate_source = gates.thresholds_for(
            gate_file, options.thresholds, art.manifest["model"], art.precision)
        self.data = options.data if options.data is not None else settings.get("data")
        self.num = int(options.num if options.num is not None else settings.get("num", 256))
        self.latency_runs = int(options.latency_runs if options.latency_runs is not None
                                else settings.get("latency_runs", 30))
        if self.num < 1:
            raise UserError(f"--num must be a positive integer, got {self.num}.")
        self._tfl = tfl

    @property
    def precision(self) -> Precision:
        return self.art.precision

    @property
    def tfl(self):
        if self._tfl is None:
            from mobile_export.runtimes.host import TFLiteModel

            self._tfl = TFLiteModel(self.art.tflite)
        return self._tfl

    def _timed(self, name: str, fn, *args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        self.stages[name] = time.perf_counter() - t
        return out

    def load_data(self):
        """The validation inputs, preprocessed as the manifest says, cut to a multiple of the batch."""
        pre, config = self.art.manifest["preprocessing"], self.config
        data_config = dataclasses.replace(config, mean=tuple(pre.get("mean", config.mean)),
                                          std=tuple(pre.get("std", config.std)))
        calib = load_data(self.data, data_config, num=self.num, seed=self.opts.seed)
        self.warnings += [w for w in calib.warnings if "calibrated on the embedded default set" not in w]
        _check_labels(calib, config.num_classes, self.art.manifest.get("labels"), self.warnings)
        batch = self.tfl.inputs[0].shape[0]
        usable = calib.count - calib.count % batch
        if usable == 0:
            raise UserError(f"the model takes batches of {batch} but the data holds only {calib.count} samples; "
                            "pass more.")
        if usable < calib.count:
            self.warnings.append(f"used {usable} of {calib.count} samples (a multiple of the model's batch {batch}).")
            calib = calib.split(calib.count - usable)[0]
        return calib

    def run_models(self, x: np.ndarray) -> Outputs:
        """PyTorch, onnxruntime and TFLite over the inputs, once each."""
        return run_runtimes(self.model, self.art, self.tfl, x, self.config.input_name)

    def fidelity(self, outs: Outputs, x: np.ndarray) -> dict[str, Any]:
        ort_vs_torch = metrics.compare(outs.onnxruntime, outs.torch)
        if ort_vs_torch["max_rel"] > F.REBUILT_REFERENCE_MAX_REL:
            raise ArtifactError(f"the PyTorch reference rebuilt for {self.art.manifest['model']} does not reproduce "
                                f"model.onnx (max rel error {ort_vs_torch['max_rel']:.1e}); pass the --weights the "
                                "artifact was exported with.")
        fid = {"tflite_vs_torch": metrics.compare(outs.tflite, outs.torch),
               "tflite_vs_onnxruntime": metrics.compare(outs.tflite, outs.onnxruntime),
               "onnxruntime_vs_torch": ort_vs_torch}
        if self.precision is Precision.FP16:  # what fp16 weights alone do: the same graph with rounded weights
            from mobile_export.convert.graph import with_fp16_weights
            from mobile_export.runtimes.onnxruntime import run_onnxruntime

            fp16_ref = run_onnxruntime(with_fp16_weights(self.art.onnx), x, self.config.input_name)
            fid["tflite_vs_fp16_weights_reference"] = metrics.compare(outs.tflite, fp16_ref)
        return fid

    def per_layer(self, x: np.ndarray) -> dict[str, Any]:
        from mobile_export.validation.per_layer import compare_layers

        m, batch = self.art.manifest, self.tfl.inputs[0].shape[0]
        k = max(batch, min(self.opts.layer_samples, len(x)) // batch * batch)
        if not m.get("layers"):
            self.warnings.append("the manifest has no 'layers' table, so no per-layer comparison was made.")
        return compare_layers(self.art.tflite, self.art.onnx, m.get("layers") or [], x[:k],
                              input_name=self.config.input_name, precision=self.precision,
                              tolerance=self.opts.layer_tolerance)

    def on_arm(self, x: np.ndarray, host_out: np.ndarray, sibling: bytes | None) -> tuple[dict | None, dict | None]:
        from mobile_export.validation import devices

        if self.opts.runtime is Runtime.QEMU:
            return self._timed("emulated ARM", devices.run_on_emulated_arm, self.art.tflite, x, host_out,
                               self.precision, self.opts.cpu, fp32=sibling), None
        if self.opts.runtime is Runtime.ADB:
            return None, self._timed("device (adb)", devices.run_on_device, self.art.tflite, x, host_out,
                                     self.opts.device, fp32=sibling)
        return None, None

    def latency(self, sibling: bytes | None) -> dict | None:
        from mobile_export.validation.latency import measure

        if self.latency_runs <= 0:
            return None
        batch = self.tfl.inputs[0].shape[0]
        return self._timed("latency", measure, self.art.tflite, self.art.onnx, self.model,
                           input_shape_nchw=(batch, *self.config.input_shape_nchw[1:]),
                           input_name=self.config.input_name, fp32_sibling=sibling, runs=self.latency_runs)

    def checks(self, fid: dict, acc: dict | None, latency: dict | None, x: np.ndarray) -> list[gates.Check]:
        from mobile_export.convert.to_onnx import float32_noise
        from mobile_export.validation.latency import gate_ratio

        limits, default = self.limits, self.gate_source.startswith("default")
        ratio, self.ratio_key = gate_ratio(latency, self.precision) if latency else (None, None)
        if "max_rel_error" in limits and default:  # as export: never stricter than the float32 noise allows
            limits["max_rel_error"] = F.relaxed_max_rel(limits["max_rel_error"], float32_noise(self.model, x[:2]))
        f = fid["tflite_vs_torch"]
        cosine = f["cosine_min"]
        if self.precision is Precision.FP16 and default and not self.art.trained:
            # As export: random weights amplify fp16 rounding, so the default gate holds an untrained
            # fp16 model to the same graph with fp16-rounded weights.
            cosine = fid["tflite_vs_fp16_weights_reference"]["cosine_min"]
        measured = {
            "max_top1_drop_pp": (acc["top1_drop"]["drop_pp"], None) if acc else (None, NO_LABELS),
            "min_sqnr_db": (f["sqnr_db"], None), "min_top1_agreement": (f["top1_agreement"], None),
            "max_rel_error": (f["max_rel"], None), "min_cosine": (cosine, None),
            "max_latency_ratio": (ratio, None if ratio is not None else "latency was not measured"),
        }
        return gates.evaluate(limits, measured)

    def run(self, data=None, outputs: Outputs | None = None, per_layer: dict | None = None) -> ValidationReport:
        """Every stage; ``data`` / ``outputs`` / ``per_layer``: already loaded, run or compared (export's gate)."""
        calib = data if data is not None else self._timed("load data", self.load_data)
        x = calib.inputs
        outs = outputs if outputs is not None else self._timed("run models", self.run_models, x)
        fid = self.fidelity(outs, x)
        acc = None if calib.labels is None else accuracy(outs.torch, outs.tflite, calib.labels, self.opts.seed,
                                                         ort_out=outs.onnxruntime)
        if per_layer is None:
            per_layer = self._timed("per-layer comparison", self.per_layer, x)
        from mobile_export.validation.devices import fp32_sibling

        wants_sibling = self.latency_runs > 0 or self.opts.runtime is not Runtime.HOST
        sibling, sibling_path = (fp32_sibling(self.art.tflite_path, self.precision, self.warnings)
                                 if wants_sibling else (None, None))
        arm, device = self.on_arm(x, outs.tflite, sibling)
        latency = self.latency(sibling)
        checks = self.checks(fid, acc, latency, x)
        report = self.report(calib, fid, acc, flips(outs.torch, outs.tflite, calib), per_layer, arm, device,
                             latency, checks, sibling_path)
        return ValidationReport(self.art.tflite_path, None, report, checks)

    def report(self, calib, fid, acc, flipped, per_layer, arm, device, latency, checks, sibling_path) -> dict:
        from mobile_export.runtimes.host import runtime_version

        m, passed = self.art.manifest, all(c.passed for c in checks)
        stages = {k: round(v, 3) for k, v in self.stages.items()}
        stages["total"] = round(time.perf_counter() - self.t_start, 3)
        return {
            "schema_version": artifacts.SCHEMA_VERSION,
            "kind": "validation",
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": m["model"], "precision": self.precision.value, "trained": bool(m.get("trained", False)),
            "warnings": self.warnings,
            "artifact": {"tflite": str(self.art.tflite_path), "tflite_sha256": m["tflite_sha256"],
                         "onnx": str(self.art.tflite_path.parent / "model.onnx"),
                         "fp32_sibling": str(sibling_path) if sibling_path else None},
            "reference": {"name": m["model"], "weights": m.get("weights"), "seed": reference_seed(m),
                          "num_classes": self.config.num_classes, "input_size": self.config.input_size},
            "runtime": {"kind": self.opts.runtime.value, "ai_edge_litert": runtime_version(), "delegate": "XNNPACK"},
            "data": {"source": calib.source, "kind": calib.kind, "count": calib.count, "seed": calib.seed,
                     "sha256": calib.sha256, "labelled": calib.labels is not None,
                     "classes": list(calib.class_names) if calib.class_names else None},
            "fidelity": fid, "accuracy": acc, "arm": arm, "device": device, "flips": flipped,
            "per_layer": per_layer, "latency": latency,
            "gate": {"source": self.gate_source, "thresholds": self.limits, "latency_ratio_vs": self.ratio_key,
                     "checks": [c.to_dict() for c in checks], "passed": passed},
            "passed": passed,
            "stages_s": stages,
        }


def _options(options: ValidateOptions | None, kwargs: Mapping[str, Any]) -> ValidateOptions:
    if options is not None and kwargs:
        raise UserError("pass either a ValidateOptions or keyword options, not both.")
    return options or ValidateOptions(**kwargs)


def validate(tflite_path: str | os.PathLike, reference: str | None = None,
             options: ValidateOptions | None = None, **kwargs) -> ValidationReport:
    """Validate the artifact at ``tflite_path`` against registered model ``reference`` (defaults
    to the manifest's model). ``kwargs`` are ValidateOptions fields: ``data`` (None: embedded
    default set; ``"cifar10"``, ``"cifar10-default"``, an image folder / ImageFolder tree / .npy /
    .npz), ``gate`` (a TOML gate file), ``thresholds`` (``{"min_sqnr_db": 20}``), ``num`` /
    ``latency_runs`` (default: the gate file's settings, else 256 / 30; ``latency_runs=0`` skips
    timing), ``runtime`` (``"host"``, ``"qemu"`` on emulated core ``cpu``, or ``"adb"`` with
    ``device``, a ``runtimes.arm.adb.DeviceOptions``)."""
    from mobile_export.reference import build_reference

    opts = _options(options, kwargs)
    gate_file = gates.read_gate_file(opts.gate) if opts.gate is not None else None
    t = time.perf_counter()
    art = load_artifact(tflite_path, reference)
    out_dir = Path(opts.out_dir) if opts.out_dir is not None else art.tflite_path.parent / "validation"
    _check_early(opts, gate_file, out_dir)
    config = reference_config(art.manifest, opts.weights)
    model = build_reference(config, reference_seed(art.manifest))
    v = Validation(art, config, model, opts, gate_file)
    v.t_start, v.stages["build reference"] = t, time.perf_counter() - t
    result = v.run()
    if opts.write:
        result.out_dir = out_dir
        write_reports(result, result.out_dir, opts.junit)
    return result


def _check_early(opts: ValidateOptions, gate_file, out_dir: Path) -> None:
    """The data source, the device and every output path, checked before the reference is built or
    anything runs."""
    from mobile_export.calibration import check_source

    data = opts.data if opts.data is not None else (gate_file.top.get("data") if gate_file else None)
    if data is not None and str(data) not in (CIFAR10_DEFAULT, CIFAR10_HOLDOUT):
        check_source(data, "--data")
    if opts.runtime is Runtime.ADB:  # adb and the device, before the reference is built
        from mobile_export.runtimes.arm.adb import DeviceOptions, check_device

        check_device(opts.device or DeviceOptions())
    if opts.write:
        artifacts.check_target_dir(out_dir, "--out")
        if opts.junit is not None:
            artifacts.check_writable_file(Path(opts.junit), "--junit")


def write_reports(result: ValidationReport, out: Path, junit: str | os.PathLike | None = None) -> None:
    """report.json, report.md and report.html into ``out`` (atomically); JUnit XML to ``junit``."""
    from mobile_export.report.junit import validation_junit

    rep = result.report
    if junit is not None:
        jpath = Path(junit)
        try:
            jpath.parent.mkdir(parents=True, exist_ok=True)
            artifacts.write_text(jpath, validation_junit(rep))
        except OSError as e:
            raise UserError(f"cannot write the JUnit file {jpath} ({e.strerror or e}); pass a writable --junit path.") from None
    try:
        with artifacts.atomic_dir(out) as tmp:
            write_report_files(rep, tmp)
    except OSError as e:
        raise UserError(f"cannot write reports to {out} ({e.strerror or e}); pass a writable --out.") from None
    log.info("wrote %s", out)


def write_report_files(rep: dict, folder: Path) -> None:
    """The three report files of a validation into an existing ``folder``."""
    from mobile_export.report.html import to_html
    from mobile_export.report.validate_md import to_markdown

    (folder / "report.json").write_text(artifacts.dumps(rep))
    (folder / "report.md").write_text(to_markdown(rep))
    (folder / "report.html").write_text(to_html(rep))


__all__ = ["CIFAR10_DEFAULT", "Outputs", "Validation", "ValidationReport", "load_artifact", "validate",
           "write_reports"]
