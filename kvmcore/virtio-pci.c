/* The virtio-pci modern transport; see virtio-pci.h. */
#include "kvmcore/virtio-pci.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "util/log.h"

#define VIRTIO_PCI_VENDOR   0x1af4
#define VIRTIO_PCI_DEV_BASE 0x1040

/* virtio_pci_cap.cfg_type */
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR    3
#define CAP_DEVICE 4
#define CAP_PCI    5

#define CAP_LEN       16
#define CAP_NOTIFY_LEN 20
#define CAP_PCI_LEN   20
#define CAP_BAR_OFF   4
#define CAP_OFFSET_OFF 8
#define CAP_LENGTH_OFF 12
#define CAP_DATA_OFF  16

#define NEEDS_RESET VIRTIO_STATUS_DEVICE_NEEDS_RESET

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

uint64_t vpci_caps_bar_size(unsigned nq)
{
    uint64_t need = VPCI_NOTIFY_OFF + ALIGN_UP((uint64_t)nq * VPCI_NOTIFY_MULT, 4096);
    return pow2_ceil(MAX(need, 16 * KiB));
}

static unsigned nvectors(const struct vpci *p)
{
    return p->vdev->num_queues + 1u;
}

static struct virtio_queue_setup *selected(struct vpci *p)
{
    return p->queue_select < p->vdev->num_queues ? &p->vdev->queues[p->queue_select] : NULL;
}

static void signal_fd(int fd)
{
    uint64_t one = 1;
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        log_debug("virtio-pci: eventfd write failed: %s", strerror(errno));
    }
}

static void drain_fd(int fd)
{
    uint64_t n;
    if (fd >= 0 && read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN) {
        log_debug("virtio-pci: eventfd read failed: %s", strerror(errno));
    }
}

/* ---- Device-side calls (any thread, no lock) ---------------------------- */

static void config_changed(struct virtio_dev *d)
{
    struct vpci *p = d->transport;
    atomic_fetch_add(&p->config_generation, 1);
    atomic_fetch_or(&p->isr, 2);
    signal_fd(p->config_fd);
}

static void needs_reset(struct virtio_dev *d)
{
    struct vpci *p = d->transport;
    log_warn("%s: the device needs a reset (DEVICE_NEEDS_RESET)", p->pci.name);
    atomic_fetch_or(&p->status, NEEDS_RESET);
    d->status |= NEEDS_RESET;
    config_changed(d);
}

/* ---- ioeventfds --------------------------------------------------------- */

static void bind_notify(struct vpci *p, uint64_t base, bool assign)
{
    if (!p->vm || p->no_ioeventfd) {
        return;
    }
    for (unsigned q = 0; q < p->vdev->num_queues; q++) {
        uint64_t addr = base + VPCI_NOTIFY_OFF + (uint64_t)q * VPCI_NOTIFY_MULT;
        int ret = kvm_vm_ioeventfd(p->vm, p->vdev->queues[q].kick_fd, addr, p->ioeventfd_len,
                                   true, assign);
        if (ret < 0) {
            log_warn("%s: cannot %s the ioeventfd of queue %u at 0x%" PRIx64 ": %s; kicks go "
                     "through user space", p->pci.name, assign ? "bind" : "unbind", q, addr,
                     strerror(-ret));
        }
    }
}

static void bar_mapped(struct pci_dev *d, unsigned bar, uint64_t addr, bool mapped)
{
    struct vpci *p = d->opaque;
    if (bar != VPCI_BAR_CAPS) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    if (p->notify_mapped) {
        bind_notify(p, p->notify_base, false);
        p->notify_mapped = false;
    }
    if (mapped) {
        bind_notify(p, addr, true);
        p->notify_mapped = true;
        p->notify_base = addr;
    }
    pthread_mutex_unlock(&p->lock);
}

/* ---- Reset and status --------------------------------------------------- */

