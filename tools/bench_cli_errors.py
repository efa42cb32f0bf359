#!/usr/bin/env python
"""How fast a CLI-level bad input is answered (issue 17): wall time, exit code and stderr of the
installed ``mobile-export`` on a few mistakes, each checked before TensorFlow is imported or anything
is converted. A benchmark, not a test: the figures depend on the machine and its load::

    python tools/bench_cli_errors.py [--runs 3]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "mistyped model name": ["mobilenet_v3_smal"],
    "missing --calibration": ["mobilenet_v2", "--int8", "--calibration", "{tmp}/no-such-folder"],
    "--out model folder is a file": ["mobilenet_v2", "--out", "{tmp}/out"],
    "--io on an fp32 export": ["mobilenet_v2", "--io", "uint8"],
    "text file as --weights": ["mobilenet_v2", "--weights", "{tmp}/weights.txt"],
    "validate: missing model.tflite": ["validate", "{tmp}/model.tflite", "--reference", "mobilenet_v2"],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    exe = shutil.which("mobile-export") or str(Path(sys.executable).parent / "mobile-export")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "out").mkdir()
        (Path(tmp) / "out" / "mobilenet_v2").write_text("a file where the model folder goes")
        (Path(tmp) / "weights.txt").write_text("not a checkpoint\n")
        print("| bad input | exit | median s | stderr |\n|---|---:|---:|---|")
        for name, case in CASES.items():
            cmd = [exe, *[a.format(tmp=tmp) for a in case]]
            times, proc = [], None
            for _ in range(args.runs):
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
                times.append(time.perf_counter() - t0)
            err = proc.stderr.strip().splitlines()[-1][:110] if proc.stderr.strip() else ""
            print(f"| {name} | {proc.returncode} | {statistics.median(times):.2f} | {err} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
