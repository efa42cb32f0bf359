"""torch → ONNX → onnxsim, and the onnxruntime cross-check against PyTorch.

We use the TorchScript exporter (``dynamo=False``): it is fast, needs no onnxscript, writes a single
self-contained file, and in eval mode folds BatchNorm into the preceding convolution.
"""
from __future__ import annotations

import copy
import io
import logging
import warnings

import numpy as np
import onnx
import onnxsim
import torch
import torch.nn as nn

from mobile_export import fidelity
from mobile_export.errors import ConversionError, FidelityError
from mobile_export.runtimes.onnxruntime import run_onnxruntime

log = logging.getLogger(__name__)


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    input_name: str,
    output_name: str,
    opset: int = 17,
) -> onnx.ModelProto:
    """Export ``model`` (eval mode) at a fixed input shape and simplify it with onnxsim."""
    model = model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(input_shape),),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[output_name],
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    return simplify(proto)


def simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    try:
        simplified, ok = onnxsim.simplify(proto)
    except Exception as e:  # onnxsim raises plain RuntimeErrors
        raise ConversionError(f"onnxsim failed to simplify the exported graph: {e}") from e
    if not ok:
        raise ConversionError("onnxsim could not validate the simplified graph against the original.")
    return simplified


def float32_noise(model: nn.Module, inputs: np.ndarray) -> float:
    """How far PyTorch's own float32 result is from a float64 run of the same model (max error
    relative to the largest |output|): no float32 implementation can be held closer than this."""
    with torch.no_grad():
        y32 = model.eval()(torch.from_numpy(inputs)).double()
        y64 = copy.deepcopy(model).double().eval()(torch.from_numpy(inputs).double())
    return float((y32 - y64).abs().max() / y64.abs().max().clamp_min(1e-30))


def check_onnx_against_torch(proto: onnx.ModelProto, model: nn.Module, inputs: np.ndarray, input_name: str,
                             sessions=None) -> dict:
    """Raise when onnxruntime's outputs differ from PyTorch's by more than ``fidelity.ONNX_MAX_REL``
    relative to the largest |output| — or, for ill-conditioned weights, more than
    ``fidelity.noise_allowance`` of PyTorch's own float32 noise. ``sessions``: the command's
    ``runtimes.onnxruntime.Sessions``, so the check's session is the one later stages reuse."""
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(inputs)).numpy()
    got = run_onnxruntime(proto, inputs, input_name, sessions)
    scale = max(float(np.abs(ref).max()), 1e-12)
    rel = float(np.abs(got - ref).max()) / scale
    noise = float32_noise(model, inputs)
    allowed = fidelity.relaxed_max_rel(fidelity.ONNX_MAX_REL, noise)
    log.info("onnxruntime vs PyTorch: max error %.2e relative to max |logit| (allowed %.1e)", rel, allowed)
    if rel > allowed:
        raise FidelityError(
            f"the ONNX export differs from PyTorch by {rel:.2e} (relative), above {allowed:.1e}; "
            "the model uses an op the exporter does not translate faithfully."
        )
    return {"max_abs": float(np.abs(got - ref).max()), "max_rel": rel, "float32_noise": noise,
            "allowed_max_rel": allowed}
