"""Emulated ARM (qemu-aarch64): runtime setup, bit-identical int8 outputs vs the host, instruction counts.

The runtime is prepared once in the user cache (``~/.cache/mobile-export/arm/cortex-a76``, or
``$MOBILE_EXPORT_CACHE/arm/...``). A cold first setup needs root, apt and network to Debian/PyPI
(about 1-2 minutes on a 2-core machine); later runs only verify checksums (under a second).
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mobile_export.runtimes.arm import cpus, sysroot

CPU = "cortex-a76"


def test_unknown_cpu_is_a_user_error(tmp_path, monkeypatch, capsys):
    from mobile_export.runtimes.arm import UnknownCpuError, run_tflite, setup
    from mobile_export.cli import main

    monkeypatch.setenv("MOBILE_EXPORT_CACHE", str(tmp_path))
    with pytest.raises(UnknownCpuError, match="unknown ARM cpu 'cortex-a99': pick one of .*cortex-a76"):
        setup("cortex-a99")
    with pytest.raises(UnknownCpuError):
        run_tflite(b"", np.zeros((1, 8, 8, 3), np.float32), cpu="arm7")
    assert main(["arm", "setup", "--cpu", "cortex-a99"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown ARM cpu 'cortex-a99'" in err
    assert not list(tmp_path.iterdir()), "an unknown cpu must not create anything"


def test_cpuinfo_per_core():
    a76, a53 = cpus.cpu_spec("cortex-a76").cpuinfo(2), cpus.cpu_spec("cortex-a53").cpuinfo(2)
    assert a76.count("processor\t:") == 2 and "CPU part\t: 0xd0b" in a76 and "asimddp" in a76
    assert "CPU part\t: 0xd03" in a53 and "asimddp" not in a53
    dirs = {sysroot.runtime_dir(c) for c in cpus.CPUS}
    assert len(dirs) == len(cpus.CPUS), "each core needs its own sysroot (the fake cpuinfo lives in it)"


@pytest.fixture(scope="module")
def arm_runtime():
    if not (shutil.which("apt-get") and shutil.which("dpkg")) and sysroot.load(CPU) is None:
        pytest.skip("no apt-get/dpkg (not Debian): the emulated ARM runtime cannot be prepared here")
    rt = sysroot.setup(CPU)
    assert rt.plugin is not None, f"instruction counting unavailable: {rt.plugin_note}"
    return rt


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    from mobile_export.api import export

    out = tmp_path_factory.mktemp("arm-int8")
    res = export("mobilenet_v3_small", precision="int8", input_size=64, out_dir=out, search=False,
                 num_calibration=32, input="normalized")  # int8 in and out: the raw tensors compared bit for bit
    return res.tflite_path.read_bytes()


@pytest.mark.slow
def test_setup_is_idempotent_and_verifies(arm_runtime, monkeypatch, tmp_path):
    root = arm_runtime.root
    before = {p.name: p.stat().st_mtime_ns for p in (root / "downloads").iterdir()}

    def no_download(*a, **k):
        raise AssertionError("a verified runtime must not download anything")

    monkeypatch.setattr(sysroot, "_download_debs", no_download)
    monkeypatch.setattr(sysroot, "_pip_wheels", no_download)
    again = sysroot.setup(CPU)
    assert again.info["action"] == "verified" and again.root == root
    assert {p.name: p.stat().st_mtime_ns for p in (root / "downloads").iterdir()} == before
    info = again.info
    assert set(info["downloads"]) == {f"downloads/{n}" for n in before}
    assert all(len(d) == 64 for d in info["downloads"].values())
    assert {k.split("/")[1].split("_")[0] for k in info["downloads"] if k.endswith(".deb")} == set(sysroot.DEB_PACKAGES)

    # A corrupted download is caught: verify a copy whose big trees are symlinks to the real ones.
    fake = tmp_path / CPU
    fake.mkdir()
    for name in ("sysroot", "pylib", "plugin"):
        (fake / name).symlink_to(root / name)
    shutil.copytree(root / "downloads", fake / "downloads")
    shutil.copy(root / "setup.json", fake / "setup.json")
    wanted = sysroot._wanted(cpus.cpu_spec(CPU))
    assert sysroot._verify(fake, wanted, hashes=True)[0] is not None
    victim = next(p for p in (fake / "downloads").iterdir() if p.name.startswith("libc6_"))
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    ok, why = sysroot._verify(fake, wanted, hashes=True)
    assert ok is None and "checksum mismatch" in why and victim.name in why


@pytest.mark.slow
def test_int8_bit_identical_to_host_with_repeatable_counts(arm_runtime, int8_model):
    from mobile_export.runtimes.arm import run_tflite
    from mobile_export.runtimes.host import TFLiteModel

    host = TFLiteModel(int8_model)
    assert host.inputs[0].dtype == "int8"
    rng = np.random.default_rng(0)
    x = host.quantize_input(rng.uniform(-2.0, 2.0, (3, 64, 64, 3)).astype(np.float32))
    run = run_tflite(int8_model, x, cpu=CPU)
    expected = []
    for i in range(len(x)):
        host.interp.set_tensor(host._in, x[i:i + 1])
        host.interp.invoke()
        expected.append(host.interp.get_tensor(host._out).copy())
    expected = np.concatenate(expected)
    assert run.outputs.dtype == np.int8 and run.outputs.shape == expected.shape
    assert int(np.count_nonzero(run.outputs != expected)) == 0, "emulated ARM int8 differs from the host"
    assert run.plugin and run.delegate_nodes == 1
    counts = run.instructions_per_inference
    assert len(counts) == 3 and min(counts) > 100_000
    assert (max(counts) - min(counts)) / min(counts) < 0.01, counts

    again = run_tflite(int8_model, x[:1], cpu=CPU)  # a separate emulator process
    assert np.array_equal(again.outputs, expected[:1])
    assert abs(again.instructions_per_inference[0] - counts[0]) / counts[0] < 0.01


@pytest.mark.slow
def test_wrong_input_dtype_is_refused_before_emulating(arm_runtime, int8_model):
    from mobile_export.runtimes.arm import run_tflite
    from mobile_export.errors import InvalidOptionError

    with pytest.raises(InvalidOptionError, match="quantize on the host"):
        run_tflite(int8_model, np.zeros((1, 64, 64, 3), np.float32), cpu=CPU)
    with pytest.raises(InvalidOptionError, match="NHWC"):
        run_tflite(int8_model, np.zeros((1, 3, 64, 64), np.int8), cpu=CPU)


def test_missing_qemu_without_apt_names_the_package(monkeypatch):
    monkeypatch.setattr(sysroot.shutil, "which", lambda name: None)
    with pytest.raises(sysroot.ArmSetupError) as e:
        sysroot.find_qemu()
    msg = str(e.value)
    assert "apt-get is unavailable" in msg and "install the Debian package qemu-user" in msg
    assert msg.count(".") <= 2 and "\n" not in msg
    monkeypatch.setattr(sysroot.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)
    monkeypatch.setattr(sysroot, "_is_root", lambda: False)
    with pytest.raises(sysroot.ArmSetupError, match="needs root; install the Debian package qemu-user"):
        sysroot.find_qemu()


@pytest.mark.slow
def test_validate_runtime_qemu_reports_identity_and_instruction_ratio(arm_runtime, mv3_small_64, tmp_path, capsys):
    """`mobile-export validate --runtime qemu`: outputs compared with the host and instruction
    counts for the int8 model and its fp32 sibling."""
    import shutil

    from mobile_export.cli import main

    shutil.copytree(mv3_small_64, tmp_path / "mobilenet_v3_small")
    path = tmp_path / "mobilenet_v3_small" / "int8" / "model.tflite"
    code = main(["validate", str(path), "--reference", "mobilenet_v3_small", "--runtime", "qemu", "--num", "16",
                 "--latency-runs", "0", "--cpu", CPU])
    out = capsys.readouterr().out
    assert code in (0, 1)  # the default int8 gate may fail on untrained weights; the ARM figures are what we check
    assert "emulated ARM" in out
    rep = json.loads((path.parent / "validation" / "report.json").read_text())
    arm = rep["arm"]
    assert arm["samples"] == 8 and arm["elements"] == 8 * 1000
    assert arm["instructions_median"] > 100_000
    assert 0 < arm["int8_over_fp32_instructions"] < 1.0  # int8 costs fewer instructions on ARM
    assert arm["differing_elements"] == 0, arm
