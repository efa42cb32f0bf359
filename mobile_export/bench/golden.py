"""Weights filled by the torchvision-golden recipe (``fill.py`` of a torchvision-golden folder): the
deterministic, torchvision-like weights the ARM benchmark and the peers' figures were measured with,
so rows compare converters, not weights. The recipe is the folder's own script, loaded from the path
the user gives (``--golden DIR``): nothing is downloaded."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from mobile_export.errors import UserError
from mobile_export.models import get_model

GOLDEN_ENV = "MOBILE_EXPORT_GOLDEN"  # default torchvision-golden folder


def golden_dir(path: str | os.PathLike | None) -> Path:
    """The torchvision-golden folder: ``path``, else ``$MOBILE_EXPORT_GOLDEN``; UserError without fill.py."""
    raw = path if path is not None else os.environ.get(GOLDEN_ENV)
    if raw is None:
        raise UserError(f"--golden needs the torchvision-golden folder (with fill.py): pass --golden DIR or set "
                        f"${GOLDEN_ENV}.")
    folder = Path(raw)
    if not (folder / "fill.py").is_file():
        raise UserError(f"{folder} has no fill.py; pass the torchvision-golden folder to --golden.")
    return folder


def golden_weights(name: str, out: Path, folder: Path) -> Path:
    """``name``'s state_dict filled by ``folder``'s recipe, saved once under ``out``."""
    path = out / f"{name}_golden.pt"
    if not path.is_file():
        spec = importlib.util.spec_from_file_location("tv_golden_fill", folder / "fill.py")
        fill = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fill)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(fill.fill_state_dict(get_model(name).state_dict()), path)
    return path
