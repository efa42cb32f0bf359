"""Each runtime's outputs on the same inputs, run once per command: PyTorch (the reference),
onnxruntime (``model.onnx``) and TFLite with XNNPACK (the artifact), all from NCHW inputs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from mobile_export.metrics import as_output
from mobile_export.reference import run_torch


@dataclass(frozen=True)
class Outputs:
    """Each runtime's outputs on the same inputs (the artifact's output kind: logits or probabilities)."""

    torch: np.ndarray
    onnxruntime: np.ndarray
    tflite: np.ndarray


def _batched(fn, x: np.ndarray, batch: int, desc: str) -> np.ndarray:
    outs = []
    for i in tqdm(range(0, len(x), batch), desc=desc, unit="batch", leave=False,
                  disable=None if len(x) > batch else True):
        outs.append(np.asarray(fn(x[i:i + batch])))
    return np.concatenate(outs)


def run_ort(sess, x: np.ndarray, input_name: str, batch: int) -> np.ndarray:
    """A session's first output over ``x`` in slices of the graph's batch size."""
    return _batched(lambda b: sess.run(None, {input_name: b.astype(np.float32)})[0], x, batch, "onnxruntime")


def run_tflite(tfl, x: np.ndarray) -> np.ndarray:
    """``tfl`` (a ``runtimes.host.TFLiteModel``) over NCHW inputs."""
    b = tfl.inputs[0].shape[0]
    return _batched(lambda c: tfl.run(np.ascontiguousarray(c.transpose(0, 2, 3, 1))), x, 16 * b, "TFLite")


def run_all(model: torch.nn.Module, loaded, x: np.ndarray, input_name: str) -> Outputs:
    """PyTorch, onnxruntime and the artifact (XNNPACK, 1 thread) on NCHW inputs ``x``, once each."""
    kind = loaded.output_kind  # probabilities: compare with the references' softmax
    ort_out = run_ort(loaded.ort(1), x, input_name, loaded.batch)
    return Outputs(as_output(run_torch(model, x), kind), as_output(ort_out, kind), run_tflite(loaded.xnnpack(1), x))
