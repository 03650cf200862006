/* CPUID for the guest; see cpuid.h. */
#include "kvmcore/cpuid.h"

#include <stdio.h>
#include <sys/ioctl.h>

#include "util/log.h"

enum { EAX, EBX, ECX, EDX };

struct feature {
    const char *name;
    const char *alias;
    uint32_t leaf, subleaf;
    uint8_t reg, bit;
    /* Features that cannot stay without this one (cleared with it). */
    const char *dependents;
};

/* QEMU's spellings; aliases in the second column. */
static const struct feature features[] = {
    /* Leaf 1, EDX */
    { "fpu", NULL, 1, 0, EDX, 0, NULL },
    { "vme", NULL, 1, 0, EDX, 1, NULL },
    { "de", NULL, 1, 0, EDX, 2, NULL },
    { "pse", NULL, 1, 0, EDX, 3, NULL },
    { "tsc", NULL, 1, 0, EDX, 4, NULL },
    { "msr", NULL, 1, 0, EDX, 5, NULL },
    { "pae", NULL, 1, 0, EDX, 6, NULL },
    { "mce", NULL, 1, 0, EDX, 7, NULL },
    { "cx8", NULL, 1, 0, EDX, 8, NULL },
    { "apic", NULL, 1, 0, EDX, 9, "x2apic" },
    { "sep", NULL, 1, 0, EDX, 11, NULL },
    { "mtrr", NULL, 1, 0, EDX, 12, NULL },
    { "pge", NULL, 1, 0, EDX, 13, NULL },
    { "mca", NULL, 1, 0, EDX, 14, NULL },
    { "cmov", NULL, 1, 0, EDX, 15, NULL },
    { "pat", NULL, 1, 0, EDX, 16, NULL },
    { "pse36", NULL, 1, 0, EDX, 17, NULL },
    { "clflush", NULL, 1, 0, EDX, 19, NULL },
    { "mmx", NULL, 1, 0, EDX, 23, NULL },
    { "fxsr", NULL, 1, 0, EDX, 24, NULL },
    { "sse", NULL, 1, 0, EDX, 25, NULL },
    { "sse2", NULL, 1, 0, EDX, 26, NULL },
    { "ss", NULL, 1, 0, EDX, 27, NULL },
    { "ht", "htt", 1, 0, EDX, 28, NULL },
    /* Leaf 1, ECX */
    { "pni", "sse3", 1, 0, ECX, 0, NULL },
    { "pclmulqdq", "pclmuldq", 1, 0, ECX, 1, "vpclmulqdq" },
    { "monitor", NULL, 1, 0, ECX, 3, NULL },
    { "vmx", NULL, 1, 0, ECX, 5, NULL },
    { "ssse3", NULL, 1, 0, ECX, 9, NULL },
    { "fma", NULL, 1, 0, ECX, 12, NULL },
    { "cx16", NULL, 1, 0, ECX, 13, NULL },
    { "pdcm", NULL, 1, 0, ECX, 15, NULL },
    { "pcid", NULL, 1, 0, ECX, 17, "invpcid" },
    { "sse4.1", "sse4_1", 1, 0, ECX, 19, NULL },
    { "sse4.2", "sse4_2", 1, 0, ECX, 20, NULL },
    { "x2apic", NULL, 1, 0, ECX, 21, NULL },
    { "movbe", NULL, 1, 0, ECX, 22, NULL },
    { "popcnt", NULL, 1, 0, ECX, 23, NULL },
    { "tsc-deadline", "tsc_deadline_timer", 1, 0, ECX, 24, NULL },
    { "aes", NULL, 1, 0, ECX, 25, "vaes" },
    { "xsave", NULL, 1, 0, ECX, 26,
      "avx,fma,f16c,avx2,xsaveopt,xsavec,xgetbv1,xsaves,avx512f,avx512dq,avx512cd,"
      "avx512bw,avx512vl,avx512-vnni,avx512ifma,avx512vbmi,vaes,vpclmulqdq,pku,mpx" },
    { "avx", NULL, 1, 0, ECX, 28,
      "fma,f16c,avx2,avx512f,avx512dq,avx512cd,avx512bw,avx512vl,avx512-vnni,avx512ifma,"
      "avx512vbmi,vaes,vpclmulqdq" },
    { "f16c", NULL, 1, 0, ECX, 29, NULL },
    { "rdrand", NULL, 1, 0, ECX, 30, NULL },
    { "hypervisor", NULL, 1, 0, ECX, 31, NULL },
    /* Leaf 7.0, EBX / ECX / EDX */
    { "fsgsbase", NULL, 7, 0, EBX, 0, NULL },
    { "tsc-adjust", "tsc_adjust", 7, 0, EBX, 1, NULL },
    { "bmi1", NULL, 7, 0, EBX, 3, NULL },
    { "hle", NULL, 7, 0, EBX, 4, NULL },
    { "avx2", NULL, 7, 0, EBX, 5, NULL },
    { "smep", NULL, 7, 0, EBX, 7, NULL },
    { "bmi2", NULL, 7, 0, EBX, 8, NULL },
    { "erms", NULL, 7, 0, EBX, 9, NULL },
    { "invpcid", NULL, 7, 0, EBX, 10, NULL },
    { "rtm", NULL, 7, 0, EBX, 11, NULL },
    { "mpx", NULL, 7, 0, EBX, 14, NULL },
    { "avx512f", NULL, 7, 0, EBX, 16,
      "avx512dq,avx512cd,avx512bw,avx512vl,avx512-vnni,avx512ifma,avx512vbmi" },
    { "avx512dq", NULL, 7, 0, EBX, 17, NULL },
    { "rdseed", NULL, 7, 0, EBX, 18, NULL },
    { "adx", NULL, 7, 0, EBX, 19, NULL },
    { "smap", NULL, 7, 0, EBX, 20, NULL },
    { "avx512ifma", NULL, 7, 0, EBX, 21, NULL },
    { "clflushopt", NULL, 7, 0, EBX, 23, NULL },
    { "clwb", NULL, 7, 0, EBX, 24, NULL },
    { "avx512cd", NULL, 7, 0, EBX, 28, NULL },
    { "sha-ni", "sha_ni", 7, 0, EBX, 29, NULL },
    { "avx512bw", NULL, 7, 0, EBX, 30, NULL },
    { "avx512vl", NULL, 7, 0, EBX, 31, NULL },
    { "avx512vbmi", NULL, 7, 0, ECX, 1, NULL },
    { "umip", NULL, 7, 0, ECX, 2, NULL },
    { "pku", NULL, 7, 0, ECX, 3, NULL },
    { "vaes", NULL, 7, 0, ECX, 9, NULL },
    { "vpclmulqdq", NULL, 7, 0, ECX, 10, NULL },
    { "avx512-vnni", "avx512_vnni", 7, 0, ECX, 11, NULL },
    { "la57", NULL, 7, 0, ECX, 16, NULL },
    { "rdpid", NULL, 7, 0, ECX, 22, NULL },
    { "md-clear", "md_clear", 7, 0, EDX, 10, NULL },
    { "spec-ctrl", "ibrs", 7, 0, EDX, 26, NULL },
    { "stibp", NULL, 7, 0, EDX, 27, NULL },
    { "arch-capabilities", "arch_capabilities", 7, 0, EDX, 29, NULL },
    { "ssbd", NULL, 7, 0, EDX, 31, NULL },
    /* Leaf 0xd.1, EAX */
    { "xsaveopt", NULL, 0xd, 1, EAX, 0, NULL },
    { "xsavec", NULL, 0xd, 1, EAX, 1, NULL },
    { "xgetbv1", NULL, 0xd, 1, EAX, 2, NULL },
    { "xsaves", NULL, 0xd, 1, EAX, 3, NULL },
    /* Leaf 0x80000001, ECX / EDX */
    { "lahf-lm", "lahf_lm", 0x80000001, 0, ECX, 0, NULL },
    { "abm", NULL, 0x80000001, 0, ECX, 5, NULL },
    { "3dnowprefetch", NULL, 0x80000001, 0, ECX, 8, NULL },
    { "syscall", NULL, 0x80000001, 0, EDX, 11, NULL },
    { "nx", "xd", 0x80000001, 0, EDX, 20, NULL },
    { "pdpe1gb", NULL, 0x80000001, 0, EDX, 26, NULL },
    { "rdtscp", NULL, 0x80000001, 0, EDX, 27, NULL },
    { "lm", NULL, 0x80000001, 0, EDX, 29, NULL },
    /* Leaf 0x80000007, EDX */
    { "invtsc", NULL, 0x80000007, 0, EDX, 8, NULL },
    /* KVM's paravirtual features, leaf 0x40000001, EAX */
    { "kvmclock", NULL, 0x40000001, 0, EAX, 0, "kvmclock-stable-bit" },
    { "kvm-nopiodelay", NULL, 0x40000001, 0, EAX, 1, NULL },
    { "kvm-mmu", NULL, 0x40000001, 0, EAX, 2, NULL },
    { "kvmclock2", NULL, 0x40000001, 0, EAX, 3, NULL },
    { "kvm-asyncpf", NULL, 0x40000001, 0, EAX, 4, NULL },
    { "kvm-steal-time", NULL, 0x40000001, 0, EAX, 5, NULL },
    { "kvm-pv-eoi", NULL, 0x40000001, 0, EAX, 6, NULL },
    { "kvm-pv-unhalt", NULL, 0x40000001, 0, EAX, 7, NULL },
    { "kvm-pv-tlb-flush", NULL, 0x40000001, 0, EAX, 9, NULL },
    { "kvm-asyncpf-vmexit", NULL, 0x40000001, 0, EAX, 10, NULL },
    { "kvm-pv-send-ipi", "kvm-pv-ipi", 0x40000001, 0, EAX, 11, NULL },
    { "kvm-poll-control", NULL, 0x40000001, 0, EAX, 12, NULL },
    { "kvm-pv-sched-yield", NULL, 0x40000001, 0, EAX, 13, NULL },
    { "kvm-asyncpf-int", NULL, 0x40000001, 0, EAX, 14, NULL },
    { "kvm-msi-ext-dest-id", NULL, 0x40000001, 0, EAX, 15, NULL },
    { "kvmclock-stable-bit", NULL, 0x40000001, 0, EAX, 24, NULL },
};

