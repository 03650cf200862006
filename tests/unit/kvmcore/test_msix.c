/* MSI-X: masking detaches a source and collects its signals into the PBA. */
#include "tests/unit/harness.h"

#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kvmcore/cpuid.h"
#include "kvmcore/msix.h"
#include "kvmcore/vcpu.h"

#define NVEC 4
#define PBA_OFF 0x800

struct rig {
    struct pci_dev dev;
    struct pci_msix x;
    int fd[2];
};

static void rig_init(struct rig *r)
{
    struct err err = { 0 };
    memset(r, 0, sizeof(*r));
    pci_dev_init(&r->dev, "msix", 1, 2, 0xff0000, 1, 2, NULL, NULL);
    CU_ASSERT_EQUAL_FATAL(pci_msix_init(&r->x, &r->dev, NULL, NVEC, 1, 0, PBA_OFF, 2, &err), 0);
    r->fd[0] = eventfd(0, EFD_NONBLOCK);
    r->fd[1] = eventfd(0, EFD_NONBLOCK);
}

static void rig_free(struct rig *r)
{
    pci_msix_cleanup(&r->x);
    close(r->fd[0]);
    close(r->fd[1]);
}

static void signal_fd(int fd)
{
    uint64_t one = 1;
    CU_ASSERT_EQUAL(write(fd, &one, 8), 8);
}

static void set_ctrl(struct rig *r, uint16_t ctrl)
{
    pci_config_write(&r->dev, r->x.cap + 2, ctrl, 2);
    pci_msix_config_written(&r->x, r->x.cap + 2, 2);
}

static void program(struct rig *r, unsigned v, uint64_t addr, uint32_t data, bool masked)
{
    pci_msix_table_write(&r->x, v * 16, (uint32_t)addr, 4);
    pci_msix_table_write(&r->x, v * 16 + 4, (uint32_t)(addr >> 32), 4);
    pci_msix_table_write(&r->x, v * 16 + 8, data, 4);
    pci_msix_table_write(&r->x, v * 16 + 12, masked, 4);
}

static void test_capability(void)
{
    struct rig r;
    rig_init(&r);
    uint8_t cap = r.x.cap;
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, cap, 1), PCI_CAP_ID_MSIX);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, cap + 2, 2), NVEC - 1);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, cap + 4, 4), 1);            /* BAR 1, offset 0 */
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, cap + 8, 4), PBA_OFF | 1);
    /* The table size field is read-only. */
    pci_config_write(&r.dev, cap + 2, 0xffff, 2);
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, cap + 2, 2), 0xc000 | (NVEC - 1));
    /* Every vector starts masked. */
    CU_ASSERT_EQUAL(pci_msix_table_read(&r.x, 12, 4), 1);
    rig_free(&r);
}

static void test_table(void)
{
    struct rig r;
    rig_init(&r);
    program(&r, 2, 0xfee01000, 0x4041, true);
    CU_ASSERT_EQUAL(pci_msix_table_read(&r.x, 32, 4), 0xfee01000);
    CU_ASSERT_EQUAL(pci_msix_table_read(&r.x, 40, 4), 0x4041);
    CU_ASSERT_EQUAL(pci_msix_table_read(&r.x, 32, 8), 0xfee01000);
    /* Reserved control bits read 0; out of range and odd sizes are ignored. */
    pci_msix_table_write(&r.x, 44, 0xfffffffe, 4);
    CU_ASSERT_EQUAL(pci_msix_table_read(&r.x, 44, 4), 0);
    pci_msix_table_write(&r.x, NVEC * 16, 1, 4);
    CU_ASSERT_EQUAL(pci_msix_table_read(&r.x, NVEC * 16, 4), 0);
    CU_ASSERT_EQUAL(pci_msix_table_read(&r.x, 33, 2), 0);
    rig_free(&r);
}

