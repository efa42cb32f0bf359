"""The only module that imports a TFLite runtime: ai-edge-litert, falling back to tflite_runtime or
tf.lite where that is what a machine has. Runs models, quantizes inputs, counts XNNPACK partitions."""
from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from mobile_export import lazy
from mobile_export.artifacts import IO_METADATA_ENTRY
from mobile_export.errors import ArtifactError
from mobile_export.metrics import latency_summary


def _interpreter_class():
    try:
        mod = lazy.load("ai_edge_litert.interpreter")
    except ImportError:  # pragma: no cover - fallbacks for devices / old installs
        try:
            mod = lazy.load("tflite_runtime.interpreter")
        except ImportError:
            tf = lazy.load("tensorflow")
            return tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    return mod.Interpreter, mod.OpResolverType


def runtime_version() -> str:
    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:  # pragma: no cover - a device's tflite_runtime
        return "unknown"


TFLITE_IDENTIFIER = b"TFL3"


def check_tflite_bytes(model: bytes, name: str) -> None:
    """Raise ArtifactError unless ``model`` carries the TFLite flatbuffer identifier and loads."""
    if len(model) < 8 or model[4:8] != TFLITE_IDENTIFIER:
        raise ArtifactError(f"{name} is not a TFLite model (no 'TFL3' flatbuffer identifier at bytes 4..8); "
                            "pass the model.tflite that mobile-export wrote.")
    try:
        make_interpreter(model, xnnpack=False)
    except ArtifactError as e:
        raise ArtifactError(f"{name} is truncated or damaged: {e}") from None


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


def io_contract(model: bytes) -> dict | None:
    """The model's ``mobile_export.io`` metadata entry (pixels or normalized input, mean, std), or None
    for a model without it."""
    S = lazy.load("ai_edge_litert.schema_py_generated")
    try:
        m = S.Model.GetRootAsModel(model, 0)
        for i in range(m.MetadataLength()):
            md = m.Metadata(i)
            if md.Name() == IO_METADATA_ENTRY.encode():
                return json.loads(m.Buffers(md.Buffer()).DataAsNumpy().tobytes())
    except Exception:  # a damaged flatbuffer: loading it reports that
        return None
    return None


