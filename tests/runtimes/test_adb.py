"""`validate --runtime adb` against a fake adb on PATH: device selection, command construction,
benchmark_model output parsing, output round trip and clean-up. No real device is needed; the fake
maps the device's /data/local/tmp to a host directory and its `python3` to this interpreter, so the
real guest runner runs and its outputs must equal the host's bit for bit."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from mobile_export.runtimes.arm import adb

BENCH_OUTPUT = """STARTING!
Log parameter values verbosely: [0]
Num threads: [1]
Graph: [{graph}]
Use xnnpack: [1]
Loaded model {graph}
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
The input model file size (MB): 1.2
Initialized session in 20.283ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=2 first=3393 curr=2663 min=2663 max=3393 avg=3028 std=364
Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first={avg} curr={avg} min={mn} max=2801 avg={avg} std=41
Inference timings in us: Init: 20283, First inference: 3393, Warmup (avg): 3028, Inference (avg): {avg}
"""

FAKE_ADB = r'''#!{python}
import json, os, shutil, subprocess, sys
root = os.environ["FAKE_ADB_ROOT"]
args = sys.argv[1:]
with open(os.path.join(root, "calls.log"), "a") as f:
    f.write(json.dumps(args) + "\n")
if args[:2] == ["devices", "-l"]:
    print(os.environ.get("FAKE_ADB_DEVICES", "List of devices attached\nFAKE123\tdevice product:fake model:Fake_Phone transport_id:1"))
    sys.exit(0)
if args[0] == "-s":
    args = args[2:]
dev = lambda p: os.path.join(root, "device", p.lstrip("/"))
if args[0] == "push":
    os.makedirs(os.path.dirname(dev(args[2])), exist_ok=True)
    shutil.copy(args[1], dev(args[2]))
elif args[0] == "pull":
    if not os.path.exists(dev(args[1])):
        sys.exit("adb: error: failed to stat remote object '%s': No such file or directory" % args[1])
    shutil.copy(dev(args[1]), args[2])
elif args[0] == "shell":
    cmd = " ".join(args[1:]).replace("/data/", dev("/data") + "/")
    env = dict(os.environ, PATH=os.path.join(root, "bin") + ":/usr/bin:/bin")
    p = subprocess.run(["sh", "-c", cmd], env=env)
    sys.exit(0)  # like adb before Android N: the remote exit status is not passed back
'''

FAKE_BENCH = r'''#!/bin/sh
graph=""
for a in "$@"; do case "$a" in --graph=*) graph="${a#--graph=}";; esac; done
[ -f "$graph" ] || { echo "ERROR: Could not open '$graph'."; exit 1; }
echo "$@" >> "$FAKE_ADB_ROOT/bench_args.log"
case "$graph" in *fp32*) avg=5000 mn=4900;; *) avg=2500 mn=2400;; esac
cat <<EOF
''' + BENCH_OUTPUT.replace("{graph}", "$graph").replace("{avg}", "$avg").replace("{mn}", "$mn") + '''EOF
'''


def _exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fake_device(tmp_path, monkeypatch):
    """A fake adb on PATH and a fake device with Python (this interpreter) and getprop."""
    root = tmp_path / "fake-adb"
    _exe(root / "bin" / "adb", FAKE_ADB.replace("{python}", sys.executable))
    _exe(root / "bin" / "getprop", "#!/bin/sh\necho arm64-v8a\n")
    _exe(root / "bin" / "python3", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # a symlink would lose the venv
    (root / "device" / "data" / "local" / "tmp").mkdir(parents=True)
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    monkeypatch.delenv("ADB", raising=False)
    return root


def _calls(root: Path) -> list[list[str]]:
    return [json.loads(line) for line in (root / "calls.log").read_text().splitlines()]


def test_device_selection_errors_name_the_fix(monkeypatch):
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    text = "List of devices attached\n* daemon started successfully\nA1\tdevice usb:1-1 model:Pixel_7\nB2\tunauthorized usb:1-2\n"
    devs = adb.parse_devices(text)
    assert [(d.serial, d.state) for d in devs] == [("A1", "device"), ("B2", "unauthorized")]
    assert devs[0].props["model"] == "Pixel_7"
    assert adb.pick_device(devs, None).serial == "A1"  # the only ready one
    with pytest.raises(adb.AdbError, match="unauthorized; accept the USB-debugging prompt"):
        adb.pick_device(devs, "B2")
    with pytest.raises(adb.AdbError, match="device 'C3' is not connected .*A1, B2"):
        adb.pick_device(devs, "C3")
    with pytest.raises(adb.AdbError, match="2 devices are connected; pick one with --serial"):
        adb.pick_device(adb.parse_devices("A1 device\nB2 device\n"), None)
    with pytest.raises(adb.AdbError, match="no device is connected"):
        adb.pick_device([], None)
    monkeypatch.setenv("ANDROID_SERIAL", "B2")
    with pytest.raises(adb.AdbError, match="B2 is unauthorized"):
        adb.pick_device(devs, None)


def test_benchmark_output_is_parsed_in_ms():
    b = adb.parse_benchmark(BENCH_OUTPUT.format(graph="/x.tflite", avg=2500, mn=2400))
    assert b == {"init_ms": 20.283, "first_ms": 3.393, "warmup_avg_ms": 3.028, "avg_ms": 2.5,
                 "runs": 50, "min_ms": 2.4, "max_ms": 2.801, "std_ms": 0.041}
    with pytest.raises(adb.AdbError, match="no 'Inference timings in us' line; its last line was: ERROR: bad graph"):
        adb.parse_benchmark("STARTING!\nERROR: bad graph\n")


def test_no_adb_is_one_line_exit_2(exported, tmp_path, monkeypatch, capsys):
    from mobile_export.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ADB", raising=False)
    with pytest.raises(adb.AdbError, match="adb was not found; install it"):
        adb.run_on_device(b"", None, adb.DeviceOptions(benchmark="/data/local/tmp/bm"))
    code = main(["validate", str(exported / "int8" / "model.tflite"), "--reference", "mobilenet_v3_small",
                 "--runtime", "adb", "--num", "8", "--latency-runs", "0", "--out", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "adb was not found" in err


def test_nothing_to_run_and_missing_binary_are_refused(fake_device, tmp_path):
    with pytest.raises(adb.AdbError, match="nothing to run on FAKE123: no benchmark_model .* --device-python"):
        adb.run_on_device(b"tflite", None, adb.DeviceOptions())
    with pytest.raises(adb.AdbError, match="exists neither on the host nor on FAKE123"):
        adb.run_on_device(b"tflite", None, adb.DeviceOptions(benchmark="/data/local/tmp/nope"))
    with pytest.raises(adb.AdbError, match="no such local file"):
        adb.run_on_device(b"tflite", None, adb.DeviceOptions(benchmark="bin/benchmark_model"))
    assert not any((fake_device / "device" / "data" / "local" / "tmp").iterdir()), "nothing may be left behind"


@pytest.fixture
def exported(mv3_small_64, tmp_path):
    """A private copy of the session's fp32 / int8 pair (the device tests write reports beside it)."""
    import shutil

    shutil.copytree(mv3_small_64, tmp_path / "mobilenet_v3_small")
    return tmp_path / "mobilenet_v3_small"


