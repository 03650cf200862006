#!/usr/bin/env bash
# Block-job benchmarks, spindle beside QEMU: see bench/jobs.py.
#   bench/jobs.sh [-r RUNS] [-s SIZE] [-t SECONDS] [-d DIR]
set -euo pipefail
command -v qemu-storage-daemon >/dev/null || { echo "qemu-storage-daemon is not installed" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 is not installed" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio is not installed" >&2; exit 1; }
[ -w /dev/kvm ] || { echo "no usable /dev/kvm" >&2; exit 1; }
exec python3 "$(dirname "$0")/jobs.py" "$@"
