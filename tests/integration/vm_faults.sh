#!/usr/bin/env bash
# A guest that breaks its vCPU ends spindle-vm with status 2 and one line
# naming the vCPU, the exit and RIP; reset and debug-exit end it as QEMU's
# -no-reboot and isa-debug-exit do.  The guest is tests/guest/faulty.
set -u
. "$(dirname "$0")/lib/vm.sh"
vm_require vm_faults

run_faulty() {
    vm_run "$tmp/$1" 20 "$VM" -m 64 -nographic -no-reboot -kernel "$FAULTY" -append "$1" \
        -device isa-debug-exit
}

run_faulty t
expect vm_faults/triple_fault_status '[ "$rc" -eq 2 ]' "exit status $rc, expected 2"
expect vm_faults/triple_fault_message \
    'grep -q "vCPU 0: the guest triple-faulted (KVM_EXIT_SHUTDOWN) at RIP 0x" "$tmp/t.err"' \
    "stderr: $(cat "$tmp/t.err")"
expect vm_faults/guest_output_before 'grep -q "FAULTY t" "$tmp/t.out"' "no serial output"

run_faulty i
expect vm_faults/internal_error_status '[ "$rc" -eq 2 ]' "exit status $rc, expected 2"
expect vm_faults/internal_error_message \
    'grep -q "vCPU 0: KVM_EXIT_INTERNAL_ERROR, suberror 1 (emulation failure).* at RIP 0xd0000000" "$tmp/i.err"' \
    "stderr: $(cat "$tmp/i.err")"

run_faulty r
expect vm_faults/reset_no_reboot '[ "$rc" -eq 0 ] && [ ! -s "$tmp/r.err" ]' \
    "exit status $rc, stderr: $(cat "$tmp/r.err")"

run_faulty e
expect vm_faults/debug_exit_status '[ "$rc" -eq $(( (0x2a << 1) | 1 )) ]' "exit status $rc, expected 85"

# isa-debug-exit at another port: the default one is then unassigned.
vm_run "$tmp/port" 3 "$VM" -m 64 -nographic -kernel "$FAULTY" -append e \
    -device isa-debug-exit,iobase=0xf4,iosize=4
expect vm_faults/debug_exit_moved '[ "$rc" -eq 124 ]' "exit status $rc, expected a hang (124)"

# Two vCPUs: the fault on vCPU 0 stops vCPU 1 (parked in wait-for-SIPI) too.
vm_run "$tmp/smp" 20 "$VM" -m 64 -smp 4 -nographic -kernel "$FAULTY" -append t
expect vm_faults/smp_stops_all '[ "$rc" -eq 2 ]' "exit status $rc, expected 2"

# Without -no-reboot a reset reboots: the guest boots a second time (its mark
# in RAM survives, as on QEMU) and then leaves through isa-debug-exit.
vm_run "$tmp/boot2" 20 "$VM" -m 64 -smp 2 -nographic -kernel "$FAULTY" -append b -device isa-debug-exit
expect vm_faults/reboot '[ "$rc" -eq 85 ] && [ "$(grep -c "FAULTY b" "$tmp/boot2.out")" -eq 2 ]' \
    "exit status $rc, $(grep -c "FAULTY b" "$tmp/boot2.out") boots"
