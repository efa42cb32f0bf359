"""Conversion: torch → ONNX (+onnxsim), ONNX graph utilities, the NHWC lowering to TF ops, and the
TFLite converter (fp32, fp16, dynamic, int8 given ranges and a representative dataset)."""
