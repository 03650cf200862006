#!/usr/bin/env bash
# spindle-img bench vs qemu-img bench on the same raw file, run alternately.
#
#   bench/img-bench.sh [-r RUNS] [-s SIZE] [-d DIR]
#
# Rows: 4k random read and write (scattered offsets: a large odd step wraps
# around the file), queue depth 1 and 32, O_DIRECT (-t none), io_uring and
# native aio.  Each cell is the median IOPS of RUNS runs; the ratio is
# spindle/qemu.  The file is filled first so reads hit allocated blocks.
# The host's own fio on the same file (same engine and depth) is printed
# as the ceiling the device allows.
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

img="$dir/spindle-img-bench.raw"
trap 'rm -f "$img"' EXIT
qemu-img create -q -f raw "$img" "$size"
qemu-img bench -q -w -c $(( $(stat -c %s "$img") / 1048576 )) -d 16 -s 1M -f raw -t none "$img" >/dev/null

# A step of 1288 KiB (322 pages, coprime with the page count of a power-of-
# two file) visits the whole file in a scattered order, the same for both.
step=1318912

# Seconds -> IOPS for count requests.
iops() { awk -v c="$1" -v s="$2" 'BEGIN { printf "%.0f", c / s }'; }

run_one() {  # tool rw depth aio count
    local tool=$1 rw=$2 depth=$3 aio=$4 count=$5 w=""
    [ "$rw" = write ] && w="-w"
    local secs
    secs=$("$tool" bench $w -c "$count" -d "$depth" -f raw -t none -i "$aio" -S "$step" "$img" |
           sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p')
    iops "$count" "$secs"
}

fio_iops() {  # rw depth aio
    command -v fio >/dev/null || { echo 0; return; }
    local engine=$3
    [ "$engine" = native ] && engine=libaio
    fio --name=ceiling --filename="$img" --direct=1 --ioengine="$engine" --rw="rand$1" --bs=4k \
        --iodepth="$2" --runtime=3 --time_based --output-format=terse 2>/dev/null |
        awk -F';' -v rw="$1" '{ print (rw == "read") ? $8 : $49 }'
}

machine_line
printf '%-30s %12s %12s %8s %12s\n' "job" "spindle-img" "qemu-img" "ratio" "host fio"
for aio in io_uring native; do
    for rw in read write; do
        for depth in 1 32; do
            count=$(( depth == 1 ? 20000 : 100000 ))
            s_list=() q_list=()
            for _ in $(seq "$runs"); do
                s_list+=("$(run_one "$SPINDLE" $rw $depth $aio $count)")
                q_list+=("$(run_one qemu-img $rw $depth $aio $count)")
            done
            s=$(printf '%s\n' "${s_list[@]}" | median)
            q=$(printf '%s\n' "${q_list[@]}" | median)
            f=$(fio_iops $rw $depth $aio)
            printf '%-30s %12.0f %12.0f %8.2f %12.0f\n' "4k rand$rw QD$depth $aio" "$s" "$q" \
                "$(awk -v a="$s" -v b="$q" 'BEGIN { print a / b }')" "$f"
        done
    done
done
