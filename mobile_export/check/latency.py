"""Side-by-side latency: TFLite (XNNPACK), onnxruntime and PyTorch eager — plus the fp32 sibling
artifact when there is one — timed in one interleaved loop, so load from other processes on the
machine hits every runtime alike. Median and p90 over warm runs at 1 and 4 threads (capped at
``os.cpu_count()``)."""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from mobile_export.metrics import latency_summary
from mobile_export.options import Precision
from mobile_export.runtimes.host import TFLiteModel

log = logging.getLogger(__name__)

Runner = Callable[[], object]


THREADS_ENV = "MOBILE_EXPORT_THREADS"  # a cap on threads (a batch cell runs with 1)


def thread_counts(wanted: tuple[int, ...] = (1, 4)) -> list[int]:
    cap = os.cpu_count() or 1
    if os.environ.get(THREADS_ENV, "").isdigit():
        cap = max(1, min(cap, int(os.environ[THREADS_ENV])))
    return sorted({max(1, min(n, cap)) for n in wanted})


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` intra-op torch threads, restoring the previous setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tflite_runner(model: bytes, threads: int) -> Runner:
    return TFLiteModel(model, num_threads=threads).invoker()


def _ort_runner(sess, x: np.ndarray, input_name: str) -> Runner:
    feed = {input_name: x}
    return lambda: sess.run(None, feed)


def _torch_runner(model: torch.nn.Module, x: np.ndarray) -> Runner:
    xt = torch.from_numpy(x)

    def run():
        with torch.no_grad():
            return model(xt)

    return run


def time_interleaved(runners: dict[str, Runner], runs: int, warmup: int, desc: str = "latency") -> dict[str, dict]:
    """Time each runner ``runs`` times, round-robin (rotating the order every run)."""
    names = list(runners)
    for _ in range(warmup):
        for n in names:
            runners[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in tqdm(range(runs), desc=desc, unit="run", leave=False, disable=None):
        for k in range(len(names)):
            n = names[(r + k) % len(names)]
            t0 = time.perf_counter()
            runners[n]()
            times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: latency_summary(t) for n, t in times.items()}


def measure(
    loaded,
    model: torch.nn.Module,
    *,
    input_name: str,
    fp32_sibling: bytes | None = None,
    runs: int = 30,
    warmup: int = 5,
    threads: list[int] | None = None,
) -> dict:
    """Latency of every runtime of ``loaded`` (``check.loaded.Loaded``: its XNNPACK interpreter and
    onnxruntime session at each thread count) and of PyTorch at each thread count, and the ratios the
    report and gate use: ``ratios[f"tflite_vs_{other}"][threads]`` = TFLite median ÷ other's median."""
    threads = threads or thread_counts()
    input_shape_nchw = (loaded.batch, *loaded.plain.inputs[0].shape[3:], *loaded.plain.inputs[0].shape[1:3])
    x = np.zeros(input_shape_nchw, dtype=np.float32)
    results: dict[str, dict[str, dict]] = {}
    model = model.eval()
    for n in threads:
        runners = {"tflite": loaded.xnnpack(n).invoker(), "onnxruntime": _ort_runner(loaded.ort(n), x, input_name),
                   "torch": _torch_runner(model, x)}
        if fp32_sibling is not None:
            runners["tflite_fp32"] = _tflite_runner(fp32_sibling, n)
        with torch_threads(n):
            timed = time_interleaved(runners, runs, warmup, desc=f"latency, {n} thread(s)")
        for name, summary in timed.items():
            results.setdefault(name, {})[str(n)] = summary
        log.info("latency at %d thread(s): %s", n,
                 ", ".join(f"{k} {v['median_ms']:.2f} ms" for k, v in timed.items()))
    ratios: dict[str, dict[str, float]] = {}
    for other in ("onnxruntime", "torch", "tflite_fp32"):
        if other in results:
            ratios[f"tflite_vs_{other}"] = {
                str(n): results["tflite"][str(n)]["median_ms"] / max(results[other][str(n)]["median_ms"], 1e-9)
                for n in threads
            }
    return {"threads": threads, "runs": runs, "warmup": warmup, "runtimes": results, "ratios": ratios,
            "cpu_count": os.cpu_count(), "input_shape": list(input_shape_nchw)}


def gate_ratio(latency: dict, precision: Precision) -> tuple[float | None, str]:
    """The ratio ``max_latency_ratio`` checks: vs the fp32 sibling when timed (and this artifact
    is not fp32), else vs onnxruntime; both at 1 thread."""
    ratios = latency.get("ratios", {})
    key = "tflite_vs_tflite_fp32" if precision is not Precision.FP32 and "tflite_vs_tflite_fp32" in ratios else "tflite_vs_onnxruntime"
    r = ratios.get(key, {})
    first = str(min(latency.get("threads", [1])))
    return r.get(first), key
