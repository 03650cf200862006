/*
 * The VM's storage: the nodes of -blockdev (held by block/blockdev.h, as
 * blockdev-add's are) and the backends of -drive, opened before any device
 * and closed after the last one, and the backend a device's drive=
 * property names.
 */
#ifndef SPINDLE_KVMCORE_STORAGE_H
#define SPINDLE_KVMCORE_STORAGE_H

#include "block/backend.h"
#include "kvmcore/config.h"

struct kvm_storage {
    struct block_backend **drives;    /* -drive, named by their id */
    unsigned nr_drives;
};

int kvm_storage_open(struct kvm_storage *st, const struct kvm_config *cfg, struct err *err);
void kvm_storage_close(struct kvm_storage *st);

/*
 * The backend for drive= of device what: a -drive's own backend (a new
 * reference), or a new backend on a -blockdev node.  NULL with err.
 */
struct block_backend *kvm_storage_backend(struct kvm_storage *st, const char *drive,
                                          const char *what, struct err *err);

#endif
