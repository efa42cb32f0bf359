"""``validate(tflite_path, reference=NAME, ...) -> ValidationReport``: prove a written artifact
matches its PyTorch reference.

Reads the manifest beside the ``.tflite`` (preprocessing, quantization, labels, weights, class
count, input size), rebuilds the reference exactly as ``export`` built it
(``api.build_reference``), feeds the same preprocessed inputs to PyTorch, onnxruntime
(``model.onnx`` beside the ``.tflite``) and the TFLite interpreter, and reports output agreement,
labelled accuracy (with a paired-bootstrap CI of the drop and McNemar's exact test), the first
layer where TFLite diverges, side-by-side latency and a gate verdict. Reports go to ``--out``
(default ``validation/`` beside the ``.tflite``): report.json, report.md, report.html; JUnit XML
on request.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
from tqdm import tqdm

from mobile_export import artifacts, gate as gates, metrics
from mobile_export.errors import ArtifactError, UserError

if TYPE_CHECKING:
    from mobile_export.arm.adb import DeviceOptions

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 1
CIFAR10_DEFAULT = "cifar10-default"
CIFAR10_HOLDOUT = "cifar10"  # the shipped held-out split (never trained on): real accuracy
RUNTIMES = ("host", "qemu", "adb")
ARM_SAMPLES = 8  # emulated inferences take seconds each: a few samples, plus 1 for the fp32 sibling
MAX_LISTED_FLIPS = 1000
REQUIRED_KEYS = ("model", "precision", "num_classes", "tflite_sha256", "inputs", "outputs", "preprocessing")
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
        from mobile_export.report_validate import arm_text, device_text, fused_text

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
        for w in r["warnings"]:
            lines.append(f"  WARNING: {w}")
        where = f"{self.out_dir / 'report.md'} -> " if self.out_dir else ""
        lines.append(f"  gate ({r['gate']['source']}): {where}{'PASS' if self.passed else 'FAIL'}")
        return lines


@dataclass
class Artifact:
    tflite_path: Path
    tflite: bytes
    manifest: dict[str, Any]
    onnx: Any  # onnx.ModelProto

    @property
    def precision(self) -> str:
        return str(self.manifest["precision"])


def _read_manifest(path: Path) -> dict[str, Any]:
    mpath = path.parent / "manifest.json"
    if not mpath.is_file():
        raise ArtifactError(f"no manifest.json beside {path}; validate needs the manifest mobile-export wrote "
                            "with the model (re-export it).")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{mpath} is not readable JSON ({e}); re-export the model.") from None
    missing = [k for k in REQUIRED_KEYS if k not in manifest] if isinstance(manifest, dict) else list(REQUIRED_KEYS)
    if missing:
        raise ArtifactError(f"{mpath} lacks {', '.join(missing)}; it is not a mobile-export manifest (re-export the model).")
    return manifest


def load_artifact(tflite_path: str | os.PathLike, reference: str | None) -> Artifact:
    """Read and cross-check the .tflite, its manifest and model.onnx; ArtifactError/UserError on a mismatch."""
    import onnx

    from mobile_export.runtime import TFLiteModel, check_tflite_bytes

    path = Path(tflite_path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist; pass the model.tflite that mobile-export wrote.")
    data = path.read_bytes()
    check_tflite_bytes(data, str(path))
    manifest = _read_manifest(path)
    if reference is not None and reference != manifest["model"]:
        raise UserError(f"--reference {reference} does not match the model the artifact was exported from "
                        f"({manifest['model']}); pass --reference {manifest['model']}.")
    if artifacts.sha256_bytes(data) != manifest["tflite_sha256"]:
        raise ArtifactError(f"{path} does not match its manifest (tflite_sha256 differs); the model or the "
                            "manifest was replaced — re-export the model.")
    tfl = TFLiteModel(data, xnnpack=False)
    want, got = manifest["inputs"][0], tfl.inputs[0]
    if list(want.get("shape", [])) != got.shape or want.get("dtype") != got.dtype:
        raise ArtifactError(f"{path} does not match its manifest: input {got.dtype}{got.shape} vs manifest "
                            f"{want.get('dtype')}{want.get('shape')}; re-export the model.")
    q = want.get("quantization")
    if (q is None) != (got.scale is None) or (q and (not np.isclose(q["scale"], got.scale, rtol=1e-6)
                                                     or q["zero_point"] != got.zero_point)):
        raise ArtifactError(f"{path} does not match its manifest: input quantization {got.scale}/{got.zero_point} "
                            f"vs manifest {q}; re-export the model.")
    if tfl.outputs[0].shape[-1] != manifest["num_classes"]:
        raise ArtifactError(f"{path} has {tfl.outputs[0].shape[-1]} outputs but its manifest says "
                            f"{manifest['num_classes']} classes; re-export the model.")
    labels = manifest.get("labels")
    if labels is not None and len(labels) != manifest["num_classes"]:
        raise ArtifactError(f"the manifest beside {path} lists {len(labels)} labels for {manifest['num_classes']} "
                            "classes; fix its labels or re-export the model.")
    onnx_path = path.parent / "model.onnx"
    if not onnx_path.is_file():
        raise ArtifactError(f"no model.onnx beside {path}; validate compares against it (re-export the model).")
    try:
        proto = onnx.load_from_string(onnx_path.read_bytes())
    except Exception as e:  # onnx raises DecodeError and friends
        raise ArtifactError(f"{onnx_path} is not a readable ONNX model ({type(e).__name__}); re-export the model.") from None
    return Artifact(path, data, manifest, proto)


def reference_config(manifest: Mapping[str, Any], weights: str | os.PathLike | None):
    """The ModelConfig the export used, from the manifest (weights checked against its sha256)."""
    from mobile_export.models import configure

    recorded = manifest.get("weights")
    if recorded is None:
        if weights is not None:
            raise UserError(f"the artifact was exported without weights (an untrained reference); drop --weights {weights}.")
        resolved = None
    elif weights is None and "name" in recorded:
        resolved = recorded["name"]
    elif weights is None:
        raise UserError(f"the artifact was exported with weights {recorded.get('path')} "
                        f"(sha256 {str(recorded.get('sha256'))[:12]}…); pass that file with --weights PATH.")
    else:
        resolved = str(weights)
    size = int(manifest["preprocessing"]["input_size"][0])
    config = configure(manifest["model"], weights=resolved, num_classes=int(manifest["num_classes"]), input_size=size)
    wpath = config.weights_spec.path if config.weights_spec is not None else config.weights
    if recorded is not None and wpath is not None and Path(wpath).is_file() and recorded.get("sha256"):
        if artifacts.sha256_file(wpath) != recorded["sha256"]:
            raise UserError(f"weights {weights or resolved} differ from the ones the artifact was exported with "
                            f"(sha256 {recorded['sha256'][:12]}…); pass the same --weights.")
    return config


def load_data(data: str | os.PathLike | None, config, *, num: int, seed: int):
    """Validation inputs preprocessed for ``config``: the embedded default set (None), the
    labelled CIFAR-10 part of it (``cifar10-default``), the shipped CIFAR-10 held-out images
    (``cifar10``), or any calibration source."""
    from mobile_export.calibration import load_calibration, load_cifar10_holdout, load_default_labelled

    if data is not None and str(data) == CIFAR10_DEFAULT:
        return load_default_labelled(config, num=num, seed=seed)
    if data is not None and str(data) == CIFAR10_HOLDOUT:
        return load_cifar10_holdout(config, num=num, seed=seed)
    return load_calibration(data, config, num=num, seed=seed)


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


def _is_trained(manifest: Mapping[str, Any]) -> bool:
    return bool(manifest.get("trained", manifest.get("weights") is not None))


def _batched(fn, x: np.ndarray, batch: int, desc: str) -> np.ndarray:
    outs = []
    for i in tqdm(range(0, len(x), batch), desc=desc, unit="batch", leave=False,
                  disable=None if len(x) > batch else True):
        outs.append(np.asarray(fn(x[i:i + batch])))
    return np.concatenate(outs)


def _accuracy(torch_out, tflite_out, ort_out, labels, seed: int) -> dict[str, Any]:
    ct1, cl1 = metrics.topk_correct(torch_out, labels, 1), metrics.topk_correct(tflite_out, labels, 1)
    b, c = int((ct1 & ~cl1).sum()), int((~ct1 & cl1).sum())
    return {
        "samples": int(len(labels)),
        "torch": {"top1": float(ct1.mean()), "top5": float(metrics.topk_correct(torch_out, labels, 5).mean())},
        "tflite": {"top1": float(cl1.mean()), "top5": float(metrics.topk_correct(tflite_out, labels, 5).mean())},
        "onnxruntime": {"top1": float(metrics.topk_correct(ort_out, labels, 1).mean())},
        "top1_drop": metrics.paired_bootstrap_drop(ct1, cl1, resamples=2000, seed=seed),
        "mcnemar": {"torch_only_correct": b, "tflite_only_correct": c, "p_value": metrics.mcnemar_exact(b, c)},
    }


def _flips(torch_out, tflite_out, calib) -> dict[str, Any]:
    pt, pl = torch_out.argmax(1), tflite_out.argmax(1)
    idx = np.flatnonzero(pt != pl)
    samples = []
    for i in idx[:MAX_LISTED_FLIPS]:
        s = {"index": int(i), "torch_top1": int(pt[i]), "tflite_top1": int(pl[i])}
        if calib.names is not None:
            s["file"] = calib.names[i]
        if calib.labels is not None:
            s["label"] = int(calib.labels[i])
        samples.append(s)
    return {"count": int(len(idx)), "rate": float(len(idx) / max(len(pt), 1)), "listed": len(samples),
            "samples": samples}


def _fp32_sibling(path: Path, precision: str, warnings: list[str]) -> tuple[bytes | None, Path | None]:
    from mobile_export.runtime import check_tflite_bytes

    sib = path.parent.parent / "fp32" / "model.tflite"
    if precision == "fp32" or not sib.is_file():
        return None, None
    data = sib.read_bytes()
    try:
        check_tflite_bytes(data, str(sib))
    except ArtifactError as e:
        warnings.append(f"fp32 sibling not timed: {e}")
        return None, None
    return data, sib


def _vs_host(out: np.ndarray, host: np.ndarray) -> dict[str, Any]:
    """How outputs from an ARM run (emulated or a device) differ from the host's, element by element."""
    diff = int((out != host).sum())
    return {"differing_elements": diff, "elements": int(host.size),
            "max_abs_diff_vs_host": float(np.abs(out - host).max()), "bit_identical": diff == 0}


