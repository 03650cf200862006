#!/usr/bin/env bash
# spindle-vm boots blkbench (no disk): it enumerates PCI, prints its
# BLKBENCH lines and leaves through isa-debug-exit with status 3 ("no
# device"), so spindle-vm exits with 7 as QEMU would.  Also: -smp, RAM above
# 4 GiB, -serial file:/none, -cpu host,-feature reaching the guest, a
# signal ending the VM.
set -u
. "$(dirname "$0")/lib/vm.sh"
vm_require vm_boot

base=(-enable-kvm -machine q35,accel=kvm -cpu host -m 512 -nographic -no-reboot
      -device isa-debug-exit)

vm_run "$tmp/plain" 30 "$VM" "${base[@]}" -kernel "$BLKBENCH"
expect vm_boot/exit_status '[ "$rc" -eq 7 ]' "exit status $rc, expected 7 (blkbench status 3)"
expect vm_boot/banner 'grep -q "^BLKBENCH-INFO blkbench starting at CPL3" "$tmp/plain.out"' \
    "no BLKBENCH-INFO banner"
expect vm_boot/pvh_memmap 'grep -q "source=pvh-memmap" "$tmp/plain.out"' \
    "blkbench did not find the PVH memory map"
expect vm_boot/pci_enumerated 'grep -q "no virtio-blk device found on PCI bus 0" "$tmp/plain.out"' \
    "blkbench did not scan PCI to its end"
expect vm_boot/done_line 'grep -q "^BLKBENCH-DONE status=3" "$tmp/plain.out"' "no BLKBENCH-DONE"
expect vm_boot/quiet_stderr '[ ! -s "$tmp/plain.err" ]' "stderr not empty: $(head -c 300 "$tmp/plain.err")"

# Same command line with QEMU's option spellings we accept and ignore.
vm_run "$tmp/compat" 30 "$VM" -nodefaults -no-user-config -display none -enable-kvm -cpu host \
    -m 256M -smp 2 -serial "file:$tmp/compat.serial" -monitor none -no-reboot \
    -bios /usr/share/qemu/qboot.rom -kernel "$BLKBENCH" -append "rw=read" -device isa-debug-exit
expect vm_boot/smp2_serial_file '[ "$rc" -eq 7 ] && grep -q "^BLKBENCH-DONE" "$tmp/compat.serial"' \
    "exit $rc or no output in the serial file"
expect vm_boot/cmdline_reaches_guest 'grep -q "cmdline=\"rw=read\"" "$tmp/compat.serial"' \
    "the -append line did not reach the guest"

# RAM above the 3 GiB hole: the memory map has a high part; blkbench runs below 4 GiB.
vm_run "$tmp/big" 30 "$VM" "${base[@]}" -m 4G -kernel "$BLKBENCH"
expect vm_boot/ram_above_4g '[ "$rc" -eq 7 ] && grep -q "size_mib=30" "$tmp/big.out"' \
    "exit $rc; $(grep mem "$tmp/big.out")"

# -serial none: no UART, no output, same exit.
vm_run "$tmp/none" 30 "$VM" -m 256 -serial none -kernel "$BLKBENCH" -device isa-debug-exit
expect vm_boot/serial_none '[ "$rc" -eq 7 ] && [ ! -s "$tmp/none.out" ]' \
    "exit $rc, output: $(head -c 100 "$tmp/none.out")"

# -cpu host,-x2apic reaches the guest's CPUID; -pdpe1gb too (blkbench pages with 2 MiB).
vm_run "$tmp/cpu" 30 "$VM" -m 64 -nographic -cpu host,-x2apic,-pdpe1gb -kernel "$FAULTY" \
    -append c -device isa-debug-exit
expect vm_boot/cpu_minus_x2apic 'grep -q "CPUID x2apic=0 xsave=[01] pdpe1gb=0" "$tmp/cpu.out"' \
    "guest saw: $(grep CPUID "$tmp/cpu.out")"
vm_run "$tmp/cpu1g" 30 "$VM" "${base[@]}" -cpu host,-pdpe1gb -kernel "$BLKBENCH"
expect vm_boot/cpu_minus_pdpe1gb '[ "$rc" -eq 7 ] && grep -q "paging=2m" "$tmp/cpu1g.out"' \
    "exit $rc; $(grep starting "$tmp/cpu1g.out")"

# A parked guest (no debug-exit port) ends on SIGTERM with status 0.
"$VM" -m 64 -serial none -kernel "$FAULTY" -append h </dev/null >"$tmp/term.out" 2>"$tmp/term.err" &
pid=$!
sleep 1
kill -TERM "$pid"
wait "$pid"
rc=$?
expect vm_boot/sigterm '[ "$rc" -eq 0 ] && grep -q "terminating on signal 15" "$tmp/term.err"' \
    "exit $rc, stderr: $(cat "$tmp/term.err")"

# On a terminal (a pty from script(1)) the console is raw and Ctrl-A x quits with status 0.
if command -v script >/dev/null 2>&1; then
    (sleep 1.5; printf '\001x') | timeout 20 script -qec \
        "$VM -m 64 -nographic -kernel $FAULTY -append h" /dev/null >"$tmp/tty.out" 2>&1
    rc=$?
    expect vm_boot/console_ctrl_a_x '[ "$rc" -eq 0 ] && grep -q "terminated by Ctrl-A x" "$tmp/tty.out"' \
        "exit $rc: $(tr -d '\r' <"$tmp/tty.out" | tail -2)"
else
    skip vm_boot/console_ctrl_a_x "script(1) not installed"
fi
