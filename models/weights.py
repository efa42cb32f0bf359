"""Loading a user's (or a shipped) state_dict into a zoo model, with errors that say what is wrong."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from mobile_export.errors import WeightsError, first_few

# Keys under which training scripts commonly nest the state_dict inside a checkpoint.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights", "model_ema")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def short_reason(e: BaseException, limit: int = 160) -> str:
    """The first line of ``e``'s message without terminal colour codes, cut at a word (with "…")."""
    text = _ANSI.sub("", str(e)).strip()
    line = text.splitlines()[0].strip() if text else ""
    if not line:
        return type(e).__name__
    if len(line) > limit:
        line = line[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return line


def check_weights_file(path: str | os.PathLike) -> Path:
    """``path`` as a regular file (the cheap check run before any work); WeightsError saying what it is otherwise."""
    p = Path(path)
    if p.is_dir():
        raise WeightsError(f"weights '{p}' is a directory; pass the path of a saved state_dict file.")
    if not p.exists():
        raise WeightsError(f"weights file '{p}' does not exist; pass the path of a saved state_dict.")
    if not p.is_file():
        raise WeightsError(f"weights '{p}' is not a regular file; pass the path of a saved state_dict file.")
    return p


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a plain tensor dict from ``path`` with ``torch.load(weights_only=True)``."""
    p = check_weights_file(path)
    try:
        obj: Any = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's unpickler raises anything (KeyError, IndexError, ...) on a non-checkpoint
        reason = short_reason(e)
        raise WeightsError(
            f"weights file '{p}' is not a plain state_dict torch.load(weights_only=True) can read ({reason}); "
            "save it with torch.save(model.state_dict(), PATH)."
        ) from None
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"weights file '{p}' holds a {type(obj).__name__}, not a dict of tensors; "
            "save it with torch.save(model.state_dict(), PATH)."
        )
    # DataParallel / torch.compile prefixes; half-precision storage (tools/pack_checkpoint.py) → float32.
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v.float() if v.dtype in (torch.float16, torch.bfloat16) else v
    return out


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Strictly load ``state_dict``; on mismatch, name the first few offending keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_keys = [k for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    wrong = [f"{k} {tuple(state_dict[k].shape)}≠{tuple(own[k].shape)}" for k in wrong_keys]
    problems = []
    if missing:
        problems.append(f"missing keys {first_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {first_few(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches {first_few(wrong, 3)}")
    if problems:
        hint = ""
        head = list(own)[-1].rsplit(".", 1)[0] + "."  # the classifier: the module of the last entry
        if wrong_keys and all(k.startswith(head) for k in wrong_keys):
            hint = " (a different classifier size needs --num-classes)"
        raise WeightsError(
            f"weights '{source}' do not fit {type(model).__name__}: {'; '.join(problems)}{hint}."
        )
    model.load_state_dict(state_dict, strict=True)
    return model


@torch.no_grad()
def estimate_bn_statistics(model: nn.Module, inputs: torch.Tensor, batch: int = 16) -> nn.Module:
    """Re-estimate BatchNorm running statistics from ``inputs`` (cumulative average, weights untouched).

    Untrained models keep freshly initialised BN statistics (mean 0, var 1), with which activations
    shrink layer after layer until the logits are ~1e-18: useless for checking a conversion.
    Estimating the statistics on real inputs gives well-scaled activations, as a trained model has."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model.eval()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all batches
    model.train()
    try:
        for i in range(0, len(inputs), batch):
            model(inputs[i:i + batch])
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.eval()
    return model
