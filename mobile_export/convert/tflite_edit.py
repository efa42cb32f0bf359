"""Edits of a converted TFLite flatbuffer that the TF converter cannot express.

Works on the object API of TensorFlow's generated TFLite schema (``schema_py_generated``) and the
``flatbuffers`` builder, never on bytes by hand:

- a **pixel-input prologue**: the model takes raw RGB pixels 0..255 and normalizes them itself,
  ``x * 1/(255 std) - mean/std`` per channel (fp32 MUL + ADD). For an int8 model the pixels come in
  as uint8 (scale 1, zero point 0) through a DEQUANTIZE, the only uint8 → int8 path XNNPACK keeps
  inside its partition (it refuses QUANTIZE uint8 → int8, even at equal scales), and the converter's
  own QUANTIZE then takes the normalized values to int8 exactly as for a normalized-input model.
  Normalizing before the first convolution keeps its zero padding right (padding a normalized image
  with 0 is not padding raw pixels with 0);
- a **softmax** after the logits (fp32; for int8 after the DEQUANTIZE of the int8 logits);
- **names**: the input tensor and signature key ``image``, the output ``logits`` / ``probabilities``;
- **metadata** entries (``Model.metadata`` name → buffer), e.g. ``TFLITE_METADATA``.
"""
from __future__ import annotations

import flatbuffers
import numpy as np

from mobile_export import lazy

_TYPES = {"float32": 0, "int32": 2, "uint8": 3, "int8": 9}


def _schema():
    return lazy.load("tensorflow.lite.python.schema_py_generated")


