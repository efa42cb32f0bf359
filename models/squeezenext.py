"""SqueezeNext: two-stage 1x1 squeeze, separable 3x1/1x3 convolutions and residual blocks.

Gholami, Kwon, Wu, Tai, Yue, Jin, Zhao, Keutzer, "SqueezeNext: Hardware-Aware Neural Network
Design", CVPR Workshops 2018, https://arxiv.org/abs/1803.10615. Where the paper's figures leave a
detail open, the authors' Caffe definitions (github.com/amirgholami/SqueezeNext,
``{1.0,2.0}-SqNxt-23{,v5}/train_val.prototxt``) are followed; they differ from some ports:

* block (paper Fig. 2), for a block with C output channels: 1x1 → C/2, 1x1 → C/4, 3x1 → C/2,
  1x3 → C/2, 1x1 → C, every conv followed by BN + ReLU; the sum with the shortcut is followed by
  ReLU. Stages 2–4 halve the resolution in their first block (on its first 1x1 conv and the
  projection, or on the v5 transition conv). Within a stage the separable pair alternates
  3x1→1x3 / 1x3→3x1 from block to block, as in the prototxts;
* SqNxt-23 (blocks [6, 6, 8, 1]): 7x7/2 stem, and the first block of each stage has a parallel
  1x1 (strided) projection shortcut with BN + ReLU;
* SqNxt-23v5 (blocks [2, 4, 14, 1]): 5x5/2 stem, and each stage starts with a 1x1 (strided)
  transition conv + BN + ReLU whose output feeds the first block, which then adds it back
  (identity shortcut) — the "v5" prototxts wire it serially, not in parallel;
* the width multiplier scales the stage channels 32/64/128/256 only: the stem (64 channels) and
  the final 1x1 conv (128 channels) keep their width at 2.0× in the prototxts;
* stem conv unpadded, then 3x3/2 max pooling with Caffe's ceil rounding; global average pooling;
  FC without bias. Convolutions carry no bias (BN + Scale follow each one).

Module layout: ``features`` (``stem``, ``pool``, ``stage1``–``stage4``, ``final``), ``avgpool``,
``classifier``.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ._layers import Conv2dNormActivation, init_weights
from .registry import PaperFigures, register_model

STAGE_CHANNELS: tuple[int, ...] = (32, 64, 128, 256)
STEM_CHANNELS = 64
FINAL_CHANNELS = 128


@dataclass(frozen=True)
class SqueezeNextConfig:
    blocks: tuple[int, int, int, int]
    stem_kernel: int
    serial_projection: bool  # v5: transition conv in front of the first block of a stage


CONFIGS: dict[str, SqueezeNextConfig] = {
    "23": SqueezeNextConfig(blocks=(6, 6, 8, 1), stem_kernel=7, serial_projection=False),
    "23v5": SqueezeNextConfig(blocks=(2, 4, 14, 1), stem_kernel=5, serial_projection=True),
}


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: int = 1):
    return Conv2dNormActivation(in_channels, out_channels, kernel_size, stride=stride, activation_layer=nn.ReLU)


class SqueezeNextBlock(nn.Module):
    """One SqueezeNext block. ``shortcut``: "identity", "parallel" (1x1 projection of the input on
    the side) or "serial" (1x1 transition conv first; the block runs on and adds back its output)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        shortcut: str = "identity",
        vertical_first: bool = True,
    ) -> None:
        super().__init__()
        if shortcut not in ("identity", "parallel", "serial"):
            raise ValueError(f"unknown shortcut {shortcut!r}")
        if shortcut == "identity" and (stride != 1 or in_channels != out_channels):
            raise ValueError("an identity shortcut needs stride 1 and in_channels == out_channels")
        if out_channels % 4:
            raise ValueError(f"out_channels must be a multiple of 4, got {out_channels}")
        self.transition = _conv_bn_relu(in_channels, out_channels, 1, stride) if shortcut == "serial" else None
        self.projection = _conv_bn_relu(in_channels, out_channels, 1, stride) if shortcut == "parallel" else None
        if shortcut == "serial":
            in_channels, stride = out_channels, 1
        half, quarter = out_channels // 2, out_channels // 4
        separable = [(3, 1), (1, 3)] if vertical_first else [(1, 3), (3, 1)]
        self.branch = nn.Sequential(
            _conv_bn_relu(in_channels, half, 1, stride),
            _conv_bn_relu(half, quarter, 1),
            _conv_bn_relu(quarter, half, separable[0]),
            _conv_bn_relu(half, half, separable[1]),
            _conv_bn_relu(half, out_channels, 1),
        )
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transition is not None:
            x = self.transition(x)
        identity = self.projection(x) if self.projection is not None else x
        return self.relu(self.branch(x) + identity)


