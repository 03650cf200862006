/*
 * The Linux bzImage path, 64-bit boot protocol (Documentation/arch/x86/
 * boot.rst): the protected-mode kernel goes to its preferred address, the
 * zero page (boot_params) gets the setup header, the e820 map, the command
 * line and the initrd, and the vCPU starts in long mode at load + 0x200
 * with RSI pointing at boot_params, on identity page tables for 4 GiB and a
 * GDT with __BOOT_CS = 0x10 and __BOOT_DS = 0x18.
 */
#include "kvmcore/boot.h"
#include "kvmcore/layout.h"

/* Setup header offsets (in the file and in boot_params alike). */
#define HDR_SETUP_SECTS      0x1f1
#define HDR_BOOT_FLAG        0x1fe
#define HDR_JUMP             0x200
#define HDR_MAGIC            0x202
#define HDR_VERSION          0x206
#define HDR_TYPE_OF_LOADER   0x210
#define HDR_LOADFLAGS        0x211
#define HDR_RAMDISK_IMAGE    0x218
#define HDR_RAMDISK_SIZE     0x21c
#define HDR_CMD_LINE_PTR     0x228
#define HDR_INITRD_ADDR_MAX  0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE      0x234
#define HDR_XLOADFLAGS       0x236
#define HDR_CMDLINE_SIZE     0x238
#define HDR_PREF_ADDRESS     0x258
#define HDR_INIT_SIZE        0x260
#define HDR_END_MIN          0x264    /* protocol 2.12 headers reach at least here */

/* boot_params outside the setup header. */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_E820_ENTRIES      0x1e8
#define BP_E820_TABLE        0x2d0
#define BP_E820_MAX          128
#define BP_SIZE              4096

#define LOADED_HIGH          0x01
#define XLF_KERNEL_64        0x01
#define BOOT_FLAG            0xaa55
#define MIN_VERSION          0x020c   /* 2.12: xloadflags, 64-bit entry */
#define DEFAULT_LOAD         0x1000000ULL

static uint8_t rd8(const uint8_t *d, size_t off)
{
    return d[off];
}

static uint16_t rd16(const uint8_t *d, size_t off)
{
    uint16_t v;
    memcpy(&v, d + off, 2);
    return v;
}

static uint32_t rd32(const uint8_t *d, size_t off)
{
    uint32_t v;
    memcpy(&v, d + off, 4);
    return v;
}

static uint64_t rd64(const uint8_t *d, size_t off)
{
    uint64_t v;
    memcpy(&v, d + off, 8);
    return v;
}

static void wr8(uint8_t *d, size_t off, uint8_t v)
{
    d[off] = v;
}

static void wr32(uint8_t *d, size_t off, uint32_t v)
{
    memcpy(d + off, &v, 4);
}

static void build_page_tables(struct kvm_ram *ram)
{
    uint64_t *pml4 = kvm_ram_ptr(ram, KVM_BOOT_PML4, 4096);
    uint64_t *pdpt = kvm_ram_ptr(ram, KVM_BOOT_PDPT, 4096);
    uint64_t *pd = kvm_ram_ptr(ram, KVM_BOOT_PD, 4 * 4096);
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    pml4[0] = KVM_BOOT_PDPT | 0x3;                       /* present, writable */
    for (unsigned i = 0; i < 4; i++) {
        pdpt[i] = (KVM_BOOT_PD + i * 4096ULL) | 0x3;
    }
    for (unsigned i = 0; i < 4 * 512; i++) {
        pd[i] = ((uint64_t)i << 21) | 0x83;              /* present, writable, 2 MiB */
    }
}

static void build_gdt(struct kvm_ram *ram)
{
    uint64_t *gdt = kvm_ram_ptr(ram, KVM_BOOT_GDT, 4 * 8);
    gdt[0] = 0;
    gdt[1] = 0;
    gdt[2] = 0x00af9b000000ffffULL;    /* 0x10: 64-bit code */
    gdt[3] = 0x00cf93000000ffffULL;    /* 0x18: data */
}

int kvm_boot_bzimage(struct kvm_ram *ram, const struct kvm_boot_opts *o,
                     struct vcpu_boot_state *bs, struct kvm_boot_info *info, struct err *err)
{
    const char *name = o->kernel.name;
    const uint8_t *d = o->kernel.data;
    size_t len = o->kernel.len;

