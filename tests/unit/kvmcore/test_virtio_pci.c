/*
 * The virtio-pci transport driven by hand, as a driver would through BAR 4:
 * feature negotiation, queue setup, DRIVER_OK, reset, NEEDS_RESET, config
 * generation, and the PCI configuration access capability.
 */
#include "tests/unit/harness.h"

#include <unistd.h>

#include "kvmcore/virtio-pci.h"

#define FEAT_X 5              /* a device feature bit */
#define NQ 2

struct fake {
    struct virtio_dev vdev;
    unsigned starts, stops, releases;
    int start_ret;
    uint64_t set_features_arg;
    int set_features_ret;
    struct virtio_queue_setup seen[NQ];
    uint8_t config[8];
};

static struct fake *of(struct virtio_dev *d)
{
    return container_of(d, struct fake, vdev);
}

static uint64_t f_features(struct virtio_dev *d)
{
    return VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(FEAT_X);
}

static int f_set_features(struct virtio_dev *d, uint64_t f)
{
    of(d)->set_features_arg = f;
    return of(d)->set_features_ret;
}

static void f_read_config(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len)
{
    memcpy(buf, of(d)->config + off, len);
}

static void f_write_config(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len)
{
    memcpy(of(d)->config + off, buf, len);
}

static int f_start(struct virtio_dev *d)
{
    struct fake *f = of(d);
    f->starts++;
    memcpy(f->seen, d->queues, sizeof(f->seen));
    return f->start_ret;
}

static void f_stop(struct virtio_dev *d)
{
    of(d)->stops++;
    d->queues[0].avail_base = 7;
}

static void f_release(struct virtio_dev *d)
{
    of(d)->releases++;
}

static const struct virtio_dev_ops fake_ops = {
    .name = "fake", .device_id = VIRTIO_ID_BLOCK, .config_size = 8,
    .max_queues = NQ, .max_queue_size = 128,
    .features = f_features, .set_features = f_set_features,
    .read_config = f_read_config, .write_config = f_write_config,
    .start = f_start, .stop = f_stop, .release = f_release,
};

