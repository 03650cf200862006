#!/usr/bin/env bash
# The blkbench guest on spindle-vm and on QEMU, same disk, same job, run
# alternately; plus the host's own fio on the same file.
#
#   bench/guest-blk.sh [-r RUNS] [-t SECONDS] [-d DIR]
#
# Prints, per row, the median IOPS of each, spindle/QEMU and (for file
# disks) spindle/host, and each VMM's resident memory at the end of a run.
# QEMU boots with qboot (-bios qboot.rom): with SeaBIOS it spends ~10 s in
# emulated firmware here before the guest starts; the rest of the command
# line is the same for both, except that QEMU 7.2 cannot spread two queues
# over two iothreads (iothread-vq-mapping is QEMU 9.0's).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BUILD=${BUILD:-build}
runs=3
secs=3
dir=${TMPDIR:-/var/tmp}
while getopts "r:t:d:" o; do
    case $o in
        r) runs=$OPTARG ;;
        t) secs=$OPTARG ;;
        d) dir=$OPTARG ;;
        *) echo "usage: $0 [-r runs] [-t seconds] [-d dir]" >&2; exit 1 ;;
    esac
done
VM="$BUILD/spindle-vm"
GUEST="$BUILD/guest/blkbench.elf"
QEMU=$(command -v qemu-system-x86_64 || true)
[ -x "$VM" ] && [ -e "$GUEST" ] || { echo "build first (make)" >&2; exit 1; }
[ -n "$QEMU" ] || { echo "qemu-system-x86_64 is not installed" >&2; exit 1; }
[ -w /dev/kvm ] || { echo "no usable /dev/kvm" >&2; exit 1; }

