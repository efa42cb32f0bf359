"""Model registry: one typed spec per registered name, the single source of truth for a model's
I/O names, default input size, normalization, class count and labels.

Modelled on torchvision.models: ``register_model`` (refuses duplicates), ``get_model``,
``list_models``. The converter, calibration, validator and manifest read ``ModelSpec`` /
``ModelConfig`` and nothing else.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch.nn as nn

from mobile_export.errors import DuplicateModelError, InvalidOptionError, UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class PaperFigures:
    """Published figures a reference definition is checked against (at the default input size)."""

    params: int | None = None  # exact (torchvision) or paper figure
    macs: int | None = None  # multiply-accumulates at the default input size
    params_exact: bool = False  # True: must match exactly (torchvision); else within tolerance
    source: str = ""
    macs_tolerance: float = 0.03  # wider only where ``source`` says why the published figure is not matched


@dataclass(frozen=True)
class WeightsSpec:
    """A checkpoint shipped with (or registered into) the zoo, e.g. ``cifar10``."""

    name: str
    path: str
    num_classes: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: tuple[str, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    builder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    input_size: int = 224
    min_input_size: int = 32  # smallest size the strides/pools accept
    in_channels: int = 3
    num_classes: int = 1000
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    labels: tuple[str, ...] | None = None
    torchvision_name: str | None = None  # same keys/structure as this torchvision model
    paper: PaperFigures = PaperFigures()
    description: str = ""
    weights: Mapping[str, WeightsSpec] = field(default_factory=dict)

    def configure(
        self,
        *,
        weights: str | None = None,
        num_classes: int | None = None,
        input_size: int | None = None,
    ) -> "ModelConfig":
        """Resolve the effective settings of one export: registered weights override defaults,
        explicit options override both."""
        wspec = self.weights.get(weights) if weights else None
        nc = num_classes if num_classes is not None else (wspec.num_classes if wspec else self.num_classes)
        size = input_size if input_size is not None else (wspec.input_size if wspec else self.input_size)
        if not isinstance(nc, int) or isinstance(nc, bool) or nc < 1:
            raise InvalidOptionError(f"--num-classes must be a positive integer, got {nc!r}.")
        if not isinstance(size, int) or isinstance(size, bool):
            raise InvalidOptionError(f"--input-size must be an integer, got {size!r}.")
        if size < self.min_input_size or size > 1024:
            raise InvalidOptionError(
                f"--input-size {size} does not suit {self.name}: use a size between "
                f"{self.min_input_size} and 1024 (the network's strides need at least {self.min_input_size})."
            )
        labels = wspec.labels if wspec else self.labels
        if labels is not None and len(labels) != nc:
            labels = None
        return ModelConfig(
            spec=self,
            num_classes=nc,
            input_size=size,
            mean=wspec.mean if wspec else self.mean,
            std=wspec.std if wspec else self.std,
            labels=labels,
            weights=weights,
            weights_spec=wspec,
        )


@dataclass(frozen=True)
class ModelConfig:
    """A spec resolved for one export: what the converter, manifest and validator read."""

    spec: ModelSpec
    num_classes: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: tuple[str, ...] | None
    weights: str | None = None  # a registered weights name or a path
    weights_spec: WeightsSpec | None = None
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_shape_nchw(self) -> tuple[int, int, int, int]:
        return (1, self.spec.in_channels, self.input_size, self.input_size)

    @property
    def input_shape_nhwc(self) -> tuple[int, int, int, int]:
        return (1, self.input_size, self.input_size, self.spec.in_channels)

    def preprocessing(self) -> dict[str, Any]:
        return {
            "input_size": [self.input_size, self.input_size],
            "resize": "shorter side to input_size / 0.875, centre crop" if self.input_size >= 64
            else "resize to input_size",
            "value_range": [0.0, 1.0],
            "mean": list(self.mean),
            "std": list(self.std),
            "layout": "NHWC",
            "channel_order": "RGB",
        }


class Registry:
    """A name → ModelSpec table. ``DEFAULT_REGISTRY`` holds the zoo; tests may build their own."""

    def __init__(self) -> None:
        self._specs: dict[str, ModelSpec] = {}

    def add(self, spec: ModelSpec) -> ModelSpec:
        if spec.name in self._specs:
            raise DuplicateModelError(spec.name)
        self._specs[spec.name] = spec
        return spec

    def add_weights(self, model: str, weights: WeightsSpec) -> None:
        spec = self.get(model)
        if weights.name in spec.weights:
            raise DuplicateModelError(f"{model} weights {weights.name}")
        self._specs[model] = dataclasses.replace(spec, weights={**spec.weights, weights.name: weights})

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownModelError(name, self._specs) from None

    def names(self, family: str | None = None) -> list[str]:
        return sorted(n for n, s in self._specs.items() if family is None or s.family == family)

    def families(self) -> list[str]:
        return sorted({s.family for s in self._specs.values()})


DEFAULT_REGISTRY = Registry()


def register_model(
    name: str | None = None,
    *,
    family: str,
    registry: Registry = DEFAULT_REGISTRY,
    **spec_fields: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder ``fn(*, num_classes, **builder_kwargs) -> nn.Module``.

    ``name`` defaults to the function name; ``builder_kwargs`` selects a variant, so one builder
    can be registered under several names: each family file keeps its variants in a ``SPECS`` table
    (name → fields, as timm's ``default_cfgs``) and registers them in a loop."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        registry.add(ModelSpec(name=name or fn.__name__, family=family, builder=fn, **spec_fields))
        return fn

    return deco


def get_spec(name: str, registry: Registry = DEFAULT_REGISTRY) -> ModelSpec:
    return registry.get(name)


def list_models(family: str | None = None, registry: Registry = DEFAULT_REGISTRY) -> list[str]:
    return registry.names(family)


def build(config: ModelConfig) -> nn.Module:
    """An untrained (randomly initialised) model of ``config``, in eval mode."""
    spec = config.spec
    model = spec.builder(num_classes=config.num_classes, **spec.builder_kwargs)
    return model.eval()
