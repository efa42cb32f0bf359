"""MobileNetV2, with torchvision's module layout and parameter names.

Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
CVPR 2018, https://arxiv.org/abs/1801.04381 (Table 2 is the layer table below).

``features`` holds the stem, the 17 inverted-residual blocks and the final 1x1 conv; ``classifier``
is Dropout(0.2) → Linear, so a torchvision ``mobilenet_v2`` checkpoint loads with ``strict=True``.
Width multipliers scale every layer (rounded to a multiple of 8) except the last conv, which
keeps 1280 channels for multipliers below one (paper §6.1).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from ._layers import Conv2dNormActivation, init_weights, make_divisible
from .registry import PaperFigures, register_model

# t (expansion), c (output channels), n (repeats), s (stride of the first repeat): paper Table 2.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """1x1 expansion (skipped when t == 1) → 3x3 depthwise → linear 1x1 projection,
    with an identity shortcut when the stride is 1 and the channel count is unchanged."""

    def __init__(
        self,
        inp: int,
        oup: int,
        stride: int,
        expand_ratio: int,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup

        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(
                Conv2dNormActivation(inp, hidden_dim, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6)
            )
        layers.extend(
            [
                Conv2dNormActivation(
                    hidden_dim, hidden_dim, stride=stride, groups=hidden_dim,
                    norm_layer=norm_layer, activation_layer=nn.ReLU6,
                ),
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                norm_layer(oup),
            ]
        )
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        inverted_residual_setting: Sequence[Sequence[int]] | None = None,
        round_nearest: int = 8,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        block = block or InvertedResidual
        norm_layer = norm_layer or nn.BatchNorm2d
        setting = INVERTED_RESIDUAL_SETTING if inverted_residual_setting is None else inverted_residual_setting
        if len(setting) == 0 or any(len(row) != 4 for row in setting):
            raise ValueError(f"inverted_residual_setting should be a non-empty list of (t, c, n, s), got {setting}")

        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)

        features: list[nn.Module] = [
            Conv2dNormActivation(3, input_channel, stride=2, norm_layer=norm_layer, activation_layer=nn.ReLU6)
        ]
        for t, c, n, s in setting:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(block(input_channel, output_channel, s if i == 0 else 1, expand_ratio=t,
                                      norm_layer=norm_layer))
                input_channel = output_channel
        features.append(
            Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1, norm_layer=norm_layer,
                                 activation_layer=nn.ReLU6)
        )
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))

        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


_TF_TABLE = (
    "TF-slim MobileNetV2 checkpoint table (tensorflow/models research/slim/nets/mobilenet/README.md), "
    "1001 classes; its parameter counts omit BN parameters (3.47M at 1.0 vs torchvision's 3,504,872)"
)


def mobilenet_v2(*, num_classes: int = 1000, **kwargs: Any) -> MobileNetV2:
    """MobileNetV2; ``width_mult`` selects the variant (torchvision's ``mobilenet_v2`` at 1.0)."""
    return MobileNetV2(num_classes=num_classes, **kwargs)


# name → registry fields (the family's spec table)
SPECS = {
    "mobilenet_v2": dict(
        builder_kwargs={"width_mult": 1.0},
        torchvision_name="mobilenet_v2",
        paper=PaperFigures(
            params=3_504_872, macs=300_000_000, params_exact=True,
            source="params: torchvision mobilenet_v2 state_dict; MACs: paper Table 4 (300M) and torchvision 0.30 GFLOPS",
        ),
        description="MobileNetV2 1.0 (torchvision-compatible).",
    ),
    "mobilenet_v2_x1_4": dict(
        builder_kwargs={"width_mult": 1.4},
        paper=PaperFigures(
            params=6_060_000, macs=582_000_000, params_exact=False,
            source=f"{_TF_TABLE}: mobilenet_v2_1.4_224 582M MACs, 6.06M params. The paper's Table 4 says "
            "585M MAdds / 6.9M params; 6.9M cannot be reproduced by the Table 2 network at width 1.4 "
            "(6.11M with BN), so the released checkpoint's figures are used.",
        ),
        description="MobileNetV2, width multiplier 1.4.",
    ),
    "mobilenet_v2_x0_75": dict(
        builder_kwargs={"width_mult": 0.75},
        paper=PaperFigures(
            params=2_610_000, macs=209_000_000, params_exact=False,
            source=f"{_TF_TABLE}: mobilenet_v2_0.75_224 209M MACs, 2.61M params",
        ),
        description="MobileNetV2, width multiplier 0.75 (last conv kept at 1280).",
    ),
    "mobilenet_v2_x0_5": dict(
        builder_kwargs={"width_mult": 0.5},
        paper=PaperFigures(
            params=1_950_000, macs=97_000_000, params_exact=False,
            source=f"{_TF_TABLE}: mobilenet_v2_0.5_224 97M MACs, 1.95M params",
        ),
        description="MobileNetV2, width multiplier 0.5 (last conv kept at 1280).",
    ),
    "mobilenet_v2_x0_35": dict(
        builder_kwargs={"width_mult": 0.35},
        paper=PaperFigures(
            params=1_660_000, macs=59_000_000, params_exact=False,
            source=f"{_TF_TABLE}: mobilenet_v2_0.35_224 59M MACs, 1.66M params",
        ),
        description="MobileNetV2, width multiplier 0.35 (last conv kept at 1280).",
    ),
}

for _name, _fields in SPECS.items():
    register_model(_name, family="mobilenet_v2", min_input_size=32, **_fields)(mobilenet_v2)