static struct vpci *make(struct fake *f, struct guest_mem *mem)
{
    struct err err = { 0 };
    memset(f, 0, sizeof(*f));
    f->vdev.ops = &fake_ops;
    f->config[0] = 0xab;
    guest_mem_init(mem);
    struct vpci *p = vpci_create(NULL, NULL, mem, &f->vdev, -1, "fake", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    return p;
}

static uint64_t rd(struct vpci *p, uint64_t off, unsigned size)
{
    return vpci_caps_ops.read(p, off, size);
}

static void wr(struct vpci *p, uint64_t off, uint64_t val, unsigned size)
{
    vpci_caps_ops.write(p, off, val, size);
}

static uint8_t status(struct vpci *p)
{
    return (uint8_t)rd(p, VPCI_STATUS, 1);
}

static void negotiate(struct vpci *p, uint64_t features)
{
    wr(p, VPCI_STATUS, 0, 1);
    wr(p, VPCI_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
    wr(p, VPCI_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
    wr(p, VPCI_GFSELECT, 0, 4);
    wr(p, VPCI_GF, (uint32_t)features, 4);
    wr(p, VPCI_GFSELECT, 1, 4);
    wr(p, VPCI_GF, (uint32_t)(features >> 32), 4);
    wr(p, VPCI_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
       VIRTIO_STATUS_FEATURES_OK, 1);
}

static void test_identity(void)
{
    struct fake f;
    struct guest_mem mem;
    struct vpci *p = make(&f, &mem);
    CU_ASSERT_EQUAL(pci_config_read(&p->pci, PCI_VENDOR_ID, 4), 0x10421af4);
    CU_ASSERT(pci_config_read(&p->pci, PCI_REVISION_ID, 1) >= 1);
    CU_ASSERT_EQUAL(rd(p, VPCI_NUM_QUEUES, 2), NQ);
    /* The vendor capabilities: common, notify (multiplier 4), ISR, device, pci-cfg. */
    unsigned types = 0, cap = pci_config_read(&p->pci, PCI_CAPABILITY_LIST, 1);
    while (cap) {
        if (pci_config_read(&p->pci, cap, 1) == PCI_CAP_ID_VNDR) {
            unsigned type = pci_config_read(&p->pci, cap + 3, 1);
            types |= 1u << type;
            if (type == 2) {
                CU_ASSERT_EQUAL(pci_config_read(&p->pci, cap + 16, 4), VPCI_NOTIFY_MULT);
                CU_ASSERT_EQUAL(pci_config_read(&p->pci, cap + 4, 1), VPCI_BAR_CAPS);
                CU_ASSERT_EQUAL(pci_config_read(&p->pci, cap + 8, 4), VPCI_NOTIFY_OFF);
            }
        }
        cap = pci_config_read(&p->pci, cap + 1, 1);
    }
    CU_ASSERT_EQUAL(types, 0x3e);
    vpci_destroy(p);
    CU_ASSERT_EQUAL(f.releases, 1);
}

static void test_features(void)
{
    struct fake f;
    struct guest_mem mem;
    struct vpci *p = make(&f, &mem);
    wr(p, VPCI_DFSELECT, 0, 4);
    CU_ASSERT_EQUAL(rd(p, VPCI_DF, 4), VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(FEAT_X));
    wr(p, VPCI_DFSELECT, 1, 4);
    CU_ASSERT_EQUAL(rd(p, VPCI_DF, 4), 1);             /* VERSION_1 is bit 32 */
    wr(p, VPCI_DFSELECT, 2, 4);
    CU_ASSERT_EQUAL(rd(p, VPCI_DF, 4), 0);

    /* Without VERSION_1 the device refuses FEATURES_OK. */
    negotiate(p, VIRTIO_BIT(FEAT_X));
    CU_ASSERT_FALSE(status(p) & VIRTIO_STATUS_FEATURES_OK);
    /* A bit the device did not offer: refused. */
    negotiate(p, VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(40));
    CU_ASSERT_FALSE(status(p) & VIRTIO_STATUS_FEATURES_OK);
    /* The device's own veto. */
    f.set_features_ret = -EINVAL;
    negotiate(p, VIRTIO_BIT(VIRTIO_F_VERSION_1));
    CU_ASSERT_FALSE(status(p) & VIRTIO_STATUS_FEATURES_OK);
    f.set_features_ret = 0;
    /* A proper subset. */
    uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(FEAT_X);
    negotiate(p, want);
    CU_ASSERT(status(p) & VIRTIO_STATUS_FEATURES_OK);
    CU_ASSERT_EQUAL(f.set_features_arg, want);
    CU_ASSERT_EQUAL(f.vdev.guest_features, want);
    /* After FEATURES_OK the driver features are frozen. */
    wr(p, VPCI_GFSELECT, 0, 4);
    wr(p, VPCI_GF, 0, 4);
    CU_ASSERT_EQUAL(rd(p, VPCI_GF, 4), VIRTIO_BIT(FEAT_X));
    vpci_destroy(p);
}

static void test_queues_and_start(void)
{
    struct fake f;
    struct guest_mem mem;
    struct vpci *p = make(&f, &mem);
    negotiate(p, VIRTIO_BIT(VIRTIO_F_VERSION_1));
    wr(p, VPCI_Q_SELECT, 1, 2);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_SIZE, 2), 128);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_NOFF, 2), 1);
    wr(p, VPCI_Q_SIZE, 256, 2);                        /* larger than the maximum: ignored */
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_SIZE, 2), 128);
    wr(p, VPCI_Q_SIZE, 64, 2);
    wr(p, VPCI_Q_DESC, 0x1000, 4);
    wr(p, VPCI_Q_DESC + 4, 0x1, 4);                    /* the high half alone */
    wr(p, VPCI_Q_AVAIL, 0x2000, 8);
    wr(p, VPCI_Q_USED, 0x3000, 8);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_DESC, 8), 0x100001000ULL);
    wr(p, VPCI_Q_ENABLE, 1, 2);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_ENABLE, 2), 1);
    /* An enabled queue's setup is frozen. */
    wr(p, VPCI_Q_SIZE, 32, 2);
    wr(p, VPCI_Q_USED, 0x9000, 8);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_SIZE, 2), 64);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_USED, 8), 0x3000);
    /* A queue that does not exist reads as size 0 and ignores writes. */
    wr(p, VPCI_Q_SELECT, NQ, 2);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_SIZE, 2), 0);
    wr(p, VPCI_Q_ENABLE, 1, 2);

    wr(p, VPCI_STATUS, status(p) | VIRTIO_STATUS_DRIVER_OK, 1);
    CU_ASSERT_EQUAL(f.starts, 1);
    CU_ASSERT(status(p) & VIRTIO_STATUS_DRIVER_OK);
    CU_ASSERT_FALSE(f.seen[0].enabled);
    CU_ASSERT(f.seen[1].enabled);
    CU_ASSERT_EQUAL(f.seen[1].size, 64);
    CU_ASSERT_EQUAL(f.seen[1].desc, 0x100001000ULL);
    CU_ASSERT_EQUAL(f.seen[1].avail, 0x2000);
    CU_ASSERT_EQUAL(f.seen[1].used, 0x3000);
    CU_ASSERT(f.seen[1].kick_fd >= 0 && f.seen[1].call_fd >= 0);
    CU_ASSERT(f.seen[0].kick_fd != f.seen[1].kick_fd);

    /* Without an ioeventfd a notify write signals the queue's kick fd. */
    wr(p, VPCI_NOTIFY_OFF + VPCI_NOTIFY_MULT * 1, 1, 2);
    uint64_t n = 0;
    CU_ASSERT_EQUAL(read(f.seen[1].kick_fd, &n, 8), 8);
    CU_ASSERT_EQUAL(n, 1);

    /* Reset: the device stops, queues and features clear. */
    wr(p, VPCI_STATUS, 0, 1);
    CU_ASSERT_EQUAL(f.stops, 1);
    CU_ASSERT_EQUAL(status(p), 0);
    wr(p, VPCI_Q_SELECT, 1, 2);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_ENABLE, 2), 0);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_SIZE, 2), 128);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_DESC, 8), 0);
    CU_ASSERT_EQUAL(f.vdev.queues[0].avail_base, 0);
    CU_ASSERT_EQUAL(f.vdev.guest_features, 0);
    /* A second reset does not stop a stopped device. */
    wr(p, VPCI_STATUS, 0, 1);
    CU_ASSERT_EQUAL(f.stops, 1);
    vpci_destroy(p);
    CU_ASSERT_EQUAL(f.stops, 1);
}

