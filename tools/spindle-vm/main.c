/*
 * spindle-vm: the KVM monitor.  Takes the storage user's part of
 * qemu-system-x86_64's command line; see kvmcore/config.h and `-help`.
 * The QMP monitor (-qmp) comes in through monitor/vm.h's hooks.
 */
#include "kvmcore/machine.h"
#include "monitor/vm.h"

int main(int argc, char **argv)
{
    return kvm_vm_main(argc, argv, &mon_vm_hooks);
}