static void test_mask_pba_unmask(void)
{
    struct rig r;
    rig_init(&r);
    set_ctrl(&r, 0x8000);                          /* enabled */
    program(&r, 1, 0xfee00000, 0x31, true);        /* vector 1, masked */
    pci_msix_bind(&r.x, 0, r.fd[0], 1);
    CU_ASSERT_EQUAL(r.x.src[0].attached_gsi, -1);

    /* A signal while masked becomes the pending bit. */
    signal_fd(r.fd[0]);
    CU_ASSERT_EQUAL(pci_msix_pba_read(&r.x, 0, 8), 1u << 1);
    CU_ASSERT_EQUAL(pci_msix_pba_read(&r.x, 0, 8), 1u << 1);   /* stays until delivered */

    /* Unmask: attached, and the pending message goes out once. */
    uint64_t fired = r.x.fired;
    pci_msix_table_write(&r.x, 16 + 12, 0, 4);
    CU_ASSERT(r.x.src[0].attached_gsi >= 0);
    CU_ASSERT_EQUAL(r.x.fired, fired + 1);
    CU_ASSERT_EQUAL(pci_msix_pba_read(&r.x, 0, 8), 0);

    /* Masking again detaches. */
    pci_msix_table_write(&r.x, 16 + 12, 1, 4);
    CU_ASSERT_EQUAL(r.x.src[0].attached_gsi, -1);
    CU_ASSERT_EQUAL(pci_msix_pba_read(&r.x, 0, 8), 0);
    rig_free(&r);
}

static void test_function_mask_and_enable(void)
{
    struct rig r;
    rig_init(&r);
    program(&r, 0, 0xfee00000, 0x30, false);
    pci_msix_bind(&r.x, 0, r.fd[0], 0);
    pci_msix_bind(&r.x, 1, r.fd[1], 0);            /* two sources share vector 0 */
    /* MSI-X off: nothing attached even though the vector is unmasked. */
    CU_ASSERT(pci_msix_is_masked(&r.x, 0));
    CU_ASSERT_EQUAL(r.x.src[0].attached_gsi, -1);
    set_ctrl(&r, 0x8000);
    CU_ASSERT_FALSE(pci_msix_is_masked(&r.x, 0));
    CU_ASSERT(r.x.src[0].attached_gsi >= 0);
    CU_ASSERT_EQUAL(r.x.src[0].attached_gsi, r.x.src[1].attached_gsi);
    /* The function mask masks every vector. */
    set_ctrl(&r, 0xc000);
    CU_ASSERT(pci_msix_is_masked(&r.x, 0));
    CU_ASSERT_EQUAL(r.x.src[1].attached_gsi, -1);
    signal_fd(r.fd[1]);
    CU_ASSERT_EQUAL(pci_msix_pba_read(&r.x, 0, 4), 1);
    uint64_t fired = r.x.fired;
    set_ctrl(&r, 0x8000);
    CU_ASSERT_EQUAL(r.x.fired, fired + 1);
    CU_ASSERT_EQUAL(pci_msix_pba_read(&r.x, 0, 4), 0);
    rig_free(&r);
}

static void test_rebind_and_reset(void)
{
    struct rig r;
    rig_init(&r);
    set_ctrl(&r, 0x8000);
    program(&r, 0, 0xfee00000, 0x30, false);
    program(&r, 3, 0xfee00000, 0x33, false);
    pci_msix_bind(&r.x, 0, r.fd[0], 0);
    int gsi0 = r.x.src[0].attached_gsi;
    pci_msix_bind(&r.x, 0, r.fd[0], 3);
    CU_ASSERT(r.x.src[0].attached_gsi >= 0 && r.x.src[0].attached_gsi != gsi0);
    pci_msix_bind(&r.x, 0, r.fd[0], PCI_MSIX_NO_VECTOR);
    CU_ASSERT_EQUAL(r.x.src[0].attached_gsi, -1);
    /* An out-of-range vector is "no vector". */
    pci_msix_bind(&r.x, 0, r.fd[0], NVEC);
    CU_ASSERT_EQUAL(r.x.src[0].vector, PCI_MSIX_NO_VECTOR);
    pci_msix_bind(&r.x, 0, r.fd[0], 3);
    pci_msix_reset(&r.x);
    CU_ASSERT_EQUAL(r.x.src[0].attached_gsi, -1);
    CU_ASSERT(pci_msix_is_masked(&r.x, 3));
    CU_ASSERT_EQUAL(pci_config_read(&r.dev, r.x.cap + 2, 2), NVEC - 1);
    rig_free(&r);
}

