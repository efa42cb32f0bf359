"""ShuffleNet (V1): pointwise group convolutions with channel shuffle.

Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural Network for
Mobile Devices", CVPR 2018, https://arxiv.org/abs/1707.01083. ``STAGE_OUT_CHANNELS`` and
``STAGE_REPEATS`` are the paper's Table 1.

Network: conv1 3x3/2 (24 ch) + BN + ReLU → max pool 3x3/2 → stages 2–4 of [4, 8, 4] units → global
average pool → FC. Unit (paper Fig. 2 b/c): 1x1 group conv (bottleneck = output/4) + BN + ReLU →
channel shuffle → 3x3 depthwise conv (stride 1 or 2) + BN → 1x1 group conv + BN; a stride-1 unit
adds the input and applies ReLU, a stride-2 unit concatenates a 3x3/2 average-pooled copy of the
input (so its branch produces output − input channels) and applies ReLU. The first pointwise
layer of stage 2 is not grouped (its input has only 24 channels, paper §3.3). The scale factor
"s×" multiplies every channel count, conv1 included (0.5× g=3: 12, 120, 240, 480 channels), as
in the authors' release (megvii-model/ShuffleNet-Series, ShuffleNetV1 ``model_size='0.5x'``).

Module layout: ``features`` (``conv1``, ``maxpool``, ``stage2``–``stage4``), ``avgpool``, ``fc``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn

from ._layers import Conv2dNormActivation, channel_shuffle, init_weights
from .registry import PaperFigures, register_model

STEM_CHANNELS = 24
STAGE_REPEATS: tuple[int, ...] = (4, 8, 4)
# Paper Table 1: output channels of stages 2, 3, 4 at 1×, per number of groups g.
STAGE_OUT_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}


class ShuffleUnit(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int,
        stride: int,
        group_first_conv: bool = True,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a stride-1 ShuffleNet unit needs in_channels == out_channels")
        self.stride = stride
        self.groups = groups
        mid_channels = out_channels // 4
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        first_groups = groups if group_first_conv else 1
        for c, g in ((in_channels, first_groups), (mid_channels, groups), (branch_channels, groups)):
            if c % g:
                raise ValueError(f"{c} channels are not divisible into {g} groups")

        self.gconv1 = Conv2dNormActivation(
            in_channels, mid_channels, kernel_size=1, groups=first_groups, activation_layer=nn.ReLU
        )
        self.dwconv = Conv2dNormActivation(
            mid_channels, mid_channels, kernel_size=3, stride=stride, groups=mid_channels, activation_layer=None
        )
        self.gconv2 = Conv2dNormActivation(
            mid_channels, branch_channels, kernel_size=1, groups=groups, activation_layer=None
        )
        self.shortcut = nn.AvgPool2d(kernel_size=3, stride=2, padding=1) if stride == 2 else None
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gconv1(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.dwconv(out)
        out = self.gconv2(out)
        if self.shortcut is not None:
            out = torch.cat([self.shortcut(x), out], 1)
        else:
            out = out + x
        return self.relu(out)


class ShuffleNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000, groups: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        if groups not in STAGE_OUT_CHANNELS:
            raise ValueError(f"groups must be one of {sorted(STAGE_OUT_CHANNELS)}, got {groups}")
        stem = int(STEM_CHANNELS * width_mult)
        stage_channels = [int(c * width_mult) for c in STAGE_OUT_CHANNELS[groups]]

        features: OrderedDict[str, nn.Module] = OrderedDict({
            "conv1": Conv2dNormActivation(3, stem, kernel_size=3, stride=2, activation_layer=nn.ReLU),
            "maxpool": nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        })
        in_channels = stem
        for idx, (repeats, out_channels) in enumerate(zip(STAGE_REPEATS, stage_channels)):
            units: list[nn.Module] = []
            for i in range(repeats):
                units.append(
                    ShuffleUnit(
                        in_channels, out_channels, groups,
                        stride=2 if i == 0 else 1,
                        group_first_conv=not (idx == 0 and i == 0),
                    )
                )
                in_channels = out_channels
            features[f"stage{idx + 2}"] = nn.Sequential(*units)
        self.features = nn.Sequential(features)
        self.last_channel = in_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


_SRC = "Zhang et al. 2017 (arXiv:1707.01083)"
_PARAMS_NOTE = (
    "The paper publishes no parameter counts; {p:,} is the exact count of this Table 1 architecture "
    "(conv weights, BN affine, FC weights+bias, 1000 classes) and equals osmr/imgclsmob's "
    "{osmr} ({p:,})."
)

# name, groups, width, published MFLOPs (= mult-adds), exact params, osmr/imgclsmob model name
_VARIANTS = (
    ("shufflenet_v1_g1", 1, 1.0, 143, 1_531_936, "shufflenet_g1_w1", "Table 1 (g=1, 143M)"),
    ("shufflenet_v1_g2", 2, 1.0, 140, 1_733_848, "shufflenet_g2_w1", "Table 1 (g=2, 140M)"),
    ("shufflenet_v1_g3", 3, 1.0, 137, 1_865_728, "shufflenet_g3_w1", "Table 1 (g=3, 137M)"),
    ("shufflenet_v1_g4", 4, 1.0, 133, 1_968_344, "shufflenet_g4_w1", "Table 1 (g=4, 133M)"),
    ("shufflenet_v1_g8", 8, 1.0, 137, 2_434_768, "shufflenet_g8_w1", "Table 1 (g=8, 137M)"),
    ("shufflenet_v1_x0_5_g3", 3, 0.5, 38, 718_324, "shufflenet_g3_wd2", "Table 2 (0.5×, 38 MFLOPs)"),
)


def shufflenet_v1(*, num_classes: int = 1000, **kwargs: Any) -> ShuffleNetV1:
    return ShuffleNetV1(num_classes=num_classes, **kwargs)


for _name, _g, _w, _mflops, _params, _osmr, _where in _VARIANTS:
    register_model(
        _name,
        family="shufflenet_v1",
        builder_kwargs={"groups": _g, "width_mult": _w},
        min_input_size=32,
        paper=PaperFigures(
            params=_params,
            macs=_mflops * 1_000_000,
            source=f"{_SRC} {_where}; the paper's FLOPs are mult-adds. "
            + _PARAMS_NOTE.format(p=_params, osmr=_osmr),
        ),
        description=f"ShuffleNet V1 {_w:g}x, g={_g}, 224x224.",
    )(shufflenet_v1)
