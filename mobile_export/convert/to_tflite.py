"""The only module that runs the TensorFlow Lite converter.

The lowered graph is wrapped in a ``tf.Module``, saved as a SavedModel and converted with
``TFLiteConverter.from_saved_model`` (``from_concrete_functions`` left READ_VARIABLE ops that broke
int8 calibration under Keras 3 / TF 2.21).
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Callable, Iterable

import numpy as np

from mobile_export import lazy
from mobile_export.errors import ConversionError
from mobile_export.options import IOType, Precision

log = logging.getLogger(__name__)


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    absl_logging = lazy.load("absl.logging")
    absl_logging.set_verbosity(absl_logging.ERROR)


def convert(
    fn: Callable,
    input_shape_nhwc: tuple[int, ...],
    *,
    input_name: str,
    precision: Precision,
    representative: Callable[[], Iterable[np.ndarray]] | None = None,
    io_type: IOType = IOType.INT8,
) -> bytes:
    """Convert ``fn(x_nhwc) -> {output_name: tensor}`` to a TFLite flatbuffer."""
    _quiet_tf()
    tf = lazy.load("tensorflow")
    module = tf.Module()
    module.serve = tf.function(fn, autograph=False, input_signature=[tf.TensorSpec(input_shape_nhwc, tf.float32, name=input_name)])
    with tempfile.TemporaryDirectory(prefix="mobile-export-sm-") as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision is Precision.FP16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif precision is Precision.DYNAMIC:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif precision is Precision.INT8:
            if representative is None:
                raise ConversionError("int8 conversion needs a representative dataset.")
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([s] for s in representative())
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io = {IOType.INT8: tf.int8, IOType.UINT8: tf.uint8, IOType.FLOAT: tf.float32}[io_type]
            converter.inference_input_type = io
            converter.inference_output_type = io
        try:
            return converter.convert()
        except Exception as e:  # the converter raises ConverterError / RuntimeError with long logs
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConversionError(f"the TFLite converter failed: {first}") from e
