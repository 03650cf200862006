#!/usr/bin/env bash
# spindle-img create -f qcow2 with each -o option (the "Formatting" line,
# the image itself, byte for byte where QEMU's layout is deterministic),
# info in both output forms equal to qemu-img info on the same image, and
# convert to and from qcow2 (-c zlib and zstd, -B), checked with
# qemu-img compare and qemu-img check.
. "$(dirname "$0")/lib.bash"
need qemu-img qemu-io python3
cd "$T"

qemu-img create -q -f qcow2 base.qcow2 32M
qemu-io -f qcow2 -c "write -P 0x42 0 8M" base.qcow2 >/dev/null

info_same() {  # name image
    local q s
    q=$(qemu-img info "$2" 2>&1)
    s=$("$IMG" info "$2" 2>&1)
    same "$1: info" "$q" "$s"
    q=$(qemu-img info --output=json "$2" 2>&1)
    s=$("$IMG" info --output=json "$2" 2>&1)
    same "$1: info --output=json" "$q" "$s"
}

# ---- create with each option ----
while read -r o size identical; do
    [ "$o" = "-" ] && o=""
    [ "$size" = "-" ] && size=""
    rm -f s.qcow2 q.qcow2 s.data
    out_s=$("$IMG" create -f qcow2 ${o:+-o "$o"} s.qcow2 $size 2>&1)
    out_q=$(qemu-img create -f qcow2 ${o:+-o "$o"} q.qcow2 $size 2>&1)
    same "create ${o:-(defaults)}: Formatting line" "${out_q//q.qcow2/X}" "${out_s//s.qcow2/X}"
    if [ "$identical" = yes ]; then
        if cmp -s s.qcow2 q.qcow2; then
            pass "create ${o:-(defaults)}: byte for byte as qemu-img"
        else
            fail "create ${o:-(defaults)}: byte for byte as qemu-img" "$(cmp s.qcow2 q.qcow2)"
        fi
    fi
    check "create ${o:-(defaults)}: qemu-img check" qemu-img check s.qcow2
    check "create ${o:-(defaults)}: same content" qemu-img compare s.qcow2 q.qcow2
    info_same "create ${o:-(defaults)}" s.qcow2
done <<'EOF'
- 1G yes
compat=0.10 1G yes
compat=v2 64M yes
compat=1.1 64M yes
compat=v3 64M yes
cluster_size=512 32M yes
cluster_size=4k 32M yes
cluster_size=2M 1G yes
cluster_size=16k,extended_l2=on 64M yes
extended_l2=on 64M yes
lazy_refcounts=on 64M yes
refcount_bits=1 64M yes
refcount_bits=8 64M yes
refcount_bits=64 64M yes
compression_type=zstd 64M yes
preallocation=off 64M yes
preallocation=metadata 64M yes
preallocation=falloc 16M no
preallocation=full 16M no
cluster_size=4k,preallocation=metadata,refcount_bits=64 16M yes
data_file=s.data 64M yes
data_file=s.data,data_file_raw=on 16M yes
backing_file=base.qcow2,backing_fmt=qcow2 32M yes
extended_l2=on,preallocation=metadata,backing_file=base.qcow2,backing_fmt=qcow2 32M yes
size=5M - yes
- 1000 yes
EOF

# Backing file options through -b/-F, size from the backing file.
rm -f s.qcow2 q.qcow2
out_s=$("$IMG" create -f qcow2 -b base.qcow2 -F qcow2 s.qcow2 2>&1)
out_q=$(qemu-img create -f qcow2 -b base.qcow2 -F qcow2 q.qcow2 2>&1)
same "create -b -F without a size: Formatting line" "${out_q//q.qcow2/X}" "${out_s//s.qcow2/X}"
check "create -b -F: byte for byte" cmp s.qcow2 q.qcow2
info_same "create -b -F" s.qcow2
same "info --backing-chain" "$(qemu-img info --backing-chain s.qcow2)" "$("$IMG" info --backing-chain s.qcow2)"
same "info --backing-chain json" "$(qemu-img info --output=json --backing-chain s.qcow2)" \
    "$("$IMG" info --output=json --backing-chain s.qcow2)"
check "create -b -F: reads the backing file" "$IO" -r -c "read -P 0x42 0 8M" s.qcow2

# Errors, with qemu-img's sentences.
refused() {  # name sentence args...
    local name=$1 want=$2 out
    shift 2
    out=$("$IMG" create -f qcow2 "$@" 2>&1)
    if [ $? -ne 0 ] && [[ "$out" == *"$want"* ]]; then pass "$name"; else fail "$name" "$out"; fi
}
refused "bad cluster size" "Cluster size must be a power of two between 512 and 2048k" \
    -o cluster_size=1000 e.qcow2 1M
refused "bad refcount width" "Refcount width must be a power of two and may not exceed 64 bits" \
    -o refcount_bits=3 e.qcow2 1M
refused "v2 refcount width" "Different refcount widths than 16 bits require compatibility level 1.1" \
    -o compat=v2,refcount_bits=8 e.qcow2 1M
refused "v2 extended L2" "Extended L2 entries are only supported with compatibility level 1.1" \
    -o compat=v2,extended_l2=on e.qcow2 1M
refused "extended L2 with small clusters" \
    "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes" \
    -o extended_l2=on,cluster_size=4k e.qcow2 1M
refused "v2 zstd" "Non-zlib compression type is only supported with compatibility level 1.1" \
    -o compat=v2,compression_type=zstd e.qcow2 1M
