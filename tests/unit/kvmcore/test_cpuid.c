/* -cpu host[,±feature]: parsing, and what KVM_SET_CPUID2 would get. */
#include "tests/unit/harness.h"

#include "kvmcore/cpuid.h"

static void test_parse(void)
{
    struct kvm_cpu_model m;
    struct err err = { 0 };
    CU_ASSERT_EQUAL(kvm_cpu_model_parse(&m, "host", &err), 0);
    CU_ASSERT_EQUAL(m.nr, 0);
    CU_ASSERT_EQUAL(kvm_cpu_model_parse(&m, "host,-xsave,+avx2,pdpe1gb=off,x2apic=on,"
                                        "-sse4.2,-sse4_1,-kvm-pv-eoi", &err), 0);
    CU_ASSERT_EQUAL(m.nr, 7);
    CU_ASSERT_FALSE(m.tweaks[0].on);
    CU_ASSERT(m.tweaks[1].on);
    CU_ASSERT_FALSE(m.tweaks[2].on);
    CU_ASSERT(m.tweaks[3].on);
    CU_ASSERT(kvm_cpu_model_parse(&m, "Skylake-Server", &err) < 0);
    CU_ASSERT(strstr(err.msg, "not supported") != NULL);
    err_clear(&err);
    CU_ASSERT(kvm_cpu_model_parse(&m, "host,-warp-drive", &err) < 0);
    CU_ASSERT_STRING_EQUAL(err.msg, "-cpu: unknown CPU feature 'warp-drive'");
    err_clear(&err);
    CU_ASSERT(kvm_cpu_model_parse(&m, "host,avx=perhaps", &err) < 0);
    CU_ASSERT(strstr(err.msg, "takes on or off") != NULL);
}

static void test_build_with_kvm(void)
{
    struct kvm_vm vm;
    struct err err = { 0 };
    struct kvm_cpu_model m;
    if (!kvm_available()) {
        test_skip("no usable /dev/kvm");
        return;
    }
    if (kvm_vm_open(&vm, &err) < 0) {
        printf("# %s\n", err.msg);
        CU_FAIL("cannot open a VM");
        return;
    }
    kvm_cpu_model_parse(&m, "host", &err);
    struct kvm_cpuid2 *plain = kvm_cpuid_build(&vm, &m, 2, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
    kvm_cpu_model_parse(&m, "host,-xsave,-pdpe1gb,-x2apic,-avx", &err);
    struct kvm_cpuid2 *c = kvm_cpuid_build(&vm, &m, 2, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(kvm_cpuid_has(c, "xsave"), 0);
    CU_ASSERT_EQUAL(kvm_cpuid_has(c, "avx"), 0);
    CU_ASSERT_EQUAL(kvm_cpuid_has(c, "avx2"), 0);      /* goes with avx */
    CU_ASSERT_EQUAL(kvm_cpuid_has(c, "pdpe1gb"), 0);
    CU_ASSERT_EQUAL(kvm_cpuid_has(c, "x2apic"), 0);
    CU_ASSERT_EQUAL(kvm_cpuid_has(c, "nosuch"), -ENOENT);
    /* What -xsave does not touch stays as KVM has it. */
    CU_ASSERT_EQUAL(kvm_cpuid_has(c, "sse2"), kvm_cpuid_has(plain, "sse2"));
    CU_ASSERT_EQUAL(kvm_cpuid_has(c, "lm"), kvm_cpuid_has(plain, "lm"));
    struct kvm_cpuid_entry2 *xs = kvm_cpuid_find(c, 0xd, 0);
    if (xs) {
        CU_ASSERT_EQUAL(xs->eax, 0);
    }
    /* Per-vCPU: the APIC ID in leaf 1 and the HTT bit for two CPUs. */
    struct kvm_cpuid2 *v1 = kvm_cpuid_for_vcpu(c, 1, 2);
    struct kvm_cpuid_entry2 *l1 = kvm_cpuid_find(v1, 1, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l1);
    CU_ASSERT_EQUAL(l1->ebx >> 24, 1);
    CU_ASSERT_EQUAL((l1->ebx >> 16) & 0xff, 2);
    CU_ASSERT(l1->edx & (1u << 28));
    free(v1);
    free(c);
    free(plain);
    kvm_vm_close(&vm);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("cpuid", NULL, NULL);
    CU_add_test(s, "parse", test_parse);
    CU_add_test(s, "build_with_kvm", test_build_with_kvm);
}
