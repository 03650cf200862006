#!/usr/bin/env bash
# spindle-img convert vs qemu-img convert, run alternately on the same input.
#
#   bench/convert.sh [-r RUNS] [-s SIZE] [-d DIR]
#
# The input is a raw image of SIZE (4 GiB by default), half data and half
# zeroes in alternating 64 MiB stretches; the data is the host's own
# libraries, concatenated (compressible as real disk content is, about 2:1).
# A qcow2 copy of it is the input of the qcow2 rows.  Rows: raw->qcow2,
# qcow2->raw, qcow2->qcow2 compressed with zlib and with zstd; each with
# both tools' default parallelism and with -m 8 -W for both.  By default
# qemu-img writes in order, so it compresses one cluster at a time, while
# spindle-img always writes compressed clusters out of order, on every core:
# the -m 8 -W rows compare the same work.  Outputs go to
# the same directory, O_DIRECT off (the tools' defaults), and are checked
# equal to the input with qemu-img compare once per row.  Each cell is the
# median wall time of RUNS runs (the page cache is synced before each, and
# the tools take turns going first); the ratio is qemu-img time / spindle time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BUILD=${BUILD:-build}
runs=3
size=4G
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

src_raw="$dir/spindle-convert-src.raw"
src_q2="$dir/spindle-convert-src.qcow2"
out="$dir/spindle-convert-out"
seed="$dir/spindle-convert-seed"
trap 'rm -f "$src_raw" "$src_q2" "$out" "$seed"' EXIT

# 64 MiB of library bytes, then the image: data, hole, data, hole...
# (head closes the pipe early: the writers' SIGPIPE is expected, not a failure.)
(set +o pipefail
 find /usr/lib /usr/bin -type f -size +64k 2>/dev/null | sort | xargs cat 2>/dev/null |
     head -c $((64 << 20)) > "$seed")
[ "$(stat -c %s "$seed")" = $((64 << 20)) ] || { echo "could not gather 64 MiB of data" >&2; exit 1; }
qemu-img create -q -f raw "$src_raw" "$size"
stretches=$(( $(stat -c %s "$src_raw") / (64 << 20) ))
for ((i = 0; i < stretches; i += 2)); do
    dd if="$seed" of="$src_raw" bs=1M seek=$((i * 64)) conv=notrunc status=none
done
qemu-img convert -f raw -O qcow2 "$src_raw" "$src_q2"


# Wall seconds of one convert; the output is removed first (a new file each run).
time_one() {  # tool args...
    rm -f "$out"
    # The previous run's dirty pages are written back now, not during this run.
    sync
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

machine_line
echo "input: $size, half data (64 MiB stretches), median of $runs runs, seconds"
printf '%-40s %9s %9s %8s\n' "convert" "spindle" "qemu-img" "q/sp"
row() {  # label in_fmt input out_fmt extra-args...
    local label=$1 ifmt=$2 input=$3 ofmt=$4
    shift 4
    local s_list=() q_list=()
    for i in $(seq "$runs"); do
        # Who goes first alternates, so neither always inherits the other's cache state.
        if ((i % 2)); then
            s_list+=("$(time_one "$SPINDLE" convert -f "$ifmt" -O "$ofmt" "$@" "$input" "$out")")
        fi
        q_list+=("$(time_one qemu-img convert -f "$ifmt" -O "$ofmt" "$@" "$input" "$out")")
        if ! ((i % 2)); then
            s_list+=("$(time_one "$SPINDLE" convert -f "$ifmt" -O "$ofmt" "$@" "$input" "$out")")
        fi
    done
    # The last output (qemu-img's) is correct by definition; check spindle's once.
    "$SPINDLE" convert -f "$ifmt" -O "$ofmt" "$@" "$input" "$out"
    local same="ok"
    qemu-img compare -q -f "$ifmt" -F "$ofmt" "$input" "$out" || same="DIFFERS"
    local s q
    s=$(printf '%s\n' "${s_list[@]}" | median)
    q=$(printf '%s\n' "${q_list[@]}" | median)
    printf '%-40s %9.2f %9.2f %8.2f %s\n' "$label" "$s" "$q" \
        "$(awk -v a="$q" -v b="$s" 'BEGIN { print a / b }')" "$([ "$same" = ok ] || echo "$same")"
}
for par in default "-m 8 -W"; do
    args=()
    [ "$par" = default ] || args=(-m 8 -W)
    row "raw->qcow2 ($par)"        raw   "$src_raw" qcow2 "${args[@]}"
    row "qcow2->raw ($par)"        qcow2 "$src_q2"  raw   "${args[@]}"
    row "qcow2->qcow2 -c zlib ($par)" qcow2 "$src_q2" qcow2 -c "${args[@]}"
    row "qcow2->qcow2 -c zstd ($par)" qcow2 "$src_q2" qcow2 -c -o compression_type=zstd "${args[@]}"
done
