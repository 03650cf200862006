#!/usr/bin/env bash
# blkbench on spindle-vm with real virtio-blk devices over the block layer:
# raw, qcow2 (over a backing file) and null disks, one and two queues on one and two iothreads, write +
# verify, a second boot that verifies what the first one wrote, the guest's
# exit status reaching the host, and the image checked from the host.
set -u
. "$(dirname "$0")/lib/vm.sh"
vm_require vm_blk
command -v qemu-io >/dev/null || { skip vm_blk "qemu-io is not installed"; exit 0; }

common=(-enable-kvm -cpu host -m 256 -nographic -no-reboot -kernel "$BLKBENCH" -device isa-debug-exit)
failures=0
boot() {  # name append args...
    local name=$1 append=$2
    shift 2
    vm_run "$tmp/$name" 60 "$VM" "${common[@]}" -append "$append" "$@"
}
ok_boot() {  # name: the guest said DONE status=0 and exited with it
    expect "$1" '[ "$rc" -eq 1 ] && grep -q "^BLKBENCH-DONE status=0" "$tmp/$1.out"' \
        "exit $rc: $(grep -E 'ERROR|DONE|RESULT' "$tmp/$1.out" | head -3) $(head -c 300 "$tmp/$1.err")"
}

qemu-img create -q -f raw "$tmp/disk.raw" 64M

# One queue, one iothread: write and verify, then a random read job.
boot raw1 "rw=write bs=64k size=32M verify=pattern -- rw=randread bs=4k iodepth=16 runtime=1" \
    -drive if=none,id=d0,file="$tmp/disk.raw",format=raw,cache=none,aio=io_uring \
    -object iothread,id=io0 -device virtio-blk-pci,drive=d0,iothread=io0
ok_boot raw1
expect raw1-iops 'grep -q "job=1.*iops=[1-9]" "$tmp/raw1.out"' "no IOPS from the read job"

# A second boot verifies what the first one wrote: it reached the image.
boot raw1-again "rw=read bs=64k size=32M verify=pattern" \
    -drive if=none,id=d0,file="$tmp/disk.raw",format=raw -device virtio-blk-pci,drive=d0
ok_boot raw1-again

# A qcow2 overlay on that raw image (128k clusters: every 64k write copies the
# other half from the backing file): the guest reads the backing's blocks
# through it, then writes through two queues on two iothreads and verifies; the
# backing file is untouched, the overlay passes qemu-img check, and a fresh
# boot finds every block of it a valid pattern block.
cp "$tmp/disk.raw" "$tmp/base-before.raw"
qemu-img create -q -f qcow2 -o cluster_size=128k -b "$tmp/disk.raw" -F raw "$tmp/ov.qcow2"
ov=(-drive if=none,id=d0,file="$tmp/ov.qcow2",format=qcow2,cache=none,aio=io_uring
    -object iothread,id=ioa -object iothread,id=iob
    -device '{"driver":"virtio-blk-pci","drive":"d0","num-queues":2,"iothread-vq-mapping":[{"iothread":"ioa"},{"iothread":"iob"}]}')
boot qcow2-backing "rw=read bs=64k size=32M verify=pattern -- rw=randwrite bs=64k iodepth=8 size=32M runtime=1 numjobs=2 verify=pattern" "${ov[@]}"
ok_boot qcow2-backing
expect qcow2-backing-untouched 'cmp -s "$tmp/disk.raw" "$tmp/base-before.raw"' "the backing file changed"
expect qcow2-backing-check 'qemu-img check -q "$tmp/ov.qcow2"' "$(qemu-img check "$tmp/ov.qcow2" 2>&1 | head -3)"
expect qcow2-backing-allocated '[ "$(qemu-img map --output=json "$tmp/ov.qcow2" | grep -c "\"depth\": 0")" -gt 0 ]' \
    "the guest's writes allocated nothing in the overlay"
boot qcow2-backing-again "rw=read bs=64k size=32M verify=pattern" "${ov[@]}"
ok_boot qcow2-backing-again

# Two queues on two iothreads, random writes with verification, each job on its queue.
boot raw2 "rw=randwrite bs=4k iodepth=8 size=16M runtime=1 numjobs=2 verify=pattern" \
    -drive if=none,id=d0,file="$tmp/disk.raw",format=raw,cache=none,aio=native \
    -object iothread,id=ioa -object iothread,id=iob \
    -device '{"driver":"virtio-blk-pci","drive":"d0","num-queues":2,"iothread-vq-mapping":[{"iothread":"ioa"},{"iothread":"iob"}]}'
ok_boot raw2
expect raw2-queues '[ "$(grep -c "BLKBENCH-RESULT.*queue=[01] " "$tmp/raw2.out")" -eq 2 ]' \
    "expected a result per queue"

# -blockdev graph (file + raw), aio=threads, the main loop serving the queue.
boot blockdev "rw=randrw bs=4k iodepth=4 size=8M runtime=1 verify=pattern" \
    -blockdev driver=file,node-name=f0,filename="$tmp/disk.raw",aio=threads \
    -blockdev driver=raw,node-name=r0,file=f0 -device virtio-blk-pci,drive=r0
ok_boot blockdev

# A null disk: reads and writes go nowhere, quickly.
boot null "rw=randread bs=4k iodepth=32 runtime=1" \
    -blockdev driver=null-co,node-name=n0,size=1073741824 -object iothread,id=io0 \
    -device virtio-blk-pci,drive=n0,iothread=io0,num-queues=1,queue-size=256
ok_boot null

# rate_iops paces the guest: 2000/s over two queues, within 5% over 2 s.
boot paced "rw=randwrite bs=4k iodepth=8 runtime=2 numjobs=2 rate_iops=2000" \
    -blockdev driver=null-co,node-name=n0,size=1073741824 -object iothread,id=io0 \
    -device virtio-blk-pci,drive=n0,iothread=io0,num-queues=2
ok_boot paced
paced=$(sed -n 's/^BLKBENCH-RESULT.* queue=all .* iops=\([0-9]*\) .*/\1/p' "$tmp/paced.out")
expect paced-rate '[ -n "$paced" ] && [ "$paced" -ge 1900 ] && [ "$paced" -le 2100 ]' \
    "iops=${paced:-none} for rate_iops=2000"

# A verify failure inside the guest reaches the host as the exit status.
qemu-io -f raw -c "write -P 0x66 1M 64k" "$tmp/disk.raw" >/dev/null
boot corrupt "rw=read bs=64k size=32M verify=pattern" \
    -drive if=none,id=d0,file="$tmp/disk.raw",format=raw -device virtio-blk-pci,drive=d0
expect corrupt '[ "$rc" -eq 3 ] && grep -q "BLKBENCH-DONE status=1" "$tmp/corrupt.out"' \
    "exit $rc (want 3: the guest found the corruption)"

# The image is a plain raw file the host tools still read.
expect host-reads 'qemu-io -f raw -c "read -P 0x66 1M 64k" "$tmp/disk.raw" >/dev/null' \
    "qemu-io could not read back what the host wrote"
