"""Runs inside the emulated ARM guest (qemu-aarch64 + the arm64 sysroot's python3.11), started by
``mobile_export.runtimes.arm.qemu.run_tflite``. It needs only numpy and ai_edge_litert (the aarch64 wheels) and
imports nothing from mobile_export.

    python3.11 -I -S guest_runner.py WORKDIR

WORKDIR holds ``job.json`` (pylib, threads, marker syscall number, warmup), ``model.tflite`` and
``inputs.npy`` (raw input tensors, already quantized by the host, stacked along the batch axis).
The runner loads the model with XNNPACK, invokes it once per model batch, each invoke bracketed by
two marker syscalls that the counting plugin (plugin/count.c) turns into instruction counts, and
writes ``outputs.npy`` (raw first-output tensors, stacked) and ``result.json`` (with the wall time of
every invoke). On a real device (``mobile_export.runtimes.arm.adb``) ``marker`` is null: no marker syscalls,
and ``pylib`` may be empty (the device's Python already has ai_edge_litert).
"""
import ctypes
import json
import os
import sys
import time

MAGIC = 0x4D455850  # "MEXP": must match MARK_MAGIC in plugin/count.c
BEGIN, END = 1, 2


def main(workdir: str) -> int:
    with open(os.path.join(workdir, "job.json")) as f:
        job = json.load(f)
    if job.get("pylib"):
        sys.path.insert(0, job["pylib"])
    import numpy as np
    from ai_edge_litert import interpreter as litert

    if job.get("marker") is not None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        nr, magic = ctypes.c_long(job["marker"]), ctypes.c_long(MAGIC)

        def mark(what):
            libc.syscall(nr, ctypes.c_long(what), magic)
    else:
        def mark(what):
            pass

    interp = litert.Interpreter(model_path=os.path.join(workdir, "model.tflite"), num_threads=job["threads"],
                                experimental_op_resolver_type=litert.OpResolverType.AUTO if job.get("xnnpack", True)
                                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    try:  # one DELEGATE node per XNNPACK partition (a private API: -1 when a runtime lacks it)
        delegates = sum(1 for op in interp._get_ops_details() if op["op_name"] == "DELEGATE")
    except AttributeError:
        delegates = -1
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    x = np.load(os.path.join(workdir, "inputs.npy"), allow_pickle=False)
    b = int(inp["shape"][0])

    def once(i):
        interp.set_tensor(inp["index"], x[i:i + b])

    # An empty bracket measures what the markers themselves cost; it is subtracted on the host.
    for _ in range(3):
        mark(BEGIN)
        mark(END)
    for _ in range(job["warmup"]):  # the first invoke sets XNNPACK's runtime up: not a steady-state inference
        once(0)
        interp.invoke()
    outs, invoke_s = [], []
    for i in range(0, len(x), b):
        once(i)
        t0 = time.perf_counter()  # outside the counted bracket: the markers cost nothing on a device
        mark(BEGIN)
        interp.invoke()
        mark(END)
        invoke_s.append(time.perf_counter() - t0)
        outs.append(np.array(interp.get_tensor(out["index"])))
    wall = sum(invoke_s)
    np.save(os.path.join(workdir, "outputs.npy"), np.concatenate(outs))
    with open(os.path.join(workdir, "result.json"), "w") as f:
        json.dump({"delegate_nodes": delegates, "wall_seconds": wall, "invoke_ms": [t * 1e3 for t in invoke_s],
                   "numpy": np.__version__,
                   "machine": os.uname().machine, "calibration_brackets": 3}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
