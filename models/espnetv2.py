"""ESPNetv2 ImageNet classifier (the official code's module layout and parameter names).

Mehta, Rastegari, Shapiro, Hajishirzi, "ESPNetv2: A Light-weight, Power Efficient, and General
Purpose Convolutional Neural Network", CVPR 2019, https://arxiv.org/abs/1811.11431. The structure
follows the authors' ImageNet code (github.com/sacmehta/ESPNetv2, ``imagenet/Model.py`` and
``imagenet/cnn_utils.py``; the paper's Table 1 / Figure 2 describe the same network).

An EESP unit reduces with a group point-wise conv (K=4 groups, BN, PReLU), runs K depthwise 3x3
convs with dilation rates 1..4 (a branch whose receptive field exceeds the level's ``r_lim`` falls
back to rate 1; the rates are sorted), fuses them hierarchically (each branch adds the previous
branch's sum), concatenates, applies BN + PReLU, expands with a group point-wise conv (K groups, BN)
and, at stride 1, adds the input and applies a PReLU. A down-sampler concatenates a stride-2 EESP with
a 3x3 average pool (stride 2, padding 1) of its input and adds the input reinforcement: the image
average-pooled to the same size, then 3x3 conv (3→3, BN, PReLU) and 1x1 conv (3→out, BN); a PReLU
follows. Level 5 ends with a depthwise 3x3 and a group (K) point-wise conv to 1024 channels, both
BN + PReLU; then global average pooling, dropout (0.2) and a linear classifier.

Parameter names equal the official ones (``level1``, ``level2_0`` … ``level5``, ``classifier``),
including the two modules the official forward never calls (``level5_0.inp_reinf`` and each
down-sampler's ``eesp.module_act``), so an official checkpoint loads with ``strict=True`` once
DataParallel's ``module.`` prefix is stripped. The official code average-pools the image again from
full size in every down-sampler; here the pooled pyramid is computed once (same values).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .registry import PaperFigures, register_model

# receptive field of a 3x3 kernel → the dilation rate giving it (official ``map_receptive_ksize``)
DILATION_FOR_RF = {3: 1, 5: 2, 7: 3, 9: 4, 11: 5, 13: 6, 15: 7, 17: 8}
IMAGE_CHANNELS = 3  # the official ``config_inp_reinf``


@dataclass(frozen=True)
class ESPNetv2Config:
    """The official ``EESPNet`` configuration for scale ``s``: widths per level, EESP repetitions at
    levels 3-5, receptive-field limits per level and the branch count K."""

    s: float = 1.0
    base: int = 32
    reps: tuple[int, ...] = (0, 3, 7, 3)
    r_lim: tuple[int, ...] = (13, 11, 9, 7, 5)
    k: int = 4

    @property
    def channels(self) -> list[int]:
        """[level1, level2, level3, level4, level5, head]: s=1.0 → [32, 64, 128, 256, 512, 1024]."""
        base_s = math.ceil(int(self.base * self.s) / self.k) * self.k
        out = [self.base if base_s > self.base else base_s]
        out += [base_s * 2 ** i for i in range(1, 5)]
        if self.s > 2.0:
            raise ValueError(f"ESPNetv2 is defined for s <= 2.0, got {self.s}")
        return out + [1024 if self.s <= 1.5 else 1280]


class ConvBN(nn.Module):
    """conv (no bias) → BN → optional PReLU: the official CBR / CB (``conv``, ``bn``, ``act``)."""

    def __init__(self, n_in: int, n_out: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(n_in, n_out, k, stride, (k - 1) // 2, bias=False, groups=groups)
        self.bn = nn.BatchNorm2d(n_out)
        self.act = nn.PReLU(n_out) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class BR(nn.Module):
    """BN → PReLU (the official BR)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(n)
        self.act = nn.PReLU(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class CDilated(nn.Module):
    """Depthwise 3x3 conv with dilation ``d`` and padding ``d`` (the official CDilated)."""

    def __init__(self, n: int, stride: int, d: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(n, n, 3, stride, d, dilation=d, groups=n, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def dilation_rates(k: int, r_lim: int) -> list[int]:
    """Branch i has receptive field 3 + 2i, or 3 once that exceeds ``r_lim``; sorted ascending."""
    sizes = sorted(3 + 2 * i if 3 + 2 * i <= r_lim else 3 for i in range(k))
    return [DILATION_FOR_RF[s] for s in sizes]


class EESP(nn.Module):
    """Reduce → split → dilated depthwise transform → hierarchical fusion → merge (Figure 1c)."""

    def __init__(self, n_in: int, n_out: int, stride: int = 1, k: int = 4, r_lim: int = 7,
                 down_avg: bool = False) -> None:
        super().__init__()
        n = n_out // k
        if n * k != n_out:
            raise ValueError(f"EESP output width {n_out} must be divisible by K={k}")
        self.stride, self.down_avg = stride, down_avg
        self.proj_1x1 = ConvBN(n_in, n, 1, groups=k)
        self.spp_dw = nn.ModuleList(CDilated(n, stride, d) for d in dilation_rates(k, r_lim))
        self.conv_1x1_exp = ConvBN(n_out, n_out, 1, groups=k, act=False)
        self.br_after_cat = BR(n_out)
        self.module_act = nn.PReLU(n_out)  # unused when the block feeds a down-sampler (official layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.proj_1x1(x)
        branches = [self.spp_dw[0](reduced)]
        for conv in self.spp_dw[1:]:
            branches.append(conv(reduced) + branches[-1])  # hierarchical feature fusion
        y = self.conv_1x1_exp(self.br_after_cat(torch.cat(branches, 1)))
        if self.stride == 2 and self.down_avg:
            return y
        if y.shape == x.shape:
            y = y + x
        return self.module_act(y)


class DownSampler(nn.Module):
    """[3x3 avg-pool(x), stride-2 EESP(x)] concatenated, plus the input reinforcement, then PReLU."""

    def __init__(self, n_in: int, n_out: int, k: int = 4, r_lim: int = 9) -> None:
        super().__init__()
        self.eesp = EESP(n_in, n_out - n_in, stride=2, k=k, r_lim=r_lim, down_avg=True)
        self.avg = nn.AvgPool2d(kernel_size=3, padding=1, stride=2)
        self.inp_reinf = nn.Sequential(ConvBN(IMAGE_CHANNELS, IMAGE_CHANNELS, 3),
                                       ConvBN(IMAGE_CHANNELS, n_out, 1, act=False))
        self.act = nn.PReLU(n_out)

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        y = torch.cat([self.avg(x), self.eesp(x)], 1)
        if image is not None:  # ``image``: the input image average-pooled to y's size
            y = y + self.inp_reinf(image)
        return self.act(y)


class ESPNetv2(nn.Module):
    def __init__(self, cfg: ESPNetv2Config = ESPNetv2Config(), *, num_classes: int = 1000,
                 dropout: float = 0.2) -> None:
        super().__init__()
        ch, k, r = cfg.channels, cfg.k, cfg.r_lim
        self.level1 = ConvBN(IMAGE_CHANNELS, ch[0], 3, stride=2)
        self.level2_0 = DownSampler(ch[0], ch[1], k=k, r_lim=r[0])
        self.level3_0 = DownSampler(ch[1], ch[2], k=k, r_lim=r[1])
        self.level3 = nn.ModuleList(EESP(ch[2], ch[2], k=k, r_lim=r[2]) for _ in range(cfg.reps[1]))
        self.level4_0 = DownSampler(ch[2], ch[3], k=k, r_lim=r[2])  # r_lim[2], as the official code
        self.level4 = nn.ModuleList(EESP(ch[3], ch[3], k=k, r_lim=r[3]) for _ in range(cfg.reps[2]))
        self.level5_0 = DownSampler(ch[3], ch[4], k=k, r_lim=r[3])  # no input reinforcement in forward
        self.level5 = nn.ModuleList(EESP(ch[4], ch[4], k=k, r_lim=r[4]) for _ in range(cfg.reps[3]))
        self.level5.append(ConvBN(ch[4], ch[4], 3, groups=ch[4]))
        self.level5.append(ConvBN(ch[4], ch[5], 1, groups=k))
        self.image_pool = nn.AvgPool2d(kernel_size=3, padding=1, stride=2)  # no parameters
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(ch[5], num_classes)
        self._init_params()

    def _init_params(self) -> None:  # the official init_params
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = self.image_pool  # the image pyramid the official while-loop average-pools the image to
        image2 = pool(pool(x))
        image3 = pool(image2)
        y = self.level2_0(self.level1(x), image2)
        y = self.level3_0(y, image3)
        for block in self.level3:
            y = block(y)
        y = self.level4_0(y, pool(image3))
        for block in self.level4:
            y = block(y)
        y = self.level5_0(y)
        for block in self.level5:
            y = block(y)
        y = self.dropout(torch.flatten(self.avgpool(y), 1))
        return self.classifier(y)


def espnetv2(*, num_classes: int = 1000, s: float = 1.0, **kwargs: Any) -> ESPNetv2:
    return ESPNetv2(ESPNetv2Config(s=s), num_classes=num_classes, **kwargs)


_SRC = "Mehta et al. 2019 (arXiv:1811.11431); official README, github.com/sacmehta/ESPNetv2 imagenet/README.md"

# name → registry fields (the family's spec table)
SPECS = {
    "espnetv2_s1_0": dict(
        builder_kwargs={"s": 1.0},
        paper=PaperFigures(params=1_670_000, macs=85_720_000,
                           source=f"{_SRC}: s=1.0 → 1.67M params, 85.72M FLOPs (the paper's ImageNet results: "
                                  "86M). Our count is 1,670,072 parameters (all of the official module's, 3,130 of them unused by "
                                  "its forward) and 86.74M MACs: the README's 85.72M is the convolutions alone, "
                                  "the 1024→1000 classifier adds the other 1.02M (+1.2%)"),
        description="ESPNetv2 (s=1.0): EESP units, dilated depthwise pyramids, PReLU, input reinforcement.",
    ),
}

for _name, _fields in SPECS.items():
    register_model(_name, family="espnetv2", min_input_size=32, **_fields)(espnetv2)
