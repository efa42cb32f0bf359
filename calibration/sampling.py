"""Sampling helpers every calibration source shares: the sample count check, the seeded choice of
samples, and the warning when a source holds fewer than asked for."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mobile_export.errors import CalibrationError

log = logging.getLogger("mobile_export.calibration")


def check_num(num: Any) -> int:
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise CalibrationError(f"the number of calibration samples must be a positive integer, got {num!r}.")
    return int(num)


def sample_indices(available: int, num: int, seed: int) -> np.ndarray:
    """The first ``num`` of a seeded permutation of ``range(available)``."""
    return np.random.default_rng(seed).permutation(available)[:num]


def fewer_warning(num: int, available: int, what: str, noun: str = "calibration samples") -> list[str]:
    """The warning recorded when a source holds fewer samples than asked for (also logged)."""
    if available >= num:
        return []
    msg = f"asked for {num} {noun} but {what} holds only {available}; using all {available}."
    log.warning(msg)
    return [msg]
