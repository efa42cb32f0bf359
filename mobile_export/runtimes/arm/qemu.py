"""Run a .tflite on an emulated ARM core (qemu-aarch64 user mode) and count the instructions one
inference executes. Emulation is hundreds of times slower than a phone, so its wall time means
nothing; the instruction count (a TCG plugin, bracketed by marker syscalls from the guest) is the
latency proxy, and the raw outputs show whether ARM kernels compute what the host's do.

The host quantizes: pass raw input tensors (int8/uint8 for a quantized model, float32 otherwise);
the outputs come back raw too (``outputs.dtype`` is the model's output tensor dtype).
"""
from __future__ import annotations

import json
import logging
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobile_export.errors import InvalidOptionError, MobileExportError
from mobile_export.runtimes.arm import sysroot as _sysroot
from mobile_export.runtimes.arm.cpus import DEFAULT_CPU, cpu_spec
from mobile_export.runtimes.arm.guest import MARKER_SYSCALL, guest_command
from mobile_export.runtimes.host import TFLiteModel, make_interpreter

log = logging.getLogger("mobile_export.runtimes.arm")

GUEST_RUNNER = Path(__file__).with_name("guest_runner.py")
CALIBRATION_BRACKETS = 3  # empty brackets the guest runs first (see guest_runner.py)


class EmulationError(MobileExportError):
    """The emulated guest failed (exit 2): the message carries the guest's last error line."""


@dataclass
class QemuRun:
    """Raw outputs of every sample and, when the counting plugin ran, instructions per inference
    (one per model batch, the markers' own cost subtracted)."""

    outputs: np.ndarray
    instructions_per_inference: list[int] | None
    plugin: bool
    cpu: str = DEFAULT_CPU
    threads: int = 1
    note: str = ""                 # why there are no counts, when plugin is False
    delegate_nodes: int = 0        # XNNPACK partitions in the guest (1 = the whole graph in one)
    wall_seconds: float = 0.0      # emulated invoke time: not a latency, only for the record
    info: dict = field(default_factory=dict)

    @property
    def median_instructions(self) -> int | None:
        c = self.instructions_per_inference
        return int(statistics.median(c)) if c else None

    def summary(self) -> dict:
        n = max(1, len(self.instructions_per_inference or self.outputs))
        d = {"cpu": self.cpu, "threads": self.threads, "plugin": self.plugin, "samples": len(self.outputs),
             "delegate_nodes": self.delegate_nodes, "emulated_seconds_per_inference": round(self.wall_seconds / n, 2)}
        if self.instructions_per_inference:
            c = self.instructions_per_inference
            d.update(instructions_median=self.median_instructions, instructions_min=min(c), instructions_max=max(c))
        else:
            d["instructions_note"] = self.note or "instruction counting unavailable"
        return d


def _check_inputs(model: bytes, x: np.ndarray, host=None) -> tuple[np.ndarray, int]:
    interp = host.interp if host is not None else make_interpreter(model, xnnpack=False)
    detail = interp.get_input_details()[0]
    shape, dtype = [int(d) for d in detail["shape"]], np.dtype(detail["dtype"])
    x = np.asarray(x)
    if x.ndim == len(shape) - 1:
        x = x[None]
    if list(x.shape[1:]) != shape[1:]:
        raise InvalidOptionError(f"inputs have shape {list(x.shape)} but the model takes {shape} (NHWC); "
                                 "pass raw NHWC input tensors.")
    if x.dtype != dtype:
        raise InvalidOptionError(f"inputs are {x.dtype} but the model's input tensor is {dtype.name}; "
                                 "quantize on the host (runtimes.host.TFLiteModel.quantize_input) and pass raw tensors.")
    if len(x) == 0 or len(x) % shape[0]:
        raise InvalidOptionError(f"{len(x)} inputs is not a positive multiple of the model's batch size {shape[0]}.")
    return np.ascontiguousarray(x), shape[0]


