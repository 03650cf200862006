#!/usr/bin/env bash
# qcow2 images spindle writes, checked by QEMU: random writes, zero writes
# and discards (the same commands through qemu-io into an image of the same
# options must give the same content), concurrent requests from two
# iothreads against a model, writes over backing chains and into external
# data files, compressed conversion.  Every image must pass qemu-img check
# with no errors or leaks.
. "$(dirname "$0")/lib.bash"
need qemu-img qemu-io python3
OPS="$top/tests/integration/lib/qcow2-ops.py"
SIZE=$((24 << 20))

clean() {  # name image
    local out
    if out=$(qemu-img check "$2" 2>&1); then
        pass "$1: qemu-img check"
    else
        fail "$1: qemu-img check" "$(echo "$out" | head -5 | tr '\n' ' ')"
    fi
}

same_as_qemu() {  # name spindle-image qemu-image
    local out
    if out=$(qemu-img compare "$2" "$3" 2>&1); then
        pass "$1: same as qemu-io"
    else
        fail "$1: same as qemu-io" "$out"
    fi
}

# cache=unsafe: flushes are skipped (this disk's fdatasync is slow), ordering is not changed.
run_ops() {  # seed count tool image
    local args=() l
    while read -r l; do args+=(-c "$l"); done < <(python3 "$OPS" "$1" "$SIZE" "$2")
    "$3" -f qcow2 -t unsafe "${args[@]}" "$4" >/dev/null
}

# ---- Random operations against qemu-io on the same options ----
for o in compat=1.1 compat=0.10 cluster_size=512 cluster_size=4k cluster_size=2M \
         refcount_bits=1 refcount_bits=64,cluster_size=1k extended_l2=on \
         extended_l2=on,cluster_size=16k lazy_refcounts=on compression_type=zstd; do
    for seed in 1 2; do
        rm -f "$T/s.qcow2" "$T/q.qcow2"
        "$IMG" create -q -f qcow2 -o "$o" "$T/s.qcow2" $SIZE
        qemu-img create -q -f qcow2 -o "$o" "$T/q.qcow2" $SIZE
        run_ops $seed 200 "$IO" "$T/s.qcow2" || fail "random ops ($o, seed $seed)" "spindle-io failed"
        run_ops $seed 200 qemu-io "$T/q.qcow2"
        same_as_qemu "random ops ($o, seed $seed)" "$T/s.qcow2" "$T/q.qcow2"
        clean "random ops ($o, seed $seed)" "$T/s.qcow2"
    done
done

# ---- Two iothreads, eight requests in flight each, against a model ----
for o in compat=1.1 extended_l2=on cluster_size=4k compat=0.10 cluster_size=512,refcount_bits=1; do
    rm -f "$T/m.qcow2" "$T/m.raw"
    "$IMG" create -q -f qcow2 -o "$o" "$T/m.qcow2" 32M
    check "two iothreads ($o)" "$IO" -t unsafe -c "stress -t 2 -q 8 -n 400 -s 3 -o $T/m.raw" "$T/m.qcow2"
    clean "two iothreads ($o)" "$T/m.qcow2"
    check "two iothreads ($o): qemu reads the model" \
        qemu-img compare -f qcow2 -F raw "$T/m.qcow2" "$T/m.raw"
done
# Subclusters of one cluster written from both threads at once (512-byte blocks).
rm -f "$T/m.qcow2" "$T/m.raw"
"$IMG" create -q -f qcow2 -o extended_l2=on,cluster_size=32k "$T/m.qcow2" 8M
check "two iothreads in the same clusters" \
    "$IO" -t unsafe -c "stress -t 2 -q 8 -n 400 -s 9 -b 1k -o $T/m.raw" "$T/m.qcow2"
clean "two iothreads in the same clusters" "$T/m.qcow2"
check "same clusters: qemu reads the model" qemu-img compare -f qcow2 -F raw "$T/m.qcow2" "$T/m.raw"

# ---- Over a backing chain (copy-on-write from the layers below) ----
qemu-img create -q -f raw "$T/base.raw" $SIZE
qemu-io -f raw -c "write -P 0x55 0 $SIZE" "$T/base.raw" >/dev/null
qemu-img create -q -f qcow2 -b "$T/base.raw" -F raw "$T/mid.qcow2" 16M
qemu-io -f qcow2 -c "write -P 0x66 1M 4M" -c "write -z 8M 1M" "$T/mid.qcow2" >/dev/null
for o in compat=1.1 compat=0.10 extended_l2=on cluster_size=4k; do
    rm -f "$T/s.qcow2" "$T/q.qcow2"
    "$IMG" create -q -f qcow2 -o "$o" -b "$T/mid.qcow2" -F qcow2 "$T/s.qcow2" $SIZE
    qemu-img create -q -f qcow2 -o "$o" -b "$T/mid.qcow2" -F qcow2 "$T/q.qcow2" $SIZE
    run_ops 5 150 "$IO" "$T/s.qcow2"
    run_ops 5 150 qemu-io "$T/q.qcow2"
    same_as_qemu "over a backing chain ($o)" "$T/s.qcow2" "$T/q.qcow2"
    clean "over a backing chain ($o)" "$T/s.qcow2"
done

