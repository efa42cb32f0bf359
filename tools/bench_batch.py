#!/usr/bin/env python
"""Benchmark (not a test): the CI accuracy matrix run serially in one process vs as a batch on a
local Ray, on this machine, side by side in one run (issue 19: target >= 1.7x on 2 cores).

    python tools/bench_batch.py [--out bench-batch] [--matrix tools/ci_accuracy.toml] [--cpus N]

Serial is what CI did before: the cells one after another in this process with the libraries'
default threading. Batch is `mobile-export batch`: one cell per core, one thread each. Both write
their own folder; the script checks that every cell's model.tflite and manifest.json are
byte-identical between the two and that the verdicts agree, and writes OUT/bench.json and
OUT/bench.md (wall seconds, speedup, per-cell seconds).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))


def main(argv: list[str] | None = None) -> int:
    import accuracy_table as at

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench-batch"))
    ap.add_argument("--matrix", type=Path, default=at.MATRIX)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--data", type=Path, default=at.cifar_data.DEFAULT_DATA, help="the CIFAR-10 train archive")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    from mobile_export.batch import load_matrix, run_batch

    split = at.archive_split(args.data) if args.data.is_file() else at.shipped_split()
    os.environ[at.DATA_ENV] = str(at.prepare(split, (args.out / "data").resolve()))
    matrix = load_matrix(args.matrix)
    runs = {}
    for kind in ("serial", "batch"):
        t0 = time.perf_counter()
        res = run_batch(matrix, args.out / kind, serial=kind == "serial", num_cpus=args.cpus)
        runs[kind] = {"seconds": round(time.perf_counter() - t0, 1), "exit_code": res.exit_code,
                      "cells": {r["id"]: {"status": r["status"], "seconds": r.get("seconds")} for r in res.rows}}
        print(f"{kind}: {runs[kind]['seconds']:.0f} s, exit {res.exit_code}", flush=True)
    same = {c.id: all((args.out / "serial" / c.id / f).read_bytes() == (args.out / "batch" / c.id / f).read_bytes()
                      for f in ("model.tflite", "manifest.json")) for c in matrix.cells
            if (args.out / "serial" / c.id / "model.tflite").is_file()}
    agree = all(runs["serial"]["cells"][k]["status"] == v["status"] for k, v in runs["batch"]["cells"].items())
    speedup = runs["serial"]["seconds"] / runs["batch"]["seconds"]
    doc = {"matrix": str(args.matrix), "cells": len(matrix.cells), "cpu_count": os.cpu_count(), "ray_cpus": args.cpus,
           "runs": runs, "speedup": round(speedup, 2), "byte_identical": same, "verdicts_agree": agree}
    (args.out / "bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = [f"# {args.matrix.name}: serial vs mobile-export batch ({len(matrix.cells)} cells, {os.cpu_count()} cores)", "",
          "| run | wall | exit |", "|---|---:|---:|",
          *[f"| {k} | {v['seconds']:.0f} s | {v['exit_code']} |" for k, v in runs.items()], "",
          f"Speedup {speedup:.2f}x; model.tflite + manifest.json byte-identical in {sum(same.values())} of "
          f"{len(same)} cells; verdicts agree: {agree}."]
    (args.out / "bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if all(same.values()) and agree else 1


if __name__ == "__main__":
    sys.exit(main())
