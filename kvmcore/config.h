/*
 * spindle-vm's command line: the part of qemu-system-x86_64's that a
 * storage user needs, parsed and checked into a kvm_config.  Every option
 * and property is validated here, cross references too (a device's drive
 * and iothread must exist), so a bad command line fails with one sentence
 * before a VM exists.
 */
#ifndef SPINDLE_KVMCORE_CONFIG_H
#define SPINDLE_KVMCORE_CONFIG_H

#include <jansson.h>
#include <stdio.h>

#include "kvmcore/cpuid.h"
#include "kvmcore/opts.h"
#include "util/error.h"
#include "util/iothread.h"

enum kvm_serial_mode {
    KVM_SERIAL_NULL,          /* a UART whose output goes nowhere (QEMU's default vc) */
    KVM_SERIAL_STDIO,         /* stdout/stdin */
    KVM_SERIAL_FILE,          /* output to a file */
    KVM_SERIAL_NONE,          /* no UART at all */
};

struct kvm_iothread_cfg {
    char *id;
    struct iothread_opts opts;
};

/* -blockdev: a node's options as a JSON object (dotted keys nested, values strings). */
struct kvm_blockdev_cfg {
    char *node_name;
    json_t *options;
};

enum kvm_drive_if { KVM_DRIVE_IF_NONE, KVM_DRIVE_IF_VIRTIO };

/* -drive: the legacy shorthand for a backend plus its node graph. */
struct kvm_drive_cfg {
    char *id;
    enum kvm_drive_if interface;
    char *file;
    char *format;             /* NULL: probe */
    char *cache;              /* NULL: writeback */
    char *aio;                /* NULL: the driver's default */
    bool read_only;
    char *discard;            /* NULL, "ignore", "unmap" */
    char *detect_zeroes;      /* NULL, "off", "on", "unmap" */
    char *werror, *rerror;
    json_t *options;          /* everything else, blockdev-style (file.x=y) */
};

/* -device virtio-blk-pci */
struct kvm_vblk_cfg {
    char *id;
    char *drive;              /* a -drive id or a -blockdev node-name */
    char *iothread;           /* NULL: the main loop */
    json_t *vq_mapping;       /* iothread-vq-mapping: [{"iothread": id, "vqs": [n...]}], or NULL */
    unsigned num_queues;      /* 0: one per vCPU, as QEMU's "auto" */
    unsigned queue_size;
    int pci_slot;             /* -1: the next free */
    char *serial;
    uint32_t logical_block_size, physical_block_size;
    bool write_cache;
    bool discard, write_zeroes;
};

/* -device isa-debug-exit */
struct kvm_debug_exit_cfg {
    uint16_t iobase, iosize;
};

/* -device virtio-scsi-pci */
struct kvm_vscsi_cfg {
    char *id;
    char *iothread;
    unsigned num_queues;      /* request queues; 0: one per vCPU */
    unsigned queue_size;
    unsigned cmd_per_lun, max_sectors;
    int pci_slot;
};

/* -device scsi-hd */
struct kvm_scsi_hd_cfg {
    char *drive;
    char *bus;                /* the controller's id (from "ID.0"), NULL: the only one */
    int controller;           /* index in kvm_config.devices, after the checks */
    unsigned scsi_id, lun;
    char *serial;
    uint32_t logical_block_size, physical_block_size;
};

struct kvm_config;
struct kvm_device_cfg;
struct kvm_machine;

/*
 * A -device driver.  parse() reads and checks its properties (every key
 * it understands through kvm_opts_get*, so the rest are refused as
 * unknown) into *cfg; check() looks at the rest of the line; create()
 * builds it on a machine; free_cfg() drops the parsed form.  Test binaries register test doubles the same way.
 */
struct kvm_dev_type {
    const char *name;
    int (*parse)(struct kvm_opts *props, void **cfg, const char *what, struct err *err);
    /* Cross references once the whole line is read (drives, iothreads, buses). Optional. */
    int (*check)(const struct kvm_config *c, struct kvm_device_cfg *dev, const char *what,
                 struct err *err);
    int (*create)(struct kvm_machine *m, struct kvm_device_cfg *dev, struct err *err);
    void (*free_cfg)(void *cfg);
};

void kvm_dev_type_register(const struct kvm_dev_type *t);
const struct kvm_dev_type *kvm_dev_type_find(const char *name);

struct kvm_device_cfg {
    const struct kvm_dev_type *type;
    char *id;
    void *cfg;
};

struct kvm_config {
    char *machine_type;
    uint64_t ram_size;
    char *mem_path;
    bool mem_prealloc;
    unsigned smp;
    char *cpu;
    struct kvm_cpu_model cpu_model;
    char *kernel, *initrd, *append;
    enum kvm_serial_mode serial;
    char *serial_file;
    bool no_reboot;
    bool start_paused;        /* -S: the vCPUs wait for QMP cont */

    /* -qmp unix:PATH,server=on,wait=off: the QMP socket paths, in order. */
    unsigned nr_qmp;
    char **qmp;

    unsigned nr_iothreads, nr_blockdevs, nr_drives, nr_devices;
    struct kvm_iothread_cfg *iothreads;
    struct kvm_blockdev_cfg *blockdevs;
    struct kvm_drive_cfg *drives;
    struct kvm_device_cfg *devices;

    bool help, version;       /* -help / -version: print and exit 0 */
};

/* Parse argv (argv[0] is the program).  On error err holds one sentence. */
int kvm_config_parse(struct kvm_config *c, int argc, char **argv, struct err *err);
void kvm_config_free(struct kvm_config *c);
void kvm_config_usage(FILE *out, const char *prog);

/* The storage devices' parsed forms (NULL for other drivers), for the block layer. */
const struct kvm_vblk_cfg *kvm_device_vblk_cfg(const struct kvm_device_cfg *d);
const struct kvm_vscsi_cfg *kvm_device_vscsi_cfg(const struct kvm_device_cfg *d);
const struct kvm_scsi_hd_cfg *kvm_device_scsi_hd_cfg(const struct kvm_device_cfg *d);

/* Lookups for check(): a -drive id or -blockdev node-name, an iothread id. */
bool kvm_config_has_block(const struct kvm_config *c, const char *name);
bool kvm_config_has_iothread(const struct kvm_config *c, const char *id);
/* How many devices use drive. */
unsigned kvm_config_drive_users(const struct kvm_config *c, const char *drive);

#endif
