"""MobileNetV1: a 3x3 stem followed by 13 depthwise-separable convolutions.

Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam, "MobileNets: Efficient
Convolutional Neural Networks for Mobile Vision Applications", 2017,
https://arxiv.org/abs/1704.04861. ``LAYERS`` below is the paper's Table 1 (the last depthwise
layer's "s2" in Table 1 is a known typo: the feature map stays 7x7, as in the authors' TF-slim
reference ``mobilenet_v1.py``, so it has stride 1).

Every layer is conv → BatchNorm → ReLU6 (the TF-slim reference; the paper writes ReLU, which
changes no shape or count). The width multiplier α scales every channel count as ``int(c·α)``
(paper §3.2, Table 6), giving 32/64/…/1024 channels at α=1 and 8/16/…/256 at α=0.25. The head is
global average pooling → dropout → fully connected (Table 1's "Avg Pool 7x7, FC 1000").

Module layout: ``features`` (stem ``Conv2dNormActivation`` then 13 ``DepthwiseSeparable`` blocks),
``avgpool``, ``classifier`` (Dropout → Linear).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ._layers import Conv2dNormActivation, init_weights
from .registry import PaperFigures, register_model

# Paper Table 1: the stem (3x3 conv, stride 2, 32 filters), then (output channels, stride) of each
# depthwise-separable block — the stride is the depthwise conv's, the pointwise conv has stride 1.
STEM_CHANNELS = 32
LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + BN + ReLU6 → 1x1 pointwise conv + BN + ReLU6 (paper Fig. 3, right)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        self.depthwise = Conv2dNormActivation(
            in_channels, in_channels, kernel_size=3, stride=stride, groups=in_channels,
            activation_layer=nn.ReLU6,
        )
        self.pointwise = Conv2dNormActivation(in_channels, out_channels, kernel_size=1, activation_layer=nn.ReLU6)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetV1(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.001,
        min_channels: int = 8,
    ) -> None:
        """``dropout`` defaults to the TF-slim reference's keep probability of 0.999.
        ``min_channels`` is the reference's ``min_depth`` floor (never reached for α ≥ 0.25)."""
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")

        def scaled(c: int) -> int:
            return max(int(c * width_mult), min_channels)

        in_channels = scaled(STEM_CHANNELS)
        layers: list[nn.Module] = [
            Conv2dNormActivation(3, in_channels, kernel_size=3, stride=2, activation_layer=nn.ReLU6)
        ]
        for c, s in LAYERS:
            out_channels = scaled(c)
            layers.append(DepthwiseSeparable(in_channels, out_channels, s))
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.last_channel = in_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(in_channels, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


_SRC = "Howard et al. 2017 (arXiv:1704.04861)"


def mobilenet_v1(*, num_classes: int = 1000, **kwargs: Any) -> MobileNetV1:
    return MobileNetV1(num_classes=num_classes, **kwargs)


# name → registry fields (the family's spec table)
SPECS = {
    "mobilenet_v1_x0_25": dict(
        builder_kwargs={"width_mult": 0.25},
        paper=PaperFigures(
            params=470_072,
            macs=41_000_000,
            source=(
                f"{_SRC} Table 6, 0.25 MobileNet-224: 41M mult-adds, 0.5M parameters. The paper rounds "
                "parameters to 0.1M; the exact count of its Table 1 architecture at α=0.25 (conv weights, "
                "BN affine, FC weights+bias) is 470,072, which rounds to the published 0.5M and equals "
                "osmr/imgclsmob's mobilenet_wd4 (470,072). The rounded 0.5M itself is 6% off, so the exact "
                "figure is recorded."
            ),
        ),
        description="MobileNetV1, width multiplier 0.25, 224x224.",
    ),
    "mobilenet_v1_x0_5": dict(
        builder_kwargs={"width_mult": 0.5},
        paper=PaperFigures(
            params=1_300_000,
            macs=149_000_000,
            source=f"{_SRC} Table 6/7, 0.50 MobileNet-224: 149M mult-adds, 1.3M parameters.",
        ),
        description="MobileNetV1, width multiplier 0.5, 224x224.",
    ),
    "mobilenet_v1_x0_75": dict(
        builder_kwargs={"width_mult": 0.75},
        paper=PaperFigures(
            params=2_600_000,
            macs=325_000_000,
            source=f"{_SRC} Table 6, 0.75 MobileNet-224: 325M mult-adds, 2.6M parameters.",
        ),
        description="MobileNetV1, width multiplier 0.75, 224x224.",
    ),
    "mobilenet_v1": dict(
        builder_kwargs={"width_mult": 1.0},
        paper=PaperFigures(
            params=4_200_000,
            macs=569_000_000,
            source=f"{_SRC} Tables 1/4/6, 1.0 MobileNet-224: 569M mult-adds, 4.2M parameters.",
        ),
        description="MobileNetV1 (width multiplier 1.0), 224x224.",
    ),
}

for _name, _fields in SPECS.items():
    register_model(_name, family="mobilenet_v1", min_input_size=32, **_fields)(mobilenet_v1)
