"""GhostNet 1.0x: Ghost modules and Ghost bottlenecks.

Han, Wang, Tian, Guo, Xu, Xu, "GhostNet: More Features from Cheap Operations", CVPR 2020,
https://arxiv.org/abs/1911.11907 (Table 1 is the bottleneck table ``CFGS`` below, in the layout of
the authors' release, huawei-noah/Efficient-AI-Backbones ``ghostnet_pytorch/ghostnet.py``).

A Ghost module (paper Fig. 2b, ratio s = 2, d = 3) is a primary 1x1 conv + BN (+ ReLU) producing
ceil(out/2) intrinsic maps, a cheap depthwise 3x3 conv + BN (+ ReLU) producing as many ghost maps
from them, the two concatenated and sliced to ``out`` channels. A Ghost bottleneck (Fig. 3) is
Ghost module (ReLU) → [depthwise k×k stride-2 conv + BN when downsampling] → [squeeze-and-excitation:
reduce to make_divisible(c/4, 4), ReLU, hard-sigmoid gate] → Ghost module (linear), plus the input:
identity, or depthwise k×k (stride) + BN → 1x1 conv + BN when the shape changes.

Network: stem 3x3/2 conv (16) + BN + ReLU → ``blocks`` (the nine stage groups of ``CFGS`` and a 1x1
conv + BN + ReLU to 960) → global average pool → ``conv_head`` 1x1 (1280, with bias) + ReLU →
Dropout(0.2) → ``classifier``. Module names follow the authors' release except inside the SE
(``fc1``/``fc2`` of the zoo's shared ``SqueezeExcitation`` instead of ``conv_reduce``/``conv_expand``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ._layers import Conv2dNormActivation, init_weights, make_divisible
from .mobilenet_v3 import SqueezeExcitation
from .registry import PaperFigures, register_model


@dataclass(frozen=True)
class GhostConfig:
    """One row of Table 1: depthwise kernel, hidden (#exp) and output channels, SE ratio, stride."""

    kernel: int
    hidden: int
    out: int
    se_ratio: float
    stride: int


_G = GhostConfig
# Table 1, grouped into stages as in the authors' release (each inner tuple one ``nn.Sequential``).
CFGS: tuple[tuple[GhostConfig, ...], ...] = (
    (_G(3, 16, 16, 0, 1),),
    (_G(3, 48, 24, 0, 2),),
    (_G(3, 72, 24, 0, 1),),
    (_G(5, 72, 40, 0.25, 2),),
    (_G(5, 120, 40, 0.25, 1),),
    (_G(3, 240, 80, 0, 2),),
    (_G(3, 200, 80, 0, 1), _G(3, 184, 80, 0, 1), _G(3, 184, 80, 0, 1), _G(3, 480, 112, 0.25, 1),
     _G(3, 672, 112, 0.25, 1)),
    (_G(5, 672, 160, 0.25, 2),),
    (_G(5, 960, 160, 0, 1), _G(5, 960, 160, 0.25, 1), _G(5, 960, 160, 0, 1), _G(5, 960, 160, 0.25, 1)),
)
STEM_CHANNELS = 16
HEAD_CHANNELS = 1280


class GhostModule(nn.Module):
    """Primary 1x1 conv → cheap depthwise conv on its output; concatenated, sliced to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True, ratio: int = 2,
                 dw_size: int = 3) -> None:
        super().__init__()
        self.out_channels = out_channels
        init_channels = math.ceil(out_channels / ratio)
        act = nn.ReLU if relu else None
        self.primary_conv = Conv2dNormActivation(in_channels, init_channels, kernel_size=1, activation_layer=act)
        self.cheap_operation = Conv2dNormActivation(init_channels, init_channels * (ratio - 1), kernel_size=dw_size,
                                                    groups=init_channels, activation_layer=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        out = torch.cat([x1, self.cheap_operation(x1)], dim=1)
        return out[:, : self.out_channels]


def _shortcut(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Module:
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, kernel_size=kernel, stride=stride, groups=in_channels,
                             activation_layer=None),
        Conv2dNormActivation(in_channels, out_channels, kernel_size=1, activation_layer=None),
    )


class GhostBottleneck(nn.Module):
    def __init__(self, in_channels: int, cnf: GhostConfig) -> None:
        super().__init__()
        hidden, out = make_divisible(cnf.hidden, 4), make_divisible(cnf.out, 4)
        self.ghost1 = GhostModule(in_channels, hidden, relu=True)
        self.conv_dw = (Conv2dNormActivation(hidden, hidden, kernel_size=cnf.kernel, stride=cnf.stride,
                                             groups=hidden, activation_layer=None)
                        if cnf.stride > 1 else nn.Identity())
        self.se = (SqueezeExcitation(hidden, make_divisible(hidden * cnf.se_ratio, 4), activation=nn.ReLU,
                                     scale_activation=nn.Hardsigmoid)
                   if cnf.se_ratio > 0 else nn.Identity())
        self.ghost2 = GhostModule(hidden, out, relu=False)
        self.shortcut = _shortcut(in_channels, out, cnf.kernel, cnf.stride)
        self.out_channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost2(self.se(self.conv_dw(self.ghost1(x))))
        return y + self.shortcut(x)


class GhostNet(nn.Module):
    def __init__(self, cfgs=CFGS, *, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv_stem = Conv2dNormActivation(3, STEM_CHANNELS, kernel_size=3, stride=2, activation_layer=nn.ReLU)
        stages: list[nn.Module] = []
        channels = STEM_CHANNELS
        for stage in cfgs:
            blocks = []
            for cnf in stage:
                blocks.append(GhostBottleneck(channels, cnf))
                channels = blocks[-1].out_channels
            stages.append(nn.Sequential(*blocks))
        last = make_divisible(cfgs[-1][-1].hidden, 4)
        stages.append(Conv2dNormActivation(channels, last, kernel_size=1, activation_layer=nn.ReLU))
        self.blocks = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(last, HEAD_CHANNELS, 1, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(self.blocks(self.conv_stem(x)))
        x = self.act2(self.conv_head(x))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def ghostnet(*, num_classes: int = 1000, **kwargs: Any) -> GhostNet:
    return GhostNet(CFGS, num_classes=num_classes, **kwargs)


# name → registry fields (the family's spec table)
SPECS = {
    "ghostnet_1_0": dict(
        paper=PaperFigures(params=5_182_508, macs=141_000_000, params_exact=True,
                           source="params: paper Table 7, 5.2M; exact: 5,182,508, the count of the authors' release "
                                  "(huawei-noah/Efficient-AI-Backbones ghostnet_pytorch/ghostnet.py, width 1.0, "
                                  "re-counted from its code; timm ghostnet_100 lists 5.2M); MACs: paper Table 7, "
                                  "141M FLOPs (mult-adds); this network 141.15M"),
        description="GhostNet 1.0x: Ghost bottlenecks, hard-sigmoid squeeze-and-excitation.",
    ),
}

for _name, _fields in SPECS.items():
    register_model(_name, family="ghostnet", min_input_size=32, **_fields)(ghostnet)
