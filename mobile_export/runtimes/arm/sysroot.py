"""Prepare an emulated-ARM TFLite runtime without a phone: qemu-user, an arm64 Debian sysroot with
Python 3.11, the aarch64 ai-edge-litert and numpy wheels, a fake ``/proc/cpuinfo`` for the chosen
core, and a TCG plugin that counts guest instructions.

Everything lives in ``$MOBILE_EXPORT_CACHE/arm/<cpu>/`` (default ``~/.cache/mobile-export/arm/<cpu>/``),
one directory per core because the fake cpuinfo is part of the sysroot::

    setup.json      what was built: cpu, qemu, package versions, sha256 of every downloaded file
    downloads/      the arm64 .debs and aarch64 wheels, kept so a later setup can verify them
    sysroot/        `dpkg -x` of the .debs + proc/cpuinfo  (qemu-aarch64 -L sysroot)
    pylib/          the wheels, pip-installed with --platform/--target
    plugin/count.so the instruction-counting plugin (built from plugin/count.c)

``setup()`` is idempotent (a second call re-hashes the downloads and returns) and atomic (it builds
in a temporary directory beside the final one and renames it into place). Installing ``qemu-user``
and enabling the arm64 architecture in apt need root; without it the error names what to install.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mobile_export.artifacts import sha256_file
from mobile_export.errors import UserError, first_few
from mobile_export.runtimes.arm.cpus import DEFAULT_CPU, CpuSpec, cpu_spec
from mobile_export.runtimes.arm.guest import guest_command

log = logging.getLogger("mobile_export.runtimes.arm")

FORMAT = 1  # bump when the layout or the recipe below changes: older sysroots are rebuilt
PLUGIN_SRC = Path(__file__).with_name("plugin") / "count.c"
QEMU_PACKAGE = "qemu-user"  # Debian's dynamically linked qemu-user (7.2) accepts -plugin; -static does not
# The smallest set of arm64 packages with which `import numpy, ai_edge_litert.interpreter` works:
# python3.11 links libc, libm, libz and libexpat; the stdlib's ctypes needs libffi; the wheels' C++
# extensions need libstdc++ and libgcc_s. (ssl, bz2, lzma, sqlite, readline ... are never imported.)
DEB_PACKAGES = ("libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libffi8",
                "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11-minimal")
WHEELS = ("ai-edge-litert", "numpy")  # --no-deps: the interpreter imports nothing else
WHEEL_FALLBACK_VERSIONS = {"ai-edge-litert": "2.3.0", "numpy": "2.4.6"}
PIP_PLATFORMS = ("manylinux_2_27_aarch64", "manylinux2014_aarch64", "manylinux_2_17_aarch64")


class ArmSetupError(UserError):
    """The emulated-ARM runtime cannot be prepared on this machine (a missing package, no root, no network)."""


def cache_root() -> Path:
    base = os.environ.get("MOBILE_EXPORT_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "mobile-export") / "arm"


def runtime_dir(cpu: str) -> Path:
    return cache_root() / cpu_spec(cpu).name


@dataclass(frozen=True)
class ArmRuntime:
    """A prepared runtime: what `qemu.run_tflite` needs to start a guest."""

    cpu: str
    qemu_cpu: str
    root: Path
    qemu: Path
    plugin: Path | None      # None: no instruction counts (the reason is in ``plugin_note``)
    plugin_note: str
    info: dict

    @property
    def sysroot(self) -> Path:
        return self.root / "sysroot"

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / "python3.11"

    @property
    def pylib(self) -> Path:
        return self.root / "pylib"


# ---------------------------------------------------------------------------------------------- helpers

_sha256 = sha256_file


def _run(cmd: list[str], what: str, *, cwd: Path | None = None, fix: str = "", timeout: float = 1800) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except FileNotFoundError:
        raise ArmSetupError(f"{what} failed: {cmd[0]} is not installed{fix}.") from None
    except subprocess.TimeoutExpired:
        raise ArmSetupError(f"{what} timed out after {timeout:.0f} s{fix}.") from None
    if p.returncode != 0:
        lines = [ln.strip() for ln in (p.stderr + "\n" + p.stdout).splitlines()
                 if ln.strip() and not ln.startswith(("W:", "WARNING: Location"))]
        detail = lines[-1][:200] if lines else f"exit {p.returncode}"
        raise ArmSetupError(f"{what} failed ({detail}){fix}.")
    return p.stdout


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _qemu_takes_plugins(qemu: str) -> bool:
    try:
        out = subprocess.run([qemu, "-h"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "-plugin" in out


def find_qemu(*, install: bool = True) -> tuple[Path, bool]:
    """``(qemu-aarch64, takes_plugins)``; installs Debian's qemu-user when no plugin-capable
    qemu-aarch64 is on PATH (root + apt-get). A qemu-aarch64-static alone runs models, uncounted."""
    q = shutil.which("qemu-aarch64")
    if q and _qemu_takes_plugins(q):
        return Path(q), True
    if install:
        fix = f"; install the Debian package {QEMU_PACKAGE} (apt-get install {QEMU_PACKAGE}) and rerun"
        if not shutil.which("apt-get"):
            err = ArmSetupError(f"qemu-aarch64 with plugin support is missing and apt-get is unavailable{fix}.")
        elif not _is_root():
            err = ArmSetupError(f"qemu-aarch64 with plugin support is missing and installing it needs root{fix}.")
        else:
            try:
                log.info("installing %s with apt-get", QEMU_PACKAGE)
                try:
                    _run(["apt-get", "install", "-y", "--no-install-recommends", QEMU_PACKAGE], "apt-get install", fix=fix)
                except ArmSetupError:
                    _run(["apt-get", "update"], "apt-get update", fix=fix)
                    _run(["apt-get", "install", "-y", "--no-install-recommends", QEMU_PACKAGE], "apt-get install", fix=fix)
                return find_qemu(install=False)
            except ArmSetupError as e:
                err = e
    else:
        err = ArmSetupError(f"qemu-aarch64 is missing; install the Debian package {QEMU_PACKAGE}.")
    for other in (q, shutil.which("qemu-aarch64-static")):
        if other:
            log.warning("%s; using %s without instruction counts", str(err).rstrip("."), other)
            return Path(other), False
    raise err


def _ensure_arm64_apt() -> None:
    archs = _run(["dpkg", "--print-foreign-architectures"], "dpkg --print-foreign-architectures",
                 fix="; this needs a Debian-based machine with dpkg and apt-get").split()
    if "arm64" in archs:
        return
    fix = "; run `dpkg --add-architecture arm64 && apt-get update` as root, then rerun"
    if not _is_root():
        raise ArmSetupError(f"apt does not know the arm64 architecture and enabling it needs root{fix}.")
    log.info("enabling the arm64 architecture in apt (dpkg --add-architecture arm64; apt-get update)")
    _run(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64", fix=fix)
    _run(["apt-get", "update"], "apt-get update", fix=fix)


def _download_debs(dest: Path) -> None:
    if not shutil.which("apt-get"):
        raise ArmSetupError(f"apt-get is unavailable; the arm64 sysroot is built from Debian packages "
                            f"({', '.join(DEB_PACKAGES)}), so run this on Debian or Ubuntu.")
    _ensure_arm64_apt()
    cmd = ["apt-get", "download", "-o", "APT::Sandbox::User=root", *[f"{p}:arm64" for p in DEB_PACKAGES]]
    fix = f"; check that apt can reach the Debian archive (apt-get download {DEB_PACKAGES[0]}:arm64)"
    try:
        _run(cmd, "apt-get download of the arm64 packages", cwd=dest, fix=fix)
    except ArmSetupError:
        if not _is_root():
            raise
        _run(["apt-get", "update"], "apt-get update", fix=fix)  # stale lists: versions gone from the mirror
        _run(cmd, "apt-get download of the arm64 packages", cwd=dest, fix=fix)


def _wheel_versions() -> dict[str, str]:
    """The host's versions, so the guest runs the same TFLite/XNNPACK build as the host does."""
    out = {}
    for name in WHEELS:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = WHEEL_FALLBACK_VERSIONS[name]
    return out


