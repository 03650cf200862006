#!/usr/bin/env bash
# The Linux + fio guest (tests/guest/linux): built from Debian's packages,
# then run where it can run: under QEMU's software emulation here (proving
# the kernel, the initramfs, its init and fio against a virtio-blk disk),
# and on spindle-vm with KVM when the host has VMX or SVM.
. "$(dirname "$0")/lib.bash"
need qemu-system-x86_64 qemu-img fio

out="$BUILD/linux"
if ! why=$("$top/tests/guest/linux/build.sh" "$out" 2>&1); then
    skip linux_guest "cannot build the Linux guest: $(echo "$why" | tail -1)"
    exit 0
fi
pass "build"
qemu-img create -q -f raw "$T/disk.raw" 64M
boot() {  # log accel-args...
    local log=$1
    shift
    timeout --kill-after=5 240 "$@" -m 1G -nographic -no-reboot -kernel "$out/vmlinuz" \
        -initrd "$out/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet spindle.job=verify,randread spindle.size=8M spindle.runtime=2" \
        -drive if=none,id=d0,file="$T/disk.raw",format=raw -device virtio-blk-pci,drive=d0 \
        -device isa-debug-exit </dev/null >"$log" 2>&1
}
boot "$T/tcg.log" qemu-system-x86_64 -accel tcg
rc=$?
if [ "$rc" -eq 1 ] && grep -q "BLKBENCH-DONE status=0" "$T/tcg.log" &&
   grep -q "BLKBENCH-RESULT.*rw=randread.*iops=[1-9]" "$T/tcg.log"; then
    pass "fio inside Linux (QEMU, software emulation)"
else
    fail "fio inside Linux (QEMU, software emulation)" "exit $rc: $(grep BLKBENCH "$T/tcg.log" | tail -3 | tr '\n' ' ')"
fi
if grep -qE '\b(vmx|svm)\b' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ] && [ -w /dev/kvm ]; then
    boot "$T/kvm.log" "$VM" -enable-kvm -cpu host
    rc=$?
    if [ "$rc" -eq 1 ] && grep -q "BLKBENCH-DONE status=0" "$T/kvm.log"; then
        pass "fio inside Linux on spindle-vm"
    else
        fail "fio inside Linux on spindle-vm" "exit $rc: $(grep BLKBENCH "$T/kvm.log" | tail -3 | tr '\n' ' ')"
    fi
else
    skip "fio inside Linux on spindle-vm" "this host's KVM has no VMX/SVM (nested kvm_pvm): Linux cannot run on it here"
fi
finish
