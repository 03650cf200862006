/* PCI config space: header, BAR sizing and moves, decoding, 0xcf8 and ECAM. */
#include "tests/unit/harness.h"

#include "kvmcore/layout.h"
#include "kvmcore/pci.h"

struct fake {
    unsigned mapped_calls;
    uint64_t last_addr;
    bool last_mapped;
    uint64_t last_write_off, last_write_val;
};

static uint64_t fake_read(void *opaque, uint64_t off, unsigned size)
{
    return 0x1234 + off;
}

static void fake_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct fake *f = opaque;
    f->last_write_off = off;
    f->last_write_val = val;
}

static const struct kvm_bus_ops fake_ops = { .read = fake_read, .write = fake_write };

static void bar_mapped(struct pci_dev *d, unsigned bar, uint64_t addr, bool mapped)
{
    struct fake *f = d->opaque;
    f->mapped_calls++;
    f->last_addr = addr;
    f->last_mapped = mapped;
}

static const struct pci_dev_ops dev_ops = { .bar_mapped = bar_mapped };

struct rig {
    struct kvm_bus pio, mmio;
    struct pci_host host;
    struct pci_dev dev;
    struct fake fake;
};

static void rig_init(struct rig *r)
{
    struct err err = { 0 };
    memset(r, 0, sizeof(*r));
    kvm_bus_init(&r->pio, "I/O port");
    kvm_bus_init(&r->mmio, "MMIO");
    CU_ASSERT_EQUAL_FATAL(pci_host_init(&r->host, &r->pio, &r->mmio, &err), 0);
    pci_dev_init(&r->dev, "dev", 0x1af4, 0x1042, 0x010000, 0x1af4, 0x1100, &dev_ops, &r->fake);
    CU_ASSERT_EQUAL(pci_dev_add_bar(&r->dev, 1, 4096, false, false, &fake_ops, &r->fake, &err), 0);
    CU_ASSERT_EQUAL(pci_dev_add_bar(&r->dev, 4, 16384, true, true, &fake_ops, &r->fake, &err), 0);
    CU_ASSERT_EQUAL(pci_host_add_dev(&r->host, &r->dev, 3, &err), 0);
}

static void rig_free(struct rig *r)
{
    pci_host_cleanup(&r->host);
    kvm_bus_destroy(&r->pio);
    kvm_bus_destroy(&r->mmio);
}

static void test_header(void)
{
    struct rig r;
    rig_init(&r);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, PCI_VENDOR_ID, 2), 0x1af4);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, PCI_DEVICE_ID, 2), 0x1042);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, PCI_VENDOR_ID, 4), 0x10421af4);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, PCI_CLASS_DEVICE, 2), 0x0100);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, PCI_INTERRUPT_PIN, 1), 1);
    /* Read-only fields ignore writes. */
    pci_config_write(&r.dev, PCI_VENDOR_ID, 0xdead, 2);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, PCI_VENDOR_ID, 2), 0x1af4);
    /* Misaligned or oversized accesses read all ones, write nothing. */
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, 1, 2), 0xffff);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, 254, 4), 0xffffffff);
    rig_free(&r);
}

static void test_bar_sizing(void)
{
    struct rig r;
    rig_init(&r);
    unsigned b1 = PCI_BASE_ADDRESS_0 + 4, b4 = PCI_BASE_ADDRESS_0 + 16;
    pci_config_write(&r.dev, b1, 0xffffffff, 4);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, b1, 4), 0xfffff000);
    pci_config_write(&r.dev, b4, 0xffffffff, 4);
    pci_config_write(&r.dev, b4 + 4, 0xffffffff, 4);
    /* 64-bit prefetchable: type bits 0xc stay; 16 KiB mask. */
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, b4, 4), 0xffffc00c);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, b4 + 4, 4), 0xffffffff);
    /* Unimplemented BARs read 0 even after all ones. */
    pci_config_write(&r.dev, PCI_BASE_ADDRESS_0, 0xffffffff, 4);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, PCI_BASE_ADDRESS_0, 4), 0);
    /* Decoding is off: sizing mapped nothing. */
    CU_ASSERT_EQUAL(r.fake.mapped_calls, 0);
    CU_ASSERT_EQUAL(r.mmio.n, 1);     /* ECAM only */
    rig_free(&r);
}

