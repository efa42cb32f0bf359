"""The only module that imports a TFLite runtime: ai-edge-litert, falling back to tflite_runtime or
tf.lite where that is what a machine has. Runs models, quantizes inputs, counts XNNPACK partitions."""
from __future__ import annotations

import collections
import statistics
import time
from dataclasses import dataclass

import numpy as np

from mobile_export.errors import ArtifactError


def _interpreter_class():
    try:
        from ai_edge_litert import interpreter as mod
    except ImportError:  # pragma: no cover - fallbacks for devices / old installs
        try:
            from tflite_runtime import interpreter as mod
        except ImportError:
            import tensorflow as tf

            return tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    return mod.Interpreter, mod.OpResolverType


def runtime_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # pragma: no cover
        return "unknown"


def make_interpreter(model: bytes, *, num_threads: int = 1, xnnpack: bool = True, preserve_all: bool = False):
    Interpreter, Resolver = _interpreter_class()
    resolver = Resolver.AUTO if xnnpack else Resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = Interpreter(
            model_content=model,
            num_threads=num_threads,
            experimental_op_resolver_type=resolver,
            experimental_preserve_all_tensors=preserve_all,
        )
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ArtifactError(f"the file is not a loadable TFLite model ({str(e).splitlines()[0][:120]}).") from None
    return interp


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str
    scale: float | None
    zero_point: int | None

    def as_dict(self) -> dict:
        d = {"name": self.name, "shape": self.shape, "dtype": self.dtype}
        if self.scale is not None:
            d["quantization"] = {"scale": self.scale, "zero_point": self.zero_point}
        return d


def _info(detail: dict) -> TensorInfo:
    scale, zp = detail.get("quantization", (0.0, 0))
    quantized = scale != 0.0
    return TensorInfo(
        name=detail["name"],
        shape=[int(d) for d in detail["shape"]],
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale) if quantized else None,
        zero_point=int(zp) if quantized else None,
    )


class TFLiteModel:
    """A loaded .tflite: float NHWC inputs in, float (dequantized) outputs out."""

    def __init__(self, model: bytes, *, num_threads: int = 1, xnnpack: bool = True, preserve_all: bool = False):
        self.model = model
        self.interp = make_interpreter(model, num_threads=num_threads, xnnpack=xnnpack, preserve_all=preserve_all)
        self.inputs = [_info(d) for d in self.interp.get_input_details()]
        self.outputs = [_info(d) for d in self.interp.get_output_details()]
        self._in = self.interp.get_input_details()[0]["index"]
        self._out = self.interp.get_output_details()[0]["index"]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        info = self.inputs[0]
        if info.scale is None:
            return x.astype(info.dtype)
        lim = np.iinfo(info.dtype)
        q = np.round(x / info.scale) + info.zero_point
        return np.clip(q, lim.min, lim.max).astype(info.dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        info = self.outputs[0]
        if info.scale is None:
            return y.astype(np.float32)
        return ((y.astype(np.float32) - info.zero_point) * info.scale).astype(np.float32)

    def run(self, x_nhwc: np.ndarray) -> np.ndarray:
        """Run a batch (looping over the model's batch size) of float NHWC inputs."""
        b = self.inputs[0].shape[0]
        outs = []
        for i in range(0, len(x_nhwc), b):
            self.interp.set_tensor(self._in, self.quantize_input(x_nhwc[i:i + b]))
            self.interp.invoke()
            outs.append(self.dequantize_output(self.interp.get_tensor(self._out)))
        return np.concatenate(outs)

    def latency_ms(self, runs: int = 30, warmup: int = 5) -> dict:
        x = np.zeros(self.inputs[0].shape, dtype=self.inputs[0].dtype)
        self.interp.set_tensor(self._in, x)
        for _ in range(warmup):
            self.interp.invoke()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.interp.invoke()
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "runs": runs}


def op_histogram(model: bytes) -> dict[str, int]:
    """Op counts of the model as stored (before any delegate)."""
    interp = make_interpreter(model, xnnpack=False)
    return dict(sorted(collections.Counter(op["op_name"] for op in interp._get_ops_details()).items()))


def xnnpack_partitions(model: bytes) -> dict:
    """How XNNPACK partitions the graph: ``partitions`` (DELEGATE nodes) and the original nodes no
    partition covers (they run on the slow reference kernels)."""
    interp = make_interpreter(model, xnnpack=True)
    ops = interp._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    produced_by = {}
    for op in originals:
        for t in op["outputs"]:
            produced_by[int(t)] = op
    covered: set[int] = set()
    for d in delegates:
        d_inputs = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        seen: set[int] = set()
        while stack:
            t = stack.pop()
            if t in seen or t in d_inputs:
                continue
            seen.add(t)
            op = produced_by.get(t)
            if op is not None and op["index"] not in covered:
                covered.add(op["index"])
                stack.extend(int(i) for i in op["inputs"] if int(i) >= 0)
    outside = [f"{op['op_name']}#{op['index']}" for op in originals if op["index"] not in covered]
    return {"partitions": len(delegates), "outside": outside, "nodes": len(originals)}
