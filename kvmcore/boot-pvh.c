/*
 * The PVH boot path: an ELF kernel whose XEN_ELFNOTE_PHYS32_ENTRY note
 * names a 32-bit entry point.  PT_LOAD segments go to their physical
 * addresses; hvm_start_info (version 1, with the memory map) carries the
 * command line and the initrd as module 0; the vCPU starts in flat 32-bit
 * protected mode, paging off, with EBX pointing at hvm_start_info.
 */
#include <elf.h>

#include "kvmcore/boot.h"
#include "kvmcore/layout.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578u
#define PVH_MAX_PHDRS 64

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};

struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

#define START_INFO_ADDR  KVM_BOOT_START_INFO
#define MODLIST_ADDR     (KVM_BOOT_START_INFO + 0x40)
#define MEMMAP_ADDR      (KVM_BOOT_START_INFO + 0x80)

/* A program header of either class. */
struct phdr {
    uint32_t type;
    uint64_t offset, paddr, filesz, memsz, align;
};

struct elf {
    const char *name;
    const uint8_t *data;
    size_t len;
    bool is64;
    uint64_t entry;
    unsigned nphdr;
    struct phdr phdr[PVH_MAX_PHDRS];
};

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Whether [off, off+len) lies inside a buffer of size total, without overflow. */
static bool in_file(uint64_t off, uint64_t len, uint64_t total)
{
    return off <= total && len <= total - off;
}

static int parse_header(struct elf *e, struct err *err)
{
    const uint8_t *d = e->data;
    if (e->len < EI_NIDENT) {
        err_set(err, "kernel %s: truncated ELF header", e->name);
        return -EINVAL;
    }
    if (d[EI_CLASS] != ELFCLASS32 && d[EI_CLASS] != ELFCLASS64) {
        err_set(err, "kernel %s: unknown ELF class %u", e->name, d[EI_CLASS]);
        return -EINVAL;
    }
    e->is64 = d[EI_CLASS] == ELFCLASS64;
    if (d[EI_DATA] != ELFDATA2LSB) {
        err_set(err, "kernel %s: not a little-endian ELF", e->name);
        return -EINVAL;
    }
    size_t ehsize = e->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
    if (e->len < ehsize) {
        err_set(err, "kernel %s: truncated ELF header (%zu bytes)", e->name, e->len);
        return -EINVAL;
    }
    uint16_t type, machine, phentsize, phnum;
    uint64_t phoff;
    if (e->is64) {
        Elf64_Ehdr h;
        memcpy(&h, d, sizeof(h));
        type = h.e_type; machine = h.e_machine; phentsize = h.e_phentsize;
        phnum = h.e_phnum; phoff = h.e_phoff; e->entry = h.e_entry;
    } else {
        Elf32_Ehdr h;
        memcpy(&h, d, sizeof(h));
        type = h.e_type; machine = h.e_machine; phentsize = h.e_phentsize;
        phnum = h.e_phnum; phoff = h.e_phoff; e->entry = h.e_entry;
    }
    if (type != ET_EXEC) {
        err_set(err, "kernel %s: ELF type %u is not an executable", e->name, type);
        return -EINVAL;
    }
    if (machine != EM_X86_64 && machine != EM_386) {
        err_set(err, "kernel %s: ELF machine %u is not x86", e->name, machine);
        return -EINVAL;
    }
    size_t want = e->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
    if (phentsize != want) {
        err_set(err, "kernel %s: program header size %u, expected %zu", e->name, phentsize, want);
        return -EINVAL;
    }
    if (phnum == 0 || phnum > PVH_MAX_PHDRS) {
        err_set(err, "kernel %s: %u program headers (1 to %d expected)", e->name, phnum,
                PVH_MAX_PHDRS);
        return -EINVAL;
    }
    if (!in_file(phoff, (uint64_t)phnum * phentsize, e->len)) {
        err_set(err, "kernel %s: program headers at 0x%" PRIx64 " lie past the end of the file",
                e->name, phoff);
        return -EINVAL;
    }
    e->nphdr = phnum;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *p = d + phoff + (uint64_t)i * phentsize;
        struct phdr *ph = &e->phdr[i];
        if (e->is64) {
            Elf64_Phdr c;
            memcpy(&c, p, sizeof(c));
            *ph = (struct phdr){ c.p_type, c.p_offset, c.p_paddr, c.p_filesz, c.p_memsz,
                                 c.p_align };
        } else {
            Elf32_Phdr c;
            memcpy(&c, p, sizeof(c));
            *ph = (struct phdr){ c.p_type, c.p_offset, c.p_paddr, c.p_filesz, c.p_memsz,
                                 c.p_align };
        }
    }
    return 0;
}

