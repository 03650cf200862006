/*
 * spindle-vm-test: spindle-vm plus the test doubles of tests/vmm, for the
 * integration tests (tests/integration/vm_*.sh).  Same command line.
 */
#include "kvmcore/machine.h"
#include "monitor/vm.h"
#include "tests/vmm/vmm.h"

int main(int argc, char **argv)
{
    kvm_dev_type_register(&testblk_type);
    return kvm_vm_main(argc, argv, &mon_vm_hooks);
}
