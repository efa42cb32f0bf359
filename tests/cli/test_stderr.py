"""stderr carries mobile-export's own lines only: native third-party noise (TensorFlow's import, the
TFLite converter, the interpreter) and third-party Python loggers appear with --verbose alone, and
what native code wrote is kept for an internal-error log. Real processes: pytest's own capture
would hide what fd 2 gets."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mobile_export.cli import _internal_error

SCRIPT = r"""
import logging, os, sys
from mobile_export.logs import cli_logging
with cli_logging() as native:
    os.write(2, b"native noise\n")
    print("ours, printed", file=sys.stderr)
    logging.getLogger("mobile_export.x").info("ours, logged")
    logging.getLogger("tensorflow").info("theirs, logged")
    logging.getLogger("tensorflow").error("theirs, an error")
    kept = native.text()
os.write(2, b"after\n")
print(repr(kept))
"""


def test_native_writes_are_kept_aside_and_python_stderr_still_reaches_the_terminal():
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == ["ours, printed", "mobile-export: ours, logged",
                                       "mobile-export: theirs, an error", "after"]
    assert res.stdout.strip() == repr("native noise\n")


def _export(tmp_path: Path, *extra: str) -> list[str]:
    env = {**os.environ, "MOBILE_EXPORT_CACHE": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-m", "mobile_export.cli", "squeezenet1_1", "--input-size", "64",
                          "--out", str(tmp_path / "dist"), *extra], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stderr.splitlines()


def test_an_export_prints_only_its_own_lines_unless_verbose(tmp_path):
    lines = _export(tmp_path)
    assert lines and all(ln.startswith("mobile-export: ") for ln in lines), \
        [ln for ln in lines if not ln.startswith("mobile-export: ")]
    assert any("convert to TFLite fp32 done" in ln for ln in lines)
    theirs = [ln for ln in _export(tmp_path, "--verbose") if not ln.startswith("mobile-export: ")]
    assert theirs, "--verbose showed no third-party output (TensorFlow's import, the interpreter)"


def test_an_internal_error_log_keeps_what_native_code_wrote(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MOBILE_EXPORT_CACHE", str(tmp_path))
    assert _internal_error(RuntimeError("boom"), "F0000 kernel.cc:12] Check failed\n") == 3
    err = capsys.readouterr().err
    log = Path(err.split("the traceback is in ")[1].split(" (please")[0])
    text = log.read_text()
    assert "RuntimeError: boom" in text and "native stderr (last lines):\nF0000 kernel.cc:12] Check failed" in text


CRASH = r"""
import ctypes, os
from mobile_export.logs import cli_logging
with cli_logging():
    os.write(2, b"native noise\n")
    ctypes.string_at(0)  # a segfault in native code
"""


def test_a_native_crash_still_shows_on_the_terminal():
    res = subprocess.run([sys.executable, "-c", CRASH], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "Fatal Python error: Segmentation fault" in res.stderr and "native noise" not in res.stderr
