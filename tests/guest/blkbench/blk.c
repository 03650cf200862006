/* blk.c: virtio-blk driver, polled; see blk.h. */
#include "blkbench.h"
#include "io.h"
#include "lib.h"
#include "mem.h"
#include "pci.h"
#include "serial.h"
#include "blk.h"

#define VIRTIO_BLK_TRANSITIONAL 0x1001
#define VIRTIO_BLK_MODERN       0x1042

/* struct virtio_blk_config offsets */
#define BLK_CFG_CAPACITY   0
#define BLK_CFG_SIZE_MAX   8
#define BLK_CFG_SEG_MAX    12
#define BLK_CFG_BLK_SIZE   20
#define BLK_CFG_NUM_QUEUES 34

struct vblk vblk_devices[VBLK_MAX_DEVICES];
int vblk_count;

static void read_config(struct vblk *d)
{
    struct virtio_pci *vp = &d->vp;
    uint8_t gen;

    do {
        gen = vpci_config_generation(vp);
        d->capacity = vpci_cfg64(vp, BLK_CFG_CAPACITY) * 512;
        d->seg_bytes = vpci_has(vp, VIRTIO_BLK_F_SIZE_MAX) ?
                       vpci_cfg32(vp, BLK_CFG_SIZE_MAX) : 0;
        d->seg_max = vpci_has(vp, VIRTIO_BLK_F_SEG_MAX) ?
                     vpci_cfg32(vp, BLK_CFG_SEG_MAX) : 0;
        d->blk_size = vpci_has(vp, VIRTIO_BLK_F_BLK_SIZE) ?
                      vpci_cfg32(vp, BLK_CFG_BLK_SIZE) : 512;
        d->nqueues = vpci_has(vp, VIRTIO_BLK_F_MQ) ?
                     vpci_cfg16(vp, BLK_CFG_NUM_QUEUES) : 1;
    } while (gen != vpci_config_generation(vp));

    /* Sane limits whatever the device says. */
    if (!d->seg_bytes || d->seg_bytes > (4u << 20))
        d->seg_bytes = 4u << 20;
    d->seg_bytes &= ~511u;
    if (!d->seg_max || d->seg_max > VBLK_MAX_SEGS)
        d->seg_max = VBLK_MAX_SEGS;
    if (d->nqueues == 0)
        d->nqueues = 1;
    d->nqueues = MIN(d->nqueues, VBLK_MAX_QUEUES);
    d->read_only = vpci_has(vp, VIRTIO_BLK_F_RO);
}

static int setup_queues(struct vblk *d)
{
    uint16_t avail = vpci_num_queues(&d->vp);

    d->nqueues = MIN(d->nqueues, avail);
    for (uint16_t i = 0; i < d->nqueues; i++) {
        struct vblk_queue *q = &d->q[i];
        if (vpci_queue_setup(&d->vp, i, VBLK_QUEUE_SIZE, &q->vr) < 0)
            return -1;
        q->dev = d;
        q->slots = mem_zalloc(sizeof(*q->slots) * q->vr.size, 64);
        if (!q->slots)
            return -1;
    }
    return 0;
}

static int vblk_init(struct vblk *d, uint32_t bdf)
{
    const uint64_t wanted = 1ull << VIRTIO_F_EVENT_IDX | 1ull << VIRTIO_F_INDIRECT_DESC |
                            1ull << VIRTIO_BLK_F_MQ | 1ull << VIRTIO_BLK_F_FLUSH |
                            1ull << VIRTIO_BLK_F_SIZE_MAX | 1ull << VIRTIO_BLK_F_SEG_MAX |
                            1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_RO;

    if (vpci_probe(&d->vp, bdf) < 0 ||
        vpci_negotiate(&d->vp, wanted, 1ull << VIRTIO_F_VERSION_1) < 0)
        return -1;
    read_config(d);
    if (setup_queues(d) < 0) {
        vpci_fail(&d->vp);
        return -1;
    }
    vpci_driver_ok(&d->vp);
    if (vpci_status(&d->vp) & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)) {
        kprintf("BLKBENCH-ERROR dev=%d: device status 0x%x after DRIVER_OK\n",
                d->index, vpci_status(&d->vp));
        return -1;
    }
    kprintf("BLKBENCH-INFO dev=%d pci=%02x:%02x.%x mmio=0x%lx capacity=%lu blk_size=%u "
            "queues=%u queue_size=%u features=0x%lx event_idx=%d indirect=%d flush=%d "
            "ro=%d\n", d->index, PCI_BUS(bdf), PCI_DEV(bdf), PCI_FN(bdf),
            (unsigned long)d->vp.common, d->capacity,
            d->blk_size, d->nqueues, d->q[0].vr.size, d->vp.features,
            vpci_has(&d->vp, VIRTIO_F_EVENT_IDX), vpci_has(&d->vp, VIRTIO_F_INDIRECT_DESC),
            vpci_has(&d->vp, VIRTIO_BLK_F_FLUSH), d->read_only);
    return 0;
}

