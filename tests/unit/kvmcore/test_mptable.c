/* The MP table reads back as the MP spec says: checksums, CPUs, IOAPIC, interrupts. */
#include "tests/unit/harness.h"

#include "kvmcore/layout.h"
#include "kvmcore/mptable.h"

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++) {
        s = (uint8_t)(s + p[i]);
    }
    return s;
}

static void test_table(void)
{
    struct kvm_ram ram;
    struct err err = { 0 };
    CU_ASSERT_EQUAL_FATAL(kvm_ram_alloc(&ram, 32 * MiB, NULL, &err), 0);
    struct kvm_pci_irq pci[2] = { { 1, 0, 17 }, { 4, 0, 20 } };
    int len = kvm_mptable_write(&ram, 3, 0x50657, 0x0f8bfbff, pci, 2, &err);
    CU_ASSERT(len > 0);

    const uint8_t *fp = kvm_ram_ptr(&ram, KVM_BIOS_START, 16);
    CU_ASSERT_EQUAL(memcmp(fp, "_MP_", 4), 0);
    CU_ASSERT_EQUAL(sum(fp, 16), 0);
    CU_ASSERT_EQUAL(fp[8], 1);
    CU_ASSERT_EQUAL(fp[11], 0);                   /* a configuration table follows */
    uint32_t addr;
    memcpy(&addr, fp + 4, 4);
    const uint8_t *t = kvm_ram_ptr(&ram, addr, 44);
    CU_ASSERT_EQUAL(memcmp(t, "PCMP", 4), 0);
    uint16_t tlen, count;
    memcpy(&tlen, t + 4, 2);
    memcpy(&count, t + 34, 2);
    CU_ASSERT_EQUAL(sum(kvm_ram_ptr(&ram, addr, tlen), tlen), 0);

    unsigned cpus = 0, bsp = 0, ioapics = 0, pci_ints = 0, isa_ints = 0, lints = 0;
    uint8_t ioapic_id = 0xff;
    const uint8_t *e = t + 44, *end = t + tlen;
    for (unsigned i = 0; i < count && e < end; i++) {
        switch (e[0]) {
        case 0:
            CU_ASSERT_EQUAL(e[1], cpus);          /* APIC IDs 0..N-1 */
            cpus++;
            bsp += (e[3] & 2) != 0;
            e += 20;
            break;
        case 1:
            e += 8;
            break;
        case 2:
            ioapics++;
            ioapic_id = e[1];
            e += 8;
            break;
        case 3:
            if (e[4] == 0) {                      /* bus 0: PCI */
                pci_ints++;
                CU_ASSERT_EQUAL(e[7], (e[5] >> 2) == 1 ? 17 : 20);
            } else {
                isa_ints++;
                if (e[5] == 0) {
                    CU_ASSERT_EQUAL(e[7], 2);     /* the PIT on pin 2 */
                }
            }
            CU_ASSERT_EQUAL(e[6], ioapic_id);
            e += 8;
            break;
        case 4:
            lints++;
            e += 8;
            break;
        default:
            CU_FAIL("unknown MP table entry");
            e = end;
            break;
        }
    }
    CU_ASSERT_EQUAL(cpus, 3);
    CU_ASSERT_EQUAL(bsp, 1);
    CU_ASSERT_EQUAL(ioapics, 1);
    CU_ASSERT_EQUAL(ioapic_id, 3);
    CU_ASSERT_EQUAL(pci_ints, 2);
    CU_ASSERT_EQUAL(isa_ints, 15);
    CU_ASSERT_EQUAL(lints, 2);
    CU_ASSERT(kvm_mptable_write(&ram, 0, 0, 0, NULL, 0, &err) < 0);
    kvm_ram_free(&ram);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("mptable", NULL, NULL);
    CU_add_test(s, "table", test_table);
}