static int feature_index(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(features); i++) {
        const struct feature *f = &features[i];
        if ((strlen(f->name) == len && !strncmp(f->name, name, len)) ||
            (f->alias && strlen(f->alias) == len && !strncmp(f->alias, name, len))) {
            return (int)i;
        }
    }
    return -1;
}

int kvm_cpu_model_parse(struct kvm_cpu_model *m, const char *spec, struct err *err)
{
    memset(m, 0, sizeof(*m));
    if (!spec) {
        return 0;
    }
    const char *p = spec;
    size_t len = strcspn(p, ",");
    if (!(len == 4 && !strncmp(p, "host", 4)) && !(len == 3 && !strncmp(p, "max", 3))) {
        err_set(err, "-cpu: CPU model '%.*s' is not supported (only 'host')", (int)len, p);
        return -EINVAL;
    }
    p += len;
    while (*p == ',') {
        p++;
        len = strcspn(p, ",");
        if (len == 0) {
            continue;
        }
        const char *name = p;
        size_t nlen = len;
        bool on = true;
        const char *eq = memchr(p, '=', len);
        if (*p == '+' || *p == '-') {
            on = *p == '+';
            name++;
            nlen--;
        } else if (eq) {
            nlen = (size_t)(eq - p);
            size_t vlen = len - nlen - 1;
            const char *v = eq + 1;
            if ((vlen == 2 && !strncmp(v, "on", 2)) || (vlen == 4 && !strncmp(v, "true", 4))) {
                on = true;
            } else if ((vlen == 3 && !strncmp(v, "off", 3)) ||
                       (vlen == 5 && !strncmp(v, "false", 5))) {
                on = false;
            } else {
                err_set(err, "-cpu: feature '%.*s' takes on or off, not '%.*s'", (int)nlen,
                        name, (int)vlen, v);
                return -EINVAL;
            }
        }
        int idx = feature_index(name, nlen);
        if (idx < 0) {
            err_set(err, "-cpu: unknown CPU feature '%.*s'", (int)nlen, name);
            return -EINVAL;
        }
        if (m->nr == KVM_CPU_MAX_TWEAKS) {
            err_set(err, "-cpu: more than %d feature changes", KVM_CPU_MAX_TWEAKS);
            return -EINVAL;
        }
        m->tweaks[m->nr].feature = (unsigned)idx;
        m->tweaks[m->nr].on = on;
        m->nr++;
        p += len;
    }
    return 0;
}

