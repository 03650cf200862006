/*
 * The kernel loaders fed good and malformed images: every bad header is
 * refused with a sentence naming the file, nothing is half loaded, and a
 * good image lands where its headers say.
 */
#include "tests/unit/harness.h"

#include <elf.h>

#include "kvmcore/boot.h"
#include "kvmcore/layout.h"

#define RAM_SIZE (64 * MiB)
#define LOAD_ADDR 0x100000
#define SEG_SIZE 0x2000

static struct kvm_ram ram;

static int suite_init(void)
{
    struct err err = { 0 };
    return kvm_ram_alloc(&ram, RAM_SIZE, NULL, &err) < 0 ? -1 : 0;
}

static int suite_clean(void)
{
    kvm_ram_free(&ram);
    return 0;
}

/* ---- A minimal PVH ELF: header, two program headers, a note, one segment. */

struct pvh_image {
    Elf64_Ehdr eh;
    Elf64_Phdr ph[2];
    struct {
        uint32_t namesz, descsz, type;
        char name[4];
        uint64_t entry;
    } note;
    uint8_t code[SEG_SIZE];
};

static void make_pvh(struct pvh_image *im)
{
    memset(im, 0, sizeof(*im));
    memcpy(im->eh.e_ident, ELFMAG, SELFMAG);
    im->eh.e_ident[EI_CLASS] = ELFCLASS64;
    im->eh.e_ident[EI_DATA] = ELFDATA2LSB;
    im->eh.e_ident[EI_VERSION] = EV_CURRENT;
    im->eh.e_type = ET_EXEC;
    im->eh.e_machine = EM_X86_64;
    im->eh.e_version = EV_CURRENT;
    im->eh.e_entry = LOAD_ADDR;
    im->eh.e_phoff = offsetof(struct pvh_image, ph);
    im->eh.e_ehsize = sizeof(Elf64_Ehdr);
    im->eh.e_phentsize = sizeof(Elf64_Phdr);
    im->eh.e_phnum = 2;
    im->ph[0].p_type = PT_LOAD;
    im->ph[0].p_offset = offsetof(struct pvh_image, code);
    im->ph[0].p_paddr = im->ph[0].p_vaddr = LOAD_ADDR;
    im->ph[0].p_filesz = SEG_SIZE / 2;
    im->ph[0].p_memsz = SEG_SIZE;              /* half of it bss */
    im->ph[1].p_type = PT_NOTE;
    im->ph[1].p_offset = offsetof(struct pvh_image, note);
    im->ph[1].p_filesz = sizeof(im->note);
    im->note.namesz = 4;
    im->note.descsz = 8;
    im->note.type = 18;                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    memcpy(im->note.name, "Xen", 4);
    im->note.entry = LOAD_ADDR + 0x10;
    for (unsigned i = 0; i < SEG_SIZE; i++) {
        im->code[i] = (uint8_t)(i * 7 + 1);
    }
}

static int load(const void *data, size_t len, const char *cmdline, struct vcpu_boot_state *bs,
                struct kvm_boot_info *info, struct err *err)
{
    struct kvm_boot_opts o = {
        .kernel = { .name = "k.elf", .data = data, .len = len },
        .cmdline = cmdline,
    };
    return kvm_boot_load(&ram, &o, bs, info, err);
}

/* Load im and expect a refusal whose sentence contains what. */
static void refused(const void *data, size_t len, const char *what)
{
    struct vcpu_boot_state bs;
    struct err err = { 0 };
    int ret = load(data, len, NULL, &bs, NULL, &err);
    CU_ASSERT(ret < 0);
    CU_ASSERT(err.set);
    if (!strstr(err.msg, what)) {
        printf("# expected '%s' in: %s\n", what, err.msg);
        CU_FAIL("wrong sentence");
    }
    CU_ASSERT(strstr(err.msg, "k.elf") != NULL);
}