static void test_start_failure_and_needs_reset(void)
{
    struct fake f;
    struct guest_mem mem;
    struct vpci *p = make(&f, &mem);
    /* DRIVER_OK without FEATURES_OK: NEEDS_RESET, no start. */
    wr(p, VPCI_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
       VIRTIO_STATUS_DRIVER_OK, 1);
    CU_ASSERT_EQUAL(f.starts, 0);
    CU_ASSERT(status(p) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    /* The ISR reports a config change once. */
    CU_ASSERT_EQUAL(rd(p, VPCI_ISR_OFF, 1), 2);
    CU_ASSERT_EQUAL(rd(p, VPCI_ISR_OFF, 1), 0);

    /* A failing start: NEEDS_RESET, and no stop at reset. */
    f.start_ret = -EFAULT;
    negotiate(p, VIRTIO_BIT(VIRTIO_F_VERSION_1));
    CU_ASSERT_FALSE(status(p) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    wr(p, VPCI_STATUS, status(p) | VIRTIO_STATUS_DRIVER_OK, 1);
    CU_ASSERT_EQUAL(f.starts, 1);
    CU_ASSERT(status(p) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    wr(p, VPCI_STATUS, 0, 1);
    CU_ASSERT_EQUAL(f.stops, 0);

    /* The device itself asks for a reset; the generation moves. */
    f.start_ret = 0;
    negotiate(p, VIRTIO_BIT(VIRTIO_F_VERSION_1));
    wr(p, VPCI_STATUS, status(p) | VIRTIO_STATUS_DRIVER_OK, 1);
    uint8_t gen = (uint8_t)rd(p, VPCI_CFG_GENERATION, 1);
    virtio_dev_needs_reset(&f.vdev);
    CU_ASSERT(status(p) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    CU_ASSERT(status(p) & VIRTIO_STATUS_DRIVER_OK);
    CU_ASSERT_NOT_EQUAL(rd(p, VPCI_CFG_GENERATION, 1), gen);
    /* The driver cannot clear it except by a reset. */
    wr(p, VPCI_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK, 1);
    CU_ASSERT(status(p) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    wr(p, VPCI_STATUS, 0, 1);
    CU_ASSERT_EQUAL(status(p), 0);
    vpci_destroy(p);
}

static void test_device_config_and_vectors(void)
{
    struct fake f;
    struct guest_mem mem;
    struct vpci *p = make(&f, &mem);
    CU_ASSERT_EQUAL(rd(p, VPCI_DEVICE_OFF, 1), 0xab);
    wr(p, VPCI_DEVICE_OFF + 4, 0x55667788, 4);
    CU_ASSERT_EQUAL(rd(p, VPCI_DEVICE_OFF + 4, 4), 0x55667788);
    /* Past the device's config size: nothing. */
    CU_ASSERT_EQUAL(rd(p, VPCI_DEVICE_OFF + 6, 4), 0);
    wr(p, VPCI_DEVICE_OFF + 8, 1, 1);
    /* Vectors: in range kept, out of range read back as NO_VECTOR. */
    wr(p, VPCI_MSIX_CONFIG, 2, 2);
    CU_ASSERT_EQUAL(rd(p, VPCI_MSIX_CONFIG, 2), 2);
    wr(p, VPCI_MSIX_CONFIG, NQ + 1, 2);
    CU_ASSERT_EQUAL(rd(p, VPCI_MSIX_CONFIG, 2), PCI_MSIX_NO_VECTOR);
    wr(p, VPCI_Q_SELECT, 0, 2);
    wr(p, VPCI_Q_MSIX, 1, 2);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_MSIX, 2), 1);
    CU_ASSERT_EQUAL(p->msix.src[0].vector, 1);
    wr(p, VPCI_Q_MSIX, 500, 2);
    CU_ASSERT_EQUAL(rd(p, VPCI_Q_MSIX, 2), PCI_MSIX_NO_VECTOR);
    /* The PCI configuration access capability reads BAR 4 through config space. */
    uint8_t cap = p->pci_cfg_cap;
    CU_ASSERT(cap != 0);
    pci_config_write(&p->pci, cap + 4, VPCI_BAR_CAPS, 1);
    pci_config_write(&p->pci, cap + 8, VPCI_NUM_QUEUES, 4);
    pci_config_write(&p->pci, cap + 12, 2, 4);
    CU_ASSERT_EQUAL(pci_config_read(&p->pci, cap + 16, 2), NQ);
    vpci_destroy(p);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("virtio_pci", NULL, NULL);
    CU_add_test(s, "identity", test_identity);
    CU_add_test(s, "features", test_features);
    CU_add_test(s, "queues_and_start", test_queues_and_start);
    CU_add_test(s, "start_failure_and_needs_reset", test_start_failure_and_needs_reset);
    CU_add_test(s, "device_config_and_vectors", test_device_config_and_vectors);
}
