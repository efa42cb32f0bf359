"""Emulated ARM (qemu-aarch64 user mode): prepare a runtime without a phone and run .tflite models
on a chosen core, counting the instructions per inference.

    from mobile_export.runtimes.arm import setup, run_tflite
    setup("cortex-a76")                                   # once; later calls only verify
    run = run_tflite(model_bytes, raw_inputs_nhwc, cpu="cortex-a76")
    run.outputs, run.instructions_per_inference, run.plugin
    y, run = run_float(model_bytes, float_inputs_nhwc)      # host quantizes / dequantizes
"""
from mobile_export.runtimes.arm.qemu import EmulationError, QemuRun, run_float, run_tflite
from mobile_export.runtimes.arm.cpus import CPUS, DEFAULT_CPU, CpuSpec, UnknownCpuError, cpu_spec
from mobile_export.runtimes.arm.sysroot import ArmRuntime, ArmSetupError, cache_root, load, runtime_dir, setup

__all__ = ["CPUS", "DEFAULT_CPU", "ArmRuntime", "ArmSetupError", "CpuSpec", "EmulationError", "QemuRun",
           "UnknownCpuError", "cache_root", "cpu_spec", "load", "run_float", "run_tflite", "runtime_dir", "setup"]