static void reset_locked(struct vpci *p)
{
    struct virtio_dev *vd = p->vdev;
    if (p->started) {
        vd->ops->stop(vd);
        p->started = false;
    }
    for (unsigned q = 0; q < vd->num_queues; q++) {
        struct virtio_queue_setup *qs = &vd->queues[q];
        qs->size = vd->ops->max_queue_size;
        qs->enabled = false;
        qs->desc = qs->avail = qs->used = 0;
        qs->avail_base = 0;
        qs->vector = PCI_MSIX_NO_VECTOR;
        pci_msix_bind(&p->msix, q, qs->call_fd, PCI_MSIX_NO_VECTOR);
        drain_fd(qs->kick_fd);
        drain_fd(qs->call_fd);
    }
    p->config_vector = PCI_MSIX_NO_VECTOR;
    pci_msix_bind(&p->msix, vd->num_queues, p->config_fd, PCI_MSIX_NO_VECTOR);
    drain_fd(p->config_fd);
    p->dfselect = p->gfselect = 0;
    p->driver_features = 0;
    p->queue_select = 0;
    vd->guest_features = 0;
    vd->status = 0;
    atomic_store(&p->isr, 0);
    atomic_store(&p->status, 0);
}

static bool features_ok(struct vpci *p)
{
    struct virtio_dev *vd = p->vdev;
    uint64_t offered = vd->ops->features(vd);
    uint64_t f = p->driver_features;
    if ((f & ~offered) || !(f & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
        log_debug("%s: driver features 0x%" PRIx64 " refused (offered 0x%" PRIx64 ")",
                  p->pci.name, f, offered);
        return false;
    }
    if (vd->ops->set_features && vd->ops->set_features(vd, f) < 0) {
        return false;
    }
    vd->guest_features = f;
    return true;
}

static void write_status(struct vpci *p, uint8_t val)
{
    struct virtio_dev *vd = p->vdev;
    if (val == 0) {
        reset_locked(p);
        return;
    }
    uint8_t old = atomic_load(&p->status);
    uint8_t now = (uint8_t)((val & ~NEEDS_RESET) | (old & NEEDS_RESET));
    if ((now & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK) &&
        !features_ok(p)) {
        now &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
    }
    if ((now & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK) && !p->started) {
        if (!(now & VIRTIO_STATUS_FEATURES_OK)) {
            log_debug("%s: DRIVER_OK without FEATURES_OK", p->pci.name);
            now |= NEEDS_RESET;
        } else {
            vd->status = now;
            int ret = vd->ops->start(vd);
            if (ret < 0) {
                log_warn("%s: the device did not start: %s", p->pci.name, strerror(-ret));
                now |= NEEDS_RESET;
            } else {
                p->started = true;
            }
        }
    }
    bool raised = (now & NEEDS_RESET) && !(old & NEEDS_RESET);
    /* Keep a NEEDS_RESET the device raised meanwhile (it does not take the lock). */
    uint8_t cur = old;
    while (!atomic_compare_exchange_weak(&p->status, &cur, (uint8_t)(now | (cur & NEEDS_RESET)))) {
    }
    now |= cur & NEEDS_RESET;
    vd->status = now;
    if (raised && !(cur & NEEDS_RESET)) {
        config_changed(vd);
    }
}

/* ---- Common configuration ------------------------------------------------ */

static uint64_t common_read(struct vpci *p, uint64_t off, unsigned size)
{
    struct virtio_dev *vd = p->vdev;
    uint8_t c[VPCI_COMMON_SIZE];
    uint64_t v = 0;

    if (off >= VPCI_COMMON_SIZE || size > VPCI_COMMON_SIZE - off) {
        return 0;
    }
    memset(c, 0, sizeof(c));
    uint64_t features = vd->ops->features(vd);
    uint32_t df = p->dfselect < 2 ? (uint32_t)(features >> (32 * p->dfselect)) : 0;
    uint32_t gf = p->gfselect < 2 ? (uint32_t)(p->driver_features >> (32 * p->gfselect)) : 0;
    put32(c + VPCI_DFSELECT, p->dfselect);
    put32(c + VPCI_DF, df);
    put32(c + VPCI_GFSELECT, p->gfselect);
    put32(c + VPCI_GF, gf);
    memcpy(c + VPCI_MSIX_CONFIG, &p->config_vector, 2);
    memcpy(c + VPCI_NUM_QUEUES, &vd->num_queues, 2);
    c[VPCI_STATUS] = atomic_load(&p->status);
    c[VPCI_CFG_GENERATION] = atomic_load(&p->config_generation);
    memcpy(c + VPCI_Q_SELECT, &p->queue_select, 2);
    struct virtio_queue_setup *q = selected(p);
    if (q) {
        uint16_t en = q->enabled, noff = p->queue_select;
        memcpy(c + VPCI_Q_SIZE, &q->size, 2);
        memcpy(c + VPCI_Q_MSIX, &q->vector, 2);
        memcpy(c + VPCI_Q_ENABLE, &en, 2);
        memcpy(c + VPCI_Q_NOFF, &noff, 2);
        memcpy(c + VPCI_Q_DESC, &q->desc, 8);
        memcpy(c + VPCI_Q_AVAIL, &q->avail, 8);
        memcpy(c + VPCI_Q_USED, &q->used, 8);
        memcpy(c + VPCI_Q_NOTIF_DATA, &noff, 2);
    }
    memcpy(&v, c + off, size);
    return v;
}

/* Set the half (or whole) of a 64-bit queue address a write covers. */
static void write_addr(uint64_t *field, uint64_t rel, uint64_t val, unsigned size)
{
    if (size == 8 && rel == 0) {
        *field = val;
    } else if (size == 4 && rel == 0) {
        *field = (*field & ~0xffffffffULL) | (uint32_t)val;
    } else if (size == 4 && rel == 4) {
        *field = (*field & 0xffffffffULL) | (uint64_t)(uint32_t)val << 32;
    }
}

static void common_write(struct vpci *p, uint64_t off, uint64_t val, unsigned size)
{
    struct virtio_dev *vd = p->vdev;
    struct virtio_queue_setup *q = selected(p);
    bool live = atomic_load(&p->status) & VIRTIO_STATUS_DRIVER_OK;
    bool frozen = !q || q->enabled || live;

    switch (off) {
    case VPCI_DFSELECT:
        if (size == 4) {
            p->dfselect = (uint32_t)val;
        }
        return;
    case VPCI_GFSELECT:
        if (size == 4) {
            p->gfselect = (uint32_t)val;
        }
        return;
    case VPCI_GF:
        if (size == 4 && p->gfselect < 2 &&
            !(atomic_load(&p->status) & VIRTIO_STATUS_FEATURES_OK)) {
            unsigned shift = 32 * p->gfselect;
            p->driver_features = (p->driver_features & ~(0xffffffffULL << shift)) |
                                 ((uint64_t)(uint32_t)val << shift);
        }
        return;
    case VPCI_MSIX_CONFIG:
        if (size == 2) {
            p->config_vector = val < nvectors(p) ? (uint16_t)val : PCI_MSIX_NO_VECTOR;
            pci_msix_bind(&p->msix, vd->num_queues, p->config_fd, p->config_vector);
        }
        return;
    case VPCI_STATUS:
        if (size == 1) {
            write_status(p, (uint8_t)val);
        }
        return;
    case VPCI_Q_SELECT:
        if (size == 2) {
            p->queue_select = (uint16_t)val;
        }
        return;
    case VPCI_Q_SIZE:
        if (size == 2 && !frozen && val >= 1 && val <= vd->ops->max_queue_size) {
            q->size = (uint16_t)val;
        }
        return;
    case VPCI_Q_MSIX:
        if (size == 2 && q) {
            q->vector = val < nvectors(p) ? (uint16_t)val : PCI_MSIX_NO_VECTOR;
            pci_msix_bind(&p->msix, p->queue_select, q->call_fd, q->vector);
        }
        return;
    case VPCI_Q_ENABLE:
        /* Only 1 means anything; a queue is disabled by a reset. */
        if (size == 2 && q && !live && val == 1) {
            q->enabled = true;
        }
        return;
    default:
        break;
    }
    if (frozen) {
        return;
    }
    if (off >= VPCI_Q_DESC && off < VPCI_Q_DESC + 8) {
        write_addr(&q->desc, off - VPCI_Q_DESC, val, size);
    } else if (off >= VPCI_Q_AVAIL && off < VPCI_Q_AVAIL + 8) {
        write_addr(&q->avail, off - VPCI_Q_AVAIL, val, size);
    } else if (off >= VPCI_Q_USED && off < VPCI_Q_USED + 8) {
        write_addr(&q->used, off - VPCI_Q_USED, val, size);
    }
}

/* ---- BAR 4 --------------------------------------------------------------- */

static uint64_t caps_read(void *opaque, uint64_t off, unsigned size)
{
    struct vpci *p = opaque;
    struct virtio_dev *vd = p->vdev;
    uint64_t v = 0;

    if (off < VPCI_ISR_OFF) {
        pthread_mutex_lock(&p->lock);
        v = common_read(p, off - VPCI_COMMON_OFF, size);
        pthread_mutex_unlock(&p->lock);
    } else if (off < VPCI_DEVICE_OFF) {
        /* Reading the ISR clears it. */
        v = off == VPCI_ISR_OFF ? atomic_exchange(&p->isr, 0) : 0;
    } else if (off < VPCI_NOTIFY_OFF) {
        uint64_t rel = off - VPCI_DEVICE_OFF;
        if (rel < vd->ops->config_size && size <= vd->ops->config_size - rel) {
            pthread_mutex_lock(&p->lock);
            vd->ops->read_config(vd, (uint32_t)rel, &v, size);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return v;
}

static void caps_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct vpci *p = opaque;
    struct virtio_dev *vd = p->vdev;

    if (off < VPCI_ISR_OFF) {
        pthread_mutex_lock(&p->lock);
        common_write(p, off - VPCI_COMMON_OFF, val, size);
        pthread_mutex_unlock(&p->lock);
    } else if (off < VPCI_DEVICE_OFF) {
        /* The ISR is read-only. */
    } else if (off < VPCI_NOTIFY_OFF) {
        uint64_t rel = off - VPCI_DEVICE_OFF;
        if (vd->ops->write_config && rel < vd->ops->config_size &&
            size <= vd->ops->config_size - rel) {
            pthread_mutex_lock(&p->lock);
            vd->ops->write_config(vd, (uint32_t)rel, &val, size);
            pthread_mutex_unlock(&p->lock);
        }
    } else {
        /* A kick that no ioeventfd caught (none bound, or an odd access). */
        uint64_t q = (off - VPCI_NOTIFY_OFF) / VPCI_NOTIFY_MULT;
        if (q < vd->num_queues) {
            atomic_fetch_add(&p->user_kicks, 1);
            signal_fd(vd->queues[q].kick_fd);
        }
    }
}

const struct kvm_bus_ops vpci_caps_ops = { .read = caps_read, .write = caps_write };

/* ---- BAR 1: MSI-X ------------------------------------------------------- */

static uint64_t msix_bar_read(void *opaque, uint64_t off, unsigned size)
{
    struct vpci *p = opaque;
    uint32_t tsize = pci_msix_table_size(nvectors(p));
    uint32_t pba = ALIGN_UP(tsize, 2048u);
    if (off < tsize) {
        return pci_msix_table_read(&p->msix, off, size);
    }
    if (off >= pba) {
        return pci_msix_pba_read(&p->msix, off - pba, size);
    }
    return 0;
}

static void msix_bar_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    struct vpci *p = opaque;
    if (off < pci_msix_table_size(nvectors(p))) {
        pci_msix_table_write(&p->msix, off, val, size);
    }
}

const struct kvm_bus_ops vpci_msix_ops = { .read = msix_bar_read, .write = msix_bar_write };

/* ---- Config space hooks ------------------------------------------------- */

/* The PCI configuration access capability: a window onto a BAR. */
static bool cfg_window(struct vpci *p, uint32_t *bar, uint32_t *off, uint32_t *len)
{
    const uint8_t *c = p->pci.config + p->pci_cfg_cap;
    *bar = c[CAP_BAR_OFF];
    memcpy(off, c + CAP_OFFSET_OFF, 4);
    memcpy(len, c + CAP_LENGTH_OFF, 4);
    return (*len == 1 || *len == 2 || *len == 4) && (*off & (*len - 1)) == 0 &&
           (*bar == VPCI_BAR_CAPS || *bar == VPCI_BAR_MSIX);
}

static bool config_read(struct pci_dev *d, uint32_t off, unsigned size, uint32_t *val)
{
    struct vpci *p = d->opaque;
    uint32_t data = p->pci_cfg_cap + CAP_DATA_OFF, bar, boff, len;
    if (!p->pci_cfg_cap || !ranges_overlap(off, size, data, 4)) {
        return false;
    }
    uint64_t v = 0;
    if (cfg_window(p, &bar, &boff, &len)) {
        v = bar == VPCI_BAR_CAPS ? caps_read(p, boff, len) : msix_bar_read(p, boff, len);
    }
    uint8_t bytes[4];
    memcpy(bytes, &v, 4);
    memcpy(d->config + data, bytes, 4);
    memcpy(val, d->config + off, size);
    return true;
}

static void config_written(struct pci_dev *d, uint32_t off, unsigned size)
{
    struct vpci *p = d->opaque;
    uint32_t data = p->pci_cfg_cap + CAP_DATA_OFF, bar, boff, len;
    pci_msix_config_written(&p->msix, off, size);
    if (p->pci_cfg_cap && ranges_overlap(off, size, data, 4) && cfg_window(p, &bar, &boff, &len)) {
        uint32_t v;
        memcpy(&v, d->config + data, 4);
        if (bar == VPCI_BAR_CAPS) {
            caps_write(p, boff, v, len);
        } else {
            msix_bar_write(p, boff, v, len);
        }
    }
}

/* A machine reset: the device as after a driver's reset, MSI-X off and masked. */
static void pci_reset(struct pci_dev *d)
{
    struct vpci *p = d->opaque;
    pthread_mutex_lock(&p->lock);
    reset_locked(p);
    pthread_mutex_unlock(&p->lock);
    pci_msix_reset(&p->msix);
}

static const struct pci_dev_ops vpci_pci_ops = {
    .config_written = config_written,
    .bar_mapped = bar_mapped,
    .config_read = config_read,
    .reset = pci_reset,
};

/* ---- Creation ------------------------------------------------------------ */

static void add_vcap(struct vpci *p, uint8_t type, uint32_t offset, uint32_t length,
                     uint8_t caplen)
{
    uint8_t cap = pci_dev_add_cap(&p->pci, PCI_CAP_ID_VNDR, caplen);
    uint8_t *c = p->pci.config + cap;
    c[2] = caplen;
    c[3] = type;
    c[CAP_BAR_OFF] = type == CAP_PCI ? 0 : VPCI_BAR_CAPS;
    put32(c + CAP_OFFSET_OFF, offset);
    put32(c + CAP_LENGTH_OFF, length);
    if (type == CAP_NOTIFY) {
        put32(c + CAP_DATA_OFF, VPCI_NOTIFY_MULT);
    }
    if (type == CAP_PCI) {
        /* bar, offset, length and the data window are the driver's to write. */
        p->pci_cfg_cap = cap;
        p->pci.wmask[cap + CAP_BAR_OFF] = 0xff;
        memset(p->pci.wmask + cap + CAP_OFFSET_OFF, 0xff, 12);
    }
}

static uint32_t class_of(uint16_t device_id)
{
    switch (device_id) {
    case VIRTIO_ID_BLOCK:
    case VIRTIO_ID_SCSI:
        return 0x010000;      /* mass storage, SCSI */
    case VIRTIO_ID_NET:
        return 0x020000;
    default:
        return 0xff0000;
    }
}

struct vpci *vpci_create(struct pci_host *host, struct kvm_vm *vm, struct guest_mem *mem,
                         struct virtio_dev *vdev, int slot, const char *name, struct err *err)
{
    const struct virtio_dev_ops *ops = vdev->ops;
    unsigned nq = ops->max_queues;
    int ret;

    if (nq == 0 || nq > VPCI_MAX_QUEUES || ops->max_queue_size == 0 ||
        ops->max_queue_size > VIRTIO_QUEUE_SIZE_MAX || ops->config_size > 0x1000 ||
        !ops->features || !ops->read_config || !ops->start || !ops->stop) {
        err_set(err, "%s: the %s device is malformed for virtio-pci", name, ops->name);
        return NULL;
    }
    struct vpci *p = xzalloc(sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    p->vdev = vdev;
    p->vm = vm;
    p->config_fd = -1;
    p->ioeventfd_len = vm && vm->cap_ioeventfd_any_length ? 0 : 2;
    p->config_vector = PCI_MSIX_NO_VECTOR;
    vdev->mem = mem;
    vdev->num_queues = (uint16_t)nq;
    vdev->queues = xcalloc(nq, sizeof(*vdev->queues));
    vdev->transport = p;
    vdev->transport_needs_reset = needs_reset;
    vdev->transport_config_changed = config_changed;
    for (unsigned q = 0; q < nq; q++) {
        vdev->queues[q].kick_fd = vdev->queues[q].call_fd = -1;
    }
    for (unsigned q = 0; q < nq; q++) {
        struct virtio_queue_setup *qs = &vdev->queues[q];
        qs->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        qs->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        qs->size = ops->max_queue_size;
        qs->vector = PCI_MSIX_NO_VECTOR;
        if (qs->kick_fd < 0 || qs->call_fd < 0) {
            err_set_errno(err, -errno, "%s: cannot create eventfds", name);
            goto fail;
        }
    }
    p->config_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->config_fd < 0) {
        err_set_errno(err, -errno, "%s: cannot create an eventfd", name);
        goto fail;
    }

    pci_dev_init(&p->pci, name, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEV_BASE + ops->device_id),
                 class_of(ops->device_id), VIRTIO_PCI_VENDOR, 0x1100, &vpci_pci_ops, p);
    unsigned nvec = nq + 1;
    uint32_t tsize = pci_msix_table_size(nvec);
    uint32_t pba = ALIGN_UP(tsize, 2048u);
    uint64_t msix_bar = pow2_ceil(MAX(pba + pci_msix_pba_size(nvec), 4096u));
    ret = pci_dev_add_bar(&p->pci, VPCI_BAR_MSIX, msix_bar, false, false, &vpci_msix_ops, p, err);
    if (ret == 0) {
        ret = pci_dev_add_bar(&p->pci, VPCI_BAR_CAPS, vpci_caps_bar_size(nq), true, true,
                              &vpci_caps_ops, p, err);
    }
    if (ret == 0) {
        ret = pci_msix_init(&p->msix, &p->pci, vm, nvec, VPCI_BAR_MSIX, 0, pba, nvec, err);
    }
    if (ret < 0) {
        goto fail;
    }
    add_vcap(p, CAP_COMMON, VPCI_COMMON_OFF, VPCI_COMMON_SIZE, CAP_LEN);
    add_vcap(p, CAP_NOTIFY, VPCI_NOTIFY_OFF, nq * VPCI_NOTIFY_MULT, CAP_NOTIFY_LEN);
    add_vcap(p, CAP_ISR, VPCI_ISR_OFF, 1, CAP_LEN);
    if (ops->config_size) {
        add_vcap(p, CAP_DEVICE, VPCI_DEVICE_OFF, ops->config_size, CAP_LEN);
    }
    add_vcap(p, CAP_PCI, 0, 0, CAP_PCI_LEN);
    for (unsigned q = 0; q < nq; q++) {
        pci_msix_bind(&p->msix, q, vdev->queues[q].call_fd, PCI_MSIX_NO_VECTOR);
    }
    pci_msix_bind(&p->msix, nq, p->config_fd, PCI_MSIX_NO_VECTOR);
    if (host && pci_host_add_dev(host, &p->pci, slot, err) < 0) {
        goto fail;
    }
    return p;

fail:
    /* Nothing was started or bound to KVM yet: close and free. */
    if (p->msix.vec) {
        pci_msix_cleanup(&p->msix);
    }
    for (unsigned q = 0; q < nq; q++) {
        if (vdev->queues[q].kick_fd >= 0) {
            close(vdev->queues[q].kick_fd);
        }
        if (vdev->queues[q].call_fd >= 0) {
            close(vdev->queues[q].call_fd);
        }
    }
    if (p->config_fd >= 0) {
        close(p->config_fd);
    }
    free(vdev->queues);
    vdev->queues = NULL;
    vdev->transport = NULL;
    pthread_mutex_destroy(&p->lock);
    free(p);
    return NULL;
}

void vpci_stop(struct vpci *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->started) {
        p->vdev->ops->stop(p->vdev);
        p->started = false;
    }
    pthread_mutex_unlock(&p->lock);
}

void vpci_destroy(struct vpci *p)
{
    if (!p) {
        return;
    }
    struct virtio_dev *vd = p->vdev;
    vpci_stop(p);
    pthread_mutex_lock(&p->lock);
    if (p->notify_mapped) {
        bind_notify(p, p->notify_base, false);
        p->notify_mapped = false;
    }
    pthread_mutex_unlock(&p->lock);
    pci_msix_cleanup(&p->msix);
    for (unsigned q = 0; q < vd->num_queues; q++) {
        close(vd->queues[q].kick_fd);
        close(vd->queues[q].call_fd);
    }
    close(p->config_fd);
    free(vd->queues);
    vd->queues = NULL;
    vd->transport = NULL;
    pthread_mutex_destroy(&p->lock);
    if (vd->ops->release) {
        vd->ops->release(vd);
    }
    free(p);
}