/* The same dance against a real VM: MSI routes and irqfds are accepted by KVM. */
static void test_with_kvm(void)
{
    struct kvm_vm vm;
    struct err err = { 0 };
    struct pci_dev dev;
    struct pci_msix x;
    if (!kvm_available()) {
        test_skip("no usable /dev/kvm");
        return;
    }
    CU_ASSERT_EQUAL_FATAL(kvm_vm_open(&vm, &err), 0);
    pci_dev_init(&dev, "msix-kvm", 1, 2, 0xff0000, 1, 2, NULL, NULL);
    CU_ASSERT_EQUAL_FATAL(pci_msix_init(&x, &dev, &vm, NVEC, 1, 0, PBA_OFF, 2, &err), 0);
    int fd = eventfd(0, EFD_NONBLOCK);
    pci_config_write(&dev, x.cap + 2, 0x8000, 2);
    pci_msix_config_written(&x, x.cap + 2, 2);
    pci_msix_table_write(&x, 0, 0xfee00000, 4);
    pci_msix_table_write(&x, 8, 0x4030, 4);
    pci_msix_bind(&x, 0, fd, 0);
    CU_ASSERT_EQUAL(x.src[0].attached_gsi, -1);        /* still masked */
    pci_msix_table_write(&x, 12, 0, 4);                /* unmask: route + irqfd */
    CU_ASSERT(x.src[0].attached_gsi >= 24);
    CU_ASSERT_EQUAL(x.vec[0].gsi, x.src[0].attached_gsi);
    /* A new message on the live route is accepted. */
    pci_msix_table_write(&x, 8, 0x4031, 4);
    CU_ASSERT(x.src[0].attached_gsi >= 24);
    /* A signal while attached is consumed by KVM, not left pending. */
    uint64_t one = 1;
    CU_ASSERT_EQUAL(write(fd, &one, 8), 8);
    usleep(10000);
    CU_ASSERT_EQUAL(pci_msix_pba_read(&x, 0, 8), 0);
    /* Mask, signal, unmask: delivered once through KVM_SIGNAL_MSI. */
    pci_msix_table_write(&x, 12, 1, 4);
    CU_ASSERT_EQUAL(x.src[0].attached_gsi, -1);
    CU_ASSERT_EQUAL(write(fd, &one, 8), 8);
    CU_ASSERT_EQUAL(pci_msix_pba_read(&x, 0, 8), 1);
    uint64_t fired = x.fired;
    pci_msix_table_write(&x, 12, 0, 4);
    CU_ASSERT_EQUAL(x.fired, fired + 1);
    pci_msix_cleanup(&x);
    close(fd);
    kvm_vm_close(&vm);
}

/* Whether vector vec is in the local APIC's IRR. */
static bool irr_has(struct vcpu *v, unsigned vec)
{
    struct kvm_lapic_state l;
    uint32_t irr;
    if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0) {
        return false;
    }
    memcpy(&irr, &l.regs[0x200 + (vec / 32) * 0x10], 4);
    return irr & (1u << (vec % 32));
}

static bool wait_irr(struct vcpu *v, unsigned vec)
{
    for (int i = 0; i < 200; i++) {
        if (irr_has(v, vec)) {
            return true;
        }
        usleep(1000);
    }
    return false;
}

/*
 * End to end: an eventfd write becomes an MSI in vCPU 0's local APIC
 * through the irqfd and the MSI route, and a message collected while
 * masked arrives when the vector is unmasked.
 */