static void probe_one(uint32_t bdf, uint16_t vendor, uint16_t device, void *ctx)
{
    (void)ctx;
    if (vendor != VIRTIO_VENDOR ||
        (device != VIRTIO_BLK_TRANSITIONAL && device != VIRTIO_BLK_MODERN))
        return;
    if (vblk_count == VBLK_MAX_DEVICES) {
        kprintf("BLKBENCH-INFO ignoring virtio-blk at %02x:%02x.%x: more than %d devices\n",
                PCI_BUS(bdf), PCI_DEV(bdf), PCI_FN(bdf), VBLK_MAX_DEVICES);
        return;
    }
    struct vblk *d = &vblk_devices[vblk_count];
    d->index = vblk_count;
    if (vblk_init(d, bdf) < 0) {
        kprintf("BLKBENCH-ERROR dev=%d: virtio-blk at %02x:%02x.%x failed to "
                "initialise; it is skipped\n", vblk_count,
                PCI_BUS(bdf), PCI_DEV(bdf), PCI_FN(bdf));
        d->broken = 1;
    }
    vblk_count++;
}

void vblk_probe_all(void)
{
    pci_for_each(probe_one, NULL);
}

int vblk_queue_reserve(struct vblk_queue *q, uint32_t max_len, unsigned depth)
{
    struct vblk *d = q->dev;
    unsigned segs = (max_len + d->seg_bytes - 1) / d->seg_bytes;
    unsigned per = 2 + MAX(segs, 1u);
    int can_indirect = vpci_has(&d->vp, VIRTIO_F_INDIRECT_DESC);

    if (segs > d->seg_max) {
        kprintf("BLKBENCH-ERROR dev=%d: bs=%u needs %u segments; the device takes "
                "%u of at most %u bytes\n", d->index, max_len, segs, d->seg_max,
                d->seg_bytes);
        return -1;
    }
    q->per_slot = (uint16_t)per;
    q->indirect = depth * per > q->vr.size && can_indirect;
    q->nslots = (uint16_t)(q->indirect ? q->vr.size : q->vr.size / per);
    if (depth > q->nslots) {
        kprintf("BLKBENCH-ERROR dev=%d: iodepth=%u does not fit queue %u (size %u, "
                "%u descriptors per request%s); at most %u\n", d->index, depth,
                q->vr.index, q->vr.size, per,
                can_indirect ? "" : ", no indirect descriptors", q->nslots);
        return -1;
    }
    q->itables = NULL;
    if (q->indirect) {
        q->itables = mem_alloc(sizeof(struct vring_desc) * per * depth, 16);
        if (!q->itables) {
            kprintf("BLKBENCH-ERROR out of memory for indirect descriptors\n");
            return -1;
        }
    }
    return 0;
}

void vblk_submit(struct vblk_queue *q, unsigned slot, uint32_t type,
                 uint64_t offset, void *buf, uint32_t len)
{
    struct vblk_slot *s = &q->slots[slot];
    struct vring_desc *d;
    uint16_t base, n = 0;

    s->hdr.type = type;
    s->hdr.ioprio = 0;
    s->hdr.sector = offset / 512;
    s->status = 0xff;

    /* Indirect tables chain from 0; direct chains from the slot's first desc. */
    if (q->indirect) {
        d = q->itables + (size_t)slot * q->per_slot;
        base = 0;
    } else {
        base = (uint16_t)(slot * q->per_slot);
        d = q->vr.desc + base;
    }
    d[n++] = (struct vring_desc){ (uintptr_t)&s->hdr, sizeof(s->hdr), VRING_DESC_F_NEXT, 0 };
    uint16_t dflags = VRING_DESC_F_NEXT |
                      (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0);
    for (uint32_t off = 0; off < len; off += q->dev->seg_bytes) {
        uint32_t seg = MIN(len - off, q->dev->seg_bytes);
        d[n++] = (struct vring_desc){ (uintptr_t)buf + off, seg, dflags, 0 };
    }
    d[n++] = (struct vring_desc){ (uintptr_t)&s->status, 1, VRING_DESC_F_WRITE, 0 };
    for (uint16_t i = 0; i + 1 < n; i++)
        d[i].next = (uint16_t)(base + i + 1);

    if (q->indirect) {
        q->vr.desc[slot] = (struct vring_desc){
            (uintptr_t)d, (uint32_t)(n * sizeof(*d)), VRING_DESC_F_INDIRECT, 0 };
        vring_push(&q->vr, (uint16_t)slot);
    } else {
        vring_push(&q->vr, base);
    }
}

unsigned vblk_poll(struct vblk_queue *q, vblk_done_fn *done, void *ctx)
{
    uint32_t id, len;
    unsigned n = 0;

    while (vring_pop_used(&q->vr, &id, &len)) {
        unsigned slot = q->indirect ? id : id / q->per_slot;
        if (slot >= q->nslots || (!q->indirect && id % q->per_slot)) {
            if (!q->dev->broken)
                kprintf("BLKBENCH-ERROR dev=%d queue=%u: device returned bad "
                        "descriptor id %u\n", q->dev->index, q->vr.index, id);
            q->dev->broken = 1;
            continue;
        }
        done(ctx, slot, q->slots[slot].status);
        n++;
    }
    if (n)
        vring_quiet(&q->vr);
    return n;
}