def _pip_wheels(downloads: Path, pylib: Path, versions: dict[str, str]) -> None:
    plat = [a for p in PIP_PLATFORMS for a in ("--platform", p)]
    common = ["--only-binary=:all:", "--no-deps", *plat, "--python-version", "3.11", "--implementation", "cp",
              "--abi", "cp311", "--disable-pip-version-check", "-q"]
    specs = [f"{n}=={v}" for n, v in versions.items()]
    fix = f"; check that pip can reach PyPI (pip download --platform manylinux_2_27_aarch64 {specs[0]})"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "download", *common, "-d", str(downloads), *specs], "pip download of the aarch64 wheels", fix=fix)
    wheels = sorted(str(p) for p in downloads.glob("*.whl"))
    _run([*pip, "install", *common, "--no-index", "--target", str(pylib), *wheels],
         "pip install of the aarch64 wheels", fix=fix)


def build_plugin(dest: Path) -> tuple[Path | None, str]:
    """Compile plugin/count.c into ``dest/count.so``; ``(None, reason)`` when there is no compiler."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        return None, "no C compiler to build the counting plugin (apt-get install gcc libc6-dev)"
    dest.mkdir(parents=True, exist_ok=True)
    so = dest / "count.so"
    p = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-o", str(so), str(PLUGIN_SRC)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return None, f"building the counting plugin failed ({(p.stderr.strip().splitlines() or ['?'])[-1][:160]})"
    return so, ""


def _smoke_test(rt: ArmRuntime) -> tuple[bool, str]:
    """Import numpy and the interpreter in the guest, with the plugin loaded when there is one.
    Returns (plugin works, note)."""
    code = (f"import sys; sys.path.insert(0, {str(rt.pylib)!r}); import numpy; "
            "from ai_edge_litert import interpreter; print('ok', numpy.__version__)")
    with tempfile.TemporaryDirectory(prefix="me-arm-smoke-") as d:
        counts = Path(d) / "counts.txt"
        for use_plugin in ([True, False] if rt.plugin else [False]):
            cmd, env = guest_command(rt, ["-c", code], counts=counts if use_plugin else None)
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if p.returncode == 0 and "ok" in p.stdout:
                return use_plugin, "" if use_plugin else rt.plugin_note
            tail = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1][:200]
            if use_plugin:
                log.warning("qemu-aarch64 did not load the counting plugin (%s); trying without it", tail)
                rt = dataclasses.replace(rt, plugin=None, plugin_note=f"plugin failed to load: {tail}")
                continue
            raise ArmSetupError(f"the emulated Python in {rt.sysroot} cannot import numpy and ai_edge_litert "
                                f"({tail}); delete {rt.root} and rerun `mobile-export arm setup`.")
    return False, rt.plugin_note


# ---------------------------------------------------------------------------------------------- setup

def _wanted(spec: CpuSpec) -> dict:
    return {"format": FORMAT, "cpu": spec.name, "qemu_cpu": spec.qemu_cpu, "packages": list(DEB_PACKAGES),
            "wheels": _wheel_versions(), "plugin_source_sha256": _sha256(PLUGIN_SRC)}


def _verify(root: Path, wanted: dict, *, hashes: bool) -> tuple[dict | None, str]:
    """``(info, "")`` when ``root`` holds a complete runtime built for ``wanted``; else ``(None, why)``."""
    try:
        info = json.loads((root / "setup.json").read_text())
    except (OSError, ValueError):
        return None, "no setup.json"
    for k, v in wanted.items():
        if info.get(k) != v:
            return None, f"{k} changed ({info.get(k)} -> {v})"
    needed = [root / "sysroot/usr/bin/python3.11", root / "sysroot/proc/cpuinfo", root / "pylib/ai_edge_litert",
              root / "pylib/numpy"]
    if info.get("plugin"):
        needed.append(root / info["plugin"])
    missing = [str(p.relative_to(root)) for p in needed if not p.exists()]
    if missing:
        return None, f"missing {first_few(missing)}"
    if hashes:
        files = {**info.get("downloads", {}), **info.get("generated", {})}
        bad = [name for name, digest in files.items()
               if not (root / name).is_file() or _sha256(root / name) != digest]
        if bad:
            return None, f"checksum mismatch for {first_few(bad)}"
    return info, ""


def _runtime(root: Path, info: dict) -> ArmRuntime:
    qemu = Path(info["qemu"])
    if not qemu.exists():  # qemu was removed or moved since setup: find (or install) it again
        qemu, takes = find_qemu()
        if not takes and info.get("plugin"):
            info = {**info, "plugin": None, "plugin_note": f"{qemu} does not accept -plugin"}
    plugin = root / info["plugin"] if info.get("plugin") else None
    return ArmRuntime(cpu=info["cpu"], qemu_cpu=info["qemu_cpu"], root=root, qemu=qemu, plugin=plugin,
                      plugin_note=info.get("plugin_note", ""), info=info)


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load(cpu: str = DEFAULT_CPU) -> ArmRuntime | None:
    """The runtime prepared for ``cpu``, or None when `setup` has not built it (no hashing: fast)."""
    spec = cpu_spec(cpu)
    root = runtime_dir(spec.name)
    info, _ = _verify(root, _wanted(spec), hashes=False)
    return _runtime(root, info) if info else None


def setup(cpu: str = DEFAULT_CPU, *, force: bool = False) -> ArmRuntime:
    """Prepare (or verify) the emulated runtime for ``cpu`` and return it. ``runtime.info["action"]``
    says what happened: ``verified`` (nothing downloaded) or ``built``."""
    spec = cpu_spec(cpu)
    root = runtime_dir(spec.name)
    wanted = _wanted(spec)
    with _lock(root.parent / f".{spec.name}.lock"):
        if not force:
            info, why = _verify(root, wanted, hashes=True)
            if info:
                rt = _runtime(root, {**info, "action": "verified"})
                log.info("ARM runtime for %s verified in %s", spec.name, root)
                return rt
            if root.exists():
                log.info("rebuilding the ARM runtime in %s (%s)", root, why)
        return _build(spec, root, wanted)


def _build(spec: CpuSpec, root: Path, wanted: dict) -> ArmRuntime:
    t0 = time.monotonic()
    qemu, takes_plugins = find_qemu()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.build-", dir=root.parent))
    try:
        downloads, sysroot, pylib = tmp / "downloads", tmp / "sysroot", tmp / "pylib"
        for d in (downloads, sysroot, pylib):
            d.mkdir()
        log.info("downloading arm64 packages: %s", ", ".join(DEB_PACKAGES))
        _download_debs(downloads)
        debs = sorted(downloads.glob("*.deb"))
        versions = {}
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(sysroot)], f"unpacking {deb.name}")
            name, ver = deb.name.split("_")[:2]
            versions[name] = ver.replace("%3a", ":")
        log.info("installing aarch64 wheels: %s", ", ".join(f"{k}=={v}" for k, v in wanted["wheels"].items()))
        _pip_wheels(downloads, pylib, wanted["wheels"])
        (sysroot / "proc").mkdir()
        (sysroot / "proc" / "cpuinfo").write_text(spec.cpuinfo(max(1, os.cpu_count() or 1)))
        plugin, note = (None, f"{qemu} does not accept -plugin (install {QEMU_PACKAGE})")
        if takes_plugins:
            plugin, note = build_plugin(tmp / "plugin")
        info = {**wanted, "qemu": str(qemu), "qemu_version": _qemu_version(qemu),
                "plugin": str(plugin.relative_to(tmp)) if plugin else None, "plugin_note": note,
                "deb_versions": versions}
        probe = ArmRuntime(cpu=spec.name, qemu_cpu=spec.qemu_cpu, root=tmp, qemu=qemu, plugin=plugin,
                           plugin_note=note, info=info)
        log.info("checking the emulated Python (qemu-aarch64 -cpu %s)", spec.qemu_cpu)
        plugin_ok, note = _smoke_test(probe)
        if plugin and not plugin_ok:
            info.update(plugin=None, plugin_note=note)
        generated = [tmp / "sysroot/proc/cpuinfo"] + ([tmp / info["plugin"]] if info["plugin"] else [])
        info["downloads"] = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(downloads.iterdir())}
        info["generated"] = {str(p.relative_to(tmp)): _sha256(p) for p in generated}
        info["build_seconds"] = round(time.monotonic() - t0, 1)
        (tmp / "setup.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        old = None
        if root.exists():
            old = root.with_name(f".{spec.name}.old-{os.getpid()}")
            root.rename(old)
        tmp.rename(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("ARM runtime for %s built in %s (%.0f s)", spec.name, root, info["build_seconds"])
    return _runtime(root, {**info, "action": "built"})


def _qemu_version(qemu: Path) -> str:
    try:
        out = subprocess.run([str(qemu), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.splitlines() or ["unknown"])[0]
