"""ShuffleNet V2 (0.5x, 1.0x, 1.5x, 2.0x), with torchvision's module layout and parameter names.

Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", ECCV 2018, https://arxiv.org/abs/1807.11164 (Table 5 is the stage table below).

``conv1`` (3x3/2 conv-BN-ReLU) → ``maxpool`` → ``stage2``..``stage4`` → ``conv5`` (1x1) → global
mean → ``fc``. A stride-1 unit splits its input in two with ``x.chunk(2, dim=1)``, transforms one
half in ``branch2`` and concatenates; a stride-2 unit concatenates ``branch1(x)`` and
``branch2(x)``; both then shuffle the channels in 2 groups. torchvision's ``shufflenet_v2_*``
checkpoints load with ``strict=True``. Like torchvision, the modules keep PyTorch's default
initialisation.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from ._layers import channel_shuffle
from .registry import PaperFigures, register_model

STAGES_REPEATS = (4, 8, 4)
# Output channels of conv1, stage2, stage3, stage4, conv5 per width (paper Table 5).
STAGES_OUT_CHANNELS: dict[float, tuple[int, int, int, int, int]] = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


class InvertedResidual(nn.Module):
    """ShuffleNet V2 unit: channel split (stride 1) or two downsampling branches (stride 2),
    concat, channel shuffle."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError("illegal stride value")
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != branch_features << 1:
            raise ValueError(
                f"Invalid combination of stride {stride}, inp {inp} and oup {oup} values. "
                "If stride == 1 then inp should be equal to oup // 2 << 1."
            )

        if stride > 1:
            self.branch1 = nn.Sequential(
                self.depthwise_conv(inp, inp, kernel_size=3, stride=stride, padding=1),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()

        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch_features, branch_features, kernel_size=1, stride=1,
                      padding=0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            self.depthwise_conv(branch_features, branch_features, kernel_size=3, stride=stride, padding=1),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    @staticmethod
    def depthwise_conv(
        i: int, o: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = False
    ) -> nn.Conv2d:
        return nn.Conv2d(i, o, kernel_size, stride, padding, bias=bias, groups=i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(
        self,
        stages_repeats: Sequence[int],
        stages_out_channels: Sequence[int],
        num_classes: int = 1000,
        inverted_residual: Callable[..., nn.Module] = InvertedResidual,
    ) -> None:
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")
        self._stage_out_channels = list(stages_out_channels)

        input_channels = 3
        output_channels = self._stage_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        input_channels = output_channels
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        for name, repeats, output_channels in zip(
            ("stage2", "stage3", "stage4"), stages_repeats, self._stage_out_channels[1:]
        ):
            seq = [inverted_residual(input_channels, output_channels, 2)]
            seq.extend(inverted_residual(output_channels, output_channels, 1) for _ in range(repeats - 1))
            setattr(self, name, nn.Sequential(*seq))
            input_channels = output_channels

        output_channels = self._stage_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = x.mean([2, 3])  # global average pool
        return self.fc(x)


def _figures(tv_name: str, params: int, macs: int, tv_gflops: str) -> PaperFigures:
    return PaperFigures(
        params=params, macs=macs, params_exact=True,
        source=f"params: torchvision {tv_name} state_dict; MACs: paper Table 5 / Table 8 "
        f"({macs // 1_000_000}M 'FLOPs', i.e. multiply-adds), torchvision {tv_gflops} GFLOPS",
    )


def shufflenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, **kwargs: Any) -> ShuffleNetV2:
    """ShuffleNet V2 at channel multiplier ``width_mult`` (0.5, 1.0, 1.5 or 2.0)."""
    try:
        channels = STAGES_OUT_CHANNELS[float(width_mult)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"unsupported ShuffleNet V2 width_mult {width_mult!r}: one of {sorted(STAGES_OUT_CHANNELS)}"
        ) from None
    return ShuffleNetV2(STAGES_REPEATS, channels, num_classes=num_classes, **kwargs)


# name → registry fields (the family's spec table)
SPECS = {
    "shufflenet_v2_x0_5": dict(
        builder_kwargs={"width_mult": 0.5},
        torchvision_name="shufflenet_v2_x0_5",
        paper=_figures("shufflenet_v2_x0_5", 1_366_792, 41_000_000, "0.04"),
        description="ShuffleNet V2 0.5x (torchvision-compatible).",
    ),
    "shufflenet_v2_x1_0": dict(
        builder_kwargs={"width_mult": 1.0},
        torchvision_name="shufflenet_v2_x1_0",
        paper=_figures("shufflenet_v2_x1_0", 2_278_604, 146_000_000, "0.14"),
        description="ShuffleNet V2 1.0x (torchvision-compatible).",
    ),
    "shufflenet_v2_x1_5": dict(
        builder_kwargs={"width_mult": 1.5},
        torchvision_name="shufflenet_v2_x1_5",
        paper=_figures("shufflenet_v2_x1_5", 3_503_624, 299_000_000, "0.30"),
        description="ShuffleNet V2 1.5x (torchvision-compatible).",
    ),
    "shufflenet_v2_x2_0": dict(
        builder_kwargs={"width_mult": 2.0},
        torchvision_name="shufflenet_v2_x2_0",
        paper=_figures("shufflenet_v2_x2_0", 7_393_996, 591_000_000, "0.58"),
        description="ShuffleNet V2 2.0x (torchvision-compatible).",
    ),
}

for _name, _fields in SPECS.items():
    register_model(_name, family="shufflenet_v2", min_input_size=32, **_fields)(shufflenet_v2)