class ModelEditor:
    """One TFLite model being edited: ``ModelEditor(bytes)`` … ``.to_bytes()``."""

    def __init__(self, tflite: bytes) -> None:
        S = self.S = _schema()
        self.model = S.ModelT.InitFromObj(S.Model.GetRootAsModel(bytearray(tflite), 0))
        if len(self.model.subgraphs) != 1:
            raise ValueError(f"expected one subgraph, found {len(self.model.subgraphs)}")
        self.g = self.model.subgraphs[0]
        if len(self.g.inputs) != 1 or len(self.g.outputs) != 1:
            raise ValueError("expected one input and one output tensor")

    # -- building blocks
    def _opcode(self, code: int) -> int:
        for i, oc in enumerate(self.model.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
                return i
        oc = self.S.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        self.model.operatorCodes.append(oc)
        return len(self.model.operatorCodes) - 1

    def add_tensor(self, name: str, shape, dtype: str, *, data: np.ndarray | None = None,
                   quant: tuple[float, int] | None = None) -> int:
        t = self.S.TensorT()
        t.name, t.shape, t.type = name.encode(), [int(d) for d in shape], _TYPES[dtype]
        t.buffer = 0
        if data is not None:
            buf = self.S.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data, dtype=dtype).tobytes(), dtype=np.uint8)
            self.model.buffers.append(buf)
            t.buffer = len(self.model.buffers) - 1
        if quant is not None:
            q = self.S.QuantizationParametersT()
            q.scale, q.zeroPoint = [float(quant[0])], [int(quant[1])]
            t.quantization = q
        self.g.tensors.append(t)
        return len(self.g.tensors) - 1

    def add_op(self, code: int, inputs: list[int], outputs: list[int], *, at: int | None = None,
               options: tuple[int, object] | None = None) -> None:
        op = self.S.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = self._opcode(code), list(inputs), list(outputs)
        if options is not None:
            op.builtinOptionsType, op.builtinOptions = options
        self.g.operators.insert(len(self.g.operators) if at is None else at, op)

    def _binary_options(self, kind: str):
        S = self.S
        opts = S.MulOptionsT() if kind == "mul" else S.AddOptionsT()
        opts.fusedActivationFunction = S.ActivationFunctionType.NONE
        return (S.BuiltinOptions.MulOptions if kind == "mul" else S.BuiltinOptions.AddOptions), opts

    @property
    def input_index(self) -> int:
        return self.g.inputs[0]

    @property
    def output_index(self) -> int:
        return self.g.outputs[0]

    def _retarget_signature(self, old: int, new: int) -> None:
        for sd in self.model.signatureDefs or []:
            for tm in list(sd.inputs or []) + list(sd.outputs or []):
                if tm.tensorIndex == old:
                    tm.tensorIndex = new

    # -- the edits
    def prepend_pixel_normalization(self, mean, std, *, uint8: bool) -> None:
        """Make the model take pixels 0..255 (uint8 for an int8 model, else float32) and normalize them
        per channel before the old float input: ``pixel * 1/(255 std) + (-mean/std)``."""
        B = self.S.BuiltinOperator
        old = self.input_index
        shape = list(self.g.tensors[old].shape)
        if self.g.tensors[old].type != _TYPES["float32"]:
            raise ValueError("the pixel prologue needs a model with a float32 input (convert with float I/O)")
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32)
        shift = (-mean / std).astype(np.float32)
        # one image row of constants ([1, 1, W, C]), not [C]: broadcast over H only, XNNPACK's inner
        # loop runs over W·C contiguous values (measured on cortex-a76 at 224×224: MUL + ADD 0.6M
        # instructions instead of 3.1M with a [3] constant, whose innermost broadcast is 3 wide)
        row = [1, 1, shape[2], shape[3]]
        a = self.add_tensor("image/scale", row, "float32", data=np.broadcast_to(scale, row))
        b = self.add_tensor("image/shift", row, "float32", data=np.broadcast_to(shift, row))
        ops = []
        if uint8:
            pix = self.add_tensor("image", shape, "uint8", quant=(1.0, 0))
            x = self.add_tensor("image/float", shape, "float32")
            ops.append((B.DEQUANTIZE, [pix], [x], None))
        else:
            pix = x = self.add_tensor("image", shape, "float32")
        y = self.add_tensor("image/scaled", shape, "float32")
        ops += [(B.MUL, [x, a], [y], self._binary_options("mul")),
                (B.ADD, [y, b], [old], self._binary_options("add"))]
        for i, (code, ins, outs, opts) in enumerate(ops):
            self.add_op(code, ins, outs, at=i, options=opts)
        self.g.tensors[old].name = b"image/normalized"
        self.g.inputs = [pix]
        self._retarget_signature(old, pix)

    def append_softmax(self) -> None:
        """Probabilities instead of logits: a float32 SOFTMAX after the (float) output."""
        S = self.S
        old = self.output_index
        if self.g.tensors[old].type != _TYPES["float32"]:
            raise ValueError("the softmax needs a float32 output (convert with float output)")
        new = self.add_tensor("probabilities", list(self.g.tensors[old].shape), "float32")
        opts = S.SoftmaxOptionsT()
        opts.beta = 1.0
        self.add_op(S.BuiltinOperator.SOFTMAX, [old], [new], options=(S.BuiltinOptions.SoftmaxOptions, opts))
        self.g.outputs = [new]
        self._retarget_signature(old, new)

    def name_io(self, input_name: str, output_name: str) -> None:
        """The input / output tensor names and the one SignatureDef's keys (``serving_default``)."""
        self.g.tensors[self.input_index].name = input_name.encode()
        self.g.tensors[self.output_index].name = output_name.encode()
        for sd in self.model.signatureDefs or []:
            for tm in sd.inputs or []:
                tm.name = input_name.encode()
            for tm in sd.outputs or []:
                tm.name = output_name.encode()

    def set_metadata(self, name: str, data: bytes) -> None:
        """A ``Model.metadata`` entry ``name`` holding ``data`` (replaced when it exists)."""
        buf = self.S.BufferT()
        buf.data = np.frombuffer(data, dtype=np.uint8)
        self.model.buffers.append(buf)
        entries = [m for m in (self.model.metadata or []) if m.name != name.encode()]
        md = self.S.MetadataT()
        md.name, md.buffer = name.encode(), len(self.model.buffers) - 1
        self.model.metadata = entries + [md]

    def to_bytes(self) -> bytes:
        builder = flatbuffers.Builder(1 << 20)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    def output_dequantized_from(self) -> dict | None:
        """The quantization of the int8 tensor a DEQUANTIZE turns into the float output, if any."""
        producer = {o: op for op in self.g.operators for o in op.outputs}
        t = self.output_index
        while t in producer:
            op = producer[t]
            code = self.model.operatorCodes[op.opcodeIndex]
            code = max(code.builtinCode, code.deprecatedBuiltinCode)
            if code == self.S.BuiltinOperator.DEQUANTIZE:
                q = self.g.tensors[op.inputs[0]].quantization
                return {"scale": float(q.scale[0]), "zero_point": int(q.zeroPoint[0])}
            if code != self.S.BuiltinOperator.SOFTMAX:
                return None
            t = op.inputs[0]
        return None

