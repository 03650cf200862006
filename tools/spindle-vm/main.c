/*
 * spindle-vm: the KVM monitor.  Takes the storage user's part of
 * qemu-system-x86_64's command line; see kvmcore/config.h and `-help`.
 */
#include "kvmcore/machine.h"

int main(int argc, char **argv)
{
    return kvm_vm_main(argc, argv);
}