refused "v2 data file" "External data files are only supported with compatibility level 1.1" \
    -o compat=v2,data_file=x e.qcow2 1M
refused "data_file_raw without data_file" "data-file-raw requires data-file" \
    -o data_file_raw=on e.qcow2 1M
refused "v2 lazy refcounts" "Lazy refcounts only supported with compatibility level 1.1" \
    -o compat=0.10,lazy_refcounts=on e.qcow2 1M
refused "bad compat" "Parameter 'version' does not accept value 'bogus'" -o compat=bogus e.qcow2 1M
refused "bad compression type" "Parameter 'compression-type' does not accept value 'lz4'" \
    -o compression_type=lz4 e.qcow2 1M
refused "too large" "The image size is too large for file format 'qcow2'" e.qcow2 1E
refused "unknown option" "Invalid parameter 'foo'" -o foo=bar e.qcow2 1M
refused "backing without format" "Backing file specified without backing format" -b base.qcow2 e.qcow2
same "create -o help" "$(qemu-img create -f qcow2 -o help)" "$("$IMG" create -f qcow2 -o help)"

# ---- info on images qemu filled: snapshots, bitmaps, dirty, corrupt ----
rm -f i.qcow2
qemu-img create -q -f qcow2 i.qcow2 1G
qemu-io -c "write -P 1 0 1M" i.qcow2 >/dev/null
qemu-img snapshot -c snap1 i.qcow2
qemu-img bitmap --add i.qcow2 bm0
qemu-img bitmap --add -g 128k --disable i.qcow2 bm1
qemu-img snapshot -c "second snap" i.qcow2
info_same "snapshots and bitmaps" i.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 i2.qcow2 1G
info_same "v2" i2.qcow2
qemu-img create -q -f qcow2 -o lazy_refcounts=on i3.qcow2 64M
( qemu-io -c "write 0 1M" -c "sigraise 9" i3.qcow2; : ) >/dev/null 2>&1
info_same "dirty" i3.qcow2
qemu-img create -q -f qcow2 -o data_file=i4.data,data_file_raw=on,extended_l2=on,compression_type=zstd,refcount_bits=1 \
    i4.qcow2 1M
info_same "data file, zstd, refcount_bits=1" i4.qcow2

# ---- convert to and from qcow2 ----
qemu-img create -q -f raw src.raw 32M
qemu-io -f raw -c "write -P 0x11 0 5M" -c "write -P 0x22 20M 1M" -c "write -P 0x33 31M 4k" \
    src.raw >/dev/null
head -c 2097152 /dev/urandom | dd of=src.raw bs=1M seek=24 conv=notrunc status=none
conv() {  # name source target args...
    local name=$1 src=$2 dst=$3
    shift 3
    rm -f "$dst"
    if "$IMG" convert "$@" "$src" "$dst" 2>"$T/err" && qemu-img compare -q "$src" "$dst" 2>>"$T/err"; then
        pass "convert $name"
    else
        fail "convert $name" "$(tail -2 "$T/err" | tr '\n' ' ')"
    fi
    case $dst in *.qcow2) check "convert $name: qemu-img check" qemu-img check "$dst" ;; esac
}
conv "raw to qcow2" src.raw a.qcow2 -O qcow2
conv "raw to qcow2 (-m 8 -W)" src.raw a2.qcow2 -O qcow2 -m 8 -W
conv "raw to qcow2 v2, 4k clusters" src.raw a3.qcow2 -O qcow2 -o compat=0.10,cluster_size=4k
conv "raw to qcow2 -c zlib" src.raw c1.qcow2 -O qcow2 -c
conv "raw to qcow2 -c zstd" src.raw c2.qcow2 -O qcow2 -c -o compression_type=zstd
conv "qcow2 to raw" a.qcow2 b.raw -O raw
conv "qcow2 to qcow2" a.qcow2 b.qcow2 -O qcow2
conv "qcow2 to qcow2 -c zstd" a.qcow2 b2.qcow2 -O qcow2 -c -o compression_type=zstd
conv "compressed qcow2 to raw" c1.qcow2 b3.raw -O raw
conv "qcow2 to qcow2 with extended L2" a.qcow2 b4.qcow2 -O qcow2 -o extended_l2=on
same "convert -c allocates as qemu-img" \
    "$(qemu-img check c1.qcow2 | grep allocated | cut -d, -f1)" \
    "$(qemu-img convert -c -O qcow2 src.raw qc.qcow2 && qemu-img check qc.qcow2 | grep allocated | cut -d, -f1)"

# -B: the target gets a backing file and only what the source's top layer has.
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c "write -P 0x55 1M 1M" -c "write -z 4M 1M" top.qcow2 >/dev/null
rm -f bt.qcow2
check "convert -B -F" "$IMG" convert -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 bt.qcow2
check "convert -B: same content" qemu-img compare top.qcow2 bt.qcow2
check "convert -B: qemu-img check" qemu-img check bt.qcow2
same "convert -B: only the top layer is copied" \
    "$(qemu-img map --output=json top.qcow2 | python3 -c 'import json,sys; print([(m["start"],m["length"],m["depth"]) for m in json.load(sys.stdin)])')" \
    "$(qemu-img map --output=json bt.qcow2 | python3 -c 'import json,sys; print([(m["start"],m["length"],m["depth"]) for m in json.load(sys.stdin)])')"
same "convert -B: backing file" "backing file: base.qcow2" "$(qemu-img info bt.qcow2 | grep '^backing file:')"

finish
