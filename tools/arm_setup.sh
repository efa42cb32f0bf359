#!/usr/bin/env bash
# Prepare the emulated-ARM runtime (qemu-aarch64 + arm64 sysroot + aarch64 ai-edge-litert + counting
# plugin) in ~/.cache/mobile-export/arm/<cpu>/ (or $MOBILE_EXPORT_CACHE/arm/<cpu>/).
#   tools/arm_setup.sh [--cpu cortex-a76|cortex-a55|cortex-a53|cortex-a72|neoverse-n1] [--force]
# The first run needs root (apt-get install qemu-user, dpkg --add-architecture arm64) and network to
# Debian and PyPI; later runs only verify checksums. See mobile_export/runtimes/arm/sysroot.py.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ -x "$repo/.venv/bin/mobile-export" ]; then
    exec "$repo/.venv/bin/mobile-export" arm setup "$@"
elif command -v mobile-export >/dev/null 2>&1; then
    exec mobile-export arm setup "$@"
else
    exec python3 -m mobile_export.cli arm setup "$@"
fi
