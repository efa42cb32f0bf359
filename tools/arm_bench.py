"""Emulated-ARM figures for exported models: instructions per inference (fp32, fp16, int8) and whether the
ARM outputs match the host's (int8: raw outputs bit-identical; fp32: max abs difference).

    python tools/arm_bench.py --dist /tmp/armdist mobilenet_v3_small mobilenet_v2 shufflenet_v2_x1_0
        [--cpu cortex-a76] [--samples 2] [--json out.json]

Each NAME needs DIST/NAME/fp32/model.tflite and DIST/NAME/int8/model.tflite (from
`mobile-export NAME --out DIST` and `mobile-export NAME --int8 --out DIST`); DIST/NAME/fp16 is
counted too when it exists (`--fp16`). The same random NHWC float inputs feed every precision (int8:
quantized on the host with the model's input scale).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mobile_export.runtimes.arm import run_tflite
from mobile_export.runtimes.host import TFLiteModel


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+")
    ap.add_argument("--dist", type=Path, default=Path("dist"))
    ap.add_argument("--cpu", default="cortex-a76")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    for name in args.names:
        per = {}
        for prec in ("fp32", "fp16", "int8"):
            path = args.dist / name / prec / "model.tflite"
            if prec == "fp16" and not path.is_file():
                continue
            h = TFLiteModel(path.read_bytes()).inputs[0].shape
            x = np.random.default_rng(args.seed).uniform(-2.0, 2.0, (args.samples, *h[1:])).astype(np.float32)
            per[prec] = r = measure(path, x, args.cpu)
            r.update(model=name, precision=prec)
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
        f = per["fp32"].get("instructions_median")
        for prec in ("fp16", "int8"):
            q = per.get(prec, {}).get("instructions_median")
            if prec in per:
                per[prec]["over_fp32"] = round(q / f, 3) if f and q else None
    print(f"emulated {args.cpu}, XNNPACK, 1 thread; instructions per inference (median of {args.samples})\n")
    print("| model | precision | instructions/inference | / fp32 | ARM vs host |")
    print("|---|---|---|---|---|")
    for r in rows:
        ins = f"{r['instructions_median'] / 1e6:.2f}M" if r.get("instructions_median") else "n/a"
        ratio = f"{r['over_fp32']:.2f}" if r.get("over_fp32") else ""
        if "differing_elements" in r:
            same = ("bit-identical" if r["differing_elements"] == 0 else
                    f"{r['differing_elements']}/{r['elements']} differ (max {r['max_abs_lsb']} LSB; "
                    f"same top-1 {r['top1_same']})")
        else:
            same = f"max abs diff {r['max_abs_diff']:.1e} (outputs up to {r['max_abs_output']:.2g})"
        print(f"| {r['model']} | {r['precision']} | {ins} | {ratio} | {same} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
