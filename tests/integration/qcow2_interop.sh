#!/usr/bin/env bash
# qcow2 images that qemu-img creates and qemu-io fills, read by spindle:
# every version, cluster size, refcount width, extended L2, compressed
# (zlib, zstd), backing chains three deep over raw, snapshots, bitmaps and
# external data files.  Checked with spindle-io read -P and by converting
# to raw with spindle-img and comparing with qemu-img compare.
. "$(dirname "$0")/lib.bash"
need qemu-img qemu-io python3
OPS="$top/tests/integration/lib/qcow2-ops.py"

# Patterns at known places, so spindle-io can check them directly.
fill() {
    qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c "write -P 0x22 100k 3k" -c "write -P 0x33 1M 3M" \
        -c "write -z 2M 512k" -c "write -P 0x44 31M 1M" -c "write -P 0x55 8M 2M" \
        -c "discard 8M 2M" "$1" >/dev/null
}

reads_like_qemu() {  # name image [format]
    local name=$1 img=$2 fmt=${3:-qcow2}
    rm -f "$T/out.raw"
    if "$IMG" convert -f "$fmt" -O raw "$img" "$T/out.raw" 2>"$T/err" &&
        qemu-img compare -q -f "$fmt" -F raw "$img" "$T/out.raw" 2>>"$T/err"; then
        pass "$name"
    else
        fail "$name" "$(tail -3 "$T/err" | tr '\n' ' ')"
    fi
}

for o in compat=0.10 compat=1.1 cluster_size=512 cluster_size=4k cluster_size=64k \
         cluster_size=2M refcount_bits=1 refcount_bits=16 refcount_bits=64 extended_l2=on \
         extended_l2=on,cluster_size=16k lazy_refcounts=on compression_type=zstd; do
    rm -f "$T/a.qcow2"
    qemu-img create -q -f qcow2 -o "$o" "$T/a.qcow2" 32M
    fill "$T/a.qcow2"
    check "patterns ($o)" "$IO" -r -c "read -P 0x11 0 64k" -c "read -P 0x22 100k 3k" \
        -c "read -P 0x33 1M 1M" -c "read -P 0 2M 512k" -c "read -P 0x33 2560k 1536k" \
        -c "read -P 0x44 31M 1M" -c "read -P 0 5M 1M" -c "read -P 0 8M 2M" "$T/a.qcow2"
    reads_like_qemu "convert to raw ($o)" "$T/a.qcow2"
done

# Random contents written by qemu-io.
for o in compat=1.1 compat=0.10 extended_l2=on cluster_size=4k; do
    rm -f "$T/r.qcow2"
    qemu-img create -q -f qcow2 -o "$o" "$T/r.qcow2" 16M
    args=()
    while read -r l; do args+=(-c "$l"); done < <(python3 "$OPS" 7 $((16 << 20)) 150)
    qemu-io -f qcow2 "${args[@]}" "$T/r.qcow2" >/dev/null
    reads_like_qemu "random qemu-io contents ($o)" "$T/r.qcow2"
done

# Compressed by qemu-img convert -c: zlib and zstd.
qemu-img create -q -f raw "$T/src.raw" 16M
qemu-io -f raw -c "write -P 0x5a 0 3M" -c "write -P 0xa5 8M 100k" "$T/src.raw" >/dev/null
head -c 1048576 /dev/urandom | dd of="$T/src.raw" bs=1M seek=12 conv=notrunc status=none
for t in zlib zstd; do
    qemu-img convert -c -O qcow2 -o compression_type=$t "$T/src.raw" "$T/c-$t.qcow2"
    reads_like_qemu "compressed ($t)" "$T/c-$t.qcow2"
    check "compressed ($t) patterns" "$IO" -r -c "read -P 0x5a 0 3M" -c "read -P 0xa5 8M 100k" \
        "$T/c-$t.qcow2"
done
qemu-img convert -c -O qcow2 -o cluster_size=4k "$T/src.raw" "$T/c-4k.qcow2"
reads_like_qemu "compressed (4k clusters)" "$T/c-4k.qcow2"

