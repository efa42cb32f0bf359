"""The ARM benchmark: instructions per inference of exported models on an emulated core
(qemu-aarch64, XNNPACK, 1 thread) — fp32 / fp16 / int8 — beside the peers' figures, and whether the
ARM outputs match the host's (int8: raw outputs bit-identical; float: max abs difference).

``run(names, golden=DIR)`` exports each model first (224×224, 1000 classes) with weights filled by
the torchvision-golden recipe — the recipe the peers' figures (``arm_peers.json``, provenance inside)
were measured with — int8 calibrated on ``calibration``; without ``golden`` it measures the artifacts
already in ``dist``. The same random NHWC float inputs feed every precision (int8: quantized on the
host with the model's scale)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobile_export.api import export
from mobile_export.errors import UserError
from mobile_export.runtimes.arm import run_tflite
from mobile_export.runtimes.host import TFLiteModel

from .golden import golden_weights

log = logging.getLogger(__name__)
PEERS = Path(__file__).with_name("arm_peers.json")


@dataclass(frozen=True)
class ArmBench:
    """What to measure and how."""

    names: tuple[str, ...]
    dist: Path = Path("dist")           # the artifacts measured (and, with golden, written)
    golden: Path | None = None          # a torchvision-golden folder: export with its weights first
    calibration: str | None = None      # int8 calibration images (with golden)
    fp16: bool = False
    input_kind: str = "pixels"
    cpu: str = "cortex-a76"
    samples: int = 2
    seed: int = 0


def host_raw(model: TFLiteModel, x_raw: np.ndarray) -> np.ndarray:
    """The host's raw outputs (no dequantization) on raw input tensors."""
    outs = []
    b = model.inputs[0].shape[0]
    for i in range(0, len(x_raw), b):
        model.interp.set_tensor(model._in, x_raw[i:i + b])
        model.interp.invoke()
        outs.append(model.interp.get_tensor(model._out).copy())
    return np.concatenate(outs)


def measure(path: Path, x: np.ndarray, cpu: str) -> dict:
    """One artifact on the emulated core: instructions per inference and its outputs against the host's."""
    data = path.read_bytes()
    host = TFLiteModel(data)
    raw = host.quantize_input(x)
    ref = host_raw(host, raw)
    run = run_tflite(data, raw, cpu=cpu, host=host)
    row = {"tflite": str(path), "dtype": run.outputs.dtype.name, **run.summary(),
           "instructions": run.instructions_per_inference}
    if np.issubdtype(run.outputs.dtype, np.integer):
        row["differing_elements"] = int(np.count_nonzero(run.outputs != ref))
        row["max_abs_lsb"] = int(np.abs(run.outputs.astype(np.int32) - ref.astype(np.int32)).max())
    else:
        row["max_abs_diff"] = float(np.abs(run.outputs - ref).max())
        row["max_abs_output"] = float(np.abs(ref).max())
    row["elements"] = int(ref.size)
    row["top1_same"] = f"{int((run.outputs.argmax(-1) == ref.argmax(-1)).sum())}/{len(ref)}"
    return row


def export_golden(name: str, b: ArmBench) -> dict:
    """Export fp32 (fp16) and int8 with golden weights; returns each report's key figures."""
    weights = str(golden_weights(name, b.dist, b.golden))
    facts = {}
    for prec in ("fp32", "fp16", "int8") if b.fp16 else ("fp32", "int8"):
        kw = {"calibration": b.calibration, "num_calibration": 200} if prec == "int8" else {}
        res = export(name, precision=prec, weights=weights, out_dir=b.dist, input=b.input_kind, **kw)
        g = res.report.graph
        facts[prec] = {"partitions": g.partitions, "outside": len(g.outside), "passed": res.passed, "ops": g.ops}
        if prec == "int8":
            chosen = res.report.int8.chosen
            facts[prec].update(sqnr_db=chosen["sqnr_db"], top1_agreement=chosen["top1_agreement"])
    return facts


def run(b: ArmBench) -> list[dict]:
    """Every model × precision of ``b``: one row each (the JSON the docs table is generated from)."""
    rows = []
    for name in b.names:
        facts = export_golden(name, b) if b.golden is not None else {}
        for prec in ("fp32", "fp16", "int8"):
            path = b.dist / name / prec / "model.tflite"
            if prec == "fp16" and not path.is_file():
                continue
            if not path.is_file():
                raise UserError(f"{path} does not exist; export {name} there first or pass --golden.")
            h = TFLiteModel(path.read_bytes(), xnnpack=False).inputs[0].shape
            x = np.random.default_rng(b.seed).uniform(-2.0, 2.0, (b.samples, *h[1:])).astype(np.float32)
            row = measure(path, x, b.cpu)
            row.update(model=name, precision=prec, export=facts.get(prec, {}))
            log.info("%s %s: %s instructions", name, prec, row.get("instructions_median"))
            rows.append(row)
    return rows


def peers(cpu: str) -> dict:
    """The peers' figures measured on ``cpu`` (empty when they were measured on another core)."""
    data = json.loads(PEERS.read_text())
    return data if data.get("cpu") == cpu else {}


def _m(v) -> str:
    return f"{v / 1e6:.2f}M" if v else "–"


def table(rows: list[dict], peer: dict, cpu: str) -> str:
    """Markdown: ours per precision, the peers' int8, ours / best peer, int8 / fp32."""
    by = {(r["model"], r["precision"]): r for r in rows}
    lines = [f"Emulated {cpu}, XNNPACK, 1 thread; instructions per inference (median). Peers: arm_peers.json.",
             "", "| model | ours fp32 | ours int8 | int8 / fp32 | onnx2tf int8 | litert-torch int8 | ours int8 / best peer "
             "| int8 partitions | int8 SQNR vs fp32 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        f, q = (by.get((model, p), {}).get("instructions_median") for p in ("fp32", "int8"))
        if not (f and q):
            lines.append(f"| {model} | n/a | n/a | | | | | | |")
            continue
        p = peer.get("models", {}).get(model, {})
        best = min((v for k, v in p.items() if k.endswith("_int8")), default=None)
        facts = by.get((model, "int8"), {}).get("export", {})
        sqnr = f"{facts['sqnr_db']:.1f} dB" if "sqnr_db" in facts else "–"
        ratio = f"{q / best:.2f}" if best else "–"
        lines.append(f"| {model} | {_m(f)} | {_m(q)} | {q / f:.2f} | {_m(p.get('onnx2tf_int8'))} | "
                     f"{_m(p.get('litert_torch_int8'))} | {ratio} | {facts.get('partitions', '–')} | {sqnr} |")
    return "\n".join(lines) + "\n"