class SqueezeNext(nn.Module):
    def __init__(self, num_classes: int = 1000, version: str = "23", width_mult: float = 1.0) -> None:
        super().__init__()
        if version not in CONFIGS:
            raise ValueError(f"version must be one of {sorted(CONFIGS)}, got {version!r}")
        cfg = CONFIGS[version]
        features: OrderedDict[str, nn.Module] = OrderedDict()
        features["stem"] = Conv2dNormActivation(
            3, STEM_CHANNELS, cfg.stem_kernel, stride=2, padding=0, activation_layer=nn.ReLU
        )
        features["pool"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        in_channels = STEM_CHANNELS
        for idx, (repeats, c) in enumerate(zip(cfg.blocks, STAGE_CHANNELS)):
            out_channels = int(c * width_mult)
            blocks: list[nn.Module] = []
            for i in range(repeats):
                if i == 0:
                    shortcut = "serial" if cfg.serial_projection else "parallel"
                else:
                    shortcut = "identity"
                blocks.append(
                    SqueezeNextBlock(
                        in_channels, out_channels,
                        stride=2 if (i == 0 and idx > 0) else 1,
                        shortcut=shortcut,
                        vertical_first=i % 2 == 0,
                    )
                )
                in_channels = out_channels
            features[f"stage{idx + 1}"] = nn.Sequential(*blocks)
        features["final"] = _conv_bn_relu(in_channels, FINAL_CHANNELS, 1)
        self.features = nn.Sequential(features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(FINAL_CHANNELS, num_classes, bias=False)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def squeezenext(*, num_classes: int = 1000, **kwargs: Any) -> SqueezeNext:
    return SqueezeNext(num_classes=num_classes, **kwargs)


_SRC = "Gholami et al. 2018 (arXiv:1803.10615)"
_GEOMETRY = (
    "MACs: the published 282M (1.0-SqNxt-23) is reproduced (281.9M) by this definition only on an "
    "idealised 112/56/28/14/7 feature-map geometry, which the paper evidently counted. The "
    "authors' prototxt has an unpadded {k}x{k}/2 stem, so a 224 input gives {geo} maps; the figure "
    "recorded is this definition's count at 224 ({macs}; {m227} at the prototxt's 227 crop)."
)
# name, version, width, params, MACs at 224 (nearest 0.1M), source text
_VARIANTS: tuple[tuple[str, str, float, int, int, str], ...] = (
    (
        "squeezenext23_x1_0", "23", 1.0, 720_000, 269_000_000,
        f"{_SRC} Table 1, 1.0-SqNxt-23: 0.72M parameters, 282M MACs (this definition: 717,280). "
        + _GEOMETRY.format(k=7, geo="109/54/27/14/7", macs="268,976,832", m227="278.0M"),
    ),
    (
        "squeezenext23_x2_0", "23", 2.0, 2_360_000, 719_100_000,
        f"{_SRC}, 2.0-SqNxt-23: 2.36M parameters as quoted in the zoo brief (not re-read from the paper "
        "text here); the authors' 2.0-SqNxt-23 prototxt, defined here, counts 2,361,728. "
        + _GEOMETRY.format(k=7, geo="109/54/27/14/7", macs="719,066,816", m227="742.1M")
        + " No published MAC figure for this variant was verified; the prototxt-derived count is used.",
    ),
    (
        "squeezenext23v5_x1_0", "23v5", 1.0, 940_000, 222_000_000,
        f"{_SRC}, 1.0-SqNxt-23v5: 0.94M parameters as quoted in the zoo brief (not re-read from the paper "
        "text here); the authors' 1.0-SqNxt-23v5 prototxt, defined here, counts 930,016 (-1.1%). "
        + _GEOMETRY.format(k=5, geo="110/55/28/14/7", macs="222,046,464", m227="224.9M")
        + " No published MAC figure for this variant was verified; the prototxt-derived count is used.",
    ),
    (
        "squeezenext23v5_x2_0", "23v5", 2.0, 3_230_000, 698_000_000,
        f"{_SRC}, 2.0-SqNxt-23v5: 3.23M parameters (the abstract's '1.3x fewer parameters than MobileNet' "
        "[4.2M]); the authors' 2.0-SqNxt-23v5 prototxt, defined here, counts 3,222,912. "
        + _GEOMETRY.format(k=5, geo="110/55/28/14/7", macs="697,960,192", m227="702.6M")
        + " No published MAC figure for this variant was verified; the prototxt-derived count is used.",
    ),
)

for _name, _version, _width, _params, _macs, _source in _VARIANTS:
    register_model(
        _name,
        family="squeezenext",
        builder_kwargs={"version": _version, "width_mult": _width},
        min_input_size=32,
        paper=PaperFigures(params=_params, macs=_macs, source=_source),
        description=f"{_width:.1f}-SqNxt-{_version}, 224x224.",
    )(squeezenext)
