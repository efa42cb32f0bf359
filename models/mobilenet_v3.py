"""MobileNetV3 small and large, with torchvision's module layout and parameter names.

Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le, Adam, "Searching for
MobileNetV3", ICCV 2019, https://arxiv.org/abs/1905.02244 (Tables 1 and 2 are the block tables
below).

``features`` holds the Hardswish stem, the bottleneck blocks and the final 1x1 conv (6x the last
block's width); ``avgpool``; ``classifier`` is Linear → Hardswish → Dropout(0.2) → Linear. Squeeze-
and-excite uses 1x1 convs ``fc1``/``fc2`` and a Hardsigmoid gate; BN uses eps=1e-3, momentum=0.01.
A torchvision ``mobilenet_v3_small``/``_large`` checkpoint loads with ``strict=True``.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from ._layers import Conv2dNormActivation, init_weights, make_divisible
from .registry import PaperFigures, register_model


class InvertedResidualConfig:
    """One bottleneck row: (input, kernel, expanded, output channels, SE, "RE"/"HS", stride, dilation)."""

    def __init__(
        self,
        input_channels: int,
        kernel: int,
        expanded_channels: int,
        out_channels: int,
        use_se: bool,
        activation: str,
        stride: int,
        dilation: int,
        width_mult: float,
    ) -> None:
        self.input_channels = self.adjust_channels(input_channels, width_mult)
        self.kernel = kernel
        self.expanded_channels = self.adjust_channels(expanded_channels, width_mult)
        self.out_channels = self.adjust_channels(out_channels, width_mult)
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride = stride
        self.dilation = dilation

    @staticmethod
    def adjust_channels(channels: int, width_mult: float) -> int:
        return make_divisible(channels * width_mult, 8)


def _config(arch: str, width_mult: float = 1.0) -> tuple[list[InvertedResidualConfig], int]:
    """The paper's block table (Table 1 large, Table 2 small) and the classifier's hidden width."""
    bneck = partial(InvertedResidualConfig, width_mult=width_mult)
    if arch == "mobilenet_v3_large":
        setting = [
            bneck(16, 3, 16, 16, False, "RE", 1, 1),
            bneck(16, 3, 64, 24, False, "RE", 2, 1),  # C1
            bneck(24, 3, 72, 24, False, "RE", 1, 1),
            bneck(24, 5, 72, 40, True, "RE", 2, 1),  # C2
            bneck(40, 5, 120, 40, True, "RE", 1, 1),
            bneck(40, 5, 120, 40, True, "RE", 1, 1),
            bneck(40, 3, 240, 80, False, "HS", 2, 1),  # C3
            bneck(80, 3, 200, 80, False, "HS", 1, 1),
            bneck(80, 3, 184, 80, False, "HS", 1, 1),
            bneck(80, 3, 184, 80, False, "HS", 1, 1),
            bneck(80, 3, 480, 112, True, "HS", 1, 1),
            bneck(112, 3, 672, 112, True, "HS", 1, 1),
            bneck(112, 5, 672, 160, True, "HS", 2, 1),  # C4
            bneck(160, 5, 960, 160, True, "HS", 1, 1),
            bneck(160, 5, 960, 160, True, "HS", 1, 1),
        ]
        last_channel = InvertedResidualConfig.adjust_channels(1280, width_mult)  # C5
    elif arch == "mobilenet_v3_small":
        setting = [
            bneck(16, 3, 16, 16, True, "RE", 2, 1),  # C1
            bneck(16, 3, 72, 24, False, "RE", 2, 1),  # C2
            bneck(24, 3, 88, 24, False, "RE", 1, 1),
            bneck(24, 5, 96, 40, True, "HS", 2, 1),  # C3
            bneck(40, 5, 240, 40, True, "HS", 1, 1),
            bneck(40, 5, 240, 40, True, "HS", 1, 1),
            bneck(40, 5, 120, 48, True, "HS", 1, 1),
            bneck(48, 5, 144, 48, True, "HS", 1, 1),
            bneck(48, 5, 288, 96, True, "HS", 2, 1),  # C4
            bneck(96, 5, 576, 96, True, "HS", 1, 1),
            bneck(96, 5, 576, 96, True, "HS", 1, 1),
        ]
        last_channel = InvertedResidualConfig.adjust_channels(1024, width_mult)  # C5
    else:
        raise ValueError(f"unsupported MobileNetV3 arch {arch!r}")
    return setting, last_channel


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: avgpool → fc1 (1x1) → ReLU → fc2 (1x1) → Hardsigmoid gate."""

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Hardsigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._scale(x) * x


