"""``mobile-export`` command line: a thin layer over the Python API.

    mobile-export NAME [--int8 | --fp16 | --dynamic] [--weights PATH] ...   (= mobile-export export NAME ...)
    mobile-export list [--family F]
    mobile-export validate MODEL.tflite --reference NAME [--data SRC] [--gate FILE] [--junit FILE] ...
    mobile-export batch MATRIX.toml [--out DIR] [--address ADDR] [--resume] [--serial]
    mobile-export bench arm|profile|ceiling ...   (emulated-ARM benchmark, per-layer profile, int8 ceiling)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from mobile_export import lazy
from mobile_export.batch import load_matrix, run_batch
from mobile_export.batch.table import cells_of
from mobile_export.check.gate import THRESHOLDS
from mobile_export.errors import INTERNAL_ERROR_EXIT, InvalidOptionError, MobileExportError, UserError
from mobile_export.logs import cli_logging
from mobile_export.options import ExportOptions
from mobile_export.runtimes.arm import setup
from mobile_export.runtimes.arm.adb import DeviceOptions
from mobile_export.runtimes.arm.cpus import CPUS, DEFAULT_CPU

SUBCOMMANDS = ("export", "list", "validate", "arm", "batch", "bench")


def _log_flags(p, verbose_help: str = "third-party logs too (TensorFlow, the TFLite converter and interpreter)") -> None:
    p.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")
    p.add_argument("--verbose", action="store_true", help=verbose_help)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one sentence, exit 2, no usage dump
        self.exit(2, f"mobile-export: error: {message} (see --help).\n")


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a registered model to TFLite (the default command)")
    p.add_argument("name", help="registered model name (see `mobile-export list`)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--int8", dest="precision", action="store_const", const="int8", help="full-integer int8")
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="float16 weights")
    prec.add_argument("--dynamic", dest="precision", action="store_const", const="dynamic",
                      help="dynamic-range quantization (int8 weights, float activations)")
    p.set_defaults(precision="fp32")
    p.add_argument("--weights", help="state_dict path, or a registered weights name such as cifar10")
    p.add_argument("--num-classes", type=_positive_int)
    p.add_argument("--input-size", type=_positive_int, help="square input size H (= W)")
    p.add_argument("--batch", type=_positive_int, default=1)
    p.add_argument("--calibration", help="calibration images dir, ImageFolder tree, or .npy/.npz (int8)")
    p.add_argument("--num-calibration", type=_positive_int, help="int8 calibration images (default 256)")
    p.add_argument("--input", choices=("pixels", "normalized"),
                   help="what the model takes: raw RGB pixels 0..255 (uint8 for int8, float32 otherwise; normalized "
                        "inside the model, as MediaPipe feeds them; the default) or the normalized image")
    p.add_argument("--softmax", action="store_true", help="output probabilities (softmax) instead of logits")
    p.add_argument("--io", choices=("int8", "uint8", "float"),
                   help="I/O tensor type of an int8 model with --input normalized (default int8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="dist", help="output root (default: dist)")
    p.add_argument("--gate", help="gate TOML file: check the artifact against its thresholds (instead of the "
                                  "precision's default bar)")
    p.add_argument("--latency-runs", type=int, help="timed runs per runtime (default 30; 0: no timing)")
    _log_flags(p)


def _validate_parser(sub) -> None:
    p = sub.add_parser("validate", help="validate a written .tflite against its PyTorch reference",
                       description="Exit 0: the gate passed; 1: a gate check failed; 2: bad usage or input.")
    p.add_argument("tflite", help="the model.tflite (manifest.json and model.onnx must be beside it)")
    p.add_argument("--reference", required=True, help="registered model name the artifact was exported from")
    p.add_argument("--weights", help="the weights the artifact was exported with (path or registered name)")
    p.add_argument("--data", help="ImageFolder tree, image dir, .npy/.npz, cifar10 (1,000 shipped held-out "
                                  "CIFAR-10 images), or cifar10-default (default: the embedded set, unlabelled)")
    p.add_argument("--num", type=_positive_int, help="number of samples (default 256, or the gate file's num)")
    p.add_argument("--runtime", default="host", choices=("host", "qemu", "adb"),
                   help="where to run TFLite: host (ai-edge-litert), qemu (emulated ARM; see `mobile-export arm "
                        "setup`) or adb (a connected device; see README 'Real device')")
    p.add_argument("--cpu", default="cortex-a76", help="emulated ARM core for --runtime qemu")
    d = p.add_argument_group("--runtime adb")
    d.add_argument("--serial", help="device serial (default $ANDROID_SERIAL, or the only connected device)")
    d.add_argument("--adb", help="adb executable (default $ADB, or adb on PATH)")
    d.add_argument("--device-python", metavar="CMD", help="Python on the device with numpy and ai_edge_litert: "
                                                          "its outputs are compared with the host's")
    d.add_argument("--benchmark-binary", metavar="PATH", help="LiteRT benchmark_model: a local file to push, or a "
                                                              "path on the device (default /data/local/tmp/benchmark_model)")
    d.add_argument("--device-runs", type=_positive_int, default=50, help="benchmark_model runs (default 50)")
    d.add_argument("--device-threads", type=_positive_int, default=1, help="threads on the device (default 1)")
    p.add_argument("--gate", help="gate TOML file (see mobile_export/check/gate.py); flags below override it")
    for key, (_, desc) in THRESHOLDS.items():
        flag = "--" + key.removesuffix("_pp").removesuffix("_db").replace("_", "-")  # --max-top1-drop, --min-sqnr
        p.add_argument(flag, dest=key, type=_float, metavar="X", help=desc)
    p.add_argument("--junit", help="write JUnit XML (one testcase per gate check) to this file")
    p.add_argument("--out", help="report directory (default: validation/ beside the .tflite)")
    p.add_argument("--seed", type=int, default=0, help="data sampling and bootstrap seed")
    p.add_argument("--layer-samples", type=_positive_int, default=4, help="samples for the per-layer comparison")
    p.add_argument("--latency-runs", type=int, help="timed runs per runtime (default 30; 0: skip latency)")
    _log_flags(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mobile-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _export_parser(sub)
    _validate_parser(sub)
    _arm_parser(sub)
    _batch_parser(sub)
    _bench_parser(sub)
    lp = sub.add_parser("list", help="list registered models")
    lp.add_argument("--family")
    _log_flags(lp)
    return parser


def _cmd_list(args) -> int:
    models = lazy.load("mobile_export.models").describe(args.family)
    if not models:
        raise UserError(f"no models in family '{args.family}'; run `mobile-export list` to see the families.")
    rows = [("name", "family", "input", "params", "MACs", "weights")]
    rows += [(m.name, m.family, str(m.input_size), f"{m.params / 1e6:.3f}M", f"{m.macs / 1e6:.1f}M",
              ",".join(m.weights) or "-") for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _cmd_export(args) -> int:
    opts = ExportOptions(  # checked before the pipeline (torch, TensorFlow) is imported
        precision=args.precision, weights=args.weights, num_classes=args.num_classes, input_size=args.input_size,
        batch=args.batch, out_dir=args.out, io_type=args.io, input=args.input, softmax=args.softmax,
        calibration=args.calibration,
        num_calibration=args.num_calibration, seed=args.seed, gate=args.gate,
        latency_runs=None if args.latency_runs is None else max(0, args.latency_runs),
    )
    api = lazy.load("mobile_export.api")  # TensorFlow, torch, onnxruntime: after the arguments are checked

    res = api.export(args.name, opts)
    print(f"{res.tflite_path}  ({res.report.precision}, {res.tflite_path.stat().st_size / 1e6:.2f} MB)")
    for line in res.report.summary_lines(res.out_dir / "report.md"):
        print(f"  {line}")
    return 0 if res.passed else 1


def _cmd_validate(args) -> int:
    api = lazy.load("mobile_export.api")  # TensorFlow, torch, onnxruntime: after the arguments are checked

    res = api.validate(
        args.tflite, reference=args.reference, weights=args.weights, data=args.data, num=args.num,
        runtime=args.runtime, gate=args.gate, thresholds={k: getattr(args, k) for k in THRESHOLDS},
        junit=args.junit, out_dir=args.out, seed=args.seed, layer_samples=args.layer_samples,
        latency_runs=None if args.latency_runs is None else max(0, args.latency_runs), cpu=args.cpu,
        device=DeviceOptions(serial=args.serial, adb=args.adb, python=args.device_python,
                             benchmark=args.benchmark_binary, threads=args.device_threads, runs=args.device_runs),
    )
    for line in res.summary_lines():
        print(line)
    return 0 if res.passed else 1


def _arm_parser(sub) -> None:
    p = sub.add_parser("arm", help="emulated ARM runtime (qemu-aarch64): validate without a phone")
    p.set_defaults(quiet=False, verbose=False)
    asub = p.add_subparsers(dest="arm_command", metavar="setup", parser_class=_Parser, required=True)
    s = asub.add_parser("setup", help="prepare (or verify) the qemu-aarch64 sysroot for one core",
                        description="Needs root for apt-get (qemu-user, arm64 packages) on the first run.")
    s.add_argument("--cpu", default=DEFAULT_CPU, help=f"core to emulate: {', '.join(CPUS)} (default {DEFAULT_CPU})")
    s.add_argument("--force", action="store_true", help="rebuild even when a verified runtime exists")
    _log_flags(s)


def _cmd_arm(args) -> int:

    t0 = time.monotonic()
    rt = setup(args.cpu, force=args.force)
    print(f"{rt.root}  ({rt.cpu}: {rt.info['action']} in {time.monotonic() - t0:.1f} s)")
    print(f"  {rt.qemu} -cpu {rt.qemu_cpu}; instruction counts: {'yes' if rt.plugin else 'no (' + rt.plugin_note + ')'}")
    return 0


def _batch_parser(sub) -> None:
    p = sub.add_parser("batch", help="export + validate every cell of a matrix file, on Ray",
                       description="Exit 0: every cell passed; 1: a cell failed its checks; 2: bad matrix or input; "
                                   "3: a cell hit an internal error; 130: interrupted (partial table written).")
    p.add_argument("matrix", help="matrix TOML file (models × precisions × input sizes; see README 'Batch')")
    p.add_argument("--out", default="batch", help="output folder: one folder per cell + batch.md/json/html, junit.xml")
    p.add_argument("--address", help="Ray cluster: auto, or ray://HOST:10001 (default: a local Ray on this machine)")
    p.add_argument("--cpus", type=_positive_int, help="CPUs of the local Ray (default: all cores)")
    p.add_argument("--resume", action="store_true", help="skip cells whose folder already holds this cell's result")
    p.add_argument("--serial", action="store_true", help="run the cells one after another in this process (no Ray)")
    _log_flags(p, "Ray's, the workers' and the third-party libraries' logs too")


def _cmd_batch(args) -> int:
    if args.serial and args.address:
        raise InvalidOptionError("--serial runs in this process; drop --address (or --serial to use the cluster).")
    matrix = load_matrix(args.matrix)
    res = run_batch(matrix, args.out, address=args.address, serial=args.serial, resume=args.resume,
                    num_cpus=args.cpus, verbose=args.verbose, progress=not args.quiet)

    for r in res.rows:
        c = cells_of(r)
        print(f"{c[0]}: {c[-1]}  (top-1 {c[3]}, drop {c[4]}, SQNR {c[5]}, partitions {c[7]})")
    state = "" if res.complete else "INCOMPLETE, "
    print(f"{res.out_dir / 'batch.md'} ({state}{len(res.rows)} of {len(matrix.cells)} cells, {res.seconds:.0f} s)")
    return res.exit_code


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: emulated-ARM instructions, per-layer profile, int8 ceiling")
    p.set_defaults(quiet=False, verbose=False)
    bsub = p.add_subparsers(dest="bench_command", metavar="arm|profile|ceiling", parser_class=_Parser, required=True)
    a = bsub.add_parser("arm", help="instructions per inference on an emulated ARM core, beside the peers")
    a.add_argument("names", nargs="+", help="registered models")
    a.add_argument("--golden", metavar="DIR", nargs="?", const="", default=None,
                   help="export first with weights filled by DIR/fill.py (a torchvision-golden folder; default "
                        "$MOBILE_EXPORT_GOLDEN), 224 px, 1000 classes; without it: measure the artifacts in --dist")
    a.add_argument("--dist", default="dist", help="artifacts folder (read, or written with --golden)")
    a.add_argument("--calibration", help="int8 calibration images (with --golden)")
    a.add_argument("--fp16", action="store_true", help="also export and count fp16 (with --golden)")
    a.add_argument("--input", choices=("pixels", "normalized"), default="pixels")
    a.add_argument("--cpu", default="cortex-a76")
    a.add_argument("--samples", type=_positive_int, default=2)
    _bench_outputs(a)
    f = bsub.add_parser("profile", help="per-layer instruction counts on an emulated ARM core")
    f.add_argument("onnx", help="an artifact's model.onnx")
    f.add_argument("--name", required=True, help="registered model name (input size, normalization)")
    f.add_argument("--int8", action="store_true")
    f.add_argument("--calibration", help="int8 calibration images (default: the embedded set)")
    f.add_argument("--num", type=_positive_int, default=64)
    f.add_argument("--cpu", default="cortex-a76")
    f.add_argument("--every", type=_positive_int, default=1, help="cut after every N-th node")
    f.add_argument("--bypass", default="", metavar="OPS",
                   help="comma-separated ONNX op types made pass-throughs (a bound, not the model)")
    _bench_outputs(f)
    c = bsub.add_parser("ceiling", help="how good any per-tensor int8 model of these weights can be")
    c.add_argument("names", nargs="+")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--golden", metavar="DIR", nargs="?", const="", help="torchvision-golden weights (as bench arm)")
    src.add_argument("--weights", help="a registered weights name (e.g. cifar10) or a state_dict path")
    c.add_argument("--calibration", help="calibration images (default: the embedded set)")
    c.add_argument("--num", type=_positive_int, default=200, help="calibration images (default 200)")
    c.add_argument("--out", default="dist-ceiling", help="where the int8 exports go")
    c.add_argument("--solo", type=int, default=0, metavar="K", help="also list the K tensors costliest alone")
    _bench_outputs(c)


def _bench_outputs(p) -> None:
    p.add_argument("--json", help="write the results as JSON (what docs tables are generated from)")
    p.add_argument("--md", help="write the Markdown table")
    _log_flags(p)


def _cmd_bench(args) -> int:
    G = lazy.load("mobile_export.bench.golden")
    get_spec = lazy.load("mobile_export.models").get_spec

    for name in getattr(args, "names", [args.name] if args.bench_command == "profile" else []):
        get_spec(name)  # an unknown model: one sentence, before anything runs
    golden = None if getattr(args, "golden", None) is None else G.golden_dir(args.golden or None)
    if args.bench_command == "arm":
        arm = lazy.load("mobile_export.bench.arm")

        b = arm.ArmBench(tuple(args.names), Path(args.dist), golden, args.calibration, args.fp16, args.input,
                         args.cpu, args.samples)
        rows = arm.run(b)
        result, md = {"cpu": args.cpu, "rows": rows}, arm.table(rows, arm.peers(args.cpu), args.cpu)
    elif args.bench_command == "profile":
        profile = lazy.load("mobile_export.bench.profile")

        result = profile.run(Path(args.onnx), args.name, int8=args.int8, calibration=args.calibration, num=args.num,
                             cpu=args.cpu, every=args.every, bypass_ops=args.bypass)
        md = profile.table(result)
    else:
        ceiling = lazy.load("mobile_export.bench.ceiling")

        out = Path(args.out)
        result = [ceiling.ceiling(n, str(G.golden_weights(n, out, golden)) if golden else args.weights,
                                  args.calibration, args.num, out, args.solo) for n in args.names]
        md = ceiling.table(result)
    print(md, end="")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    if args.md:
        Path(args.md).write_text(md)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS:
        argv.insert(0, "export")  # `mobile-export NAME ...` is `mobile-export export NAME ...`
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed its one-line error (or --help)
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return 2

    with cli_logging(quiet=args.quiet, verbose=args.verbose) as native:
        try:
            return {"export": _cmd_export, "list": _cmd_list, "validate": _cmd_validate, "arm": _cmd_arm,
                    "batch": _cmd_batch, "bench": _cmd_bench}[args.command](args)
        except MobileExportError as e:
            if e.exit_code == INTERNAL_ERROR_EXIT:
                return _internal_error(e, native.text())
            print(f"mobile-export: error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            print("mobile-export: interrupted; nothing was written to the output directory.", file=sys.stderr)
            return 130
        except Exception as e:  # a bug: not the user's input, and not a fidelity failure (exit 1)
            return _internal_error(e, native.text())


def _internal_error(e: BaseException, native: str = "") -> int:
    """One line on stderr naming the log file that holds the traceback (and what native libraries
    wrote to stderr meanwhile); exit 3."""
    text = "".join(traceback.format_exception(e))
    where = Path(os.environ.get("MOBILE_EXPORT_CACHE", Path.home() / ".cache" / "mobile-export")) / "logs"
    log_path = None
    for folder in (where, Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            log_path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            native_part = f"\nnative stderr (last lines):\n{native}" if native else ""
            log_path.write_text(f"mobile-export {' '.join(sys.argv[1:])}\n\n{text}{native_part}")
            break
        except OSError:
            log_path = None
    first = (str(e).strip().splitlines() or ("",))[0][:200]
    where_text = f"the traceback is in {log_path}" if log_path else f"traceback:\n{text}"
    print(f"mobile-export: internal error ({type(e).__name__}: {first}) — a bug in mobile-export, not a fidelity "
          f"failure; {where_text} (please report it).", file=sys.stderr)
    return INTERNAL_ERROR_EXIT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
