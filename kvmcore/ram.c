/* Guest RAM and the memory map; see ram.h. */
#include "kvmcore/ram.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "kvmcore/layout.h"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

uint64_t kvm_parse_mem_size(const char *s)
{
    char *end;
    if (!s || !*s || *s == '-') {
        return 0;
    }
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0) {
        return 0;
    }
    uint64_t mult = MiB;
    if (*end) {
        switch (*end) {
        case 'b': case 'B': mult = 1; break;
        case 'k': case 'K': mult = KiB; break;
        case 'm': case 'M': mult = MiB; break;
        case 'g': case 'G': mult = GiB; break;
        case 't': case 'T': mult = TiB; break;
        default: return 0;
        }
        end++;
        if (*end == 'i' && end[1] == 'B') {
            end += 2;
        } else if (*end == 'B' && mult != 1) {
            end++;
        }
        if (*end) {
            return 0;
        }
    }
    double bytes = v * (double)mult;
    if (bytes >= 18446744073709551615.0 || bytes < 1) {
        return 0;
    }
    return (uint64_t)bytes;
}

static int open_backing(const char *mem_path, uint64_t *page_size, struct err *err)
{
    struct stat st;
    struct statfs sfs;
    int fd;

    *page_size = 4096;
    if (!mem_path) {
        fd = memfd_create("spindle-ram", MFD_CLOEXEC);
        if (fd < 0) {
            return err_set_errno(err, -errno, "cannot create a memfd for guest RAM");
        }
        return fd;
    }
    if (stat(mem_path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char *tmpl = xasprintf("%s/spindle-ram.XXXXXX", mem_path);
        fd = mkostemp(tmpl, O_CLOEXEC);
        if (fd < 0) {
            int ret = err_set_errno(err, -errno, "-mem-path %s: cannot create a file", mem_path);
            free(tmpl);
            return ret;
        }
        unlink(tmpl);
        free(tmpl);
    } else {
        fd = open(mem_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            return err_set_errno(err, -errno, "-mem-path %s", mem_path);
        }
    }
    if (fstatfs(fd, &sfs) == 0 && (unsigned long)sfs.f_type == HUGETLBFS_MAGIC) {
        *page_size = (uint64_t)sfs.f_bsize;
    }
    return fd;
}

int kvm_ram_alloc(struct kvm_ram *ram, uint64_t size, const char *mem_path, struct err *err)
{
    memset(ram, 0, sizeof(*ram));
    ram->fd = -1;
    if (size < KVM_RAM_MIN) {
        err_set(err, "-m: %" PRIu64 " MiB of RAM is too little (at least %llu MiB)",
                size >> 20, KVM_RAM_MIN >> 20);
        return -EINVAL;
    }
    if (size > 1 * TiB) {
        err_set(err, "-m: %" PRIu64 " GiB of RAM is more than spindle-vm supports (1 TiB)",
                size >> 30);
        return -EINVAL;
    }
    int fd = open_backing(mem_path, &ram->page_size, err);
    if (fd < 0) {
        return fd;
    }
    size = ALIGN_UP(size, MAX(ram->page_size, 2 * MiB));
    if (ftruncate(fd, (off_t)size) < 0) {
        int ret = err_set_errno(err, -errno, "cannot size guest RAM to %" PRIu64 " MiB%s%s",
                                size >> 20, mem_path ? " in " : "", mem_path ? mem_path : "");
        close(fd);
        return ret;
    }
    /*
     * On hugetlbfs the mapping reserves its huge pages now, so a pool that is
     * too small fails here with a sentence rather than later in the guest.
     */
    bool huge = ram->page_size > 4096;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | (huge ? 0 : MAP_NORESERVE), fd, 0);
    if (p == MAP_FAILED) {
        int ret = err_set_errno(err, -errno, "cannot map %" PRIu64 " MiB of guest RAM%s",
                                size >> 20, huge ? " (are enough huge pages reserved?)" : "");
        close(fd);
        return ret;
    }
    madvise(p, size, MADV_HUGEPAGE);
    ram->fd = fd;
    ram->hva = p;
    ram->size = size;
    ram->low_size = MIN(size, KVM_LOW_RAM_MAX);
    ram->high_size = size - ram->low_size;

    guest_mem_init(&ram->mem);
    struct guest_mem_region low = {
        .gpa = 0, .size = ram->low_size, .hva = p, .fd = fd, .fd_offset = 0,
    };
    guest_mem_add(&ram->mem, &low, NULL);
    if (ram->high_size) {
        struct guest_mem_region high = {
            .gpa = KVM_HIGH_RAM_START, .size = ram->high_size,
            .hva = (char *)p + ram->low_size, .fd = fd, .fd_offset = ram->low_size,
        };
        guest_mem_add(&ram->mem, &high, NULL);
    }
    return 0;
}

int kvm_ram_map(struct kvm_ram *ram, struct kvm_vm *vm, struct err *err)
{
    for (unsigned i = 0; i < ram->mem.nregions; i++) {
        const struct guest_mem_region *r = &ram->mem.regions[i];
        int ret = kvm_vm_add_memory(vm, r->gpa, r->size, r->hva, err);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

void kvm_ram_free(struct kvm_ram *ram)
{
    if (ram->hva) {
        munmap(ram->hva, ram->size);
    }
    if (ram->fd >= 0) {
        close(ram->fd);
    }
    memset(ram, 0, sizeof(*ram));
    ram->fd = -1;
}

static unsigned e820_add(struct kvm_e820_entry *e, unsigned n, unsigned max, uint64_t addr,
                         uint64_t size, uint32_t type)
{
    if (n < max && size) {
        e[n].addr = addr;
        e[n].size = size;
        e[n].type = type;
        n++;
    }
    return n;
}

unsigned kvm_ram_e820(const struct kvm_ram *ram, struct kvm_e820_entry *e, unsigned max)
{
    unsigned n = 0;
    n = e820_add(e, n, max, 0, KVM_EBDA_START, E820_RAM);
    n = e820_add(e, n, max, KVM_EBDA_START, 0xa0000 - KVM_EBDA_START, E820_RESERVED);
    n = e820_add(e, n, max, KVM_BIOS_START, KVM_BIOS_END - KVM_BIOS_START, E820_RESERVED);
    n = e820_add(e, n, max, KVM_KERNEL_MIN, ram->low_size - KVM_KERNEL_MIN, E820_RAM);
    n = e820_add(e, n, max, KVM_ECAM_BASE, KVM_ECAM_SIZE, E820_RESERVED);
    n = e820_add(e, n, max, KVM_IDENTITY_MAP_ADDR, 4 * 4096, E820_RESERVED);
    n = e820_add(e, n, max, KVM_HIGH_RAM_START, ram->high_size, E820_RAM);
    return n;
}