static void test_delivery(void)
{
    struct kvm_vm vm;
    struct err err = { 0 };
    struct pci_dev dev;
    struct pci_msix x;
    struct kvm_cpu_model model;
    struct vcpu v;
    struct vcpu_env env = { 0 };
    if (!kvm_available()) {
        test_skip("no usable /dev/kvm");
        return;
    }
    CU_ASSERT_EQUAL_FATAL(kvm_vm_open(&vm, &err), 0);
    kvm_cpu_model_parse(&model, "host", &err);
    struct kvm_cpuid2 *cpuid = kvm_cpuid_build(&vm, &model, 1, &err);
    struct kvm_cpuid2 *c0 = kvm_cpuid_for_vcpu(cpuid, 0, 1);
    env.vm = &vm;
    CU_ASSERT_EQUAL_FATAL(vcpu_create(&v, &env, 0, c0, &err), 0);
    /* Software-enable the local APIC (SVR bit 8), as a guest would. */
    struct kvm_lapic_state l;
    CU_ASSERT_EQUAL(ioctl(v.fd, KVM_GET_LAPIC, &l), 0);
    uint32_t svr = 0x1ff;
    memcpy(&l.regs[0xf0], &svr, 4);
    CU_ASSERT_EQUAL(ioctl(v.fd, KVM_SET_LAPIC, &l), 0);

    pci_dev_init(&dev, "msix-irr", 1, 2, 0xff0000, 1, 2, NULL, NULL);
    CU_ASSERT_EQUAL_FATAL(pci_msix_init(&x, &dev, &vm, NVEC, 1, 0, PBA_OFF, 1, &err), 0);
    int fd = eventfd(0, EFD_NONBLOCK);
    pci_config_write(&dev, x.cap + 2, 0x8000, 2);
    pci_msix_config_written(&x, x.cap + 2, 2);
    pci_msix_table_write(&x, 16, 0xfee00000, 4);       /* vector 1: APIC 0, fixed */
    pci_msix_table_write(&x, 24, 0x41, 4);             /* IDT vector 0x41 */
    pci_msix_table_write(&x, 28, 0, 4);                /* unmasked */
    pci_msix_bind(&x, 0, fd, 1);
    CU_ASSERT_FALSE(irr_has(&v, 0x41));
    uint64_t one = 1;
    CU_ASSERT_EQUAL(write(fd, &one, 8), 8);
    CU_ASSERT(wait_irr(&v, 0x41));

    /* Masked: nothing arrives, the PBA shows it, unmasking delivers it. */
    pci_msix_table_write(&x, 24, 0x42, 4);
    pci_msix_table_write(&x, 28, 1, 4);
    CU_ASSERT_EQUAL(write(fd, &one, 8), 8);
    usleep(20000);
    CU_ASSERT_FALSE(irr_has(&v, 0x42));
    CU_ASSERT_EQUAL(pci_msix_pba_read(&x, 0, 8), 2);
    pci_msix_table_write(&x, 28, 0, 4);
    CU_ASSERT(wait_irr(&v, 0x42));
    CU_ASSERT_EQUAL(pci_msix_pba_read(&x, 0, 8), 0);

    pci_msix_cleanup(&x);
    close(fd);
    vcpu_destroy(&v);
    free(c0);
    free(cpuid);
    kvm_vm_close(&vm);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("msix", NULL, NULL);
    CU_add_test(s, "capability", test_capability);
    CU_add_test(s, "table", test_table);
    CU_add_test(s, "mask_pba_unmask", test_mask_pba_unmask);
    CU_add_test(s, "function_mask_and_enable", test_function_mask_and_enable);
    CU_add_test(s, "rebind_and_reset", test_rebind_and_reset);
    CU_add_test(s, "with_kvm", test_with_kvm);
    CU_add_test(s, "delivery", test_delivery);
}