struct kvm_cpuid_entry2 *kvm_cpuid_find(struct kvm_cpuid2 *c, uint32_t function,
                                        uint32_t index)
{
    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function == function &&
            (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == index)) {
            return e;
        }
    }
    return NULL;
}

static uint32_t *reg_of(struct kvm_cpuid_entry2 *e, unsigned reg)
{
    switch (reg) {
    case EAX: return &e->eax;
    case EBX: return &e->ebx;
    case ECX: return &e->ecx;
    default: return &e->edx;
    }
}

static void set_feature(struct kvm_cpuid2 *c, const struct kvm_cpuid2 *supported,
                        unsigned idx, bool on, unsigned depth)
{
    const struct feature *f = &features[idx];
    struct kvm_cpuid_entry2 *e = kvm_cpuid_find(c, f->leaf, f->subleaf);
    if (!e) {
        if (on) {
            log_warn("-cpu: host does not support requested feature '%s'", f->name);
        }
        return;
    }
    uint32_t *r = reg_of(e, f->reg);
    if (on) {
        struct kvm_cpuid_entry2 *s =
            kvm_cpuid_find((struct kvm_cpuid2 *)supported, f->leaf, f->subleaf);
        if (!s || !(*reg_of(s, f->reg) & (1u << f->bit))) {
            log_warn("-cpu: host does not support requested feature '%s'", f->name);
            return;
        }
        *r |= 1u << f->bit;
        return;
    }
    *r &= ~(1u << f->bit);
    if (f->dependents && depth < 3) {
        const char *p = f->dependents;
        while (*p) {
            size_t len = strcspn(p, ",");
            int d = feature_index(p, len);
            if (d >= 0) {
                set_feature(c, supported, (unsigned)d, false, depth + 1);
            }
            p += len;
            if (*p == ',') {
                p++;
            }
        }
    }
}

