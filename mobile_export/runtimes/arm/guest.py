"""The command line and environment that run the sysroot's Python under qemu-aarch64 (shared by
the sysroot's smoke test and the emulated runs)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mobile_export.runtimes.arm.sysroot import ArmRuntime

MARKER_SYSCALL = 0x7E57  # no aarch64 Linux syscall has this number: qemu answers ENOSYS, the plugin sees it


def guest_command(rt: "ArmRuntime", args: list[str], *, counts: Path | None = None,
                  threads: int = 1) -> tuple[list[str], dict]:
    """The qemu-aarch64 command line and environment that run the sysroot's python3.11 with
    ``args``; ``counts``: load the counting plugin, appending one line per marker bracket there."""
    cmd = [str(rt.qemu), "-cpu", rt.qemu_cpu, "-L", str(rt.sysroot)]
    if counts is not None and rt.plugin is not None:
        mode = "inline" if threads == 1 else "cb"  # the inline counter is shared: exact for one guest thread only
        cmd += ["-plugin", f"{rt.plugin},out={counts},marker={MARKER_SYSCALL},mode={mode}"]
    cmd += [str(rt.python), "-I", "-S", *args]
    # A clean environment: host LD_LIBRARY_PATH / PYTHON* would leak into the guest's loader and Python.
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return cmd, env
