"""The TFLite metadata schema, as generated code (not written by hand).

``metadata_schema_py_generated.py`` is the FlatBuffers compiler's Python output for the official
``metadata_schema.fbs`` (schema version 1.5.0, file identifier ``M001``; both files are the copies
the ``mediapipe`` 1.2.2 wheel ships, Apache License 2.0, The TensorFlow / MediaPipe Authors). It
needs only the ``flatbuffers`` runtime. It is kept here, unmodified, because no installable package
provides it beside TensorFlow 2.21: ``tflite-support`` pins protobuf 3.20, and ``mediapipe`` (a test
dependency, the real client) is too heavy for the exporter. ``tests/convert/test_tflite_edit.py`` checks
that both files still equal MediaPipe's when MediaPipe is installed.
"""
