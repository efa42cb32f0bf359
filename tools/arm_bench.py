"""The ARM benchmark: instructions per inference of exported models on an emulated core (qemu-aarch64,
XNNPACK, 1 thread), fp32 / fp16 / int8, beside the peers' figures, and whether ARM outputs match the
host's (int8: raw outputs bit-identical; float: max abs difference).

    python tools/arm_bench.py NAME ... --golden --calibration DIR [--out DIST] [--cpu cortex-a76]
        [--fp16] [--input pixels|normalized] [--samples 2] [--json out.json] [--md out.md]
    python tools/arm_bench.py NAME ... --dist DIST          # measure artifacts already exported

``--golden`` exports each model first (224×224, 1000 classes) with weights filled by
``../shared/torchvision-golden/fill.py`` — the recipe the peer figures in ``tools/arm_peers.json``
were measured with (provenance there), so the rows compare the converters, not the weights; int8
calibrates on ``--calibration`` (the peers used 200 CIFAR-10 training images). Without it, NAME needs
DIST/NAME/fp32/model.tflite and DIST/NAME/int8/model.tflite (fp16 is counted when present). The same
random NHWC float inputs feed every precision (int8: quantized on the host with the model's scale).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from mobile_export.runtimes.arm import run_tflite
from mobile_export.runtimes.host import TFLiteModel

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOBILE_EXPORT_SHARED", REPO.parent / "shared"))
PEERS = REPO / "tools" / "arm_peers.json"


def host_raw(model: TFLiteModel, x_raw: np.ndarray) -> np.ndarray:
    outs = []
    b = model.inputs[0].shape[0]
    for i in range(0, len(x_raw), b):
        model.interp.set_tensor(model._in, x_raw[i:i + b])
        model.interp.invoke()
        outs.append(model.interp.get_tensor(model._out).copy())
    return np.concatenate(outs)


def measure(path: Path, x: np.ndarray, cpu: str) -> dict:
    data = path.read_bytes()
    host = TFLiteModel(data)
    raw = host.quantize_input(x)
    ref = host_raw(host, raw)
    run = run_tflite(data, raw, cpu=cpu)
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


def golden_weights(name: str, out: Path) -> Path:
    """``name``'s state_dict filled by the torchvision-golden recipe, saved once under ``out``."""
    import torch

    from mobile_export.models import get_model

    path = out / f"{name}_golden.pt"
    if not path.is_file():
        fill_py = SHARED / "torchvision-golden" / "fill.py"
        if not fill_py.is_file():
            print(f"arm_bench: error: {fill_py} not found; --golden needs ../shared (or $MOBILE_EXPORT_SHARED).",
                  file=sys.stderr)
            raise SystemExit(2)
        spec = importlib.util.spec_from_file_location("tv_golden_fill", fill_py)
        fill = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fill)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(fill.fill_state_dict(get_model(name).state_dict()), path)
    return path


def export_golden(name: str, out: Path, calibration: str | None, fp16: bool, input_kind: str = "pixels") -> dict:
    """Export fp32 (fp16) and int8 with golden weights; returns the int8 report's key figures."""
    from mobile_export import export

    weights = str(golden_weights(name, out))
    facts = {}
    for prec in ("fp32", "fp16", "int8") if fp16 else ("fp32", "int8"):
        kw = {"calibration": calibration, "num_calibration": 200} if prec == "int8" else {}
        res = export(name, precision=prec, weights=weights, out_dir=out, input=input_kind, **kw)
        g = res.report.graph
        facts[prec] = {"partitions": g.partitions, "outside": len(g.outside), "passed": res.passed, "ops": g.ops}
        if prec == "int8":
            chosen = res.report.int8.chosen
            facts[prec].update(sqnr_db=chosen["sqnr_db"], top1_agreement=chosen["top1_agreement"])
    return facts


def _m(v) -> str:
    return f"{v / 1e6:.2f}M" if v else "–"


def table(rows: list[dict], peers: dict, cpu: str) -> str:
    """Markdown: ours per precision, the peers' int8, ours / best peer, int8 / fp32."""
    by = {(r["model"], r["precision"]): r for r in rows}
    lines = [f"Emulated {cpu}, XNNPACK, 1 thread; instructions per inference (median). Peers: tools/arm_peers.json.",
             "", "| model | ours fp32 | ours int8 | int8 / fp32 | onnx2tf int8 | litert-torch int8 | ours int8 / best peer "
             "| int8 partitions | int8 SQNR vs fp32 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        f, q = (by.get((model, p), {}).get("instructions_median") for p in ("fp32", "int8"))
        if not (f and q):
            lines.append(f"| {model} | n/a | n/a | | | | | | |")
            continue
        p = peers.get("models", {}).get(model, {})
        best = min((v for k, v in p.items() if k.endswith("_int8")), default=None)
        facts = by.get((model, "int8"), {}).get("export", {})
        sqnr = f"{facts['sqnr_db']:.1f} dB" if "sqnr_db" in facts else "–"
        ratio = f"{q / best:.2f}" if best else "–"
        lines.append(f"| {model} | {_m(f)} | {_m(q)} | {q / f:.2f} | {_m(p.get('onnx2tf_int8'))} | "
                     f"{_m(p.get('litert_torch_int8'))} | {ratio} | {facts.get('partitions', '–')} | {sqnr} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+")
    ap.add_argument("--dist", type=Path, default=None, help="measure artifacts already exported here")
    ap.add_argument("--golden", action="store_true", help="export with golden-filled weights first (into --out)")
    ap.add_argument("--out", type=Path, default=Path("arm-bench"))
    ap.add_argument("--calibration", help="int8 calibration images (with --golden)")
    ap.add_argument("--fp16", action="store_true", help="also export and count fp16 (with --golden)")
    ap.add_argument("--input", choices=["pixels", "normalized"], default="pixels",
                    help="the exported model's input (with --golden): pixels (the default artifact: normalization "
                         "inside) or normalized (the client normalizes; no input prologue)")
    ap.add_argument("--cpu", default="cortex-a76")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    dist = args.out if args.golden else (args.dist or Path("dist"))
    peers = json.loads(PEERS.read_text())
    rows = []
    for name in args.names:
        facts = export_golden(name, dist, args.calibration, args.fp16, args.input) if args.golden else {}
        for prec in ("fp32", "fp16", "int8"):
            path = dist / name / prec / "model.tflite"
            if prec == "fp16" and not path.is_file():
                continue
            if not path.is_file():
                print(f"arm_bench: error: {path} does not exist; export {name} there first or pass --golden.",
                      file=sys.stderr)
                return 2
            h = TFLiteModel(path.read_bytes()).inputs[0].shape
            x = np.random.default_rng(args.seed).uniform(-2.0, 2.0, (args.samples, *h[1:])).astype(np.float32)
            r = measure(path, x, args.cpu)
            r.update(model=name, precision=prec, export=facts.get(prec, {}))
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "export"}), file=sys.stderr, flush=True)
    md = table(rows, peers if args.cpu == peers.get("cpu") else {}, args.cpu)
    print(md)
    if args.md:
        args.md.write_text(md)
    if args.json:
        args.json.write_text(json.dumps({"cpu": args.cpu, "rows": rows}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
