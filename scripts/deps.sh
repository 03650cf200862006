#!/usr/bin/env bash
# Install the Debian packages that spindle's build, tests and benchmarks need.
# Fast when everything is present: one dpkg-query, no apt-get.
set -euo pipefail

packages=(
    gcc make pkg-config python3
    liburing-dev libaio-dev zlib1g-dev libzstd-dev libssl-dev libjansson-dev
    libcunit1-dev
    qemu-utils qemu-system-x86
    valgrind fio
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
        echo "deps: missing packages ${missing[*]} and not root (no sudo to install them)" >&2
        exit 1
    }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
