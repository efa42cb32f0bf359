"""How far the artifact's outputs are from PyTorch and onnxruntime (and, for fp16, from the same
graph with fp16-rounded weights): the fidelity section of every report."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobile_export import fidelity as F
from mobile_export.convert.graph import with_fp16_weights
from mobile_export.errors import ArtifactError
from mobile_export.metrics import Comparison, as_output
from mobile_export.options import Precision

from .runs import Outputs, run_ort


@dataclass(frozen=True)
class Fidelity:
    tflite_vs_torch: Comparison
    tflite_vs_onnxruntime: Comparison
    onnxruntime_vs_torch: Comparison
    tflite_vs_fp16_weights: Comparison | None = None  # fp16: the same graph with fp16-rounded weights

    def to_json(self) -> dict:
        out = {"tflite_vs_torch": self.tflite_vs_torch.to_json(),
               "tflite_vs_onnxruntime": self.tflite_vs_onnxruntime.to_json(),
               "onnxruntime_vs_torch": self.onnxruntime_vs_torch.to_json()}
        if self.tflite_vs_fp16_weights is not None:
            out["tflite_vs_fp16_weights_reference"] = self.tflite_vs_fp16_weights.to_json()
        return out


def measure(loaded, outs: Outputs, x: np.ndarray, input_name: str) -> Fidelity:
    """The comparisons; ArtifactError when the PyTorch reference does not reproduce ``model.onnx``
    (validate rebuilt it with other weights than the export's)."""
    ort_vs_torch = Comparison.of(outs.onnxruntime, outs.torch)
    if ort_vs_torch.max_rel > F.REBUILT_REFERENCE_MAX_REL:
        raise ArtifactError(f"the PyTorch reference rebuilt for {loaded.manifest['model']} does not reproduce "
                            f"model.onnx (max rel error {ort_vs_torch.max_rel:.1e}); pass the --weights the "
                            "artifact was exported with.")
    fp16 = None
    if loaded.precision is Precision.FP16:  # what fp16 weights alone do: the same graph with rounded weights
        sess = loaded.ort_graph(with_fp16_weights(loaded.onnx))
        fp16 = Comparison.of(outs.tflite, as_output(run_ort(sess, x, input_name, loaded.batch), loaded.output_kind))
    return Fidelity(Comparison.of(outs.tflite, outs.torch), Comparison.of(outs.tflite, outs.onnxruntime),
                    ort_vs_torch, fp16)
