"""The reference model zoo: faithful PyTorch definitions registered by name.

>>> from mobile_export.models import list_models, get_model
>>> model = get_model("mobilenet_v3_small", num_classes=10)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from . import registry as _registry
from .counts import COUNTS
from .profile import count_macs, count_params
from .registry import (
    DEFAULT_REGISTRY,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelConfig,
    ModelSpec,
    PaperFigures,
    Registry,
    WeightsSpec,
    get_spec,
    list_models,
    register_model,
)
from .weights import check_weights_file, estimate_bn_statistics, load_into, read_state_dict

# Importing a family module registers its models; the shipped checkpoints register after them.
from . import efficientnet, espnetv2, fbnet, ghostnet, mobilenet_v1, mobilenet_v2, mobilenet_v3, shufflenet_v1, shufflenet_v2, squeezenet, squeezenext  # noqa: E402,F401,E501  # isort: skip
from . import shipped  # noqa: E402,F401  # isort: skip


def configure(
    name: str,
    *,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
) -> ModelConfig:
    """Resolve a model name plus options into the settings of one export."""
    spec = get_spec(name)
    registered = str(weights) if weights is not None and str(weights) in spec.weights else None
    cfg = spec.configure(weights=registered, num_classes=num_classes, input_size=input_size)
    if weights is not None and registered is None:
        cfg = _replace(cfg, weights=str(weights))
    return cfg


def _replace(cfg: ModelConfig, **kw) -> ModelConfig:
    return dataclasses.replace(cfg, **kw)


def build_model(config: ModelConfig) -> nn.Module:
    """Build ``config``'s model in eval mode, loading its weights if it names any."""
    model = _registry.build(config)
    if config.weights_spec is not None:
        load_into(model, read_state_dict(config.weights_spec.path), config.weights_spec.name)
    elif config.weights is not None:
        load_into(model, read_state_dict(config.weights), config.weights)
    return model.eval()


def get_model(
    name: str,
    *,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    **builder_overrides,
) -> nn.Module:
    """Build a registered model (eval mode). ``weights`` is a registered weights name such as
    ``"cifar10"`` or the path of a state_dict; ``builder_overrides`` change builder arguments."""
    cfg = configure(name, weights=weights, num_classes=num_classes)
    if builder_overrides:
        spec = cfg.spec
        cfg = _replace(cfg, spec=_replace_spec(spec, builder_overrides))
    return build_model(cfg)


@dataclass(frozen=True)
class ModelRow:
    """One registered model as ``mobile-export list`` prints it."""

    name: str
    family: str
    input_size: int
    params: int
    macs: int  # at input_size
    weights: tuple[str, ...]


def describe(family: str | None = None) -> list[ModelRow]:
    """One row per registered model (of ``family``): name, family, input size, parameters, MACs
    at that input size (spec data: ``counts.COUNTS``, checked against built models by the zoo
    test), and the registered weights — what ``mobile-export list`` prints."""
    rows = []
    for name in list_models(family):
        spec = get_spec(name)
        params, macs = COUNTS[name]
        rows.append(ModelRow(name, spec.family, spec.input_size, params, macs, tuple(spec.weights)))
    return rows


def _replace_spec(spec: ModelSpec, overrides: dict) -> ModelSpec:
    return dataclasses.replace(spec, builder_kwargs={**spec.builder_kwargs, **overrides})


__all__ = [
    "DEFAULT_REGISTRY", "IMAGENET_MEAN", "IMAGENET_STD", "ModelConfig", "ModelRow", "ModelSpec", "PaperFigures",
    "Registry", "WeightsSpec", "build_model", "check_weights_file", "configure", "describe", "estimate_bn_statistics", "count_macs", "count_params", "get_model",
    "get_spec", "list_models", "load_into", "read_state_dict", "register_model",
]