class TFLiteModel:
    """A loaded .tflite: float NHWC inputs in, float (dequantized) outputs out.

    Inputs are always the *normalized* image (``(pixel / 255 - mean) / std``), the tool's one convention;
    for a pixel-input model (its ``mobile_export.io`` entry says so) they are mapped back to pixels
    0..255 here (rounded for a uint8 input), so every caller feeds every model the same way."""

    def __init__(self, model: bytes, *, num_threads: int = 1, xnnpack: bool = True, preserve_all: bool = False):
        self.model, self.xnnpack, self.num_threads = model, xnnpack, num_threads
        io = io_contract(model)
        self.pixels = None
        if io is not None and io.get("pixels"):
            self.pixels = (np.asarray(io["mean"], np.float32), np.asarray(io["std"], np.float32))
        self.interp = make_interpreter(model, num_threads=num_threads, xnnpack=xnnpack, preserve_all=preserve_all)
        self.inputs = [_info(d) for d in self.interp.get_input_details()]
        self.outputs = [_info(d) for d in self.interp.get_output_details()]
        self._in = self.interp.get_input_details()[0]["index"]
        self._out = self.interp.get_output_details()[0]["index"]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Normalized NHWC floats → the input tensor's values (pixels for a pixel-input model, then
        quantized with the tensor's scale and zero point)."""
        info = self.inputs[0]
        if self.pixels is not None:
            mean, std = self.pixels
            x = (np.asarray(x, np.float32) * std + mean) * np.float32(255.0)
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

    def invoker(self):
        """A no-argument callable running one inference on a fixed zero input (for timing)."""
        self.interp.set_tensor(self._in, np.zeros(self.inputs[0].shape, dtype=self.inputs[0].dtype))
        return self.interp.invoke

    def op_outputs(self) -> list[dict]:
        """Every tensor an op writes, in execution order: ``op_index``, ``op_name``, ``tensor``
        (index), ``name``, ``shape``, ``dtype``, ``quantized``. Delegate nodes are left out."""
        details = {d["index"]: d for d in self.interp.get_tensor_details()}
        out = []
        for op in self.interp._get_ops_details():
            if op["op_name"] == "DELEGATE":
                continue
            for t in op["outputs"]:
                d = details.get(int(t))
                if d is None:
                    continue
                scales = d.get("quantization_parameters", {}).get("scales", ())
                out.append({"op_index": int(op["index"]), "op_name": op["op_name"], "tensor": int(t),
                            "name": d["name"], "shape": [int(v) for v in d["shape"]],
                            "dtype": np.dtype(d["dtype"]).name, "quantized": len(scales) > 0})
        return out

    def read_tensors(self, x_nhwc: np.ndarray, indices: list[int]) -> dict[int, np.ndarray]:
        """Run one input batch and read tensors ``indices``, dequantized to float32 with each
        tensor's own scale / zero point. Needs ``preserve_all=True`` (and ``xnnpack=False``, since
        a delegate keeps its intermediates to itself)."""
        self.interp.set_tensor(self._in, self.quantize_input(x_nhwc))
        self.interp.invoke()
        details = {d["index"]: d for d in self.interp.get_tensor_details()}
        out = {}
        for i in indices:
            raw = self.interp.get_tensor(i)
            q = details[i].get("quantization_parameters", {})
            scales = np.asarray(q.get("scales", ()), dtype=np.float32)
            if scales.size == 0:
                out[i] = raw.astype(np.float32)
                continue
            zps = np.asarray(q.get("zero_points", ()), dtype=np.float32)
            if scales.size > 1:  # per-channel: broadcast along the quantized dimension
                shape = [1] * raw.ndim
                shape[int(q.get("quantized_dimension", 0))] = -1
                scales, zps = scales.reshape(shape), zps.reshape(shape)
            out[i] = ((raw.astype(np.float32) - zps) * scales).astype(np.float32)
        return out

    def latency_ms(self, runs: int = 30, warmup: int = 5) -> dict:
        """Median / p90 of ``runs`` timed invokes on a zero input after ``warmup`` untimed ones."""
        run = self.invoker()
        for _ in range(warmup):
            run()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1e3)
        return latency_summary(times)


@dataclass(frozen=True)
class GraphView:
    """A model's graph as stored (before any delegate), read once from one plain interpreter: what the
    graph checks below (op counts, integer-ness, I/O boundary, XNNPACK scale limits) all read."""

    ops: list[dict]
    tensors: dict[int, dict]
    inputs: frozenset[int]
    outputs: frozenset[int]

    @classmethod
    def of(cls, model: "bytes | GraphView | TFLiteModel") -> "GraphView":
        """The view of ``model``: bytes (one plain interpreter is opened), or a model already loaded
        without a delegate (its interpreter is read, none is opened)."""
        if isinstance(model, GraphView):
            return model
        if isinstance(model, TFLiteModel):
            if model.xnnpack:
                raise ValueError("GraphView reads the stored graph: pass a model loaded with xnnpack=False")
            interp = model.interp
        else:
            interp = make_interpreter(model, xnnpack=False)
        return cls(interp._get_ops_details(), {t["index"]: t for t in interp.get_tensor_details()},
                   frozenset(d["index"] for d in interp.get_input_details()),
                   frozenset(d["index"] for d in interp.get_output_details()))


def op_histogram(model: bytes | GraphView) -> dict[str, int]:
    """Op counts of the model as stored (before any delegate)."""
    return dict(sorted(collections.Counter(op["op_name"] for op in GraphView.of(model).ops).items()))