static void test_pvh_good(void)
{
    struct pvh_image *im = xmalloc(sizeof(*im));
    struct vcpu_boot_state bs;
    struct kvm_boot_info info;
    struct err err = { 0 };
    make_pvh(im);
    memset(kvm_ram_ptr(&ram, LOAD_ADDR, SEG_SIZE), 0xee, SEG_SIZE);
    CU_ASSERT_EQUAL(load(im, sizeof(*im), "console=ttyS0", &bs, &info, &err), 0);
    CU_ASSERT_EQUAL(bs.mode, VCPU_BOOT_PROTECTED32);
    CU_ASSERT_EQUAL(bs.rip, LOAD_ADDR + 0x10);
    CU_ASSERT_EQUAL(bs.rbx, KVM_BOOT_START_INFO);
    CU_ASSERT(info.pvh);
    const uint8_t *seg = kvm_ram_ptr(&ram, LOAD_ADDR, SEG_SIZE);
    CU_ASSERT_EQUAL(memcmp(seg, im->code, SEG_SIZE / 2), 0);
    CU_ASSERT(buffer_is_zero(seg + SEG_SIZE / 2, SEG_SIZE / 2));   /* bss cleared */
    const uint32_t *si = kvm_ram_ptr(&ram, KVM_BOOT_START_INFO, 56);
    CU_ASSERT_EQUAL(si[0], 0x336ec578);
    CU_ASSERT_EQUAL(si[1], 1);
    uint64_t cmdline, memmap;
    memcpy(&cmdline, si + 6, 8);
    memcpy(&memmap, si + 10, 8);
    CU_ASSERT_STRING_EQUAL((const char *)kvm_ram_ptr(&ram, cmdline, 14), "console=ttyS0");
    CU_ASSERT(si[12] >= 3);                                          /* memmap entries */
    const uint64_t *mm = kvm_ram_ptr(&ram, memmap, 24);
    CU_ASSERT_EQUAL(mm[0], 0);                                       /* low RAM first */
    free(im);
}

static void test_pvh_initrd(void)
{
    struct pvh_image *im = xmalloc(sizeof(*im));
    struct vcpu_boot_state bs;
    struct kvm_boot_info info;
    struct err err = { 0 };
    uint8_t rd[5000];
    memset(rd, 0x5a, sizeof(rd));
    make_pvh(im);
    struct kvm_boot_opts o = {
        .kernel = { .name = "k.elf", .data = (void *)im, .len = sizeof(*im) },
        .initrd = { .name = "rd", .data = rd, .len = sizeof(rd) },
    };
    CU_ASSERT_EQUAL(kvm_boot_load(&ram, &o, &bs, &info, &err), 0);
    CU_ASSERT(info.initrd_addr >= info.kernel_end);
    CU_ASSERT(info.initrd_addr + sizeof(rd) <= RAM_SIZE);
    CU_ASSERT_EQUAL(info.initrd_addr % 4096, 0);
    CU_ASSERT_EQUAL(memcmp(kvm_ram_ptr(&ram, info.initrd_addr, sizeof(rd)), rd, sizeof(rd)), 0);
    const uint32_t *si = kvm_ram_ptr(&ram, KVM_BOOT_START_INFO, 56);
    CU_ASSERT_EQUAL(si[3], 1);                                       /* nr_modules */
    /* An initrd too large for RAM is refused. */
    uint8_t *big = xzalloc(RAM_SIZE);
    o.initrd.data = big;
    o.initrd.len = RAM_SIZE;
    err_clear(&err);
    CU_ASSERT(kvm_boot_load(&ram, &o, &bs, &info, &err) < 0);
    CU_ASSERT(strstr(err.msg, "do not fit") != NULL);
    free(big);
    free(im);
}

