"""Int8 vs fp32 TFLite latency, measured side by side in one run (host CPU, XNNPACK, 1 thread).

    python tools/bench_int8.py [MODEL ...] [--input-size 224] [--rounds 5] [--runs 30] [--out bench.json]

Exports each model to fp32 and int8 (into a temporary directory), then times both interpreters
in interleaved rounds so machine noise hits both alike, and prints the median latency and the
int8/fp32 ratio per model. As a control it also times a Keras MobileNetV2 converted the stock way
(TFLiteConverter.from_keras_model, full-integer PTQ): if the control shows no int8 speed-up either,
the host CPU (e.g. AVX2 without VNNI) is what limits int8, not the export. On ARM, where phones
run, use instruction counts under emulation (mobile-export's qemu runtime) instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_MODELS = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]


def _keras_control(size: int) -> tuple[bytes, bytes]:
    import tensorflow as tf

    model = tf.keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3))
    rng = np.random.default_rng(0)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    fp32 = conv.convert()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.random((1, size, size, 3), dtype=np.float32)] for _ in range(32))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return fp32, conv.convert()


def _time(pairs: dict[str, tuple[bytes, bytes]], rounds: int, runs: int) -> dict:
    from mobile_export.runtimes.host import TFLiteModel

    models = {name: (TFLiteModel(f), TFLiteModel(q)) for name, (f, q) in pairs.items()}
    samples = {name: ([], []) for name in models}
    for _ in range(rounds):
        for name, (f, q) in models.items():
            samples[name][0].append(f.latency_ms(runs=runs)["median_ms"])
            samples[name][1].append(q.latency_ms(runs=runs)["median_ms"])
    out = {}
    for name, (f, q) in samples.items():
        fm, qm = statistics.median(f), statistics.median(q)
        out[name] = {"fp32_ms": round(fm, 3), "int8_ms": round(qm, 3), "int8_speedup": round(fm / qm, 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--no-control", action="store_true")
    p.add_argument("--out")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from mobile_export.api import export

    pairs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            f = export(name, precision="fp32", out_dir=tmp, input_size=args.input_size).tflite_path.read_bytes()
            q = export(name, precision="int8", out_dir=tmp, input_size=args.input_size, search=False).tflite_path.read_bytes()
            pairs[name] = (f, q)
    if not args.no_control:
        pairs["control: keras MobileNetV2 (stock converter)"] = _keras_control(args.input_size)
    result = {"host": {"machine": platform.machine(), "processor": _cpu_name()}, "threads": 1,
              "input_size": args.input_size, "models": _time(pairs, args.rounds, args.runs)}
    print(f"{'model':48s} {'fp32 ms':>8s} {'int8 ms':>8s} {'speed-up':>8s}")
    for name, r in result["models"].items():
        print(f"{name:48s} {r['fp32_ms']:8.2f} {r['int8_ms']:8.2f} {r['int8_speedup']:8.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
