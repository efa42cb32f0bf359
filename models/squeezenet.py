"""SqueezeNet 1.0 and 1.1 with torchvision's module layout, plus the paper's bypass variants of 1.0.

Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer, "SqueezeNet: AlexNet-level accuracy with 50x
fewer parameters and <0.5MB model size", 2016, https://arxiv.org/abs/1602.07360. Version 1.1 is
the revision published in the authors' repository (github.com/forresti/SqueezeNet, "SqueezeNet
v1.1": 2.4x less computation, same accuracy).

``features`` / ``classifier`` (Dropout(0.5) → final_conv → ReLU → AdaptiveAvgPool2d(1)) match
torchvision's ``squeezenet1_0`` / ``squeezenet1_1``, so their checkpoints load with ``strict=True``.

Bypass variants (paper §6, Figure 2, Table 3), built on 1.0 and keeping torchvision's indices::

    features index   3      4      5      7      8      9      10     12
    module           fire2  fire3  fire4  fire5  fire6  fire7  fire8  fire9
    in → out         96→128 128→128 128→256 256→256 256→384 384→384 384→512 512→512

* simple bypass: ``x + fire(x)`` around fire3, fire5, fire7, fire9 (in == out), no parameters, so
  a torchvision ``squeezenet1_0`` checkpoint still loads with ``strict=True``;
* complex bypass: additionally ``conv1x1(x) + fire(x)`` around fire2, fire4, fire6, fire8, a 1x1
  conv with bias, no BN and no activation, stored as ``features.<i>.bypass``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.init as init

from .registry import PaperFigures, register_model

# (in, squeeze, expand1x1, expand3x3) per Fire module, "M" a MaxPool2d(3, 2, ceil_mode=True).
# Paper Table 1 (1.0) and the authors' v1.1 prototxt; the stem differs (7x7/96 vs 3x3/64).
_FEATURES: dict[str, list[Any]] = {
    "1_0": [(96, 16, 64, 64), (128, 16, 64, 64), (128, 32, 128, 128), "M",
            (256, 32, 128, 128), (256, 48, 192, 192), (384, 48, 192, 192), (384, 64, 256, 256), "M",
            (512, 64, 256, 256)],
    "1_1": [(64, 16, 64, 64), (128, 16, 64, 64), "M", (128, 32, 128, 128), (256, 32, 128, 128), "M",
            (256, 48, 192, 192), (384, 48, 192, 192), (384, 64, 256, 256), (512, 64, 256, 256)],
}
_STEM = {"1_0": (96, 7), "1_1": (64, 3)}  # (out channels, kernel), stride 2, no padding


class Fire(nn.Module):
    """squeeze 1x1 → ReLU → [expand 1x1 → ReLU ‖ expand 3x3 → ReLU] concatenated on channels."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