static void test_pvh_malformed(void)
{
    struct pvh_image *im = xmalloc(sizeof(*im));

    make_pvh(im);
    refused(im, 3, "neither an ELF");                    /* truncated before the magic */
    refused(im, 40, "truncated ELF header");
    refused(im, offsetof(struct pvh_image, ph) + 10, "program headers");
    refused(im, offsetof(struct pvh_image, code) + 100, "past the end of the file");

    make_pvh(im);
    im->eh.e_ident[EI_CLASS] = 7;
    refused(im, sizeof(*im), "ELF class");

    make_pvh(im);
    im->eh.e_machine = EM_AARCH64;
    refused(im, sizeof(*im), "not x86");

    make_pvh(im);
    im->eh.e_type = ET_REL;
    refused(im, sizeof(*im), "not an executable");

    make_pvh(im);
    im->eh.e_phentsize = 12;
    refused(im, sizeof(*im), "program header size");

    make_pvh(im);
    im->eh.e_phnum = 1000;
    refused(im, sizeof(*im), "program headers");

    make_pvh(im);
    im->eh.e_phoff = UINT64_MAX - 8;                     /* offset + size overflows */
    refused(im, sizeof(*im), "past the end of the file");

    make_pvh(im);
    im->note.type = 1;                                   /* no PVH note */
    refused(im, sizeof(*im), "PVH entry note");

    make_pvh(im);
    im->note.descsz = 3;
    refused(im, sizeof(*im), "not 4 or 8");

    make_pvh(im);
    im->note.namesz = 0x7ffffff0;                        /* note runs off its segment */
    refused(im, sizeof(*im), "runs past the end of its segment");

    make_pvh(im);
    im->ph[1].p_filesz = UINT64_MAX;
    refused(im, sizeof(*im), "note segment lies past");

    make_pvh(im);
    im->note.entry = 0x123456789ULL;
    refused(im, sizeof(*im), "not a 32-bit address");

    make_pvh(im);
    im->note.entry = LOAD_ADDR + SEG_SIZE + 4;
    refused(im, sizeof(*im), "outside every loaded segment");

    make_pvh(im);
    im->ph[0].p_paddr = RAM_SIZE - 0x1000;               /* runs past RAM */
    refused(im, sizeof(*im), "not inside guest RAM");

    make_pvh(im);
    im->ph[0].p_paddr = 0x1000;                          /* over the boot data */
    refused(im, sizeof(*im), "above 1 MiB");

    make_pvh(im);
    im->ph[0].p_memsz = UINT64_MAX - LOAD_ADDR + 2;      /* wraps */
    refused(im, sizeof(*im), "not inside guest RAM");

    make_pvh(im);
    im->ph[0].p_filesz = SEG_SIZE * 2;
    refused(im, sizeof(*im), "more file bytes");

    make_pvh(im);
    im->ph[0].p_offset = UINT64_MAX - 16;
    refused(im, sizeof(*im), "past the end of the file");

    make_pvh(im);
    im->ph[0].p_type = PT_NULL;
    refused(im, sizeof(*im), "no loadable segment");
    free(im);
}

static void test_cmdline_too_long(void)
{
    struct pvh_image *im = xmalloc(sizeof(*im));
    struct vcpu_boot_state bs;
    struct err err = { 0 };
    char *cmd = xmalloc(KVM_BOOT_CMDLINE_MAX + 10);
    memset(cmd, 'a', KVM_BOOT_CMDLINE_MAX + 9);
    cmd[KVM_BOOT_CMDLINE_MAX + 9] = '\0';
    make_pvh(im);
    CU_ASSERT(load(im, sizeof(*im), cmd, &bs, NULL, &err) < 0);
    CU_ASSERT(strstr(err.msg, "command line") != NULL);
    free(cmd);
    free(im);
}

/* ---- bzImage ------------------------------------------------------------ */

#define BZ_SIZE (0x1000 + 0x4000)

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static void make_bz(uint8_t *k)
{
    memset(k, 0, BZ_SIZE);
    k[0x1f1] = 7;                                   /* setup_sects: 8 * 512 = 0x1000 */
    put16(k + 0x1fe, 0xaa55);
    k[0x200] = 0xeb;
    k[0x201] = 0x6a;                                /* header ends at 0x26c */
    memcpy(k + 0x202, "HdrS", 4);
    put16(k + 0x206, 0x020f);
    k[0x211] = 0x01;                                /* LOADED_HIGH */
    put32(k + 0x22c, 0x7fffffff);                   /* initrd_addr_max */
    put32(k + 0x230, 0x200000);                     /* kernel_alignment */
    k[0x234] = 1;
    put16(k + 0x236, 0x0003);                       /* XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G */
    put32(k + 0x238, 2047);                         /* cmdline_size */
    put64(k + 0x258, 0x1000000);                    /* pref_address */
    put32(k + 0x260, 0x100000);                     /* init_size */
    for (unsigned i = 0x1000; i < BZ_SIZE; i++) {
        k[i] = (uint8_t)i;
    }
}

