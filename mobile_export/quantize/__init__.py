"""Int8 quantization: activation ranges (``ranges``), cross-layer equalization, empirical bias
correction, and the sensitivity search that tries them in order (``search``)."""
