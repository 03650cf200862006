/* MSI-X vectors on KVM irqfds; see msix.h. */
#include "kvmcore/msix.h"

#include <unistd.h>

#include "util/log.h"

#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASK   0x4000
#define VEC_CTRL_MASKED  0x1

static uint64_t vec_addr(const struct pci_msix_vector *v)
{
    return v->entry[0] | (uint64_t)v->entry[1] << 32;
}

static bool masked_locked(struct pci_msix *x, unsigned v)
{
    return !x->enabled || x->masked || (x->vec[v].entry[3] & VEC_CTRL_MASKED);
}

bool pci_msix_is_masked(struct pci_msix *x, unsigned v)
{
    pthread_mutex_lock(&x->lock);
    bool m = v >= x->nvec || masked_locked(x, v);
    pthread_mutex_unlock(&x->lock);
    return m;
}

/* Consume whatever a source signalled; true if it had. */
static bool drain(int fd)
{
    uint64_t n;
    return fd >= 0 && read(fd, &n, sizeof(n)) == sizeof(n) && n;
}

static void detach(struct pci_msix *x, struct pci_msix_source *s)
{
    if (s->attached_gsi >= 0) {
        if (x->vm) {
            kvm_vm_irqfd(x->vm, s->fd, (unsigned)s->attached_gsi, false);
        }
        s->attached_gsi = -1;
    }
}

/* The vector's MSI route, created or updated to its current message. */
static int route(struct pci_msix *x, unsigned v)
{
    struct pci_msix_vector *vec = &x->vec[v];
    if (!x->vm) {
        if (vec->gsi < 0) {
            vec->gsi = 1000 + (int)v;      /* any distinct number for tests */
        }
        return vec->gsi;
    }
    if (vec->gsi < 0) {
        int gsi = kvm_vm_msi_route_add(x->vm, vec_addr(vec), vec->entry[2]);
        if (gsi < 0) {
            log_warn("%s: no MSI route for vector %u: %s", x->dev->name, v, strerror(-gsi));
            return gsi;
        }
        vec->gsi = gsi;
    } else {
        kvm_vm_msi_route_set(x->vm, (unsigned)vec->gsi, vec_addr(vec), vec->entry[2]);
    }
    return vec->gsi;
}

static void deliver(struct pci_msix *x, unsigned v)
{
    x->fired++;
    if (x->vm) {
        kvm_vm_signal_msi(x->vm, vec_addr(&x->vec[v]), x->vec[v].entry[2]);
    }
}

/*
 * Bring vector v's sources in line with its mask: attached when usable,
 * else detached with their signals folded into the pending bit.  A vector
 * that becomes usable with its bit set delivers one message.
 */
static void sync_vector(struct pci_msix *x, unsigned v)
{
    bool masked = masked_locked(x, v);
    int gsi = masked ? -1 : route(x, v);
    for (unsigned i = 0; i < x->nsrc; i++) {
        struct pci_msix_source *s = &x->src[i];
        if (s->fd < 0 || s->vector != v) {
            continue;
        }
        if (masked || gsi < 0) {
            detach(x, s);
            if (drain(s->fd)) {
                x->vec[v].pending = true;
            }
        } else if (s->attached_gsi != gsi) {
            detach(x, s);
            /* An irqfd bound to an eventfd that is already signalled fires at once. */
            if (x->vm) {
                int ret = kvm_vm_irqfd(x->vm, s->fd, (unsigned)gsi, true);
                if (ret < 0) {
                    log_warn("%s: cannot attach an irqfd to vector %u: %s", x->dev->name, v,
                             strerror(-ret));
                    continue;
                }
            }
            s->attached_gsi = gsi;
        }
    }
    if (!masked && gsi >= 0 && x->vec[v].pending) {
        x->vec[v].pending = false;
        deliver(x, v);
    }
}

static void sync_all(struct pci_msix *x)
{
    for (unsigned v = 0; v < x->nvec; v++) {
        sync_vector(x, v);
    }
}

int pci_msix_init(struct pci_msix *x, struct pci_dev *d, struct kvm_vm *vm, unsigned nvec,
                  unsigned bar, uint32_t table_off, uint32_t pba_off, unsigned nsrc,
                  struct err *err)
{
    memset(x, 0, sizeof(*x));
    if (nvec == 0 || nvec > PCI_MSIX_MAX_VECTORS || bar > 5 || (table_off & 7) ||
        (pba_off & 7)) {
        err_set(err, "%s: bad MSI-X layout (%u vectors)", d->name, nvec);
        return -EINVAL;
    }
    uint8_t cap = pci_dev_add_cap(d, PCI_CAP_ID_MSIX, 12);
    if (!cap) {
        err_set(err, "%s: no room for the MSI-X capability", d->name);
        return -ENOSPC;
    }
    pthread_mutex_init(&x->lock, NULL);
    x->dev = d;
    x->vm = vm;
    x->cap = cap;
    x->nvec = nvec;
    x->vec = xcalloc(nvec, sizeof(*x->vec));
    for (unsigned v = 0; v < nvec; v++) {
        x->vec[v].entry[3] = VEC_CTRL_MASKED;
        x->vec[v].gsi = -1;
    }
    x->nsrc = nsrc;
    x->src = xcalloc(nsrc ? nsrc : 1, sizeof(*x->src));
    for (unsigned i = 0; i < nsrc; i++) {
        x->src[i].fd = -1;
        x->src[i].vector = PCI_MSIX_NO_VECTOR;
        x->src[i].attached_gsi = -1;
    }
    uint16_t ctrl = (uint16_t)(nvec - 1);
    memcpy(d->config + cap + 2, &ctrl, 2);
    uint32_t table = table_off | bar, pba = pba_off | bar;
    memcpy(d->config + cap + 4, &table, 4);
    memcpy(d->config + cap + 8, &pba, 4);
    d->wmask[cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASK) >> 8;
    return 0;
}