def run_on_emulated_arm(art, x: np.ndarray, host_out: np.ndarray, precision: str, cpu: str,
                        fp32_sibling: bytes | None = None) -> dict[str, Any]:
    """Run the first ``ARM_SAMPLES`` inputs on emulated ARM (qemu-aarch64, ``mobile_export.arm``):
    int8 outputs must equal the host's bit for bit (differing elements are counted), float ones are
    compared by max abs difference; instructions per inference replace wall time, and the fp32
    sibling artifact (``fp32_sibling``) is counted too for the int8/fp32 ratio."""
    from mobile_export.arm import run_float

    n = min(len(x), ARM_SAMPLES)
    xa = np.ascontiguousarray(x[:n].transpose(0, 2, 3, 1))
    arm_out, run = run_float(art.tflite, xa, cpu=cpu)
    out: dict[str, Any] = {"cpu": cpu, "samples": n, **run.summary(), **_vs_host(arm_out, host_out[:n])}
    if fp32_sibling is not None and run.instructions_per_inference:
        _, fp32_run = run_float(fp32_sibling, xa[:1], cpu=cpu)
        if fp32_run.instructions_per_inference:
            out["fp32_instructions_median"] = fp32_run.median_instructions
            out[f"{precision}_over_fp32_instructions"] = run.median_instructions / fp32_run.median_instructions
    return out