/* Look for the PVH entry in one PT_NOTE segment; 1 found, 0 not, <0 malformed. */
static int scan_notes(struct elf *e, const struct phdr *ph, uint64_t *entry, struct err *err)
{
    if (!in_file(ph->offset, ph->filesz, e->len)) {
        err_set(err, "kernel %s: a note segment lies past the end of the file", e->name);
        return -EINVAL;
    }
    const uint8_t *p = e->data + ph->offset;
    uint64_t left = ph->filesz;
    while (left >= 12) {
        uint32_t namesz = rd32(p), descsz = rd32(p + 4), type = rd32(p + 8);
        uint64_t name_room = ALIGN_UP((uint64_t)namesz, 4);
        uint64_t desc_room = ALIGN_UP((uint64_t)descsz, 4);
        if (name_room > left - 12 || desc_room > left - 12 - name_room) {
            err_set(err, "kernel %s: an ELF note runs past the end of its segment", e->name);
            return -EINVAL;
        }
        const uint8_t *name = p + 12;
        const uint8_t *desc = name + name_room;
        if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && !memcmp(name, "Xen", 4)) {
            if (descsz == 4) {
                *entry = rd32(desc);
            } else if (descsz == 8) {
                *entry = rd64(desc);
            } else {
                err_set(err, "kernel %s: the PVH entry note has %u bytes, not 4 or 8", e->name,
                        descsz);
                return -EINVAL;
            }
            return 1;
        }
        p = desc + desc_room;
        left -= 12 + name_room + desc_room;
    }
    return 0;
}

int kvm_boot_pvh(struct kvm_ram *ram, const struct kvm_boot_opts *o,
                 struct vcpu_boot_state *bs, struct kvm_boot_info *info, struct err *err)
{
    struct elf *e = xzalloc(sizeof(*e));
    uint64_t entry = 0, kstart = UINT64_MAX, kend = 0;
    int ret, found = 0;

    e->name = o->kernel.name;
    e->data = o->kernel.data;
    e->len = o->kernel.len;
    ret = parse_header(e, err);
    if (ret < 0) {
        goto out;
    }
    for (unsigned i = 0; i < e->nphdr && !found; i++) {
        if (e->phdr[i].type == PT_NOTE) {
            found = scan_notes(e, &e->phdr[i], &entry, err);
            if (found < 0) {
                ret = found;
                goto out;
            }
        }
    }
    if (!found) {
        err_set(err, "kernel %s: an ELF kernel needs a PVH entry note "
                "(XEN_ELFNOTE_PHYS32_ENTRY), and this one has none", e->name);
        ret = -EINVAL;
        goto out;
    }
    if (entry >= 0x100000000ULL) {
        err_set(err, "kernel %s: the PVH entry 0x%" PRIx64 " is not a 32-bit address", e->name,
                entry);
        ret = -EINVAL;
        goto out;
    }

