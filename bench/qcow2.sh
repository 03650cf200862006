#!/usr/bin/env bash
# qcow2 I/O: spindle-img bench vs qemu-img bench on the same qcow2 image, and
# qcow2 vs raw with spindle on the same data.  Runs alternate between the
# tools; each cell is the median of RUNS runs.
#
#   bench/qcow2.sh [-r RUNS] [-s SIZE] [-d DIR]
#
# Rows: 4k random read and write at queue depth 32 and 64k sequential read
# and write, on a fully allocated image (written beforehand), and 4k random
# and 64k sequential writes on a fresh image that grows as it is written
# (a new image for every run).  O_DIRECT (-t none), io_uring for spindle,
# QEMU's default aio.  Columns: IOPS of each tool, spindle/qemu, and for the
# allocated image spindle on the raw file with the same data (qcow2/raw).
# The host's fio on the raw file shows what the device allows.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BUILD=${BUILD:-build}
runs=5
size=2G
dir=${TMPDIR:-/var/tmp}
while getopts "r:s:d:" o; do
    case $o in
        r) runs=$OPTARG ;;
        s) size=$OPTARG ;;
        d) dir=$OPTARG ;;
        *) echo "usage: $0 [-r runs] [-s size] [-d dir]" >&2; exit 1 ;;
    esac
done
SPINDLE="$BUILD/spindle-img"
command -v qemu-img >/dev/null || { echo "qemu-img is not installed" >&2; exit 1; }
[ -x "$SPINDLE" ] || { echo "$SPINDLE is not built (make)" >&2; exit 1; }

full="$dir/spindle-bench-full.qcow2"
raw="$dir/spindle-bench-full.raw"
fresh="$dir/spindle-bench-fresh.qcow2"
trap 'rm -f "$full" "$raw" "$fresh"' EXIT
qemu-img create -q -f qcow2 "$full" "$size"
qemu-img create -q -f raw "$raw" "$size"
mib=$(( $(stat -c %s "$raw") / 1048576 ))
qemu-img bench -q -w -c "$mib" -d 16 -s 1M -f qcow2 -t none --pattern=0x5a "$full" >/dev/null
qemu-img bench -q -w -c "$mib" -d 16 -s 1M -f raw -t none --pattern=0x5a "$raw" >/dev/null

# A step of 1288 KiB visits a power-of-two file in a scattered order.
step=1318912


run_one() {  # tool fmt file rw bs depth count step fresh
    local tool=$1 fmt=$2 file=$3 rw=$4 bs=$5 depth=$6 count=$7 st=$8 new=$9 w="" aio=""
    [ "$rw" = write ] && w="-w"
    [ "$tool" = "$SPINDLE" ] && aio="-i io_uring"
    if [ "$new" = yes ]; then
        rm -f "$file"
        qemu-img create -q -f qcow2 "$file" "$size"
    fi
    local secs
    secs=$("$tool" bench $w -c "$count" -d "$depth" -s "$bs" -f "$fmt" -t none $aio -S "$st" \
               "$file" | sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p')
    awk -v c="$count" -v s="$secs" 'BEGIN { printf "%.0f", c / s }'
}

fio_iops() {  # rw bs depth
    command -v fio >/dev/null || { echo 0; return; }
    fio --name=ceiling --filename="$raw" --direct=1 --ioengine=io_uring --rw="$1" --bs="$2" \
        --iodepth="$3" --runtime=3 --time_based --output-format=terse 2>/dev/null |
        awk -F';' -v rw="$1" '{ print (rw ~ /read/) ? $8 : $49 }'
}

machine_line
echo "image: $size, 64 KiB clusters, O_DIRECT; median of $runs runs"
printf '%-34s %11s %11s %8s %11s %8s %11s\n' "job (IOPS)" "spindle" "qemu-img" "sp/qemu" \
    "spindle raw" "q2/raw" "host fio"
row() {  # label rw bs depth count step fresh fio-rw
    local label=$1 rw=$2 bs=$3 depth=$4 count=$5 st=$6 new=$7 fiorw=$8
    local file=$full s_list=() q_list=() r_list=()
    [ "$new" = yes ] && file=$fresh
    for _ in $(seq "$runs"); do
        s_list+=("$(run_one "$SPINDLE" qcow2 "$file" "$rw" "$bs" "$depth" "$count" "$st" "$new")")
        q_list+=("$(run_one qemu-img qcow2 "$file" "$rw" "$bs" "$depth" "$count" "$st" "$new")")
        if [ "$new" = no ]; then
            r_list+=("$(run_one "$SPINDLE" raw "$raw" "$rw" "$bs" "$depth" "$count" "$st" no)")
        fi
    done
    local s q r f
    s=$(printf '%s\n' "${s_list[@]}" | median)
    q=$(printf '%s\n' "${q_list[@]}" | median)
    f=$(fio_iops "$fiorw" "$bs" "$depth")
    if [ "$new" = no ]; then
        r=$(printf '%s\n' "${r_list[@]}" | median)
        printf '%-34s %11.0f %11.0f %8.2f %11.0f %8.2f %11.0f\n' "$label" "$s" "$q" \
            "$(awk -v a="$s" -v b="$q" 'BEGIN { print a / b }')" "$r" \
            "$(awk -v a="$s" -v b="$r" 'BEGIN { print a / b }')" "$f"
    else
        printf '%-34s %11.0f %11.0f %8.2f %11s %8s %11.0f\n' "$label" "$s" "$q" \
            "$(awk -v a="$s" -v b="$q" 'BEGIN { print a / b }')" "-" "-" "$f"
    fi
}
row "4k randread QD32, allocated"   read  4k  32 100000 $step no randread
row "4k randwrite QD32, allocated"  write 4k  32 100000 $step no randwrite
row "64k seqread QD32, allocated"   read  64k 32 20000  65536 no read
row "64k seqwrite QD32, allocated"  write 64k 32 20000  65536 no write
row "4k randwrite QD32, fresh"      write 4k  32 50000  $step yes randwrite
row "64k seqwrite QD32, fresh"      write 64k 32 20000  65536 yes write