def run_on_device(art, x: np.ndarray, host_out: np.ndarray, opts, fp32_sibling: bytes | None = None) -> dict[str, Any]:
    """Run the artifact on a device over adb (``mobile_export.arm.adb``): outputs of the first
    ``ARM_SAMPLES`` inputs when the device has a Python (compared with the host's bit for bit), and
    benchmark_model timings of the artifact and its fp32 sibling when a binary is available."""
    from mobile_export.arm.adb import run_on_device as _run
    from mobile_export.runtime import TFLiteModel

    n = min(len(x), ARM_SAMPLES)
    host = TFLiteModel(art.tflite, xnnpack=False)
    xa = host.quantize_input(np.ascontiguousarray(x[:n].transpose(0, 2, 3, 1)))
    run = _run(art.tflite, xa, opts, fp32_sibling=fp32_sibling)
    out: dict[str, Any] = {"samples": n if run.outputs is not None else 0, **run.summary()}
    if run.outputs is not None:
        out.update(_vs_host(host.dequantize_output(run.outputs), host_out[:n]))
    return out


def validate(
    tflite_path: str | os.PathLike,
    reference: str | None = None,
    *,
    weights: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    num: int | None = None,
    runtime: str = "host",
    gate: "str | os.PathLike | gates.GateFile | None" = None,
    thresholds: Mapping[str, float | None] | None = None,
    junit: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    layer_samples: int = 4,
    layer_tolerance: tuple[str, float] | None = None,
    latency_runs: int | None = None,
    write: bool = True,
    cpu: str = "cortex-a76",
    device: "DeviceOptions | None" = None,
) -> ValidationReport:
    """Validate the artifact at ``tflite_path`` against registered model ``reference`` (defaults
    to the manifest's model). ``data``: None (embedded default set), ``"cifar10-default"``, an
    image folder / ImageFolder tree / .npy / .npz. ``gate``: a TOML gate file; ``thresholds``:
    per-key overrides (``{"min_sqnr_db": 20}``). ``num`` / ``latency_runs`` default to the gate
    file's settings, else 256 / 30; ``latency_runs=0`` skips timing. ``runtime``: ``"host"``,
    ``"qemu"`` (emulated ARM core ``cpu``) or ``"adb"`` (a device reached as ``device`` says,
    ``mobile_export.arm.adb.DeviceOptions``)."""
    from mobile_export.api import build_reference
    from mobile_export.latency import gate_ratio, measure
    from mobile_export.onnx_export import run_onnxruntime
    from mobile_export.per_layer import compare_layers
    from mobile_export.runtime import TFLiteModel, runtime_version

    t_start = time.perf_counter()
    stages: dict[str, float] = {}
    if runtime not in RUNTIMES:
        raise UserError(f"runtime '{runtime}' is not available; use --runtime host, qemu or adb.")
    gate_file = gates.read_gate_file(gate) if gate is not None else None
    art = load_artifact(tflite_path, reference)
    m, precision = art.manifest, art.precision
    limits, settings, gate_source = gates.thresholds_for(gate_file, thresholds, m["model"], precision)
    data = data if data is not None else settings.get("data")
    num = int(num if num is not None else settings.get("num", 256))
    latency_runs = int(latency_runs if latency_runs is not None else settings.get("latency_runs", 30))
    if num < 1:
        raise UserError(f"--num must be a positive integer, got {num}.")
    warnings: list[str] = []
    if not _is_trained(m):
        warnings.append("UNTRAINED reference: the artifact was exported without weights; accuracy figures "
                        "are not meaningful.")

    t = time.perf_counter()
    config = reference_config(m, weights)
    seed_ref = int(m.get("seed", (m.get("calibration") or {}).get("seed", 0)))
    model = build_reference(config, seed_ref)
    stages["build reference"] = time.perf_counter() - t

    t = time.perf_counter()
    pre = m["preprocessing"]
    data_config = dataclasses.replace(config, mean=tuple(pre.get("mean", config.mean)), std=tuple(pre.get("std", config.std)))
    calib = load_data(data, data_config, num=num, seed=seed)
    warnings += [w for w in calib.warnings if "calibrated on the embedded default set" not in w]
    _check_labels(calib, config.num_classes, m.get("labels"), warnings)
    stages["load data"] = time.perf_counter() - t

    tfl = TFLiteModel(art.tflite)
    batch = tfl.inputs[0].shape[0]
    usable = calib.count - calib.count % batch
    if usable == 0:
        raise UserError(f"the model takes batches of {batch} but the data holds only {calib.count} samples; pass more.")
    if usable < calib.count:
        warnings.append(f"used {usable} of {calib.count} samples (a multiple of the model's batch {batch}).")
        calib = calib.split(calib.count - usable)[0]
    x = calib.inputs

    t = time.perf_counter()
    with torch.no_grad():
        torch_out = _batched(lambda b: model(torch.from_numpy(b)).numpy(), x, 16, "PyTorch")
    ort_out = _batched(lambda b: run_onnxruntime(art.onnx, b, config.input_name), x, 16 * batch, "onnxruntime")
    tfl_out = _batched(lambda b: tfl.run(np.ascontiguousarray(b.transpose(0, 2, 3, 1))), x, 16 * batch, "TFLite")
    stages["run models"] = time.perf_counter() - t
    ort_vs_torch = metrics.compare(ort_out, torch_out)
    if ort_vs_torch["max_rel"] > 1e-3:
        raise ArtifactError(f"the PyTorch reference rebuilt for {m['model']} does not reproduce model.onnx (max rel "
                            f"error {ort_vs_torch['max_rel']:.1e}); pass the --weights the artifact was exported with.")
    fidelity = {"tflite_vs_torch": metrics.compare(tfl_out, torch_out),
                "tflite_vs_onnxruntime": metrics.compare(tfl_out, ort_out),
                "onnxruntime_vs_torch": ort_vs_torch}
    if precision == "fp16":  # what fp16 weights alone do: the same graph with rounded weights (as export)
        from mobile_export.onnx_export import with_fp16_weights

        fp16_ref = run_onnxruntime(with_fp16_weights(art.onnx), x, config.input_name)
        fidelity["tflite_vs_fp16_weights_reference"] = metrics.compare(tfl_out, fp16_ref)
    accuracy = None if calib.labels is None else _accuracy(torch_out, tfl_out, ort_out, calib.labels, seed)

    t = time.perf_counter()
    k = max(batch, min(layer_samples, len(x)) // batch * batch)
    per_layer = compare_layers(art.tflite, art.onnx, m.get("layers") or [], x[:k], input_name=config.input_name,
                               precision=precision, tolerance=layer_tolerance)
    if not m.get("layers"):
        warnings.append("the manifest has no 'layers' table, so no per-layer comparison was made.")
    stages["per-layer comparison"] = time.perf_counter() - t

    # the fp32 artifact beside this one, read once for the ARM / device ratio and the latency ratio
    sibling, sibling_path = (_fp32_sibling(art.tflite_path, precision, warnings)
                             if latency_runs > 0 or runtime != "host" else (None, None))
    arm = None
    if runtime == "qemu":
        t = time.perf_counter()
        arm = run_on_emulated_arm(art, x, tfl_out, precision, cpu, fp32_sibling=sibling)
        stages["emulated ARM"] = time.perf_counter() - t
    device_run = None
    if runtime == "adb":
        from mobile_export.arm.adb import DeviceOptions

        t = time.perf_counter()
        device_run = run_on_device(art, x, tfl_out, device or DeviceOptions(), fp32_sibling=sibling)
        stages["device (adb)"] = time.perf_counter() - t

    latency = None
    if latency_runs > 0:
        t = time.perf_counter()
        latency = measure(art.tflite, art.onnx, model, input_shape_nchw=(batch, *config.input_shape_nchw[1:]),
                          input_name=config.input_name, fp32_sibling=sibling, runs=latency_runs)
        stages["latency"] = time.perf_counter() - t

    ratio, ratio_key = gate_ratio(latency, precision) if latency else (None, None)
    if "max_rel_error" in limits and gate_source.startswith("default"):
        from mobile_export.onnx_export import float32_noise  # as export: never stricter than 4x float32 noise

        limits["max_rel_error"] = max(limits["max_rel_error"], 4 * float32_noise(model, x[:2]))
    f = fidelity["tflite_vs_torch"]
    cosine = f["cosine_min"]
    if precision == "fp16" and gate_source.startswith("default") and not _is_trained(m):
        # As export: random weights amplify fp16 rounding, so the default gate holds an untrained
        # fp16 model to the same graph with fp16-rounded weights.
        cosine = fidelity["tflite_vs_fp16_weights_reference"]["cosine_min"]
    measured = {
        "max_top1_drop_pp": (accuracy["top1_drop"]["drop_pp"], None) if accuracy else (None, NO_LABELS),
        "min_sqnr_db": (f["sqnr_db"], None), "min_top1_agreement": (f["top1_agreement"], None),
        "max_rel_error": (f["max_rel"], None), "min_cosine": (cosine, None),
        "max_latency_ratio": (ratio, None if ratio is not None else "latency was not measured"),
    }
    checks = gates.evaluate(limits, measured)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "validation",
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": m["model"], "precision": precision, "trained": bool(m.get("trained", False)),
        "warnings": warnings,
        "artifact": {"tflite": str(art.tflite_path), "tflite_sha256": m["tflite_sha256"],
                     "onnx": str(art.tflite_path.parent / "model.onnx"),
                     "fp32_sibling": str(sibling_path) if sibling_path else None},
        "reference": {"name": m["model"], "weights": m.get("weights"), "seed": seed_ref,
                      "num_classes": config.num_classes, "input_size": config.input_size},
        "runtime": {"kind": runtime, "ai_edge_litert": runtime_version(), "delegate": "XNNPACK"},
        "data": {"source": calib.source, "kind": calib.kind, "count": calib.count, "seed": calib.seed,
                 "sha256": calib.sha256, "labelled": calib.labels is not None,
                 "classes": list(calib.class_names) if calib.class_names else None},
        "fidelity": fidelity,
        "accuracy": accuracy,
        "arm": arm,
        "device": device_run,
        "flips": _flips(torch_out, tfl_out, calib),
        "per_layer": per_layer,
        "latency": latency,
        "gate": {"source": gate_source, "thresholds": limits, "latency_ratio_vs": ratio_key,
                 "checks": [c.to_dict() for c in checks], "passed": all(c.passed for c in checks)},
        "passed": all(c.passed for c in checks),
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
    }
    report["stages_s"]["total"] = round(time.perf_counter() - t_start, 3)
    out = Path(out_dir) if out_dir is not None else art.tflite_path.parent / "validation"
    result = ValidationReport(art.tflite_path, out if write else None, report, checks)
    if write:
        write_reports(result, out, junit)
    return result


