"""Run a .tflite on a real ARM device over adb (``validate --runtime adb``).

Two ways to run, both optional, at least one needed:

* **outputs** (``python``): the device has a Python with ``numpy`` and ``ai_edge_litert`` (an ARM
  Linux board with adbd, a Raspberry Pi / Jetson / Chromebook container; Android's bionic cannot load
  the manylinux wheels). The host pushes ``guest_runner.py`` (the same runner the emulator uses, with
  the marker syscalls off), the model and the raw inputs, runs them, and pulls the raw outputs and the
  wall time of every invoke back — so the host compares outputs with its own bit for bit.
* **timing** (``benchmark``): the LiteRT ``benchmark_model`` binary, on the device already or pushed
  from the host (Android phones: download the android_aarch64 binary from the LiteRT "measurement"
  page). Its ``Inference timings in us`` line and last ``count=… avg=… std=…`` line are parsed.

Everything goes to ``/data/local/tmp/mobile-export/<run>/`` (writable by the adb shell user on every
Android device) and is removed afterwards. ``adb`` comes from Debian's ``adb`` package or the Android
SDK platform-tools; ``$ADB`` overrides the one on PATH, ``$ANDROID_SERIAL`` picks a device.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobile_export.errors import UserError

DEVICE_ROOT = "/data/local/tmp/mobile-export"
DEFAULT_BENCHMARK = "/data/local/tmp/benchmark_model"
GUEST_RUNNER = Path(__file__).with_name("guest_runner.py")
_RC = "__mobile_export_rc="


class AdbError(UserError):
    """adb is missing, no (single, authorised) device is connected, or a device command failed (exit 2)."""


@dataclass(frozen=True)
class Device:
    serial: str
    state: str          # device, unauthorized, offline, ...
    props: dict = field(default_factory=dict)  # product / model / device / transport_id from `adb devices -l`


@dataclass(frozen=True)
class DeviceOptions:
    """How to reach and use the device. ``python``: the device's Python command for output
    comparison (None: timing only); ``benchmark``: a path to ``benchmark_model`` on the device, or a
    local file to push (None: ``/data/local/tmp/benchmark_model`` when it exists there)."""

    serial: str | None = None
    adb: str | None = None
    python: str | None = None
    benchmark: str | None = None
    threads: int = 1
    runs: int = 50


def find_adb(adb: str | None = None) -> str:
    exe = adb or os.environ.get("ADB") or shutil.which("adb")
    if not exe or not shutil.which(exe):
        raise AdbError("adb was not found; install it (Debian: `apt-get install adb`, or Android SDK platform-tools) "
                       "or pass its path with --adb / $ADB.")
    return exe


def parse_devices(text: str) -> list[Device]:
    """Parse `adb devices -l`: ``SERIAL<ws>STATE [key:value ...]`` lines after the header."""
    devices = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        props = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
        devices.append(Device(parts[0], parts[1], props))
    return devices


def pick_device(devices: list[Device], serial: str | None) -> Device:
    serial = serial or os.environ.get("ANDROID_SERIAL")
    ready = [d for d in devices if d.state == "device"]
    if serial:
        match = [d for d in devices if d.serial == serial]
        if not match:
            raise AdbError(f"device '{serial}' is not connected (adb sees: "
                           f"{', '.join(d.serial for d in devices) or 'none'}); check `adb devices`.")
        d = match[0]
    elif len(ready) == 1:
        d = ready[0]
    elif not devices:
        raise AdbError("no device is connected; plug one in with USB debugging enabled (or `adb connect HOST`) "
                       "and check `adb devices`.")
    elif len(ready) > 1:
        raise AdbError(f"{len(ready)} devices are connected; pick one with --serial "
                       f"({', '.join(d.serial for d in ready)}).")
    else:
        d = devices[0]
    if d.state == "unauthorized":
        raise AdbError(f"device {d.serial} is unauthorized; accept the USB-debugging prompt on its screen.")
    if d.state != "device":
        raise AdbError(f"device {d.serial} is {d.state}; reconnect it and check `adb devices`.")
    return d


def parse_benchmark(text: str) -> dict:
    """The figures of a LiteRT ``benchmark_model`` run, in milliseconds."""
    m = re.search(r"Inference timings in us: Init: ([\d.e+]+), First inference: ([\d.e+]+), "
                  r"Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)", text)
    if not m:
        last = [ln for ln in text.strip().splitlines() if ln.strip()] or ["(nothing)"]
        raise AdbError(f"benchmark_model printed no 'Inference timings in us' line; its last line was: {last[-1][:200]}.")
    init, first, warm, avg = (float(v) / 1e3 for v in m.groups())
    out = {"init_ms": init, "first_ms": first, "warmup_avg_ms": warm, "avg_ms": avg}
    counts = re.findall(r"count=(\d+) first=\S+ curr=\S+ min=([\d.e+]+) max=([\d.e+]+) avg=([\d.e+]+) std=([\d.e+]+)",
                        text)
    if counts:
        n, mn, mx, _, std = counts[-1]
        out.update(runs=int(n), min_ms=float(mn) / 1e3, max_ms=float(mx) / 1e3, std_ms=float(std) / 1e3)
    return out


class Adb:
    """adb bound to one device."""

    def __init__(self, exe: str, serial: str, timeout: float = 600.0):
        self.exe, self.serial, self.timeout = exe, serial, timeout

    @classmethod
    def connect(cls, opts: DeviceOptions) -> "Adb":
        exe = find_adb(opts.adb)
        p = subprocess.run([exe, "devices", "-l"], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AdbError(f"`adb devices` failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}; "
                           "restart the server with `adb kill-server`.")
        return cls(exe, pick_device(parse_devices(p.stdout), opts.serial).serial)

    def _run(self, args: list[str], what: str) -> subprocess.CompletedProcess:
        try:
            p = subprocess.run([self.exe, "-s", self.serial, *args], capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise AdbError(f"{what} on {self.serial} did not finish within {self.timeout:.0f} s.") from None
        if p.returncode != 0:
            raise AdbError(f"{what} on {self.serial} failed: {_last_line(p.stderr + p.stdout, f'exit {p.returncode}')}")
        return p

    def push(self, local: Path | str, remote: str) -> None:
        self._run(["push", str(local), remote], f"adb push {Path(local).name}")

    def pull(self, remote: str, local: Path | str) -> None:
        self._run(["pull", remote, str(local)], f"adb pull {remote}")

    def shell(self, cmd: str, what: str | None = None) -> str:
        """Run ``cmd`` in the device shell; old adb does not pass the exit status back, so it is echoed."""
        what = what or f"`{cmd[:60]}`"
        p = self._run(["shell", f"{cmd}; echo {_RC}$?"], what)
        body, _, rc = p.stdout.rpartition(_RC)
        if rc.strip() != "0":
            detail = _last_line(p.stderr, "") or _last_line(body, f"exit {rc.strip()}")
            raise AdbError(f"{what} on {self.serial} failed (exit {rc.strip()}): {detail}")
        return body

    def exists(self, path: str) -> bool:
        p = self._run(["shell", f"ls {shlex.quote(path)} >/dev/null 2>&1 && echo yes || echo no"], f"ls {path}")
        return p.stdout.strip().endswith("yes")

    def abi(self) -> str:
        return self.shell("getprop ro.product.cpu.abi", "getprop").strip()


def _last_line(text: str, default: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else default


@dataclass
class DeviceRun:
    serial: str
    abi: str
    outputs: np.ndarray | None = None
    invoke_ms: list[float] = field(default_factory=list)
    delegate_nodes: int | None = None
    benchmark: dict | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        d = {"serial": self.serial, "abi": self.abi, "notes": self.notes}
        if self.invoke_ms:
            d.update(python_invoke_median_ms=statistics.median(self.invoke_ms), python_invokes=len(self.invoke_ms),
                     delegate_nodes=self.delegate_nodes)
        if self.benchmark:
            d["benchmark"] = self.benchmark
        return d


def check_device(opts: DeviceOptions) -> "Adb":
    """The options, adb and the device, checked before anything runs (validate calls it first)."""
    if opts.threads < 1 or opts.runs < 1:
        raise AdbError(f"device threads and runs must be at least 1, got {opts.threads} and {opts.runs}.")
    if opts.benchmark and not opts.benchmark.startswith("/") and not Path(opts.benchmark).is_file():
        raise AdbError(f"--benchmark-binary {opts.benchmark}: no such local file (give a local benchmark_model to "
                       "push, or an absolute path on the device).")
    return Adb.connect(opts)


def run_on_device(model: bytes, inputs_raw: np.ndarray | None, opts: DeviceOptions,
                  fp32_sibling: bytes | None = None) -> DeviceRun:
    """Push ``model`` and run it on the device: outputs of ``inputs_raw`` (raw NHWC tensors, quantized
    on the host) when ``opts.python`` is set, ``benchmark_model`` timings (of the fp32 sibling too, for
    the ratio) when a binary is available. Cleans the device directory up afterwards."""
    adb = check_device(opts)
    run = DeviceRun(serial=adb.serial, abi=adb.abi())
    if not run.abi.startswith("arm64"):
        run.notes.append(f"the device's ABI is {run.abi}, not arm64-v8a: timings are not those of a 64-bit ARM CPU.")
    remote = f"{DEVICE_ROOT}/{uuid.uuid4().hex[:12]}"
    bench = _benchmark_path(adb, opts, remote)
    if opts.python is None and bench is None:
        raise AdbError(f"nothing to run on {adb.serial}: no benchmark_model at {DEFAULT_BENCHMARK} and no device "
                       "Python; pass --benchmark-binary PATH (timing) and/or --device-python CMD (outputs).")
    adb.shell(f"mkdir -p {remote}", "mkdir")
    try:
        with tempfile.TemporaryDirectory(prefix="me-adb-") as d:
            work = Path(d)
            (work / "model.tflite").write_bytes(model)
            adb.push(work / "model.tflite", f"{remote}/model.tflite")
            if opts.python is not None and inputs_raw is not None:
                _python_run(adb, opts, work, remote, inputs_raw, run)
            if bench is not None:
                if bench.startswith(remote):
                    adb.push(opts.benchmark, bench)
                    adb.shell(f"chmod 755 {bench}", "chmod benchmark_model")
                run.benchmark = _benchmark(adb, bench, f"{remote}/model.tflite", opts)
                if fp32_sibling is not None:
                    (work / "fp32.tflite").write_bytes(fp32_sibling)
                    adb.push(work / "fp32.tflite", f"{remote}/fp32.tflite")
                    fp32 = _benchmark(adb, bench, f"{remote}/fp32.tflite", opts)
                    run.benchmark["fp32_avg_ms"] = fp32["avg_ms"]
                    run.benchmark["over_fp32"] = run.benchmark["avg_ms"] / fp32["avg_ms"]
    finally:
        try:
            adb.shell(f"rm -rf {remote}", "clean-up")
        except AdbError as e:
            run.notes.append(f"could not remove {remote} from the device: {e}")
    return run


def _benchmark_path(adb: Adb, opts: DeviceOptions, remote: str) -> str | None:
    if opts.benchmark is None:
        return DEFAULT_BENCHMARK if adb.exists(DEFAULT_BENCHMARK) else None
    if opts.benchmark.startswith("/") and not Path(opts.benchmark).is_file():
        if not adb.exists(opts.benchmark):
            raise AdbError(f"--benchmark-binary {opts.benchmark} exists neither on the host nor on {adb.serial}.")
        return opts.benchmark
    return f"{remote}/benchmark_model"  # a local file: pushed into the run directory


def _benchmark(adb: Adb, exe: str, graph: str, opts: DeviceOptions) -> dict:
    cmd = (f"{exe} --graph={graph} --num_threads={opts.threads} --use_xnnpack=true "
           f"--num_runs={opts.runs} --warmup_runs=1")
    out = parse_benchmark(adb.shell(cmd, "benchmark_model"))
    out["command"] = cmd
    return out


def _python_run(adb: Adb, opts: DeviceOptions, work: Path, remote: str, x: np.ndarray, run: DeviceRun) -> None:
    np.save(work / "inputs.npy", np.ascontiguousarray(x))
    (work / "job.json").write_text(json.dumps({"pylib": "", "threads": opts.threads, "marker": None, "warmup": 1}))
    for name in ("inputs.npy", "job.json"):
        adb.push(work / name, f"{remote}/{name}")
    adb.push(GUEST_RUNNER, f"{remote}/guest_runner.py")
    adb.shell(f"cd {remote} && {opts.python} guest_runner.py {remote}", "the device's Python runner")
    adb.pull(f"{remote}/outputs.npy", work / "outputs.npy")
    adb.pull(f"{remote}/result.json", work / "result.json")
    run.outputs = np.load(work / "outputs.npy", allow_pickle=False)
    result = json.loads((work / "result.json").read_text())
    run.invoke_ms = [float(t) for t in result.get("invoke_ms", [])]
    run.delegate_nodes = int(result.get("delegate_nodes", -1))
