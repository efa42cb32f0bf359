"""Typed export options: enums instead of strings, validated once at the API boundary."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from mobile_export.errors import InvalidOptionError


class _Option(str, enum.Enum):
    """An option's closed set of values; ``parse`` turns a user's string into a member or says what to pass."""

    @classmethod
    def parse(cls, value):
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise InvalidOptionError(f"{_NAMED_BY[cls]} must be one of {choices}, got {value!r}.") from None


class Precision(_Option):
    FP32 = "fp32"
    FP16 = "fp16"  # float16 weights, float I/O
    INT8 = "int8"  # full-integer post-training quantization
    DYNAMIC = "dynamic"  # dynamic-range quantization (int8 weights, float activations)


class IOType(_Option):
    """Input/output tensor type of an int8 model."""

    INT8 = "int8"
    UINT8 = "uint8"
    FLOAT = "float"


class InputKind(_Option):
    """What the model's input tensor holds."""

    PIXELS = "pixels"          # raw RGB 0..255 (uint8 for int8 models, float32 otherwise), normalized inside
    NORMALIZED = "normalized"  # (pixel / 255 - mean) / std, normalized by the client


class Runtime(_Option):
    """Where validate runs the TFLite model."""

    HOST = "host"  # ai-edge-litert on this machine
    QEMU = "qemu"  # emulated ARM core (qemu-aarch64), instruction counts
    ADB = "adb"    # a device over adb


# How the messages name each option, keyed by class (an Enum cannot hold a plain class attribute: it would be a member).
_NAMED_BY = {Precision: "precision", IOType: "--io", InputKind: "--input", Runtime: "--runtime"}


@dataclass(frozen=True)
class ExportOptions:
    precision: Precision = Precision.FP32
    weights: str | None = None  # a registered weights name (e.g. "cifar10") or a state_dict path
    num_classes: int | None = None
    input_size: int | None = None
    batch: int = 1
    out_dir: Path = Path("dist")
    io_type: IOType | None = None  # int8 with normalized input only: int8 (default), uint8 or float I/O
    input: InputKind | None = None   # default pixels: what MediaPipe and camera pipelines feed
    softmax: bool = False            # output probabilities instead of logits
    calibration: str | None = None
    num_calibration: int | None = None  # int8 only; default 256
    seed: int = 0
    check_samples: int = 4  # random + real inputs for the built-in fidelity check
    opset: int = 17
    search: bool = True  # int8: try other range methods when fidelity is below the bar
    gate: object = None  # a gate TOML path (or check.gate.GateFile): check the artifact against its thresholds
    latency_runs: int | None = None  # timed runs per runtime in the export's check (default 30, or the gate
                                     # file's latency_runs); 0: no timing

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        int8 = self.precision is Precision.INT8
        kind = InputKind.parse(self.input) if self.input is not None else InputKind.PIXELS
        object.__setattr__(self, "input", kind)
        if self.io_type is not None and not int8:
            raise InvalidOptionError(f"--io sets the tensor types of int8 models; a {self.precision.value} model has "
                                     "float32 I/O (drop --io or export with --int8).")
        if self.io_type is not None and kind is InputKind.PIXELS and IOType.parse(self.io_type) is not IOType.FLOAT:
            raise InvalidOptionError("--io applies to --input normalized; a pixel-input int8 model takes uint8 pixels "
                                     "and returns float32 scores (drop --io, or add --input normalized).")
        io = IOType.parse(self.io_type) if self.io_type is not None else (IOType.FLOAT if kind is InputKind.PIXELS
                                                                          else IOType.INT8)
        object.__setattr__(self, "io_type", io)
        if self.softmax and int8 and io is not IOType.FLOAT:
            raise InvalidOptionError(f"--softmax needs a float output; an int8 model with --io {io.value} returns "
                                     f"{io.value} (use --input pixels or --io float).")
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if not isinstance(self.batch, int) or self.batch < 1 or self.batch > 64:
            raise InvalidOptionError(f"--batch must be an integer from 1 to 64, got {self.batch!r}.")
        if not int8 and (self.calibration is not None or self.num_calibration is not None):
            flag = "--calibration" if self.calibration is not None else "--num-calibration"
            raise InvalidOptionError(f"{flag} calibrates int8 models; a {self.precision.value} export does not "
                                     "calibrate (drop it or export with --int8).")
        if self.latency_runs is not None and (not isinstance(self.latency_runs, int) or self.latency_runs < 0):
            raise InvalidOptionError(f"--latency-runs must be a whole number (0: no timing), got {self.latency_runs!r}.")
        if self.num_calibration is None:
            object.__setattr__(self, "num_calibration", 256)
        if not isinstance(self.num_calibration, int) or self.num_calibration < 4:
            raise InvalidOptionError(f"--num-calibration must be an integer of at least 4 (a quarter is held back to "
                                     f"check the int8 ranges independently), got {self.num_calibration!r}.")

    @property
    def pixels(self) -> bool:
        return self.input is InputKind.PIXELS


@dataclass(frozen=True)
class ValidateOptions:
    """What ``validate`` measures and how; ``None`` fields fall back to the gate file's settings,
    then to the defaults (256 samples, 30 latency runs)."""

    weights: str | None = None       # the weights the artifact was exported with (path or registered name)
    data: str | None = None          # None: embedded default set; "cifar10", "cifar10-default", a folder, .npy/.npz
    num: int | None = None
    runtime: Runtime = Runtime.HOST
    gate: object = None              # a gate TOML path or a validation.gate.GateFile
    thresholds: dict | None = None   # per-key overrides, {"min_sqnr_db": 20}
    junit: str | None = None
    out_dir: str | None = None       # default: validation/ beside the .tflite
    seed: int = 0
    layer_samples: int = 4
    layer_tolerance: tuple | None = None
    latency_runs: int | None = None  # 0: no timing
    write: bool = True
    cpu: str = "cortex-a76"          # emulated core for Runtime.QEMU
    device: object = None            # runtimes.arm.adb.DeviceOptions for Runtime.ADB

    def __post_init__(self) -> None:
        object.__setattr__(self, "runtime", Runtime.parse(self.runtime))
        if self.num is not None and (not isinstance(self.num, int) or self.num < 1):
            raise InvalidOptionError(f"--num must be a positive integer, got {self.num}.")