    /* Check every segment before writing any. */
    bool entry_loaded = false;
    for (unsigned i = 0; i < e->nphdr; i++) {
        const struct phdr *ph = &e->phdr[i];
        if (ph->type != PT_LOAD || ph->memsz == 0) {
            continue;
        }
        if (ph->filesz > ph->memsz) {
            err_set(err, "kernel %s: segment %u has more file bytes (%" PRIu64 ") than memory "
                    "bytes (%" PRIu64 ")", e->name, i, ph->filesz, ph->memsz);
            ret = -EINVAL;
            goto out;
        }
        if (!in_file(ph->offset, ph->filesz, e->len)) {
            err_set(err, "kernel %s: segment %u (0x%" PRIx64 "+0x%" PRIx64 ") lies past the end "
                    "of the file (%zu bytes); is it truncated?", e->name, i, ph->offset,
                    ph->filesz, e->len);
            ret = -EINVAL;
            goto out;
        }
        if (ph->paddr < KVM_KERNEL_MIN || !kvm_ram_contains(ram, ph->paddr, ph->memsz)) {
            err_set(err, "kernel %s: segment %u at 0x%" PRIx64 "+0x%" PRIx64 " is not inside "
                    "guest RAM above 1 MiB (RAM below 4 GiB ends at 0x%" PRIx64 ")", e->name, i,
                    ph->paddr, ph->memsz, ram->low_size);
            ret = -EINVAL;
            goto out;
        }
        if (entry >= ph->paddr && entry - ph->paddr < ph->memsz) {
            entry_loaded = true;
        }
        kstart = MIN(kstart, ph->paddr);
        kend = MAX(kend, ph->paddr + ph->memsz);
    }
    if (kend == 0) {
        err_set(err, "kernel %s: no loadable segment", e->name);
        ret = -EINVAL;
        goto out;
    }
    if (!entry_loaded) {
        err_set(err, "kernel %s: the PVH entry 0x%" PRIx64 " is outside every loaded segment",
                e->name, entry);
        ret = -EINVAL;
        goto out;
    }
    for (unsigned i = 0; i < e->nphdr; i++) {
        const struct phdr *ph = &e->phdr[i];
        if (ph->type != PT_LOAD || ph->memsz == 0) {
            continue;
        }
        uint8_t *dst = kvm_ram_ptr(ram, ph->paddr, ph->memsz);
        memcpy(dst, e->data + ph->offset, ph->filesz);
        memset(dst + ph->filesz, 0, ph->memsz - ph->filesz);
    }

    uint64_t cmdline_addr, initrd_addr;
    ret = kvm_boot_put_cmdline(ram, o, KVM_BOOT_CMDLINE_MAX, &cmdline_addr, err);
    if (ret < 0) {
        goto out;
    }
    /* Keep the initrd out of the kernel's way; kend is within low RAM or high RAM. */
    ret = kvm_boot_put_initrd(ram, o, ram->low_size, kend < ram->low_size ? kend : KVM_KERNEL_MIN,
                              &initrd_addr, err);
    if (ret < 0) {
        goto out;
    }

    struct hvm_start_info *si = kvm_ram_ptr(ram, START_INFO_ADDR, 0x1000);
    memset(si, 0, 0x1000);
    si->magic = HVM_START_MAGIC;
    si->version = 1;
    si->cmdline_paddr = cmdline_addr;
    if (initrd_addr) {
        struct hvm_modlist_entry *m = kvm_ram_ptr(ram, MODLIST_ADDR, sizeof(*m));
        m->paddr = initrd_addr;
        m->size = o->initrd.len;
        si->nr_modules = 1;
        si->modlist_paddr = MODLIST_ADDR;
    }
    struct kvm_e820_entry map[KVM_E820_MAX];
    unsigned n = kvm_ram_e820(ram, map, KVM_E820_MAX);
    struct hvm_memmap_table_entry *mm = kvm_ram_ptr(ram, MEMMAP_ADDR, n * sizeof(*mm));
    for (unsigned i = 0; i < n; i++) {
        mm[i] = (struct hvm_memmap_table_entry){ map[i].addr, map[i].size, map[i].type, 0 };
    }
    si->memmap_paddr = MEMMAP_ADDR;
    si->memmap_entries = n;

    memset(bs, 0, sizeof(*bs));
    bs->mode = VCPU_BOOT_PROTECTED32;
    bs->rip = entry;
    bs->rbx = START_INFO_ADDR;
    if (info) {
        *info = (struct kvm_boot_info){
            .pvh = true, .kernel_start = kstart, .kernel_end = kend,
            .initrd_addr = initrd_addr, .initrd_size = initrd_addr ? o->initrd.len : 0,
            .cmdline_addr = cmdline_addr, .start_info_addr = START_INFO_ADDR,
        };
    }
    ret = 0;
out:
    free(e);
    return ret;
}
