#!/usr/bin/env bash
# make run: the main job.  Creates a disk image, boots a guest on spindle-vm
# with the disk on an iothread, runs a short write-and-verify job and then a
# 4k random-read job in the guest, and prints the guest's IOPS and the time
# from boot to its first I/O.
#
#   make run [GUEST=blkbench|linux] [DISK_SIZE=1G] [FORMAT=qcow2|raw] [RUNTIME=5]
#
# GUEST=blkbench (the default) is spindle's own guest, which runs on any KVM
# including the nested one of this project's machines; GUEST=linux boots
# Linux and fio and needs a host whose KVM has VMX or SVM.
set -euo pipefail
BUILD=${BUILD:-build}
GUEST=${GUEST:-blkbench}
DISK_SIZE=${DISK_SIZE:-1G}
RUNTIME=${RUNTIME:-5}
IMG="$BUILD/spindle-img"
VM="$BUILD/spindle-vm"

if [ ! -w /dev/kvm ]; then
    echo "make run: /dev/kvm is missing or not writable: spindle-vm needs KVM" >&2
    exit 1
fi
# qcow2 once the driver is built in, else raw.
FORMAT=${FORMAT:-$("$IMG" create -f qcow2 -o help >/dev/null 2>&1 && echo qcow2 || echo raw)}
d=$(mktemp -d "${TMPDIR:-/var/tmp}/spindle-run-XXXXXX")
trap 'rm -rf "$d"' EXIT
disk="$d/disk.$FORMAT"

echo "== spindle-img create -f $FORMAT $disk $DISK_SIZE"
"$IMG" create -q -f "$FORMAT" "$disk" "$DISK_SIZE"

case "$GUEST" in
blkbench)
    kernel="$BUILD/guest/blkbench.elf"
    append="rw=write bs=64k size=64M verify=pattern -- rw=randread bs=4k iodepth=32 runtime=$RUNTIME size=64M"
    ;;
linux)
    kernel="$BUILD/linux/vmlinuz"
    initrd="$BUILD/linux/initramfs.cpio.gz"
    if [ ! -e "$kernel" ] || [ ! -e "$initrd" ]; then
        echo "== building the Linux guest (Debian's kernel, busybox, fio)"
        BUILD=$BUILD tests/guest/linux/build.sh
    fi
    if ! grep -qE '\b(vmx|svm)\b' /proc/cpuinfo || [ -d /sys/module/kvm_pvm ]; then
        echo "make run GUEST=linux: this host's KVM has no VMX/SVM (nested kvm_pvm emulates guest" \
             "ring 0), so Linux cannot boot here; use the default GUEST=blkbench" >&2
        exit 1
    fi
    append="console=ttyS0 quiet spindle.job=verify,randread spindle.runtime=$RUNTIME"
    ;;
*)
    echo "make run: GUEST must be blkbench or linux, not '$GUEST'" >&2
    exit 1
    ;;
esac

echo "== spindle-vm: $GUEST on a $FORMAT disk served by an iothread (io_uring, O_DIRECT)"
args=(-enable-kvm -cpu host -m 512 -smp 1 -nographic -no-reboot -kernel "$kernel"
      -append "$append"
      -drive "if=none,id=disk0,file=$disk,format=$FORMAT,cache=none,aio=io_uring"
      -object iothread,id=io0 -device virtio-blk-pci,drive=disk0,iothread=io0
      -device isa-debug-exit)
[ "$GUEST" = linux ] && args+=(-initrd "$initrd")
start=$(date +%s%N)
set +e
"$VM" "${args[@]}" | tee "$d/console.log"
status=${PIPESTATUS[0]}
set -e
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))

echo
echo "== results"
boot=$(sed -n 's/.*boot_to_first_io_us=\([0-9]*\).*/\1/p' "$d/console.log" | head -1)
verify=$(grep -c "BLKBENCH-RESULT.*rw=write.*verify_errors=0" "$d/console.log" || true)
iops=$(grep "BLKBENCH-RESULT.*rw=randread" "$d/console.log" | sed -n 's/.* iops=\([0-9]*\).*/\1/p' | tail -1)
lat=$(grep "BLKBENCH-RESULT.*rw=randread" "$d/console.log" | sed -n 's/.* lat_mean_ns=\([0-9]*\).*/\1/p' | tail -1)
echo "write + verify of 64 MiB: $([ "$verify" -ge 1 ] && echo "ok" || echo "FAILED")"
echo "4k random read, QD32, ${RUNTIME}s: ${iops:-?} IOPS (mean latency $(( ${lat:-0} / 1000 )) us)"
echo "boot to first I/O (guest entry to first completed request): $(( ${boot:-0} / 1000 )) ms"
echo "spindle-vm ran $elapsed_ms ms in all; guest exit status $(( (status - 1) / 2 ))"
"$IMG" check "$disk" >/dev/null 2>&1 && echo "$IMG check: no errors" || true
# isa-debug-exit: the guest's status 0 reaches us as 1.
[ "$status" -eq 1 ]
