"""The ARM cores mobile-export can emulate: the QEMU model for each and the /proc/cpuinfo a phone
with that core shows (XNNPACK, through the cpuinfo library, picks micro-kernels from it)."""
from __future__ import annotations

from dataclasses import dataclass

from mobile_export.errors import InvalidOptionError


@dataclass(frozen=True)
class CpuSpec:
    """A core: the QEMU model that emulates its ISA and the /proc/cpuinfo a phone with it shows.
    XNNPACK (through the cpuinfo library) picks its micro-kernels from the cpuinfo part number and
    the hwcaps, so both must describe the same core."""

    name: str
    qemu_cpu: str            # -cpu value; QEMU 7.2 has no cortex-a55: its ISA (v8.2 + dotprod + fp16) is a76's
    part: int
    variant: int
    revision: int
    features: str
    implementer: int = 0x41  # Arm Ltd.

    def cpuinfo(self, n: int) -> str:
        block = (f"BogoMIPS\t: 38.40\nFeatures\t: {self.features}\nCPU implementer\t: 0x{self.implementer:02x}\n"
                 f"CPU architecture: 8\nCPU variant\t: 0x{self.variant:x}\nCPU part\t: 0x{self.part:03x}\n"
                 f"CPU revision\t: {self.revision}\n")
        return "".join(f"processor\t: {i}\n{block}\n" for i in range(n))


_V80 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_V82 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
CPUS: dict[str, CpuSpec] = {c.name: c for c in (
    CpuSpec("cortex-a76", "cortex-a76", 0xD0B, 0x4, 1, _V82 + " ssbs"),
    CpuSpec("cortex-a55", "cortex-a76", 0xD05, 0x2, 0, _V82),
    CpuSpec("cortex-a53", "cortex-a53", 0xD03, 0x0, 4, _V80),
    CpuSpec("cortex-a72", "cortex-a72", 0xD08, 0x0, 3, _V80),
    CpuSpec("neoverse-n1", "neoverse-n1", 0xD0C, 0x3, 1, _V82 + " ssbs"),
)}
DEFAULT_CPU = "cortex-a76"


class UnknownCpuError(InvalidOptionError):
    def __init__(self, name: str):
        super().__init__(f"unknown ARM cpu '{name}': pick one of {', '.join(sorted(CPUS))}.")


def cpu_spec(name: str) -> CpuSpec:
    try:
        return CPUS[name]
    except KeyError:
        raise UnknownCpuError(name) from None
