#!/usr/bin/env bash
# The virtio-pci transport end to end: blkbench on spindle-vm-test drives
# x-test-blk-pci (tests/vmm, a virtio-blk double over memory): enumerate,
# negotiate, queue setup, kicks through ioeventfds to an iothread, and the
# data written reads back verified; multi-queue with several iothreads.
set -u
. "$(dirname "$0")/lib/vm.sh"
vm_require vm_virtio

common=(-enable-kvm -cpu host -m 512 -nographic -no-reboot -kernel "$BLKBENCH" -device isa-debug-exit)

vm_run "$tmp/one" 60 "$VMTEST" "${common[@]}" -device x-test-blk-pci,size=64M \
    -append "rw=write bs=4k size=16M iodepth=4 verify=pattern -- rw=randread bs=4k size=16M iodepth=8 runtime=1 verify=pattern"
expect vm_virtio/write_verify_status '[ "$rc" -eq 1 ]' \
    "exit $rc (expected 1: blkbench status 0); $(grep -E 'ERROR|DONE' "$tmp/one.out" | head -3)"
expect vm_virtio/device_found \
    'grep -q "^BLKBENCH-INFO dev=0 pci=00:0[1-9].0 mmio=0xc.* capacity=67108864 .*event_idx=1 indirect=1" "$tmp/one.out"' \
    "$(grep 'dev=0' "$tmp/one.out")"
expect vm_virtio/no_verify_errors '! grep -q "verify_errors=[1-9]" "$tmp/one.out" && grep -q "verify_errors=0" "$tmp/one.out"' \
    "$(grep RESULT "$tmp/one.out")"
expect vm_virtio/quiet_stderr '[ ! -s "$tmp/one.err" ]' "stderr: $(head -c 300 "$tmp/one.err")"

vm_run "$tmp/mq" 60 "$VMTEST" "${common[@]}" -object iothread,id=io0 -object iothread,id=io1,poll-max-ns=0 \
    -device x-test-blk-pci,size=32M,num-queues=2,iothread=io0 \
    -device x-test-blk-pci,size=32M,num-queues=1,iothread=io1 \
    -append "rw=write bs=4k size=4M numjobs=2 iodepth=4 verify=pattern -- rw=randwrite dev=1 bs=4k size=4M iodepth=4 runtime=1 verify=pattern"
expect vm_virtio/multiqueue_two_devices '[ "$rc" -eq 1 ] && grep -q "queue=1 rw=write" "$tmp/mq.out" && grep -q "job=1 dev=1" "$tmp/mq.out"' \
    "exit $rc; $(grep -E 'RESULT|ERROR' "$tmp/mq.out" | head -4)"

# A guest that asks for more queues than the device has gets blkbench's "cannot honour" (2 -> 5).
vm_run "$tmp/toomany" 30 "$VMTEST" "${common[@]}" -device x-test-blk-pci,size=8M \
    -append "rw=read numjobs=2"
expect vm_virtio/queue_count_honoured '[ "$rc" -eq 5 ]' "exit $rc; $(grep ERROR "$tmp/toomany.out")"