class InvertedResidual(nn.Module):
    """Expand (1x1, when widths differ) → depthwise k×k → SE (optional) → linear 1x1 projection."""

    def __init__(
        self,
        cnf: InvertedResidualConfig,
        norm_layer: Callable[..., nn.Module],
        se_layer: Callable[..., nn.Module] = SqueezeExcitation,
    ) -> None:
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError("illegal stride value")
        if cnf.dilation != 1:
            raise ValueError("dilated MobileNetV3 blocks are not supported")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels

        layers: list[nn.Module] = []
        activation_layer = nn.Hardswish if cnf.use_hs else nn.ReLU
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(
                Conv2dNormActivation(cnf.input_channels, cnf.expanded_channels, kernel_size=1,
                                     norm_layer=norm_layer, activation_layer=activation_layer)
            )
        layers.append(
            Conv2dNormActivation(cnf.expanded_channels, cnf.expanded_channels, kernel_size=cnf.kernel,
                                 stride=cnf.stride, groups=cnf.expanded_channels,
                                 norm_layer=norm_layer, activation_layer=activation_layer)
        )
        if cnf.use_se:
            squeeze_channels = make_divisible(cnf.expanded_channels // 4, 8)
            layers.append(se_layer(cnf.expanded_channels, squeeze_channels))
        layers.append(
            Conv2dNormActivation(cnf.expanded_channels, cnf.out_channels, kernel_size=1,
                                 norm_layer=norm_layer, activation_layer=None)
        )
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels
        self._is_cn = cnf.stride > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = result + x
        return result


class MobileNetV3(nn.Module):
    def __init__(
        self,
        inverted_residual_setting: Sequence[InvertedResidualConfig],
        last_channel: int,
        num_classes: int = 1000,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("the inverted_residual_setting should not be empty")
        if not all(isinstance(s, InvertedResidualConfig) for s in inverted_residual_setting):
            raise TypeError("the inverted_residual_setting should be a list of InvertedResidualConfig")
        block = block or InvertedResidual
        norm_layer = norm_layer or partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)

        firstconv_output_channels = inverted_residual_setting[0].input_channels
        layers: list[nn.Module] = [
            Conv2dNormActivation(3, firstconv_output_channels, kernel_size=3, stride=2,
                                 norm_layer=norm_layer, activation_layer=nn.Hardswish)
        ]
        layers.extend(block(cnf, norm_layer) for cnf in inverted_residual_setting)
        lastconv_input_channels = inverted_residual_setting[-1].out_channels
        lastconv_output_channels = 6 * lastconv_input_channels
        layers.append(
            Conv2dNormActivation(lastconv_input_channels, lastconv_output_channels, kernel_size=1,
                                 norm_layer=norm_layer, activation_layer=nn.Hardswish)
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv_output_channels, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def mobilenet_v3(
    *, num_classes: int = 1000, arch: str = "mobilenet_v3_large", width_mult: float = 1.0, **kwargs: Any
) -> MobileNetV3:
    """MobileNetV3 ``arch`` ("mobilenet_v3_small" or "mobilenet_v3_large") at ``width_mult``."""
    setting, last_channel = _config(arch, width_mult)
    return MobileNetV3(setting, last_channel, num_classes=num_classes, **kwargs)


# name → registry fields (the family's spec table)
SPECS = {
    "mobilenet_v3_large": dict(
        builder_kwargs={"arch": "mobilenet_v3_large"},
        torchvision_name="mobilenet_v3_large",
        paper=PaperFigures(
            params=5_483_032, macs=217_000_000, params_exact=True,
            source="params: torchvision mobilenet_v3_large state_dict; MACs: 217M, TF-slim MobileNetV3 "
            "checkpoint table (Large dm=1) and torchvision 0.22 GFLOPS; paper Table 3 gives 219M "
            "(our count: 216.59M)",
        ),
        description="MobileNetV3-Large 1.0 (torchvision-compatible).",
    ),
    "mobilenet_v3_small": dict(
        builder_kwargs={"arch": "mobilenet_v3_small"},
        torchvision_name="mobilenet_v3_small",
        paper=PaperFigures(
            params=2_542_856, macs=56_000_000, params_exact=True,
            source="params: torchvision mobilenet_v3_small state_dict; MACs: paper Table 3 (56M MAdds, "
            "2.5M params) and torchvision 0.06 GFLOPS; the TF-slim table's 66M / 2.9M for Small dm=1 does "
            "not describe this network (our count: 56.51M)",
        ),
        description="MobileNetV3-Small 1.0 (torchvision-compatible).",
    ),
}

for _name, _fields in SPECS.items():
    register_model(_name, family="mobilenet_v3", min_input_size=32, **_fields)(mobilenet_v3)
