/*
 * Loading a kernel into guest RAM: an ELF with a PVH entry note
 * (XEN_ELFNOTE_PHYS32_ENTRY) or a Linux bzImage (64-bit boot protocol).
 * Every header field read is checked; a malformed file is refused with a
 * sentence that names it, never loaded half-way into a crash.
 *
 * The loaders write the kernel, the command line, the initrd and the boot
 * information (hvm_start_info, or boot_params with its e820 table, plus
 * identity page tables and a GDT) and say how the boot vCPU starts.
 */
#ifndef SPINDLE_KVMCORE_BOOT_H
#define SPINDLE_KVMCORE_BOOT_H

#include "kvmcore/ram.h"
#include "kvmcore/vcpu.h"

/* The largest kernel or initrd file spindle-vm reads. */
#define KVM_BOOT_FILE_MAX (1ULL << 30)

struct kvm_boot_image {
    const char *name;           /* for messages: the file name */
    const uint8_t *data;
    size_t len;
};

struct kvm_boot_opts {
    struct kvm_boot_image kernel;
    struct kvm_boot_image initrd;    /* len 0 / data NULL: none */
    const char *cmdline;             /* NULL: empty */
};

/* What a loader reports besides the vCPU state (tests look at it). */
struct kvm_boot_info {
    bool pvh;                        /* false: bzImage */
    uint64_t kernel_start, kernel_end;
    uint64_t initrd_addr, initrd_size;
    uint64_t cmdline_addr;
    uint64_t start_info_addr;        /* PVH hvm_start_info, or boot_params */
};

/* Read a whole file into memory (at most KVM_BOOT_FILE_MAX bytes). */
int kvm_boot_read_file(const char *path, const char *what, struct kvm_boot_image *img,
                       struct err *err);
void kvm_boot_image_free(struct kvm_boot_image *img);

/* Pick the loader by the kernel's magic and load everything. */
int kvm_boot_load(struct kvm_ram *ram, const struct kvm_boot_opts *o,
                  struct vcpu_boot_state *bs, struct kvm_boot_info *info, struct err *err);

int kvm_boot_pvh(struct kvm_ram *ram, const struct kvm_boot_opts *o,
                 struct vcpu_boot_state *bs, struct kvm_boot_info *info, struct err *err);
int kvm_boot_bzimage(struct kvm_ram *ram, const struct kvm_boot_opts *o,
                     struct vcpu_boot_state *bs, struct kvm_boot_info *info, struct err *err);

/* ---- Shared by the loaders --------------------------------------------- */

/* Copy the command line (max bytes with its NUL) to KVM_BOOT_CMDLINE. */
int kvm_boot_put_cmdline(struct kvm_ram *ram, const struct kvm_boot_opts *o, size_t max,
                         uint64_t *addr, struct err *err);

/*
 * Put the initrd as high in low RAM as it fits below limit (exclusive),
 * page-aligned, above avoid_end (the kernel's end).
 */
int kvm_boot_put_initrd(struct kvm_ram *ram, const struct kvm_boot_opts *o, uint64_t limit,
                        uint64_t avoid_end, uint64_t *addr, struct err *err);

#endif