def write_reports(result: ValidationReport, out: Path, junit: str | os.PathLike | None = None) -> None:
    """report.json, report.md and report.html into ``out`` (atomically); JUnit XML to ``junit``."""
    from mobile_export.junit import to_junit
    from mobile_export.report_html import to_html
    from mobile_export.report_validate import to_markdown

    rep = result.report
    if junit is not None:
        jpath = Path(junit)
        try:
            jpath.parent.mkdir(parents=True, exist_ok=True)
            artifacts.write_text(jpath, to_junit(result.checks, model=rep["model"], precision=rep["precision"],
                                                 time_s=rep["stages_s"].get("total", 0.0)))
        except OSError as e:
            raise UserError(f"cannot write the JUnit file {jpath} ({e.strerror or e}); pass a writable --junit path.") from None
    try:
        with artifacts.atomic_dir(out) as tmp:
            (tmp / "report.json").write_text(artifacts.dumps(rep))
            (tmp / "report.md").write_text(to_markdown(rep))
            (tmp / "report.html").write_text(to_html(rep))
    except OSError as e:
        raise UserError(f"cannot write reports to {out} ({e.strerror or e}); pass a writable --out.") from None
    log.info("wrote %s", out)


__all__ = ["CIFAR10_DEFAULT", "ValidationReport", "load_artifact", "validate"]