work=$(mktemp -d "$dir/spindle-guest-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
raw="$work/disk.raw"
qcow2="$work/disk.qcow2"
qemu-img create -q -f raw "$raw" 1G
# Non-zero data, so that the qcow2 copy is allocated (convert leaves zeroes out).
qemu-img bench -q -w -c 1024 -d 16 -s 1M -f raw -t none --pattern=0x5a "$raw" >/dev/null
have_qcow2=false
if "$BUILD/spindle-img" create -q -f qcow2 "$work/probe.qcow2" 1M 2>/dev/null; then
    have_qcow2=true
    qemu-img convert -f raw -O qcow2 "$raw" "$qcow2"
fi


# One VM run: prints "IOPS RSS_KIB".  queues: 1, 2 (one iothread), or 2/2
# (two iothreads, one per queue: spindle's iothread-vq-mapping; QEMU 7.2
# has no such option, so its two queues share one iothread).
run_vm() {  # vmm disk-args job queues
    local vmm=$1 disk=$2 job=$3 queues=$4 out="$work/out"
    local nq=${queues%/*}
    local -a cmd
    if [ "$vmm" = spindle ]; then
        cmd=("$VM")
    else
        cmd=("$QEMU" -bios /usr/share/qemu/qboot.rom)
    fi
    local iothreads=(-object iothread,id=io0 -object iothread,id=io1) map=",iothread=io0"
    if [ "$queues" = 2/2 ] && [ "$vmm" = spindle ]; then
        map=",iothread-vq-mapping.0.iothread=io0,iothread-vq-mapping.1.iothread=io1"
    fi
    # shellcheck disable=SC2086
    "${cmd[@]}" -enable-kvm -cpu host -m 256 -nographic -no-reboot -kernel "$GUEST" \
        -append "$job runtime=$secs numjobs=$nq" $disk "${iothreads[@]}" \
        -device "virtio-blk-pci,drive=d0,num-queues=$nq$map" -device isa-debug-exit \
        >"$out" 2>&1 &
    local pid=$! rss=0
    sleep "$(awk -v s="$secs" 'BEGIN { print s * 0.8 + 0.3 }')"
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    wait "$pid" || true
    local iops
    iops=$(grep "BLKBENCH-RESULT" "$out" | grep -E "queue=(all|0) " | tail -1 |
           sed -n 's/.* iops=\([0-9]*\).*/\1/p')
    echo "${iops:-0} ${rss:-0}"
}

host_fio() {  # file rw iodepth numjobs [busy]
    command -v fio >/dev/null || { echo 0; return; }
    local hog=""
    if [ "${5:-}" = busy ]; then
        # The guest's vCPU spins on one of the two cores: load one the same way.
        timeout $((secs + 2)) sh -c 'while :; do :; done' &
        hog=$!
    fi
    fio --name=host --filename="$1" --direct=1 --ioengine=io_uring --rw="$2" --bs=4k \
        --iodepth="$3" --numjobs="$4" --group_reporting --runtime="$secs" --time_based \
        --output-format=terse 2>/dev/null |
        awk -F';' -v rw="$2" '{ print (rw == "randread") ? $8 : $49 }'
    if [ -n "$hog" ]; then
        kill "$hog" 2>/dev/null
        wait "$hog" 2>/dev/null || true
    fi
}

rows=(
    "null|-blockdev driver=null-co,node-name=d0,size=1073741824|rw=randread bs=4k iodepth=1|1"
    "null|-blockdev driver=null-co,node-name=d0,size=1073741824|rw=randread bs=4k iodepth=32|1"
    "null|-blockdev driver=null-co,node-name=d0,size=1073741824|rw=randwrite bs=4k iodepth=32|1"
    "null|-blockdev driver=null-co,node-name=d0,size=1073741824|rw=randread bs=4k iodepth=32|2"
    "null|-blockdev driver=null-co,node-name=d0,size=1073741824|rw=randread bs=4k iodepth=32|2/2"
    "raw|-drive if=none,id=d0,file=$raw,format=raw,cache=none,aio=io_uring|rw=randread bs=4k iodepth=1|1"
    "raw|-drive if=none,id=d0,file=$raw,format=raw,cache=none,aio=io_uring|rw=randread bs=4k iodepth=32|1"
    "raw|-drive if=none,id=d0,file=$raw,format=raw,cache=none,aio=io_uring|rw=randwrite bs=4k iodepth=32|1"
    "raw|-drive if=none,id=d0,file=$raw,format=raw,cache=none,aio=io_uring|rw=randread bs=4k iodepth=32|2"
    "raw|-drive if=none,id=d0,file=$raw,format=raw,cache=none,aio=io_uring|rw=randread bs=4k iodepth=32|2/2"
)
if $have_qcow2; then
    rows+=(
        "qcow2|-drive if=none,id=d0,file=$qcow2,format=qcow2,cache=none,aio=io_uring|rw=randread bs=4k iodepth=32|1"
        "qcow2|-drive if=none,id=d0,file=$qcow2,format=qcow2,cache=none,aio=io_uring|rw=randwrite bs=4k iodepth=32|1"
    )
fi

machine_line
printf '%-6s %-24s %3s %9s %9s %6s %9s %6s %9s %6s %6s %6s\n' disk job q spindle qemu s/q \
    host s/host host* s/h* rss-s rss-q
for row in "${rows[@]}"; do
    IFS='|' read -r kind disk job queues <<<"$row"
    nq=${queues%/*}
    s_iops=() q_iops=() s_rss=() q_rss=()
    for _ in $(seq "$runs"); do
        read -r i r < <(run_vm spindle "$disk" "$job" "$queues"); s_iops+=("$i"); s_rss+=("$r")
        read -r i r < <(run_vm qemu "$disk" "$job" "$queues"); q_iops+=("$i"); q_rss+=("$r")
    done
    s=$(printf '%s\n' "${s_iops[@]}" | median)
    q=$(printf '%s\n' "${q_iops[@]}" | median)
    sr=$(printf '%s\n' "${s_rss[@]}" | median)
    qr=$(printf '%s\n' "${q_rss[@]}" | median)
    host="-" shr="-" hostb="-" shrb="-"
    if [ "$kind" = raw ]; then
        rw=$(echo "$job" | sed -n 's/.*rw=\([a-z]*\).*/\1/p')
        qd=$(echo "$job" | sed -n 's/.*iodepth=\([0-9]*\).*/\1/p')
        host=$(host_fio "$raw" "$rw" "$qd" "$nq")
        hostb=$(host_fio "$raw" "$rw" "$qd" "$nq" busy)
        shr=$(awk -v a="$s" -v b="$host" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
        shrb=$(awk -v a="$s" -v b="$hostb" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
    fi
    printf '%-6s %-24s %3s %9.0f %9.0f %6.2f %9s %6s %9s %6s %6.0f %6.0f\n' "$kind" \
        "$(echo "$job" | sed 's/rw=//; s/ bs=/ /; s/ iodepth=/ QD/')" "$queues" "$s" "$q" \
        "$(awk -v a="$s" -v b="$q" 'BEGIN { print b ? a / b : 0 }')" "$host" "$shr" "$hostb" \
        "$shrb" "$(awk -v k="$sr" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$qr" 'BEGIN { print k / 1024 }')"
done
echo "host: the host's fio on the same file; host*: the same with one core kept busy, as the"
echo "guest's polling vCPU keeps one busy (2-core machine).  rss-s/rss-q: each VMM's RSS in MiB"
echo "at 80% of a run (guest RAM is 256 MiB in both and touched only as the guest uses it)."