/* The extended-state leaf follows what is left of XSAVE and AVX. */
static void fix_xsave_leaf(struct kvm_cpuid2 *c)
{
    struct kvm_cpuid_entry2 *l1 = kvm_cpuid_find(c, 1, 0);
    bool xsave = l1 && (l1->ecx & (1u << 26));
    bool avx = l1 && (l1->ecx & (1u << 28));
    struct kvm_cpuid_entry2 *l7 = kvm_cpuid_find(c, 7, 0);
    bool avx512 = l7 && (l7->ebx & (1u << 16));
    bool pku = l7 && (l7->ecx & (1u << 3));
    bool mpx = l7 && (l7->ebx & (1u << 14));

    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function != 0xd) {
            continue;
        }
        if (!xsave) {
            e->eax = e->ebx = e->ecx = e->edx = 0;
            continue;
        }
        if (e->index == 0) {
            /* XCR0 bits the guest may set: x87, SSE, and what survived. */
            uint64_t mask = 0x3 | (avx ? 0x4 : 0) | (mpx ? 0x18 : 0) | (avx512 ? 0xe0 : 0) |
                            (pku ? 0x200 : 0);
            e->eax &= (uint32_t)mask;
            e->edx &= (uint32_t)(mask >> 32);
        } else if (e->index >= 2 && e->index < 32) {
            uint64_t bit = 1ULL << e->index;
            bool keep = (bit == 0x4 && avx) || ((bit & 0x18) && mpx) ||
                        ((bit & 0xe0) && avx512) || (bit == 0x200 && pku);
            if (!keep) {
                e->eax = e->ebx = e->ecx = e->edx = 0;
            }
        }
    }
}