    if (len < 0x300) {
        err_set(err, "kernel %s: too short for a bzImage (%zu bytes)", name, len);
        return -EINVAL;
    }
    if (rd16(d, HDR_BOOT_FLAG) != BOOT_FLAG || memcmp(d + HDR_MAGIC, "HdrS", 4)) {
        err_set(err, "kernel %s: no Linux setup header (boot flag 0x%04x)", name,
                rd16(d, HDR_BOOT_FLAG));
        return -EINVAL;
    }
    uint16_t version = rd16(d, HDR_VERSION);
    if (version < MIN_VERSION) {
        err_set(err, "kernel %s: boot protocol %u.%02u is older than the 2.12 that 64-bit "
                "entry needs", name, version >> 8, version & 0xff);
        return -EINVAL;
    }
    if (!(rd16(d, HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
        err_set(err, "kernel %s: not a 64-bit kernel (no XLF_KERNEL_64)", name);
        return -EINVAL;
    }
    if (!(rd8(d, HDR_LOADFLAGS) & LOADED_HIGH)) {
        err_set(err, "kernel %s: a zImage that loads low is not supported", name);
        return -EINVAL;
    }
    size_t hdr_end = HDR_JUMP + 2 + rd8(d, HDR_JUMP + 1);
    if (hdr_end < HDR_END_MIN || hdr_end > 0x290) {
        err_set(err, "kernel %s: implausible setup header length (ends at 0x%zx)", name, hdr_end);
        return -EINVAL;
    }
    unsigned setup_sects = rd8(d, HDR_SETUP_SECTS);
    if (setup_sects == 0) {
        setup_sects = 4;
    }
    size_t setup_size = (size_t)(setup_sects + 1) * 512;
    if (setup_size >= len) {
        err_set(err, "kernel %s: the %zu-byte setup code leaves no kernel in a %zu-byte file; "
                "is it truncated?", name, setup_size, len);
        return -EINVAL;
    }
    size_t kernel_size = len - setup_size;
    uint32_t align = rd32(d, HDR_KERNEL_ALIGNMENT);
    if (!is_power_of_2(align) || align > GiB) {
        err_set(err, "kernel %s: kernel alignment 0x%x is not a power of two", name, align);
        return -EINVAL;
    }
    uint64_t init_size = rd32(d, HDR_INIT_SIZE);
    if (init_size < kernel_size) {
        init_size = kernel_size;
    }
    uint64_t load = rd64(d, HDR_PREF_ADDRESS);
    if (load < KVM_KERNEL_MIN || !IS_ALIGNED(load, align)) {
        load = ALIGN_UP(DEFAULT_LOAD, (uint64_t)align);
    }
    if (load + init_size < load || load + init_size > ram->low_size) {
        err_set(err, "kernel %s: needs 0x%" PRIx64 " bytes at 0x%" PRIx64 ", more than guest RAM "
                "below 4 GiB holds (0x%" PRIx64 "); give the VM more memory (-m)", name,
                init_size, load, ram->low_size);
        return -ENOMEM;
    }
    uint32_t cmdline_size = rd32(d, HDR_CMDLINE_SIZE);
    if (cmdline_size == 0) {
        cmdline_size = 255;
    }
    uint64_t initrd_max = rd32(d, HDR_INITRD_ADDR_MAX);
    if (initrd_max < KVM_KERNEL_MIN) {
        initrd_max = 0x37ffffff;
    }

    uint64_t cmdline_addr, initrd_addr;
    int ret = kvm_boot_put_cmdline(ram, o, (size_t)cmdline_size + 1, &cmdline_addr, err);
    if (ret < 0) {
        return ret;
    }
    ret = kvm_boot_put_initrd(ram, o, initrd_max + 1, load + init_size, &initrd_addr, err);
    if (ret < 0) {
        return ret;
    }
    memcpy(kvm_ram_ptr(ram, load, kernel_size), d + setup_size, kernel_size);

    uint8_t *bp = kvm_ram_ptr(ram, KVM_BOOT_PARAMS, BP_SIZE);
    memset(bp, 0, BP_SIZE);
    memcpy(bp + HDR_SETUP_SECTS, d + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);
    wr8(bp, HDR_TYPE_OF_LOADER, 0xff);
    wr32(bp, HDR_CMD_LINE_PTR, (uint32_t)cmdline_addr);
    wr32(bp, HDR_RAMDISK_IMAGE, (uint32_t)initrd_addr);
    wr32(bp, HDR_RAMDISK_SIZE, initrd_addr ? (uint32_t)o->initrd.len : 0);
    struct kvm_e820_entry map[KVM_E820_MAX];
    unsigned n = kvm_ram_e820(ram, map, KVM_E820_MAX);
    for (unsigned i = 0; i < n && i < BP_E820_MAX; i++) {
        uint8_t *e = bp + BP_E820_TABLE + i * 20;
        memcpy(e, &map[i].addr, 8);
        memcpy(e + 8, &map[i].size, 8);
        memcpy(e + 16, &map[i].type, 4);
    }
    wr8(bp, BP_E820_ENTRIES, (uint8_t)n);

    build_page_tables(ram);
    build_gdt(ram);
    memset(bs, 0, sizeof(*bs));
    bs->mode = VCPU_BOOT_LONG64;
    bs->rip = load + 0x200;
    bs->rsi = KVM_BOOT_PARAMS;
    bs->cr3 = KVM_BOOT_PML4;
    bs->gdt_base = KVM_BOOT_GDT;
    bs->gdt_limit = 4 * 8 - 1;
    if (info) {
        *info = (struct kvm_boot_info){
            .pvh = false, .kernel_start = load, .kernel_end = load + init_size,
            .initrd_addr = initrd_addr, .initrd_size = initrd_addr ? o->initrd.len : 0,
            .cmdline_addr = cmdline_addr, .start_info_addr = KVM_BOOT_PARAMS,
        };
    }
    return 0;
}
