"""Test helper: break a .tflite on purpose by patching its flatbuffer bytes in place.

Positions come from the TFLite schema's generated reader (``schema_py_generated``, shipped in
ai-edge-litert and tensorflow): the ``data`` vector of a weight buffer, the ``zero_point`` vector
of a tensor's quantization. Nothing is re-serialized, so every other byte stays as converted.
"""
from __future__ import annotations

import importlib

import flatbuffers
import numpy as np


def _schema():
    for name in ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("no TFLite schema_py_generated module (ai-edge-litert or tensorflow) is installed")


def _vector_start(table, field_offset: int) -> int:
    o = flatbuffers.number_types.UOffsetTFlags.py_type(table._tab.Offset(field_offset))
    assert o != 0, "field absent"
    return table._tab.Vector(o)


def _tensor(model: bytes, index: int):
    m = _schema().Model.GetRootAs(model, 0)
    return m, m.Subgraphs(0).Tensors(index)


def weight_span(model: bytes, tensor_index: int) -> tuple[int, int]:
    """(byte offset, length) of a constant tensor's data in the file."""
    m, t = _tensor(model, tensor_index)
    buf = m.Buffers(t.Buffer())
    if buf.DataLength() > 0:
        return _vector_start(buf, 4), buf.DataLength()
    assert buf.Offset() > 1, "tensor has no constant data"
    return int(buf.Offset()), int(buf.Size())


def negate_weights(model: bytes, tensor_index: int) -> bytes:
    """Flip the sign of a constant float32 or int8 weight tensor."""
    _, t = _tensor(model, tensor_index)
    ttype = _schema().TensorType
    dtype = {ttype.FLOAT32: np.float32, ttype.INT8: np.int8}[t.Type()]
    start, n = weight_span(model, tensor_index)
    out = bytearray(model)
    w = np.frombuffer(bytes(out[start:start + n]), dtype=dtype)
    if dtype is np.int8:
        neg = np.clip(-w.astype(np.int16), -127, 127).astype(np.int8)
    else:
        neg = -w
    assert (neg != w).any()
    out[start:start + n] = neg.tobytes()
    return bytes(out)


def set_zero_point(model: bytes, tensor_index: int, zero_point: int) -> bytes:
    """Overwrite a per-tensor-quantized tensor's (single) zero point."""
    _, t = _tensor(model, tensor_index)
    q = t.Quantization()
    assert q is not None and q.ZeroPointLength() == 1, "not a per-tensor quantized tensor"
    start = _vector_start(q, 10)
    out = bytearray(model)
    out[start:start + 8] = np.int64(zero_point).tobytes()
    return bytes(out)
