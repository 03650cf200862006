/*
 * The monitor around spindle-vm's machine: kvm_vm_main's hooks start the
 * monitor on the -qmp sockets once the machine is built, and flush and
 * close it after the VM has ended (SHUTDOWN sent).  The nodes blockdev-add
 * made are closed with the -blockdev ones, after the devices
 * (kvmcore/storage.c).
 *
 *     return kvm_vm_main(argc, argv, &mon_vm_hooks);
 */
#ifndef SPINDLE_MONITOR_VM_H
#define SPINDLE_MONITOR_VM_H

#include "kvmcore/machine.h"

extern const struct kvm_vm_hooks mon_vm_hooks;

#endif
