"""EfficientNet-B0 (torchvision's module layout and parameter names) and EfficientNet-Lite0.

Tan, Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019,
https://arxiv.org/abs/1905.11946 (Table 1 is the B0 stage table below). EfficientNet-Lite (the
TensorFlow TPU repository's mobile variant, 2020): the same stages with ReLU6 instead of SiLU, no
squeeze-and-excitation, and a stem (32) and head (1280) that are not scaled.

``features`` holds the stem, the seven MBConv stages (each an ``nn.Sequential`` of blocks) and the
1x1 head conv; ``avgpool``; ``classifier`` is Dropout(0.2) → Linear. An MBConv block is expand 1x1
(when the ratio is not 1) → depthwise k×k → squeeze-and-excitation (``fc1``/``fc2`` 1x1 convs, SiLU,
Sigmoid gate; B0 only) → linear 1x1 projection, with a residual when shapes allow (stochastic depth
is the identity at inference and has no parameters). A torchvision ``efficientnet_b0`` checkpoint
loads with ``strict=True``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from ._layers import Conv2dNormActivation, make_divisible
from .mobilenet_v3 import SqueezeExcitation
from .registry import PaperFigures, register_model


@dataclass(frozen=True)
class MBConvConfig:
    """One stage of Table 1: expansion ratio, kernel, stride of its first block, channels, blocks."""

    expand_ratio: int
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int


# Table 1 (B0): stage 2..8 of the paper (stage 1 is the stem, stage 9 the head)
B0_STAGES = (
    MBConvConfig(1, 3, 1, 32, 16, 1),
    MBConvConfig(6, 3, 2, 16, 24, 2),
    MBConvConfig(6, 5, 2, 24, 40, 2),
    MBConvConfig(6, 3, 2, 40, 80, 3),
    MBConvConfig(6, 5, 1, 80, 112, 3),
    MBConvConfig(6, 5, 2, 112, 192, 4),
    MBConvConfig(6, 3, 1, 192, 320, 1),
)


class MBConv(nn.Module):
    """Expand → depthwise → (SE) → project, residual when stride 1 and widths agree."""

    def __init__(self, cnf: MBConvConfig, stride: int, in_ch: int, activation: Callable[..., nn.Module],
                 norm_layer: Callable[..., nn.Module], se: bool) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_ch == cnf.out_channels
        expanded = make_divisible(in_ch * cnf.expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded != in_ch:
            layers.append(Conv2dNormActivation(in_ch, expanded, kernel_size=1, norm_layer=norm_layer,
                                               activation_layer=activation))
        layers.append(Conv2dNormActivation(expanded, expanded, kernel_size=cnf.kernel, stride=stride,
                                           groups=expanded, norm_layer=norm_layer, activation_layer=activation))
        if se:
            layers.append(SqueezeExcitation(expanded, max(1, in_ch // 4), activation=nn.SiLU,
                                            scale_activation=nn.Sigmoid))
        layers.append(Conv2dNormActivation(expanded, cnf.out_channels, kernel_size=1, norm_layer=norm_layer,
                                           activation_layer=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res_connect else y


class EfficientNet(nn.Module):
    def __init__(self, stages=B0_STAGES, *, num_classes: int = 1000, lite: bool = False, dropout: float = 0.2,
                 last_channel: int = 1280) -> None:
        super().__init__()
        activation = nn.ReLU6 if lite else nn.SiLU
        norm_layer = nn.BatchNorm2d
        layers: list[nn.Module] = [Conv2dNormActivation(3, stages[0].input_channels, kernel_size=3, stride=2,
                                                        norm_layer=norm_layer, activation_layer=activation)]
        for cnf in stages:
            blocks = [MBConv(cnf, cnf.stride if i == 0 else 1, cnf.input_channels if i == 0 else cnf.out_channels,
                             activation, norm_layer, se=not lite) for i in range(cnf.num_layers)]
            layers.append(nn.Sequential(*blocks))
        layers.append(Conv2dNormActivation(stages[-1].out_channels, last_channel, kernel_size=1,
                                           norm_layer=norm_layer, activation_layer=activation))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last_channel, num_classes))
        for m in self.modules():  # torchvision's EfficientNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                r = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -r, r)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def efficientnet(*, num_classes: int = 1000, lite: bool = False, **kwargs: Any) -> EfficientNet:
    return EfficientNet(B0_STAGES, num_classes=num_classes, lite=lite, **kwargs)


# name → registry fields (the family's spec table)
SPECS = {
    "efficientnet_b0": dict(
        builder_kwargs={"lite": False}, torchvision_name="efficientnet_b0",
        paper=PaperFigures(params=5_288_548, macs=390_000_000, params_exact=True,
                           source="params: torchvision efficientnet_b0 state_dict (paper Table 2: 5.3M); MACs: "
                                  "paper Table 2, 0.39B FLOPs (mult-adds)"),
        description="EfficientNet-B0 (torchvision-compatible), SiLU, squeeze-and-excitation.",
    ),
    "efficientnet_lite0": dict(
        builder_kwargs={"lite": True},
        paper=PaperFigures(params=4_652_008, macs=407_000_000, params_exact=True, macs_tolerance=0.06,
                           source="EfficientNet-Lite README (TensorFlow TPU repository): Lite0 4.7M params, 407M "
                                  "MAdds; params exact: timm / keras-hub efficientnet_lite0 (4,652,008). The 407M is "
                                  "not matched: convs + FC of this (timm-identical) network count 385.19M (-5.4%), "
                                  "below B0's own 385.81M, so the README counts something else as well"),
        description="EfficientNet-Lite0: B0's stages with ReLU6, no SE, fixed stem and head.",
    ),
}

for _name, _fields in SPECS.items():
    register_model(_name, family="efficientnet", min_input_size=32, **_fields)(efficientnet)
