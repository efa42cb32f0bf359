"""Every error mobile-export raises on purpose, each with an exit code for the CLI.

A message is one sentence that names the thing to fix. User mistakes (bad names, paths, shapes,
values) derive from ``UserError`` and exit 2; a failed validation gate exits 1; anything else is a
bug: exit ``INTERNAL_ERROR_EXIT`` (3) with one line on stderr and the traceback in a log file whose
path that line names (``cli.main``) — never 1, which CI reads as "the model got worse".
"""
from __future__ import annotations

import difflib
from typing import Iterable


INTERNAL_ERROR_EXIT = 3


class MobileExportError(Exception):
    """Base class of all intended errors."""

    exit_code = 2


class InternalError(MobileExportError):
    """Something failed that is not the user's input (exit 3)."""

    exit_code = INTERNAL_ERROR_EXIT


class UserError(MobileExportError):
    """Bad usage or bad input: the user can fix it (exit 2)."""


class UnknownModelError(UserError, KeyError):
    def __init__(self, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "run `mobile-export list` to see them."
        super().__init__(f"unknown model '{name}': {hint}")
        self.name = name
        self.suggestions = close

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return self.args[0]


class DuplicateModelError(MobileExportError, ValueError):
    def __init__(self, name: str):
        super().__init__(f"a model named '{name}' is already registered; pick another name.")


class WeightsError(UserError):
    """A weights file is missing, not a plain state_dict, or does not match the model."""


class InvalidOptionError(UserError, ValueError):
    """An option has a wrong value (input size, num_classes, precision, ...)."""


class OutputDirError(UserError):
    """The output directory cannot be created or written."""


class CalibrationError(UserError):
    """Calibration data is missing, empty, unreadable or of the wrong shape/dtype."""


class ArtifactError(UserError):
    """A .tflite / manifest given to validate is not what it claims to be."""


class UnsupportedOpError(MobileExportError):
    """The lowering has no function for an ONNX op (a gap in mobile-export, exit 2)."""

    def __init__(self, op_type: str, node_name: str, detail: str = ""):
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"ONNX op '{op_type}' in node '{node_name}' has no NHWC lowering{extra}; "
            "add one to mobile_export/lowering or simplify the model."
        )
        self.op_type = op_type
        self.node_name = node_name


class ConversionError(InternalError):
    """A conversion stage failed in a way that is not the user's input (exit 3)."""


class TensorFlowSetupError(UserError):
    """TensorFlow was started without the oneDNN kernels the lowered graph needs to run on the CPU."""

    def __init__(self, detail: str):
        super().__init__(
            f"TensorFlow cannot run this model's float graph without its oneDNN kernels ({detail}); "
            "set TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported (or import mobile_export first)."
        )


class FidelityError(MobileExportError):
    """The converted model does not reproduce the reference within the bounds."""

    exit_code = 1


class GateFailed(MobileExportError):
    """A validation gate failed (exit 1)."""

    exit_code = 1


def first_few(items: Iterable[str], n: int = 5) -> str:
    items = list(items)
    head = ", ".join(items[:n])
    return head + (f" (+{len(items) - n} more)" if len(items) > n else "")


class MatrixError(UserError):
    """A batch matrix file is malformed or names a model, option or file that does not exist."""
