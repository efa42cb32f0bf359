"""Typed export options: enums instead of strings, validated once at the API boundary."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from mobile_export.errors import InvalidOptionError


class Precision(str, enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"  # float16 weights, float I/O
    INT8 = "int8"  # full-integer post-training quantization
    DYNAMIC = "dynamic"  # dynamic-range quantization (int8 weights, float activations)

    @classmethod
    def parse(cls, value: "str | Precision") -> "Precision":
        try:
            return cls(value)
        except ValueError:
            raise InvalidOptionError(
                f"precision must be one of {', '.join(p.value for p in cls)}, got {value!r}."
            ) from None


class IOType(str, enum.Enum):
    """Input/output tensor type of an int8 model."""

    INT8 = "int8"
    UINT8 = "uint8"
    FLOAT = "float"

    @classmethod
    def parse(cls, value: "str | IOType") -> "IOType":
        try:
            return cls(value)
        except ValueError:
            raise InvalidOptionError(f"--io must be one of int8, uint8, float, got {value!r}.") from None


@dataclass(frozen=True)
class ExportOptions:
    precision: Precision = Precision.FP32
    weights: str | None = None  # a registered weights name (e.g. "cifar10") or a state_dict path
    num_classes: int | None = None
    input_size: int | None = None
    batch: int = 1
    out_dir: Path = Path("dist")
    io_type: IOType = IOType.INT8
    calibration: str | None = None
    num_calibration: int = 256
    seed: int = 0
    check_samples: int = 4  # random + real inputs for the built-in fidelity check
    opset: int = 17
    search: bool = True  # int8: try other range methods when fidelity is below the bar
    gate: object = None  # a gate TOML path (or gate.GateFile): validate the artifact after export

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        object.__setattr__(self, "io_type", IOType.parse(self.io_type))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if not isinstance(self.batch, int) or self.batch < 1 or self.batch > 64:
            raise InvalidOptionError(f"--batch must be an integer from 1 to 64, got {self.batch!r}.")
        if not isinstance(self.num_calibration, int) or self.num_calibration < 1:
            raise InvalidOptionError(
                f"--num-calibration must be a positive integer, got {self.num_calibration!r}."
            )