static void test_bzimage_good(void)
{
    uint8_t *k = xmalloc(BZ_SIZE);
    struct vcpu_boot_state bs;
    struct kvm_boot_info info;
    struct err err = { 0 };
    make_bz(k);
    CU_ASSERT_EQUAL(load(k, BZ_SIZE, "console=ttyS0", &bs, &info, &err), 0);
    if (err.set) {
        printf("# %s\n", err.msg);
    }
    CU_ASSERT_EQUAL(bs.mode, VCPU_BOOT_LONG64);
    CU_ASSERT_EQUAL(bs.rip, 0x1000000 + 0x200);
    CU_ASSERT_EQUAL(bs.rsi, KVM_BOOT_PARAMS);
    CU_ASSERT_FALSE(info.pvh);
    CU_ASSERT_EQUAL(memcmp(kvm_ram_ptr(&ram, 0x1000000, 0x4000), k + 0x1000, 0x4000), 0);
    const uint8_t *bp = kvm_ram_ptr(&ram, KVM_BOOT_PARAMS, 4096);
    CU_ASSERT_EQUAL(memcmp(bp + 0x202, "HdrS", 4), 0);
    CU_ASSERT_EQUAL(bp[0x210], 0xff);                          /* type_of_loader */
    uint32_t cmd;
    memcpy(&cmd, bp + 0x228, 4);
    CU_ASSERT_STRING_EQUAL((const char *)kvm_ram_ptr(&ram, cmd, 14), "console=ttyS0");
    CU_ASSERT(bp[0x1e8] >= 3);                                 /* e820 entries */
    /* The identity map covers the kernel. */
    const uint64_t *pd = kvm_ram_ptr(&ram, KVM_BOOT_PD, 4096);
    CU_ASSERT_EQUAL(pd[8], (8ULL << 21) | 0x83);
    free(k);
}

static void bz_refused(uint8_t *k, size_t len, const char *what)
{
    refused(k, len, what);
}

static void test_bzimage_malformed(void)
{
    uint8_t *k = xmalloc(BZ_SIZE);

    make_bz(k);
    bz_refused(k, 0x210, "too short");
    bz_refused(k, 0x1000, "leaves no kernel");                  /* truncated after setup */

    make_bz(k);
    put16(k + 0x1fe, 0x1234);
    bz_refused(k, BZ_SIZE, "no Linux setup header");

    make_bz(k);
    put16(k + 0x206, 0x0204);
    bz_refused(k, BZ_SIZE, "older than the 2.12");

    make_bz(k);
    put16(k + 0x236, 0);
    bz_refused(k, BZ_SIZE, "not a 64-bit kernel");

    make_bz(k);
    k[0x211] = 0;
    bz_refused(k, BZ_SIZE, "loads low");

    make_bz(k);
    k[0x201] = 0x10;
    bz_refused(k, BZ_SIZE, "setup header length");

    make_bz(k);
    k[0x1f1] = 200;                                             /* setup larger than the file */
    bz_refused(k, BZ_SIZE, "leaves no kernel");

    make_bz(k);
    put32(k + 0x230, 0x3000);
    bz_refused(k, BZ_SIZE, "not a power of two");

    make_bz(k);
    put32(k + 0x260, 0xfff00000);                               /* init_size beyond RAM */
    bz_refused(k, BZ_SIZE, "more than guest RAM");

    make_bz(k);
    put64(k + 0x258, UINT64_MAX - 0x1fffff);                    /* aligned, but wraps */
    bz_refused(k, BZ_SIZE, "more than guest RAM");
    free(k);

    /* A command line longer than cmdline_size. */
    k = xmalloc(BZ_SIZE);
    make_bz(k);
    put32(k + 0x238, 8);
    struct vcpu_boot_state bs;
    struct err err = { 0 };
    CU_ASSERT(load(k, BZ_SIZE, "0123456789", &bs, NULL, &err) < 0);
    CU_ASSERT(strstr(err.msg, "command line") != NULL);
    free(k);
}

static void test_not_a_kernel(void)
{
    char junk[4096];
    memset(junk, 'x', sizeof(junk));
    refused(junk, sizeof(junk), "neither an ELF");
    refused(junk, 0, "neither an ELF");
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("boot", suite_init, suite_clean);
    CU_add_test(s, "pvh_good", test_pvh_good);
    CU_add_test(s, "pvh_initrd", test_pvh_initrd);
    CU_add_test(s, "pvh_malformed", test_pvh_malformed);
    CU_add_test(s, "cmdline_too_long", test_cmdline_too_long);
    CU_add_test(s, "bzimage_good", test_bzimage_good);
    CU_add_test(s, "bzimage_malformed", test_bzimage_malformed);
    CU_add_test(s, "not_a_kernel", test_not_a_kernel);
}
