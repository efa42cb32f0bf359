"""Re-export models and record the sha256 of model.tflite, manifest.json and model.onnx, to prove a
refactor changed no artifact (the stage-package redesign used it: 37 exports identical before/after).

    python tools/byte_identity.py OUT RESULTS.json                  # record (resumable: done keys are kept)
    python tools/byte_identity.py OUT AFTER.json --against BEFORE.json   # record, then compare; exit 1 on a difference

The set: every registered model in fp32 (untrained, seeded), mobilenet_v2 / mobilenet_v3_small /
shufflenet_v2_x1_0 in int8 and fp16, and the int8 of two shipped CIFAR-10 checkpoints. Run the
"before" side from a checkout of the old commit (e.g. a git worktree on PYTHONPATH).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

FILES = ("model.tflite", "manifest.json", "model.onnx")


def jobs() -> list[tuple[str, str, str | None]]:
    from mobile_export.models import list_models

    out = [(n, "fp32", None) for n in list_models()]
    out += [(n, p, None) for n in ("mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x1_0") for p in ("int8", "fp16")]
    return out + [("mobilenet_v3_small", "int8", "cifar10"), ("shufflenet_v2_x1_0", "int8", "cifar10")]


def record(out: Path, results_path: Path, only: list[str]) -> dict:
    from mobile_export import export

    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name, precision, weights in jobs():
        key = f"{name}/{precision}/{weights or 'untrained'}"
        if key in results or (only and not any(o in key for o in only)):
            continue
        t = time.time()
        r = export(name, precision=precision, weights=weights, out_dir=out / (weights or "untrained"))
        results[key] = {f: hashlib.sha256((r.out_dir / f).read_bytes()).hexdigest() for f in FILES}
        results[key].update(passed=r.passed, seconds=round(time.time() - t, 1))
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(results_path)
        print(key, "passed" if r.passed else "FAILED", flush=True)
    return results


def compare(after: dict, before: dict) -> list[str]:
    """Keys whose files or verdict differ (or that only one side has)."""
    diff = [k for k in sorted(set(after) | set(before))
            if k not in after or k not in before
            or any(after[k][f] != before[k][f] for f in (*FILES, "passed"))]
    return diff


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="export root (kept, so the artifacts can be diffed)")
    ap.add_argument("results", type=Path, help="JSON of sha256 per export")
    ap.add_argument("--against", type=Path, help="a results JSON recorded before the change")
    ap.add_argument("--only", nargs="*", default=[], help="substrings of keys to run (default: all)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = record(args.out, args.results, args.only)
    if args.against is None:
        return 0
    diff = compare(results, json.loads(args.against.read_text()))
    print(f"{len(results) - len(diff)} of {len(results)} exports byte-identical" + (": differ " + ", ".join(diff) if diff else ""))
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
