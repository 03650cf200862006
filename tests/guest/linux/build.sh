#!/usr/bin/env bash
# Build the Linux guest for hosts whose KVM has VMX or SVM: Debian's kernel
# (through tests/integration/lib/fetch-linux.sh) and an initramfs with
# busybox, fio and tests/guest/linux/init.
#
#   tests/guest/linux/build.sh [OUT]      (default: $BUILD/linux)
#
# OUT gets vmlinuz, vmlinux and initramfs.cpio.gz.  fio and the libraries it
# links come from this (Debian 12) host, installed by make deps; busybox
# from Debian's busybox-static package.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
BUILD=${BUILD:-build}
out=${1:-$top/$BUILD/linux}
mkdir -p "$out"
"$top/tests/integration/lib/fetch-linux.sh" "$out"

# Up to date: nothing to do.
if [ -s "$out/initramfs.cpio.gz" ] && [ "$out/initramfs.cpio.gz" -nt "$here/init" ] &&
   [ "$out/initramfs.cpio.gz" -nt "$here/build.sh" ]; then
    exit 0
fi
fio=$(command -v fio) || { echo "build.sh: fio is not installed (make deps)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/spindle-linux-XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib,lib64,usr/lib}

# busybox: the host's static one if present, else Debian's package.
if [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static; then
    cp /bin/busybox "$root/bin/busybox"
else
    (cd "$work" && apt-get download -q busybox-static >/dev/null 2>&1) ||
        { echo "build.sh: cannot download busybox-static" >&2; exit 1; }
    dpkg -x "$work"/busybox-static_*.deb "$work/bb"
    cp "$work/bb/bin/busybox" "$root/bin/busybox"
fi

# The kernel's virtio modules (Debian builds virtio-pci and virtio-blk as
# modules), in load order: dependencies come from each module's .modinfo.
pkg=$(cat "$out/package")
(cd "$work" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
    { echo "build.sh: cannot download $pkg for its modules" >&2; exit 1; }
dpkg -x "$work/$pkg"_*.deb "$work/kernel"
mkdir -p "$root/lib/modules"
python3 - "$work/kernel/lib/modules" "$root/lib/modules" virtio_pci virtio_blk <<'PY'
import os, shutil, sys
src, dst, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
paths = {}
for dirpath, _, files in os.walk(src):
    for f in files:
        if f.endswith('.ko'):
            paths[f[:-3]] = os.path.join(dirpath, f)
def depends(name):
    data = open(paths[name], 'rb').read()
    i = data.find(b'depends=')
    if i < 0:
        return []
    value = data[i + 8:data.index(b'\0', i)].decode()
    return [d.replace('-', '_') for d in value.split(',') if d]
order = []
def visit(name):
    if name in order:
        return
    if name not in paths:
        sys.exit('build.sh: the kernel has no module %s' % name)
    for d in depends(name):
        visit(d)
    order.append(name)
for w in wanted:
    visit(w)
for name in order:
    shutil.copy(paths[name], os.path.join(dst, name + '.ko'))
open(os.path.join(dst, 'load'), 'w').write('\n'.join(order) + '\n')
PY

# fio and every library it needs, at the same paths.
cp "$fio" "$root/bin/fio"
ldd "$fio" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp "$here/init" "$root/init"
chmod +x "$root/init"

# A newc cpio written here, so no cpio package is needed.
python3 - "$root" "$out/initramfs.cpio.gz" <<'PY'
import gzip, os, stat, sys
root, dest = sys.argv[1], sys.argv[2]
ino = 1
def entry(out, name, mode, data=b''):
    global ino
    hdr = '070701' + ''.join('%08x' % v for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
    ino += 1
    out.write(hdr.encode() + name.encode() + b'\0')
    out.write(b'\0' * ((4 - (110 + len(name) + 1) % 4) % 4))
    out.write(data)
    out.write(b'\0' * ((4 - len(data) % 4) % 4))
with gzip.open(dest + '.tmp', 'wb') as out:
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != '.':
            entry(out, rel, stat.S_IFDIR | 0o755)
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            entry(out, os.path.normpath(os.path.join(rel, f)), stat.S_IFREG | (st.st_mode & 0o777),
                  open(p, 'rb').read())
    entry(out, 'TRAILER!!!', 0)
os.rename(dest + '.tmp', dest)
PY
echo "linux guest: $out/vmlinuz, $out/vmlinux, $out/initramfs.cpio.gz ($(du -h "$out/initramfs.cpio.gz" | cut -f1))"
