#!/usr/bin/env bash
# Fetch Debian's kernel for the Linux boot test: OUT/vmlinuz (the bzImage)
# and OUT/vmlinux (the ELF inside it, which has a PVH entry note), taken from
# the package linux-image-amd64 points at.  Does nothing when both exist.
#
#   tests/integration/lib/fetch-linux.sh OUT
#
# Exits non-zero with one line on stderr when the package cannot be had.
set -euo pipefail
mkdir -p "$1"
out=$(cd "$1" && pwd)
[ -s "$out/vmlinuz" ] && [ -s "$out/vmlinux" ] && exit 0
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/fetch-linux-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
    echo "fetch-linux: apt knows no linux-image-amd64 (run apt-get update?)" >&2
    exit 1
fi
if ! apt-get download -q "$pkg" >/dev/null 2>&1; then
    echo "fetch-linux: cannot download $pkg" >&2
    exit 1
fi
dpkg -x ./*.deb root
cp root/boot/vmlinuz-* "$out/vmlinuz.tmp"
# The bzImage's payload (setup header: payload_offset, payload_length) is the
# compressed vmlinux; Debian compresses it with xz.
python3 - "$out/vmlinuz.tmp" "$out/vmlinux.tmp" <<'PY'
import lzma, struct, sys
d = open(sys.argv[1], 'rb').read()
setup = ((d[0x1f1] or 4) + 1) * 512
off, length = struct.unpack('<II', d[0x248:0x250])
payload = d[setup + off:setup + off + length]
if not payload.startswith(b'\xfd7zXZ'):
    sys.exit('fetch-linux: the kernel payload is not xz')
data = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
open(sys.argv[2], 'wb').write(data)
PY
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/vmlinux.tmp" "$out/vmlinux"
echo "$pkg" >"$out/package"