static void test_assign_and_move(void)
{
    struct rig r;
    struct err err = { 0 };
    uint8_t buf[4];
    rig_init(&r);
    CU_ASSERT_EQUAL(pci_host_assign_bars(&r.host, &err), 0);
    uint64_t a1 = pci_dev_bar_addr(&r.dev, 1), a4 = pci_dev_bar_addr(&r.dev, 4);
    CU_ASSERT(a1 >= KVM_PCI_MMIO_START && a1 + 4096 <= KVM_PCI_MMIO_END);
    CU_ASSERT(a4 % 16384 == 0);
    CU_ASSERT(pci_config_read(&r.dev, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY);
    CU_ASSERT(kvm_bus_read(&r.mmio, a4 + 8, buf, 4));
    CU_ASSERT_EQUAL(buf[0] | buf[1] << 8, 0x1234 + 8);

    /* Move BAR 4: the old range goes, the device hears both. */
    unsigned before = r.fake.mapped_calls;
    pci_config_write(&r.dev, PCI_BASE_ADDRESS_0 + 16, 0xd0000000, 4);
    CU_ASSERT_EQUAL(r.fake.mapped_calls, before + 2);
    CU_ASSERT(r.fake.last_mapped);
    CU_ASSERT_EQUAL(r.fake.last_addr, 0xd0000000);
    CU_ASSERT_FALSE(kvm_bus_read(&r.mmio, a4 + 8, buf, 4));
    CU_ASSERT(kvm_bus_read(&r.mmio, 0xd0000008, buf, 4));

    /* Memory decoding off unmaps both BARs; on maps them again. */
    pci_config_write(&r.dev, PCI_COMMAND, 0, 2);
    CU_ASSERT_FALSE(r.fake.last_mapped);
    CU_ASSERT_FALSE(kvm_bus_read(&r.mmio, 0xd0000008, buf, 4));
    CU_ASSERT_FALSE(kvm_bus_read(&r.mmio, a1, buf, 4));
    pci_config_write(&r.dev, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
    CU_ASSERT(kvm_bus_read(&r.mmio, 0xd0000008, buf, 4));
    CU_ASSERT(kvm_bus_read(&r.mmio, a1, buf, 4));
    rig_free(&r);
}

static void test_reset(void)
{
    struct rig r;
    struct err err = { 0 };
    uint8_t buf[4];
    rig_init(&r);
    CU_ASSERT_EQUAL(pci_host_assign_bars(&r.host, &err), 0);
    uint64_t a4 = pci_dev_bar_addr(&r.dev, 4);
    pci_config_write(&r.dev, PCI_COMMAND, 0, 2);
    pci_config_write(&r.dev, PCI_BASE_ADDRESS_0 + 16, 0xd0000000, 4);
    pci_config_write(&r.dev, PCI_INTERRUPT_LINE, 0x77, 1);
    pci_host_reset(&r.host);
    CU_ASSERT_EQUAL(pci_dev_bar_addr(&r.dev, 4), a4);
    CU_ASSERT(pci_config_read(&r.dev, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY);
    CU_ASSERT_NOT_EQUAL(pci_config_read(&r.dev, PCI_INTERRUPT_LINE, 1), 0x77);
    CU_ASSERT(kvm_bus_read(&r.mmio, a4, buf, 4));
    CU_ASSERT_FALSE(kvm_bus_read(&r.mmio, 0xd0000000, buf, 4));
    rig_free(&r);
}

static void test_cf8_and_ecam(void)
{
    struct rig r;
    uint32_t v;
    rig_init(&r);
    /* Mechanism #1: enable | dev 3 | reg 0 */
    v = 0x80000000u | 3 << 11;
    CU_ASSERT(kvm_bus_write(&r.pio, 0xcf8, &v, 4));
    v = 0;
    CU_ASSERT(kvm_bus_read(&r.pio, 0xcfc, &v, 4));
    CU_ASSERT_EQUAL(v, 0x10421af4);
    uint16_t w = 0;
    CU_ASSERT(kvm_bus_read(&r.pio, 0xcfe, &w, 2));
    CU_ASSERT_EQUAL(w, 0x1042);
    /* An empty slot and another function read all ones. */
    v = 0x80000000u | 5 << 11;
    kvm_bus_write(&r.pio, 0xcf8, &v, 4);
    kvm_bus_read(&r.pio, 0xcfc, &v, 4);
    CU_ASSERT_EQUAL(v, 0xffffffff);
    v = 0x80000000u | 3 << 11 | 1 << 8;
    kvm_bus_write(&r.pio, 0xcf8, &v, 4);
    kvm_bus_read(&r.pio, 0xcfc, &v, 4);
    CU_ASSERT_EQUAL(v, 0xffffffff);
    /* The host bridge is 00:00.0, a bridge class. */
    v = 0x80000000u | 0x08;
    kvm_bus_write(&r.pio, 0xcf8, &v, 4);
    kvm_bus_read(&r.pio, 0xcfc, &v, 4);
    CU_ASSERT_EQUAL(v >> 8, 0x060000);
    /* ECAM: the same registers; bus 1 has nothing. */
    CU_ASSERT(kvm_bus_read(&r.mmio, KVM_ECAM_BASE + (3 << 15), &v, 4));
    CU_ASSERT_EQUAL(v, 0x10421af4);
    CU_ASSERT(kvm_bus_read(&r.mmio, KVM_ECAM_BASE + (1 << 20), &v, 4));
    CU_ASSERT_EQUAL(v, 0xffffffff);
    /* Extended config space of a conventional device reads 0. */
    CU_ASSERT(kvm_bus_read(&r.mmio, KVM_ECAM_BASE + (3 << 15) + 0x100, &v, 4));
    CU_ASSERT_EQUAL(v, 0);
    rig_free(&r);
}

static void test_caps_and_bad_bars(void)
{
    struct pci_dev d;
    struct err err = { 0 };
    pci_dev_init(&d, "d", 1, 2, 0xff0000, 1, 2, NULL, NULL);
    uint8_t a = pci_dev_add_cap(&d, 0x09, 16);
    uint8_t b = pci_dev_add_cap(&d, 0x11, 12);
    CU_ASSERT_EQUAL(a, 0x40);
    CU_ASSERT_EQUAL(b, 0x50);
    CU_ASSERT_EQUAL(pci_config_read(&d, PCI_CAPABILITY_LIST, 1), 0x40);
    CU_ASSERT_EQUAL(pci_config_read(&d, a + 1, 1), 0x50);
    CU_ASSERT_EQUAL(pci_config_read(&d, b + 1, 1), 0);
    CU_ASSERT(pci_config_read(&d, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    CU_ASSERT_EQUAL(pci_dev_add_cap(&d, 0x09, 200), 0);            /* no room */
    CU_ASSERT_EQUAL(pci_dev_add_bar(&d, 0, 3000, false, false, &fake_ops, NULL, &err), -EINVAL);
    CU_ASSERT_EQUAL(pci_dev_add_bar(&d, 5, 4096, true, false, &fake_ops, NULL, &err), -EINVAL);
    CU_ASSERT_EQUAL(pci_dev_add_bar(&d, 6, 4096, false, false, &fake_ops, NULL, &err), -EINVAL);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("pci", NULL, NULL);
    CU_add_test(s, "header", test_header);
    CU_add_test(s, "bar_sizing", test_bar_sizing);
    CU_add_test(s, "assign_and_move", test_assign_and_move);
    CU_add_test(s, "reset", test_reset);
    CU_add_test(s, "cf8_and_ecam", test_cf8_and_ecam);
    CU_add_test(s, "caps_and_bad_bars", test_caps_and_bad_bars);
}