def test_validate_runtime_adb_round_trip(fake_device, exported, capsys):
    """Python on the device: outputs come back bit-identical; benchmark_model at the default path
    times the int8 model and its fp32 sibling; the run directory is removed."""
    from mobile_export.cli import main

    _exe(fake_device / "device" / "data" / "local" / "tmp" / "benchmark_model", FAKE_BENCH)
    path = exported / "int8" / "model.tflite"
    code = main(["validate", str(path), "--reference", "mobilenet_v3_small", "--runtime", "adb", "--num", "16",
                 "--latency-runs", "0", "--device-python", "python3", "--device-runs", "20"])
    out, err = capsys.readouterr()
    assert code in (0, 1), err  # untrained int8 may miss the default gate; the device figures are what we check
    rep = json.loads((path.parent / "validation" / "report.json").read_text())
    dev = rep["device"]
    assert dev["serial"] == "FAKE123" and dev["abi"] == "arm64-v8a"
    assert dev["samples"] == 8 and dev["elements"] == 8 * 1000 and dev["bit_identical"], dev
    assert dev["python_invokes"] == 8 and dev["python_invoke_median_ms"] > 0 and dev["delegate_nodes"] == 1
    assert dev["benchmark"]["avg_ms"] == 2.5 and dev["benchmark"]["fp32_avg_ms"] == 5.0
    assert dev["benchmark"]["over_fp32"] == 0.5
    assert "device FAKE123 (arm64-v8a); 8 samples bit-identical to the host" in out
    assert "0.50x the fp32 model's 5.00 ms" in (path.parent / "validation" / "report.md").read_text()

    calls = _calls(fake_device)
    assert all(c[:2] == ["-s", "FAKE123"] for c in calls if c[:1] != ["devices"])
    pushed = [Path(c[3]).name for c in calls if c[2:3] == ["push"]]
    assert sorted(pushed) == ["fp32.tflite", "guest_runner.py", "inputs.npy", "job.json", "model.tflite"]
    bench = (fake_device / "bench_args.log").read_text().splitlines()
    assert len(bench) == 2 and all("--num_threads=1 --use_xnnpack=true --num_runs=20 --warmup_runs=1" in b
                                   for b in bench)
    assert any(c[2:3] == ["shell"] and c[3].startswith("rm -rf /data/local/tmp/mobile-export/") for c in calls)
    assert not any((fake_device / "device" / "data" / "local" / "tmp" / "mobile-export").iterdir())


def test_local_benchmark_binary_is_pushed_and_device_failure_is_reported(fake_device, exported, tmp_path):
    local = _exe(tmp_path / "benchmark_model", FAKE_BENCH)
    model = (exported / "fp32" / "model.tflite").read_bytes()
    run = adb.run_on_device(model, None, adb.DeviceOptions(benchmark=str(local), runs=5))
    assert run.outputs is None and run.benchmark["avg_ms"] == 2.5 and "over_fp32" not in run.benchmark
    calls = _calls(fake_device)
    assert any(c[2:3] == ["push"] and c[3] == str(local) and c[4].endswith("/benchmark_model") for c in calls)
    assert any(c[2:3] == ["shell"] and c[3].startswith("chmod 755 ") for c in calls)
    # a device Python without ai_edge_litert: the runner's failure surfaces as one AdbError naming it
    _exe(fake_device / "bin" / "python-bare", "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'ai_edge_litert'\" >&2\nexit 1\n")
    import numpy as np

    with pytest.raises(adb.AdbError, match="the device's Python runner on FAKE123 failed \\(exit 1\\)"):
        adb.run_on_device(model, np.zeros((1, 64, 64, 3), np.float32), adb.DeviceOptions(python="python-bare"))
    assert not any((fake_device / "device" / "data" / "local" / "tmp" / "mobile-export").iterdir())