void pci_msix_cleanup(struct pci_msix *x)
{
    if (!x->vec) {
        return;
    }
    for (unsigned i = 0; i < x->nsrc; i++) {
        detach(x, &x->src[i]);
    }
    for (unsigned v = 0; v < x->nvec; v++) {
        if (x->vec[v].gsi >= 0 && x->vm) {
            kvm_vm_msi_route_del(x->vm, (unsigned)x->vec[v].gsi);
        }
    }
    free(x->vec);
    free(x->src);
    x->vec = NULL;
    x->src = NULL;
    pthread_mutex_destroy(&x->lock);
}

void pci_msix_bind(struct pci_msix *x, unsigned idx, int fd, uint16_t vector)
{
    if (idx >= x->nsrc) {
        return;
    }
    pthread_mutex_lock(&x->lock);
    struct pci_msix_source *s = &x->src[idx];
    detach(x, s);
    uint16_t old = s->vector;
    s->fd = fd;
    s->vector = (fd >= 0 && vector < x->nvec) ? vector : PCI_MSIX_NO_VECTOR;
    if (old < x->nvec) {
        sync_vector(x, old);
    }
    if (s->vector < x->nvec) {
        sync_vector(x, s->vector);
    }
    pthread_mutex_unlock(&x->lock);
}

uint64_t pci_msix_table_read(struct pci_msix *x, uint64_t off, unsigned size)
{
    uint64_t v = 0;
    if ((size != 4 && size != 8) || (off & (size - 1)) || off >= (uint64_t)x->nvec * 16) {
        return 0;
    }
    pthread_mutex_lock(&x->lock);
    const struct pci_msix_vector *vec = &x->vec[off / 16];
    unsigned word = (off % 16) / 4;
    v = vec->entry[word];
    if (size == 8) {
        v |= (uint64_t)vec->entry[word + 1] << 32;
    }
    pthread_mutex_unlock(&x->lock);
    return v;
}

void pci_msix_table_write(struct pci_msix *x, uint64_t off, uint64_t val, unsigned size)
{
    if ((size != 4 && size != 8) || (off & (size - 1)) || off >= (uint64_t)x->nvec * 16) {
        return;
    }
    pthread_mutex_lock(&x->lock);
    unsigned v = (unsigned)(off / 16);
    struct pci_msix_vector *vec = &x->vec[v];
    unsigned word = (off % 16) / 4;
    vec->entry[word] = (uint32_t)val;
    if (size == 8) {
        vec->entry[word + 1] = (uint32_t)(val >> 32);
    }
    vec->entry[3] &= VEC_CTRL_MASKED;    /* the other control bits are reserved */
    /* A new message on a live route, or a mask change: resync. */
    if (vec->gsi >= 0 && !masked_locked(x, v) && x->vm) {
        kvm_vm_msi_route_set(x->vm, (unsigned)vec->gsi, vec_addr(vec), vec->entry[2]);
    }
    sync_vector(x, v);
    pthread_mutex_unlock(&x->lock);
}

uint64_t pci_msix_pba_read(struct pci_msix *x, uint64_t off, unsigned size)
{
    uint64_t v = 0;
    if ((size != 4 && size != 8) || (off & (size - 1)) || off >= pci_msix_pba_size(x->nvec)) {
        return 0;
    }
    pthread_mutex_lock(&x->lock);
    /* Fold in what masked sources signalled since the last look. */
    for (unsigned i = 0; i < x->nsrc; i++) {
        struct pci_msix_source *s = &x->src[i];
        if (s->fd >= 0 && s->vector < x->nvec && s->attached_gsi < 0 && drain(s->fd)) {
            x->vec[s->vector].pending = true;
        }
    }
    unsigned first = (unsigned)off * 8;
    for (unsigned b = 0; b < size * 8 && first + b < x->nvec; b++) {
        if (x->vec[first + b].pending) {
            v |= 1ULL << b;
        }
    }
    pthread_mutex_unlock(&x->lock);
    return v;
}

void pci_msix_config_written(struct pci_msix *x, uint32_t off, unsigned size)
{
    if (!ranges_overlap(off, size, x->cap + 2u, 2)) {
        return;
    }
    pthread_mutex_lock(&x->lock);
    uint16_t ctrl;
    memcpy(&ctrl, x->dev->config + x->cap + 2, 2);
    bool enabled = ctrl & MSIX_CTRL_ENABLE, masked = ctrl & MSIX_CTRL_MASK;
    if (enabled != x->enabled || masked != x->masked) {
        x->enabled = enabled;
        x->masked = masked;
        sync_all(x);
    }
    pthread_mutex_unlock(&x->lock);
}

void pci_msix_reset(struct pci_msix *x)
{
    pthread_mutex_lock(&x->lock);
    x->enabled = false;
    x->masked = false;
    uint16_t ctrl = (uint16_t)(x->nvec - 1);
    memcpy(x->dev->config + x->cap + 2, &ctrl, 2);
    for (unsigned v = 0; v < x->nvec; v++) {
        x->vec[v].entry[0] = x->vec[v].entry[1] = x->vec[v].entry[2] = 0;
        x->vec[v].entry[3] = VEC_CTRL_MASKED;
        x->vec[v].pending = false;
    }
    sync_all(x);
    for (unsigned v = 0; v < x->nvec; v++) {
        x->vec[v].pending = false;
    }
    pthread_mutex_unlock(&x->lock);
}