class BypassFire(Fire):
    """A Fire module with the paper's bypass added to its output: identity ("simple") when the
    channel counts match, otherwise a 1x1 conv with bias ("complex"). Fire's own parameter names
    are unchanged; the complex bypass adds ``bypass.weight`` / ``bypass.bias``."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__(inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes)
        outplanes = expand1x1_planes + expand3x3_planes
        self.bypass = nn.Identity() if inplanes == outplanes else nn.Conv2d(inplanes, outplanes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.bypass(x)


class SqueezeNet(nn.Module):
    def __init__(
        self,
        version: str = "1_0",
        num_classes: int = 1000,
        dropout: float = 0.5,
        bypass: str | None = None,
    ) -> None:
        super().__init__()
        if version not in _FEATURES:
            raise ValueError(f"unsupported SqueezeNet version {version}: 1_0 or 1_1 expected")
        if bypass not in (None, "simple", "complex"):
            raise ValueError(f"bypass must be None, 'simple' or 'complex', got {bypass!r}")
        if bypass is not None and version != "1_0":
            raise ValueError("the paper's bypass variants are defined on SqueezeNet 1.0 only")
        self.num_classes = num_classes

        stem_channels, stem_kernel = _STEM[version]
        layers: list[nn.Module] = [
            nn.Conv2d(3, stem_channels, kernel_size=stem_kernel, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        ]
        for item in _FEATURES[version]:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
                continue
            inplanes, s, e1, e3 = item
            if bypass == "complex" or (bypass == "simple" and inplanes == e1 + e3):
                layers.append(BypassFire(inplanes, s, e1, e3))
            else:
                layers.append(Fire(inplanes, s, e1, e3))
        self.features = nn.Sequential(*layers)

        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.classifier(x)
        return torch.flatten(x, 1)


# Smallest square input that runs (probed): 7x7/2 stem (3x3/2 for 1.1), then three unpadded 3x3/2
# ceil-mode pools, which accept a window starting inside the map (e.g. a 2x2 map pools to 1x1).
_MIN_1_0 = 21
_MIN_1_1 = 17
_TV_1_0 = 1_248_424
# Parameters and MACs (at 224) of the complex bypass 1x1 convs around fire2/4/6/8, whose maps are
# 54², 54², 27², 27² at 224 (55² in the paper's Table 1, which uses 227 inputs).
_COMPLEX_PARAMS = sum(i * o + o for i, o in ((96, 128), (128, 256), (256, 384), (384, 512)))  # 341,248
_COMPLEX_MACS = 54 * 54 * (96 * 128 + 128 * 256) + 27 * 27 * (256 * 384 + 384 * 512)  # 346,374,144


def squeezenet(*, num_classes: int = 1000, version: str = "1_0", **kwargs: Any) -> SqueezeNet:
    """SqueezeNet ``version`` ("1_0" or "1_1"); ``bypass`` ("simple"/"complex") for the 1.0 variants."""
    return SqueezeNet(version=version, num_classes=num_classes, **kwargs)


# name → registry fields (the family's spec table)
SPECS = {
    "squeezenet1_0": dict(
        builder_kwargs={"version": "1_0"},
        min_input_size=_MIN_1_0,
        torchvision_name="squeezenet1_0",
        paper=PaperFigures(
            params=_TV_1_0, macs=819_000_000, params_exact=True,
            source="params: torchvision squeezenet1_0 state_dict (paper Table 2: 4.8MB); MACs: torchvision "
            "0.819 GFLOPS (_ops metadata; the paper gives no MAC count)",
        ),
        description="SqueezeNet 1.0 (torchvision-compatible).",
    ),
    "squeezenet1_1": dict(
        builder_kwargs={"version": "1_1"},
        min_input_size=_MIN_1_1,
        torchvision_name="squeezenet1_1",
        paper=PaperFigures(
            params=1_235_496, macs=349_000_000, params_exact=True,
            source="params: torchvision squeezenet1_1 state_dict; MACs: torchvision 0.349 GFLOPS "
            "(_ops metadata; the authors' v1.1 note: 2.4x less computation than 1.0)",
        ),
        description="SqueezeNet 1.1 (torchvision-compatible).",
    ),
    "squeezenet1_0_simple_bypass": dict(
        builder_kwargs={"version": "1_0", "bypass": "simple"},
        min_input_size=_MIN_1_0,
        paper=PaperFigures(
            params=_TV_1_0, macs=819_000_000, params_exact=True,
            source="paper §6 / Table 3: simple bypass adds no parameters (4.8MB, same as 1.0), so params are "
            "torchvision squeezenet1_0's and MACs its 0.819 GFLOPS (the additions are not MACs)",
        ),
        description="SqueezeNet 1.0 with simple (identity) bypass around fire3/5/7/9 (paper §6).",
    ),
    "squeezenet1_0_complex_bypass": dict(
        builder_kwargs={"version": "1_0", "bypass": "complex"},
        min_input_size=_MIN_1_0,
        paper=PaperFigures(
            params=_TV_1_0 + _COMPLEX_PARAMS, macs=819_000_000 + _COMPLEX_MACS, params_exact=True,
            source="derived, no directly usable published figure: torchvision squeezenet1_0 (1,248,424 params, "
            "0.819 GMACs) plus the four 1x1 bypass convs with bias the paper's §6 describes around fire2/4/6/8 "
            "(+341,248 params, +346.4M MACs at 224). The paper's Table 3 size of 7.7MB (~1.9-2.0M fp32 "
            "params) is not reproduced by that description: this network is 6.4MB (6.1MiB).",
        ),
        description="SqueezeNet 1.0 with simple bypass around fire3/5/7/9 and 1x1-conv (complex) bypass "
        "around fire2/4/6/8 (paper §6).",
    ),
}

for _name, _fields in SPECS.items():
    register_model(_name, family="squeezenet", **_fields)(squeezenet)
