#!/usr/bin/env bash
# Bad command lines are refused before a VM exists: exit status 1 and one
# line "spindle-vm: <sentence>" on stderr, nothing on stdout.
set -u
. "$(dirname "$0")/lib/vm.sh"
vm_require vm_cmdline

n=0
refuse() {
    local want=$1
    shift
    n=$((n + 1))
    vm_run "$tmp/r$n" 10 "$VM" "$@"
    local lines
    lines=$(wc -l <"$tmp/r$n.err")
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && grep -qF "spindle-vm: $want" "$tmp/r$n.err" &&
       [ ! -s "$tmp/r$n.out" ]; then
        pass "vm_cmdline/$n"
    else
        fail "vm_cmdline/$n" "$* -> exit $rc, stderr: $(cat "$tmp/r$n.err")"
    fi
}

k=(-kernel "$BLKBENCH")
refuse "-frobnicate: unknown option" "${k[@]}" -frobnicate
refuse "no kernel: spindle-vm boots only with -kernel FILE" -m 512
refuse "-device virtio-blk-pci: unknown property 'foo'" "${k[@]}" \
    -drive if=none,id=d0,file=/dev/null,format=raw -device virtio-blk-pci,drive=d0,foo=bar
refuse "-cpu: unknown CPU feature 'bogus'" "${k[@]}" -cpu host,-bogus
refuse "-m: 'lots' is not a memory size" "${k[@]}" -m lots
refuse "-m: 8 MiB of RAM is too little" "${k[@]}" -m 8
refuse "-machine: accel=tcg is not supported" "${k[@]}" -machine q35,accel=tcg
refuse "-device virtio-blk-pci: iothread 'io9' is not an -object iothread" "${k[@]}" \
    -drive if=none,id=d0,file=/dev/null -device virtio-blk-pci,drive=d0,iothread=io9
refuse "-device virtio-blk-pci: property 'queue-size' must be between 2 and 1024" "${k[@]}" \
    -drive if=none,id=d0,file=/dev/null -device virtio-blk-pci,drive=d0,queue-size=4096
refuse "-device isa-debug-exit: unknown property 'iobas'" "${k[@]}" -device isa-debug-exit,iobas=1
refuse "kernel /nonexistent: No such file or directory" -kernel /nonexistent
refuse "kernel /etc/hostname: neither an ELF (with a PVH entry note) nor a Linux bzImage" \
    -kernel /etc/hostname
refuse "initrd /nonexistent: No such file or directory" "${k[@]}" -initrd /nonexistent
refuse "kernel /bin/true: ELF type 3 is not an executable" -kernel /bin/true
refuse "-smp: property 'cpus' must be between 1 and 254, not 1000" "${k[@]}" -smp 1000
# A drive that cannot be opened is refused, naming it.
refuse "-drive id=d0: Could not open '/nonexistent.img': No such file or directory" "${k[@]}" \
    -drive if=none,id=d0,file=/nonexistent.img,format=raw -device virtio-blk-pci,drive=d0
refuse "-drive id=d0: '/dev/null' is not a regular file or a block device" "${k[@]}" \
    -drive if=none,id=d0,file=/dev/null,format=raw -device virtio-blk-pci,drive=d0,num-queues=2
truncate -s 1M "$tmp/disk.raw"
refuse "-device virtio-scsi-pci: this build has no SCSI target yet" "${k[@]}" \
    -drive if=none,id=d0,file="$tmp/disk.raw",format=raw -device virtio-scsi-pci,id=scsi0 -device scsi-hd,drive=d0,bus=scsi0.0
refuse "-device scsi-hd: bus 'scsi9.0' is not the bus of a -device virtio-scsi-pci,id=scsi9" "${k[@]}" \
    -drive if=none,id=d0,file=/dev/null -device virtio-scsi-pci,id=scsi0 -device scsi-hd,drive=d0,bus=scsi9.0

# -help and -version exit 0.
vm_run "$tmp/help" 10 "$VM" -help
expect vm_cmdline/help '[ "$rc" -eq 0 ] && grep -q "^usage: spindle-vm" "$tmp/help.out"' "exit $rc"