struct kvm_cpuid2 *kvm_cpuid_build(struct kvm_vm *vm, const struct kvm_cpu_model *m,
                                   unsigned nr_vcpus, struct err *err)
{
    unsigned nent = 128;
    struct kvm_cpuid2 *c = NULL;

    for (;;) {
        c = xrealloc(c, sizeof(*c) + nent * sizeof(struct kvm_cpuid_entry2));
        memset(c, 0, sizeof(*c) + nent * sizeof(struct kvm_cpuid_entry2));
        c->nent = nent;
        if (ioctl(vm->sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            break;
        }
        if (errno != E2BIG || nent >= 4096) {
            err_set_errno(err, -errno, "KVM_GET_SUPPORTED_CPUID failed");
            free(c);
            return NULL;
        }
        nent *= 2;
    }
    size_t sz = sizeof(*c) + c->nent * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *supported = xmalloc(sz);
    memcpy(supported, c, sz);
    for (unsigned i = 0; i < m->nr; i++) {
        set_feature(c, supported, m->tweaks[i].feature, m->tweaks[i].on, 0);
    }
    free(supported);
    fix_xsave_leaf(c);
    (void)nr_vcpus;
    return c;
}

struct kvm_cpuid2 *kvm_cpuid_for_vcpu(const struct kvm_cpuid2 *base, unsigned index,
                                      unsigned nr_vcpus)
{
    size_t sz = sizeof(*base) + base->nent * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *c = xmalloc(sz);
    memcpy(c, base, sz);
    unsigned core_bits = (unsigned)ctz64(pow2_ceil(nr_vcpus));

    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        switch (e->function) {
        case 1:
            /* APIC ID, logical processors per package, HTT when more than one. */
            e->ebx = (e->ebx & 0x0000ffffu) | (index << 24) |
                     ((nr_vcpus > 255 ? 255 : nr_vcpus) << 16);
            if (nr_vcpus > 1) {
                e->edx |= 1u << 28;
            } else {
                e->edx &= ~(1u << 28);
            }
            break;
        case 4:
            /* Deterministic cache parameters: cores per package - 1 in EAX[31:26]. */
            e->eax = (e->eax & 0x03ffffffu) | ((pow2_ceil(nr_vcpus) - 1) << 26);
            /* Threads sharing the cache - 1 in EAX[25:14]: each core alone, L3 shared. */
            e->eax &= ~(0xfffu << 14);
            if (((e->eax >> 5) & 7) == 3) {
                e->eax |= (uint32_t)((nr_vcpus - 1) & 0xfff) << 14;
            }
            break;
        case 0xb:
        case 0x1f:
            /* Topology: level 0 SMT (1 thread), level 1 core (nr_vcpus), then none. */
            if (e->index == 0) {
                e->eax = 0;
                e->ebx = 1;
                e->ecx = (1u << 8) | 0;
            } else if (e->index == 1) {
                e->eax = core_bits;
                e->ebx = nr_vcpus;
                e->ecx = (2u << 8) | 1;
            } else {
                e->eax = e->ebx = 0;
                e->ecx = e->index & 0xff;
            }
            e->edx = index;
            break;
        case 0x80000008:
            /* Cores per package - 1 in ECX[7:0], APIC ID size in ECX[15:12]. */
            e->ecx = (e->ecx & ~0xf0ffu) | ((nr_vcpus - 1) & 0xff) | (core_bits << 12);
            break;
        default:
            break;
        }
    }
    return c;
}

int kvm_cpuid_has(struct kvm_cpuid2 *c, const char *name)
{
    int idx = feature_index(name, strlen(name));
    if (idx < 0) {
        return -ENOENT;
    }
    const struct feature *f = &features[idx];
    struct kvm_cpuid_entry2 *e = kvm_cpuid_find(c, f->leaf, f->subleaf);
    return e && (*reg_of(e, f->reg) & (1u << f->bit)) ? 1 : 0;
}
