/* Test doubles for spindle-vm (tests/vmm): registered by spindle-vm-test's main. */
#ifndef SPINDLE_TESTS_VMM_VMM_H
#define SPINDLE_TESTS_VMM_VMM_H

#include "kvmcore/config.h"

/* -device x-test-blk-pci: virtio-blk over a memory buffer (testblk.c). */
extern const struct kvm_dev_type testblk_type;

#endif
