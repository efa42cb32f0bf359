"""What the command line prints on stderr: mobile-export's own messages, third parties' only with
``--verbose``.

Two kinds of third-party noise reach stderr. Python loggers (TensorFlow's "Assets written to ...")
are filtered by the handler. Native code writes to file descriptor 2 directly — TensorFlow's import
(absl's "All log messages before absl::InitializeLog()", oneDNN and CUDA notices, printed before
``TF_CPP_MIN_LOG_LEVEL`` is read), the TFLite converter's "fully_quantize: ..." and the interpreter's
"Created TensorFlow Lite XNNPACK delegate" — so while a command runs, fd 2 points at a temporary
file and Python's ``sys.stderr`` at a duplicate of the real one. What native code wrote is kept for
an internal-error report (``Captured.text``); a fatal signal still prints Python's stack on the real
stderr (``faulthandler``).
"""
from __future__ import annotations

import faulthandler
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

OUR_PACKAGES = ("mobile_export", "models", "calibration")
FORMAT = "mobile-export: %(message)s"


class OursOnly(logging.Filter):
    """Pass mobile-export's records, and third parties' errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.name.split(".")[0] in OUR_PACKAGES


@dataclass
class Captured:
    """What native code wrote to fd 2 while it was redirected (None: it was not)."""

    sink: IO[bytes] | None = None

    def text(self, limit: int = 20_000) -> str:
        if self.sink is None:
            return ""
        self.sink.flush()
        self.sink.seek(0)
        data = self.sink.read()
        return data[-limit:].decode("utf-8", "replace")


def _is_process_stderr() -> bool:
    """Only the real stderr on fd 2 is redirected (not pytest's capture, not an embedding app's)."""
    try:
        return sys.stderr is sys.__stderr__ and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def native_stderr_captured(enabled: bool = True) -> Iterator[Captured]:
    """Point fd 2 at a temporary file and ``sys.stderr`` at the real stderr, for the block."""
    if not enabled or not _is_process_stderr():
        yield Captured()
        return
    old = sys.stderr
    old.flush()
    saved = os.dup(2)
    fault_handler_was_on = faulthandler.is_enabled()
    with tempfile.TemporaryFile(prefix="mobile-export-stderr-") as sink:
        os.dup2(sink.fileno(), 2)
        sys.stderr = open(saved, "w", encoding=old.encoding, errors=old.errors, buffering=1)
        # A crash in native code (segfault, abort) still says so on the terminal, with the Python stack.
        faulthandler.enable(file=sys.stderr)
        try:
            yield Captured(sink)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            if fault_handler_was_on:
                faulthandler.enable(file=old)
            else:
                faulthandler.disable()
            sys.stderr.close()  # closes ``saved``
            sys.stderr = old


@contextmanager
def cli_logging(*, quiet: bool = False, verbose: bool = False) -> Iterator[Captured]:
    """Log records to stderr as ``mobile-export: ...`` (INFO, or WARNING with ``quiet``); third-party
    records and native stderr only with ``verbose``. Restores the root logger on exit."""
    with native_stderr_captured(enabled=not verbose) as captured:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        if not verbose:
            handler.addFilter(OursOnly())
        root = logging.getLogger()
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.WARNING if quiet else logging.INFO)
        try:
            yield captured
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
