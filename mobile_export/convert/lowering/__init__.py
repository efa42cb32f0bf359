"""Own ONNX → TensorFlow lowering in NHWC: one small function per ONNX op (see ``registry``)."""
from .lowered import LoweredGraph
from .registry import LOWERINGS, lowers

__all__ = ["LOWERINGS", "LoweredGraph", "lowers"]
