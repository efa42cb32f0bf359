"""The PyTorch reference of an export, built the one way export and validate both use, and the
inputs of the export's built-in fidelity check.

It sits above ``models`` and ``calibration`` (an untrained reference estimates its BatchNorm
statistics on real images of the embedded set), so ``models`` keeps importing only torch.
"""
from __future__ import annotations

import numpy as np
import torch

from mobile_export.calibration import load_calibration
from mobile_export.models import ModelConfig, build_model, estimate_bn_statistics


def check_inputs(config: ModelConfig, count: int, seed: int) -> np.ndarray:
    """Inputs for the built-in fidelity check: seeded normal noise in the normalized input space
    plus real images from the embedded default set (so real activation statistics are exercised)."""
    rng = np.random.default_rng(seed)
    n_rand = max(1, count // 2)
    x = [rng.standard_normal((n_rand, *config.input_shape_nchw[1:]), dtype=np.float32)]
    if count > n_rand:
        x.append(load_calibration(None, config, num=count - n_rand, seed=seed).inputs)
    return np.concatenate(x).astype(np.float32)


def build_reference(config: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """The model in eval mode: weights loaded when ``config`` names any; otherwise random weights
    drawn after ``torch.manual_seed(seed)`` and BN statistics estimated on
    ``check_inputs(config, 32, seed + 1)`` (so activations are well scaled). The caller's torch RNG
    state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config)
        if config.weights is None:
            estimate_bn_statistics(model, torch.from_numpy(check_inputs(config, 32, seed + 1)))
    return model.eval()


def run_torch(model: torch.nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """The reference's outputs on NCHW inputs ``x``, in batches, without gradients."""
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])