# ---- External data files ----
cd "$T"
for o in data_file=sd.raw data_file=sd.raw,data_file_raw=on data_file=sd.raw,extended_l2=on; do
    rm -f s.qcow2 q.qcow2 sd.raw qd.raw
    "$IMG" create -q -f qcow2 -o "$o" s.qcow2 $SIZE
    qemu-img create -q -f qcow2 -o "${o//sd.raw/qd.raw}" q.qcow2 $SIZE
    run_ops 3 150 "$IO" s.qcow2
    run_ops 3 150 qemu-io q.qcow2
    same_as_qemu "external data file ($o)" s.qcow2 q.qcow2
    clean "external data file ($o)" s.qcow2
    case $o in
    *raw=on*) check "external data file ($o): the raw file is the disk" \
                  qemu-img compare -f raw -F qcow2 sd.raw q.qcow2 ;;
    esac
done
cd - >/dev/null

# ---- Lazy refcounts: a dirty image is repaired when opened read-write ----
rm -f "$T/l.qcow2"
qemu-img create -q -f qcow2 -o lazy_refcounts=on "$T/l.qcow2" 64M
( qemu-io -c "write -P 7 0 5M" -c "write -P 8 20M 3M" -c "sigraise 9" "$T/l.qcow2"; : ) >/dev/null 2>&1
if qemu-img check "$T/l.qcow2" >/dev/null 2>&1; then
    skip "dirty image repair" "qemu-io left a clean image"
else
    check "dirty image: opened read-write, repaired" \
        "$IO" -c "read -P 7 0 5M" -c "read -P 8 20M 3M" -c "write -P 9 30M 1M" "$T/l.qcow2"
    clean "dirty image repaired" "$T/l.qcow2"
    same "dirty flag cleared" "false" \
        "$(qemu-img info --output=json "$T/l.qcow2" | python3 -c 'import json,sys; print(str(json.load(sys.stdin)["dirty-flag"]).lower())')"
fi

# ---- Compressed writes (convert -c), zlib and zstd, and back ----
qemu-img create -q -f raw "$T/src.raw" 32M
qemu-io -f raw -c "write -P 0x11 0 5M" -c "write -P 0x22 20M 1M" -c "write -P 0x33 31M 4k" \
    "$T/src.raw" >/dev/null
head -c 2097152 /dev/urandom | dd of="$T/src.raw" bs=1M seek=24 conv=notrunc status=none
for t in zlib zstd; do
    for cs in 64k 4k; do
        rm -f "$T/c.qcow2"
        check "convert -c ($t, $cs)" "$IMG" convert -c -O qcow2 \
            -o compression_type=$t,cluster_size=$cs "$T/src.raw" "$T/c.qcow2"
        check "convert -c ($t, $cs): same content" qemu-img compare "$T/src.raw" "$T/c.qcow2"
        clean "convert -c ($t, $cs)" "$T/c.qcow2"
    done
    # Reading compressed clusters back, and writing over them (copy-on-write from them).
    rm -f "$T/back.raw"
    check "compressed ($t) back to raw" "$IMG" convert -O raw "$T/c.qcow2" "$T/back.raw"
    check "compressed ($t) round trip" qemu-img compare "$T/src.raw" "$T/back.raw"
    check "write over compressed clusters ($t)" "$IO" -c "write -P 0x44 100k 8k" \
        -c "read -P 0x11 0 100k" -c "read -P 0x44 100k 8k" -c "read -P 0x11 108k 100k" "$T/c.qcow2"
    clean "write over compressed clusters ($t)" "$T/c.qcow2"
done

# ---- The file grows ahead of allocations, and is cut back when closed ----
rm -f "$T/g.qcow2"
qemu-img create -q -f qcow2 "$T/g.qcow2" 1G
check "growing writes" "$IMG" bench -q -w -c 3000 -d 16 -s 4k -S 200704 -t none -f qcow2 \
    "$T/g.qcow2"
clean "growing writes" "$T/g.qcow2"
end=$(qemu-img check --output=json "$T/g.qcow2" | sed -n 's/.*"image-end-offset": \([0-9]*\).*/\1/p')
expect "the file ends at the image's end ($end)" '[ "$(stat -c %s "$T/g.qcow2")" = "$end" ]' \
    "file size $(stat -c %s "$T/g.qcow2")"
# Made read-only again by an active commit's abort is covered by qmp_jobs; here a
# killed writer: the fallocated tail stays, and both checks say no more than leaks.
qemu-img create -q -f qcow2 "$T/k.qcow2" 1G
"$IMG" bench -q -w -c 100000000 -d 16 -s 4k -S 200704 -t none -f qcow2 "$T/k.qcow2" &
pid=$!
sleep 1
kill -9 "$pid"
wait "$pid" 2>/dev/null
# The kernel lets go of a killed process's io_uring files (and so its image
# locks) a little after the process is gone: wait for the lock, up to 10 s.
for _ in $(seq 100); do
    qemu-img check "$T/k.qcow2" 2>&1 | grep -q 'Failed to get shared "write" lock' || break
    sleep 0.1
done
rc=0
qemu-img check "$T/k.qcow2" >/dev/null 2>&1 || rc=$?
expect "killed while growing: qemu-img check finds leaks at most (rc $rc)" '[ "$rc" = 0 ] || [ "$rc" = 3 ]'
check "killed while growing: repaired" "$IMG" check -q -r all "$T/k.qcow2"
clean "killed while growing: repaired" "$T/k.qcow2"

finish
