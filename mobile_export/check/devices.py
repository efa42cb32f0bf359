"""The artifact on ARM: an emulated core (qemu-aarch64, instruction counts) or a device over adb —
outputs compared with the host's element by element, and the fp32 sibling counted or timed too."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mobile_export.errors import ArtifactError
from mobile_export.options import Precision
from mobile_export.runtimes.arm import run_float
from mobile_export.runtimes.arm.adb import DeviceOptions, run_on_device as _run
from mobile_export.runtimes.host import check_tflite_bytes

ARM_SAMPLES = 8  # emulated inferences take seconds each: a few samples, plus 1 for the fp32 sibling


def fp32_sibling(path: Path, precision: Precision, warnings: list[str]) -> tuple[bytes | None, Path | None]:
    """The fp32 artifact beside ``path`` (``../fp32/model.tflite``), for int8/fp32 ratios."""
    sib = path.parent.parent / "fp32" / "model.tflite"
    if precision is Precision.FP32 or not sib.is_file():
        return None, None
    data = sib.read_bytes()
    try:
        check_tflite_bytes(data, str(sib))
    except ArtifactError as e:
        warnings.append(f"fp32 sibling not timed: {e}")
        return None, None
    return data, sib


def vs_host(out: np.ndarray, host: np.ndarray) -> dict[str, Any]:
    """How outputs from an ARM run (emulated or a device) differ from the host's, element by element."""
    diff = int((out != host).sum())
    return {"differing_elements": diff, "elements": int(host.size),
            "max_abs_diff_vs_host": float(np.abs(out - host).max()), "bit_identical": diff == 0}


def run_on_emulated_arm(loaded, x: np.ndarray, host_out: np.ndarray, cpu: str,
                        fp32: bytes | None = None) -> dict[str, Any]:
    """Run the first ``ARM_SAMPLES`` inputs on emulated ARM (``runtimes.arm``): int8 outputs must
    equal the host's bit for bit (differing elements are counted), float ones are compared by max abs
    difference; instructions per inference replace wall time, and the fp32 sibling ``fp32`` is
    counted too for the int8/fp32 ratio."""
    n = min(len(x), ARM_SAMPLES)
    xa = np.ascontiguousarray(x[:n].transpose(0, 2, 3, 1))
    precision = loaded.precision
    arm_out, run = run_float(loaded.tflite, xa, host=loaded.plain, cpu=cpu)
    out: dict[str, Any] = {"cpu": cpu, "samples": n, **run.summary(), **vs_host(arm_out, host_out[:n])}
    if fp32 is not None and run.instructions_per_inference:
        _, fp32_run = run_float(fp32, xa[:1], cpu=cpu)
        if fp32_run.instructions_per_inference:
            out["fp32_instructions_median"] = fp32_run.median_instructions
            out[f"{precision.value}_over_fp32_instructions"] = run.median_instructions / fp32_run.median_instructions
    return out


def run_on_device(loaded, x: np.ndarray, host_out: np.ndarray, opts, fp32: bytes | None = None) -> dict[str, Any]:
    """Run the artifact on a device over adb (``runtimes.arm.adb``): outputs of the first
    ``ARM_SAMPLES`` inputs when the device has a Python (compared with the host's bit for bit), and
    benchmark_model timings of the artifact and its fp32 sibling when a binary is available."""
    n = min(len(x), ARM_SAMPLES)
    host = loaded.plain
    xa = host.quantize_input(np.ascontiguousarray(x[:n].transpose(0, 2, 3, 1)))
    run = _run(loaded.tflite, xa, opts or DeviceOptions(), fp32_sibling=fp32)
    out: dict[str, Any] = {"samples": n if run.outputs is not None else 0, **run.summary()}
    if run.outputs is not None:
        out.update(vs_host(host.dequantize_output(run.outputs), host_out[:n]))
    return out
