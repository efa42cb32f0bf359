"""Where models run: the host TFLite runtime (``host``, the only LiteRT import), onnxruntime (the
only InferenceSession factory), the TFLite ↔ ONNX tensor map, and ARM (``arm``: qemu, adb)."""