# A backing chain three deep, mixed formats: qcow2 over qcow2 over raw.
qemu-img create -q -f raw "$T/base.raw" 16M
qemu-io -f raw -c "write -P 0x01 0 16M" "$T/base.raw" >/dev/null
qemu-img create -q -f qcow2 -b "$T/base.raw" -F raw "$T/mid.qcow2" 12M
qemu-io -f qcow2 -c "write -P 0x02 1M 2M" -c "write -z 5M 1M" -c "write -P 0x03 11M 1M" \
    "$T/mid.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 "$T/top.qcow2" 16M
qemu-io -f qcow2 -c "write -P 0x04 2M 64k" -c "write -P 0x05 100k 2k" -c "write -z 11M 64k" \
    "$T/top.qcow2" >/dev/null
reads_like_qemu "backing chain, three deep over raw" "$T/top.qcow2"
check "backing chain patterns" "$IO" -r -c "read -P 0x01 0 100k" -c "read -P 0x05 100k 2k" \
    -c "read -P 0x02 1M 1M" -c "read -P 0x04 2M 64k" -c "read -P 0 5M 1M" \
    -c "read -P 0 11M 64k" -c "read -P 0x03 11328k 960k" -c "read -P 0 12M 4M" "$T/top.qcow2"
qemu-img create -q -f qcow2 -o extended_l2=on -b mid.qcow2 -F qcow2 "$T/top2.qcow2" 16M
qemu-io -f qcow2 -c "write -P 0x06 2052k 3k" -c "write -z 1030k 2k" "$T/top2.qcow2" >/dev/null
reads_like_qemu "extended L2 over a backing file (subclusters)" "$T/top2.qcow2"

# Snapshots: the active state, after qemu-img took snapshots and went on writing.
qemu-img create -q -f qcow2 "$T/s.qcow2" 16M
qemu-io -f qcow2 -c "write -P 0x10 0 4M" "$T/s.qcow2" >/dev/null
qemu-img snapshot -c one "$T/s.qcow2"
qemu-io -f qcow2 -c "write -P 0x20 1M 1M" "$T/s.qcow2" >/dev/null
qemu-img snapshot -c two "$T/s.qcow2"
qemu-io -f qcow2 -c "write -P 0x30 3M 2M" "$T/s.qcow2" >/dev/null
reads_like_qemu "image with snapshots" "$T/s.qcow2"
qemu-img snapshot -a one "$T/s.qcow2"
check "snapshot applied by qemu-img" "$IO" -r -c "read -P 0x10 0 4M" -c "read -P 0 4M 12M" \
    "$T/s.qcow2"

# Persistent bitmaps: the image opens (read-only and read-write) and reads right.
qemu-img create -q -f qcow2 "$T/b.qcow2" 16M
qemu-img bitmap --add "$T/b.qcow2" b0
qemu-img bitmap --add -g 128k --disable "$T/b.qcow2" b1
qemu-io -f qcow2 -c "write -P 0x77 64k 1M" "$T/b.qcow2" >/dev/null
reads_like_qemu "image with bitmaps" "$T/b.qcow2"
check "image with bitmaps, read-write" "$IO" -c "read -P 0x77 64k 1M" "$T/b.qcow2"
check "bitmaps survive" qemu-img check "$T/b.qcow2"

# External data files (qemu-img creates them relative to the working directory).
cd "$T"
for o in data_file=d.raw data_file=d.raw,data_file_raw=on data_file=d.raw,extended_l2=on; do
    rm -f "$T/d.qcow2" "$T/d.raw"
    qemu-img create -q -f qcow2 -o "$o" "$T/d.qcow2" 16M
    qemu-io -f qcow2 -c "write -P 0x61 0 1M" -c "write -P 0x62 5M 100k" -c "write -z 200k 64k" \
        "$T/d.qcow2" >/dev/null
    reads_like_qemu "external data file ($o)" "$T/d.qcow2"
done

finish