def xnnpack_partitions(model: "bytes | TFLiteModel") -> dict:
    """How XNNPACK partitions the graph: ``partitions`` (DELEGATE nodes) and the original nodes no
    partition covers (they run on the slow reference kernels). ``model``: bytes (an XNNPACK
    interpreter is opened) or a model already loaded with XNNPACK (its interpreter is read)."""
    if isinstance(model, TFLiteModel):
        if not model.xnnpack:
            raise ValueError("xnnpack_partitions needs a model loaded with XNNPACK")
        interp = model.interp
    else:
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


INTEGER_OK = {"int8", "uint8", "int32"}  # int32: biases and shape operands


PROLOGUE_OPS = ("DEQUANTIZE", "MUL", "ADD", "QUANTIZE")  # uint8 pixels → fp32 normalization → int8
EPILOGUE_OPS = ("DEQUANTIZE", "SOFTMAX")                # int8 logits → float scores / probabilities


def io_boundary_ops(ops: list[dict], model_inputs: set[int], model_outputs: set[int]) -> list[dict]:
    """The float ops at the edges of an int8 model: the pixel-input prologue (DEQUANTIZE of the uint8
    pixels, the per-channel normalization MUL / ADD with constants, the QUANTIZE into int8) and the
    output epilogue (DEQUANTIZE of the int8 logits, an optional SOFTMAX). Nothing else qualifies."""
    produced = {int(t) for op in ops for t in op["outputs"]}
    frontier, marked, dequantized = set(model_inputs), [], False
    for op in ops:  # forward from the input while the ops are prologue ops on the input's values
        dynamic = [int(t) for t in op["inputs"] if int(t) >= 0 and (int(t) in produced or int(t) in model_inputs)]
        if op["op_name"] in ("MUL", "ADD") and not dequantized:
            continue  # float arithmetic on a float input would be a quantization failure, not a prologue
        if op["op_name"] in PROLOGUE_OPS and dynamic and all(t in frontier for t in dynamic):
            marked.append(op)
            dequantized |= op["op_name"] == "DEQUANTIZE"
            if op["op_name"] != "QUANTIZE":
                frontier.update(int(t) for t in op["outputs"])
    by_output = {int(t): op for op in ops for t in op["outputs"]}
    for t in model_outputs:  # backward from the output through SOFTMAX to the DEQUANTIZE
        op = by_output.get(t)
        while op is not None and op["op_name"] in EPILOGUE_OPS:
            marked.append(op)
            op = None if op["op_name"] == "DEQUANTIZE" else by_output.get(int(op["inputs"][0]))
    return marked


def fully_integer_violations(model: bytes | GraphView) -> list[str]:
    """Ops that keep an int8 model from being fully integer: QUANTIZE/DEQUANTIZE inside the graph
    and float activations or weights. The I/O boundary (``io_boundary_ops``: a QUANTIZE at each end
    of a uint8 I/O model, the pixel-input prologue, the dequantized output) is not the model's compute."""
    g = GraphView.of(model)
    tensors, inputs, outputs, ops = g.tensors, g.inputs, g.outputs, g.ops
    boundary = {op["index"] for op in io_boundary_ops(ops, inputs, outputs)}
    out = []
    for op in ops:
        if op["index"] in boundary:
            continue
        touches = [int(i) for i in list(op["inputs"]) + list(op["outputs"]) if int(i) >= 0]
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE") and not (inputs | outputs) & set(touches):
            out.append(f"{op['op_name']}#{op['index']}")
            continue
        for i in touches:
            if np.dtype(tensors[i]["dtype"]).name not in INTEGER_OK and i not in inputs | outputs:
                out.append(f"{op['op_name']}#{op['index']} ({tensors[i]['name']} is {np.dtype(tensors[i]['dtype']).name})")
                break
    return out


def io_boundary(model: bytes | GraphView) -> list[str]:
    """``io_boundary_ops`` of ``model`` as ``NAME#index`` (what the export report lists as float at the edges)."""
    g = GraphView.of(model)
    ops = io_boundary_ops(g.ops, g.inputs, g.outputs)
    return [f"{op['op_name']}#{op['index']}" for op in sorted(ops, key=lambda o: o["index"])]