def run_tflite(model: bytes, inputs_nhwc: np.ndarray, *, cpu: str = DEFAULT_CPU, threads: int = 1,
               warmup: int = 1, count: bool = True, setup: bool = True, xnnpack: bool = True,
               timeout: float | None = None, host=None) -> QemuRun:
    """Run ``model`` on every sample of ``inputs_nhwc`` (raw tensors) under qemu-aarch64 emulating
    ``cpu`` with XNNPACK (``xnnpack=False``: TFLite's builtin kernels) on ``threads`` threads. Prepares the runtime first when it is missing
    (``setup=False``: raise instead). ``warmup`` uncounted invokes precede the counted ones. ``host``: the
    model already loaded on the host (``runtimes.host.TFLiteModel``), so no interpreter is opened here."""
    spec = cpu_spec(cpu)
    if threads < 1:
        raise InvalidOptionError(f"threads must be at least 1, got {threads}.")
    x, batch = _check_inputs(model, inputs_nhwc, host)
    rt = _sysroot.load(spec.name)
    if rt is None:
        if not setup:
            raise _sysroot.ArmSetupError(f"the ARM runtime for {spec.name} is not prepared; "
                                         f"run `mobile-export arm setup --cpu {spec.name}`.")
        rt = _sysroot.setup(spec.name)
    n_inv = len(x) // batch
    timeout = timeout or 900 + 120 * (n_inv + warmup)
    with tempfile.TemporaryDirectory(prefix="me-arm-run-") as d:
        work = Path(d)
        (work / "model.tflite").write_bytes(model)
        np.save(work / "inputs.npy", x)
        (work / "job.json").write_text(json.dumps({"pylib": str(rt.pylib), "threads": threads,
                                                   "marker": MARKER_SYSCALL, "warmup": max(0, warmup),
                                                   "xnnpack": xnnpack}))
        counts_path = work / "counts.txt"
        use_plugin = count and rt.plugin is not None
        cmd, env = guest_command(rt, [str(GUEST_RUNNER), str(work)], counts=counts_path if use_plugin else None,
                                 threads=threads)
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EmulationError(f"the emulated run on {spec.name} did not finish within {timeout:.0f} s; "
                                 "pass fewer inputs or a larger timeout.") from None
        if p.returncode != 0 or not (work / "outputs.npy").exists():
            tail = [ln for ln in p.stderr.strip().splitlines() if ln.strip()] or [f"exit code {p.returncode}"]
            raise EmulationError(f"the emulated run on {spec.name} failed: {tail[-1][:300]}")
        outputs = np.load(work / "outputs.npy", allow_pickle=False)
        result = json.loads((work / "result.json").read_text())
        counts, note = None, ""
        if use_plugin:
            counts, note = _parse_counts(counts_path, n_inv)
        elif not count:
            note = "instruction counting was not requested"
        else:
            note = rt.plugin_note or "the counting plugin is unavailable"
    log.info("emulated %s: %d inference(s) in %.1f s", spec.name, n_inv, time.monotonic() - t0)
    return QemuRun(outputs=outputs, instructions_per_inference=counts, plugin=counts is not None, cpu=spec.name,
                   threads=threads, note=note, delegate_nodes=int(result.get("delegate_nodes", 0)),
                   wall_seconds=float(result.get("wall_seconds", 0.0)),
                   info={"qemu": rt.info.get("qemu_version"), "qemu_cpu": rt.qemu_cpu,
                         "guest_numpy": result.get("numpy"), "wheels": rt.info.get("wheels")})


def _parse_counts(path: Path, n_inv: int) -> tuple[list[int] | None, str]:
    try:
        raw = [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return None, "the counting plugin wrote no readable counts"
    if len(raw) != CALIBRATION_BRACKETS + n_inv:
        return None, f"the counting plugin saw {len(raw)} marker brackets, expected {CALIBRATION_BRACKETS + n_inv}"
    overhead = min(raw[:CALIBRATION_BRACKETS])
    return [c - overhead for c in raw[CALIBRATION_BRACKETS:]], ""


def run_float(model: bytes, x_nhwc: np.ndarray, host=None, **kwargs) -> tuple[np.ndarray, QemuRun]:
    """``runtimes.host.TFLiteModel.run`` on emulated ARM: quantize float NHWC inputs with the model's input
    parameters on the host, run them under qemu (``kwargs`` as for `run_tflite`), dequantize the
    outputs. ``host``: the model already loaded on the host. Returns (float32 outputs, the QemuRun
    with raw outputs and instruction counts)."""
    host = host if host is not None else TFLiteModel(model, xnnpack=False)
    run = run_tflite(model, host.quantize_input(np.asarray(x_nhwc, dtype=np.float32)), host=host, **kwargs)
    return host.dequantize_output(run.outputs), run
