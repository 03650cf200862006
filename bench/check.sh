#!/usr/bin/env bash
# spindle-img check vs qemu-img check on a large, well-filled qcow2 image.
#
#   bench/check.sh [-r RUNS] [-d DIR]
#
# The image: 1 TiB virtual, with 2^20 allocated 64 KiB clusters (the first
# 64 GiB, preallocated as metadata by qemu-img, then grown to 1 TiB), so
# check walks 16 MiB of L2 tables and the refcounts of a 64 GiB sparse file.
# Each cell is the median wall time of RUNS runs, alternating the tools; the
# ratio is qemu-img time / spindle time.  A second row times check on the
# same image with 4 KiB clusters and 2^18 allocated (1 GiB preallocated),
# where the metadata is denser still per byte of data.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BUILD=${BUILD:-build}
runs=5
dir=${TMPDIR:-/var/tmp}
while getopts "r:d:" o; do
    case $o in
        r) runs=$OPTARG ;;
        d) dir=$OPTARG ;;
        *) echo "usage: $0 [-r runs] [-d dir]" >&2; exit 1 ;;
    esac
done
SPINDLE="$BUILD/spindle-img"
command -v qemu-img >/dev/null || { echo "qemu-img is not installed" >&2; exit 1; }
[ -x "$SPINDLE" ] || { echo "$SPINDLE is not built (make)" >&2; exit 1; }

img="$dir/spindle-check-bench.qcow2"
trap 'rm -f "$img"' EXIT


# Wall seconds of one check, which must find the image clean (exit 0).
time_one() {
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    "$@" >/dev/null || rc=$?
    t1=$(date +%s.%N)
    if [ "$rc" != 0 ]; then
        echo "$* exited with $rc on a clean image" >&2
        exit 1
    fi
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

machine_line
echo "median of $runs runs, seconds, page cache warm (one untimed check first)"
printf '%-52s %9s %9s %8s\n' "check" "spindle" "qemu-img" "q/sp"
row() {  # label cluster_size allocated
    local label=$1 cs=$2 alloc=$3
    rm -f "$img"
    qemu-img create -q -f qcow2 -o cluster_size="$cs",preallocation=metadata "$img" "$alloc"
    qemu-img resize -q "$img" 1T
    qemu-img check -q "$img"
    local s_list=() q_list=()
    for _ in $(seq "$runs"); do
        s_list+=("$(time_one "$SPINDLE" check "$img")")
        q_list+=("$(time_one qemu-img check "$img")")
    done
    local s q
    s=$(printf '%s\n' "${s_list[@]}" | median)
    q=$(printf '%s\n' "${q_list[@]}" | median)
    printf '%-52s %9.3f %9.3f %8.2f\n' "$label" "$s" "$q" \
        "$(awk -v a="$q" -v b="$s" 'BEGIN { print a / b }')"
}
row "1 TiB, 64 KiB clusters, 2^20 allocated (64 GiB)" 65536 64G
row "1 TiB, 4 KiB clusters, 2^18 allocated (1 GiB)" 4096 1G
