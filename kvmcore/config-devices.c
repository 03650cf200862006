/*
 * The -device drivers spindle-vm knows: the registry, isa-debug-exit, and
 * the storage devices (virtio-blk-pci, virtio-scsi-pci, scsi-hd), parsed and
 * cross-checked here; creating the storage ones is the block layer's
 * integration point.
 */
#include <stdio.h>

#include "dataplane/virtio-blk.h"
#include "kvmcore/config.h"
#include "kvmcore/machine.h"
#include "kvmcore/pc.h"
#include "kvmcore/storage.h"
#include "kvmcore/virtio-pci.h"
#include "util/iothread.h"

#define MAX_DEVICE_TYPES 32
#define VBLK_MAX_QUEUES 1024
#define VBLK_MAX_QUEUE_SIZE 1024

/* ---- The device registry ----------------------------------------------- */

static const struct kvm_dev_type *device_types[MAX_DEVICE_TYPES];
static unsigned nr_device_types;

void kvm_dev_type_register(const struct kvm_dev_type *t)
{
    if (!kvm_dev_type_find(t->name) && nr_device_types < MAX_DEVICE_TYPES) {
        device_types[nr_device_types++] = t;
    }
}

static void register_builtin_types(void);

const struct kvm_dev_type *kvm_dev_type_find(const char *name)
{
    register_builtin_types();
    for (unsigned i = 0; i < nr_device_types; i++) {
        if (!strcmp(device_types[i]->name, name)) {
            return device_types[i];
        }
    }
    return NULL;
}

/* ---- isa-debug-exit ---------------------------------------------------- */

static int debug_exit_parse(struct kvm_opts *props, void **cfg, const char *what,
                            struct err *err)
{
    struct kvm_debug_exit_cfg *c = xzalloc(sizeof(*c));
    uint64_t base = KVM_DEBUG_EXIT_BASE, size = KVM_DEBUG_EXIT_SIZE;
    if (kvm_opts_get_u64(props, "iobase", 0, 0xffff, &base, what, err) < 0 ||
        kvm_opts_get_u64(props, "iosize", 1, 4, &size, what, err) < 0) {
        free(c);
        return -EINVAL;
    }
    if (base + size > 0x10000) {
        err_set(err, "%s: iobase 0x%" PRIx64 " + iosize %" PRIu64 " passes the end of the I/O "
                "space", what, base, size);
        free(c);
        return -EINVAL;
    }
    c->iobase = (uint16_t)base;
    c->iosize = (uint16_t)size;
    *cfg = c;
    return 0;
}

/* Created by the machine itself (it owns the PC devices). */
int kvm_machine_create_debug_exit(struct kvm_machine *m, struct kvm_device_cfg *dev,
                                  struct err *err);

static int debug_exit_create(struct kvm_machine *m, struct kvm_device_cfg *dev, struct err *err)
{
    return kvm_machine_create_debug_exit(m, dev, err);
}

static const struct kvm_dev_type debug_exit_type = {
    .name = "isa-debug-exit",
    .parse = debug_exit_parse,
    .create = debug_exit_create,
    .free_cfg = free,
};

/* ---- virtio-blk-pci ---------------------------------------------------- */

static void vblk_free(void *p)
{
    struct kvm_vblk_cfg *c = p;
    if (!c) {
        return;
    }
    free(c->id);
    free(c->drive);
    free(c->iothread);
    free(c->serial);
    json_decref(c->vq_mapping);
    free(c);
}

/* "4", "0x4", "4.0" or "04.0": a slot on bus 0, function 0. */
static int parse_pci_addr(const char *s, int *slot)
{
    char buf[32];
    pstrcpy(buf, sizeof(buf), s);
    char *dot = strchr(buf, '.');
    if (dot) {
        if (strcmp(dot + 1, "0")) {
            return -EINVAL;
        }
        *dot = '\0';
    }
    char *end;
    errno = 0;
    unsigned long v = strtoul(buf, &end, 16);
    if (errno || end == buf || *end || v < 1 || v > 31) {
        return -EINVAL;
    }
    *slot = (int)v;
    return 0;
}

/* Check the mapping's shape; queue numbers given as text (dotted keys) become integers. */
static int vblk_check_mapping_shape(json_t *map, const char *what, struct err *err)
{
    size_t i;
    json_t *e;
    if (!json_is_array(map) || json_array_size(map) == 0) {
        err_set(err, "%s: iothread-vq-mapping must be a non-empty JSON list of "
                "{\"iothread\": id, \"vqs\": [n, ...]}", what);
        return -EINVAL;
    }
    json_array_foreach(map, i, e) {
        json_t *io = json_object_get(e, "iothread");
        json_t *vqs = json_object_get(e, "vqs");
        if (!json_is_object(e) || !json_is_string(io) ||
            (vqs && !json_is_array(vqs)) || json_object_size(e) != (vqs ? 2u : 1u)) {
            err_set(err, "%s: iothread-vq-mapping entry %zu must be {\"iothread\": id[, "
                    "\"vqs\": [n, ...]]}", what, i);
            return -EINVAL;
        }
        size_t j;
        json_t *v;
        json_array_foreach(vqs, j, v) {
            uint64_t n;
            if (json_is_string(v) && kvm_parse_u64(json_string_value(v), &n) == 0 && n < 65536) {
                json_array_set_new(vqs, j, json_integer((json_int_t)n));
                v = json_array_get(vqs, j);
            }
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                err_set(err, "%s: iothread-vq-mapping entry %zu: vqs holds a bad queue number",
                        what, i);
                return -EINVAL;
            }
        }
    }
    return 0;
}

static int vblk_parse(struct kvm_opts *p, void **cfg, const char *what, struct err *err)
{
    struct kvm_vblk_cfg *c = xzalloc(sizeof(*c));
    uint64_t nq = 0, qs = 256, lbs = 512, pbs = 512;
    bool b;
    const char *v;

    c->pci_slot = -1;
    c->write_cache = true;
    c->discard = true;
    c->write_zeroes = true;
    if (!(v = kvm_opts_get(p, "drive"))) {
        err_set(err, "%s: property 'drive' is required", what);
        goto fail;
    }
    c->drive = xstrdup(v);
    if ((v = kvm_opts_get(p, "id"))) {
        c->id = xstrdup(v);
    }
    if ((v = kvm_opts_get(p, "iothread"))) {
        c->iothread = xstrdup(v);
    }
    if ((v = kvm_opts_get(p, "serial"))) {
        c->serial = xstrdup(v);
    }
    /* A JSON list (JSON -device, or dotted keys ...mapping.0.iothread=), or its text. */
    json_t *map = kvm_opts_get_json(p, "iothread-vq-mapping");
    if (map) {
        if (json_is_string(map)) {
            json_error_t jerr;
            c->vq_mapping = json_loads(json_string_value(map), JSON_REJECT_DUPLICATES, &jerr);
            if (!c->vq_mapping) {
                err_set(err, "%s: iothread-vq-mapping is not valid JSON: %s", what, jerr.text);
                goto fail;
            }
        } else {
            c->vq_mapping = json_deep_copy(map);
        }
        if (vblk_check_mapping_shape(c->vq_mapping, what, err) < 0) {
            goto fail;
        }
        if (c->iothread) {
            err_set(err, "%s: iothread and iothread-vq-mapping cannot both be given", what);
            goto fail;
        }
    }
    if ((v = kvm_opts_get(p, "addr")) && parse_pci_addr(v, &c->pci_slot) < 0) {
        err_set(err, "%s: addr '%s' is not a PCI slot (1-31, function 0) on bus 0", what, v);
        goto fail;
    }
    if ((v = kvm_opts_get(p, "bus")) && strcmp(v, "pcie.0") && strcmp(v, "pci.0")) {
        err_set(err, "%s: bus '%s' does not exist (only pci.0 or pcie.0)", what, v);
        goto fail;
    }
    if (kvm_opts_get_u64(p, "num-queues", 1, VBLK_MAX_QUEUES, &nq, what, err) < 0 ||
        kvm_opts_get_u64(p, "queue-size", 2, VBLK_MAX_QUEUE_SIZE, &qs, what, err) < 0 ||
        kvm_opts_get_size(p, "logical_block_size", &lbs, what, err) < 0 ||
        kvm_opts_get_size(p, "physical_block_size", &pbs, what, err) < 0 ||
        kvm_opts_get_bool(p, "write-cache", &c->write_cache, what, err) < 0 ||
        kvm_opts_get_bool(p, "discard", &c->discard, what, err) < 0 ||
        kvm_opts_get_bool(p, "write-zeroes", &c->write_zeroes, what, err) < 0) {
        goto fail;
    }
    if (!is_power_of_2(qs)) {
        err_set(err, "%s: queue-size %" PRIu64 " is not a power of 2", what, qs);
        goto fail;
    }
    if (!is_power_of_2(lbs) || lbs < 512 || lbs > 32768 || !is_power_of_2(pbs) || pbs < lbs ||
        pbs > 32768) {
        err_set(err, "%s: block sizes must be powers of 2 from 512 to 32768, with "
                "physical_block_size >= logical_block_size", what);
        goto fail;
    }
    /* Properties QEMU has that change nothing here: accepted, checked, ignored. */
    static const char *const bools[] = {
        "disable-legacy", "disable-modern", "ioeventfd", "event_idx", "indirect_desc",
        "config-wce", "request-merging", "seg-max-adjust", "packed", "x-enable-wce-if-config-wce",
        "use-started", "iommu_platform", "ats", "rombar", "multifunction",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bools); i++) {
        if (kvm_opts_get_bool(p, bools[i], &b, what, err) < 0) {
            goto fail;
        }
    }
    if ((v = kvm_opts_get(p, "disable-legacy")) && !strcmp(v, "off")) {
        err_set(err, "%s: only the modern virtio-pci interface exists here (disable-legacy=on)",
                what);
        goto fail;
    }
    uint64_t ignored;
    if (kvm_opts_get_u64(p, "vectors", 0, 2048, &ignored, what, err) < 0 ||
        kvm_opts_get_u64(p, "bootindex", 0, 0xffff, &ignored, what, err) < 0 ||
        kvm_opts_get_u64(p, "max-discard-sectors", 0, UINT32_MAX, &ignored, what, err) < 0 ||
        kvm_opts_get_u64(p, "max-write-zeroes-sectors", 0, UINT32_MAX, &ignored, what, err) < 0) {
        goto fail;
    }
    if ((v = kvm_opts_get(p, "romfile")) && *v) {
        err_set(err, "%s: option ROMs are not supported (romfile=)", what);
        goto fail;
    }
    c->num_queues = (unsigned)nq;
    c->queue_size = (unsigned)qs;
    c->logical_block_size = (uint32_t)lbs;
    c->physical_block_size = (uint32_t)pbs;
    *cfg = c;
    return 0;
fail:
    vblk_free(c);
    return -EINVAL;
}

/* Cross references: the drive exists and is not shared, the iothreads exist, the mapping covers every queue once. */
static int vblk_check(const struct kvm_config *c, struct kvm_device_cfg *d, const char *what,
                      struct err *err)
{
    const struct kvm_vblk_cfg *v = d->cfg;
    if (!kvm_config_has_block(c, v->drive)) {
        err_set(err, "%s: drive '%s' is neither a -drive id nor a -blockdev node-name", what,
                v->drive);
        return -EINVAL;
    }
    if (kvm_config_drive_users(c, v->drive) > 1) {
        err_set(err, "%s: drive '%s' is already used by another device", what, v->drive);
        return -EINVAL;
    }
    if (v->iothread && !kvm_config_has_iothread(c, v->iothread)) {
        err_set(err, "%s: iothread '%s' is not an -object iothread", what, v->iothread);
        return -EINVAL;
    }
    if (!v->vq_mapping) {
        return 0;
    }
    size_t k;
    json_t *e;
    unsigned nq = v->num_queues ? v->num_queues : c->smp;
    uint8_t *seen = xzalloc(nq);
    bool with_vqs = false, without = false;
    int ret = 0;
    json_array_foreach(v->vq_mapping, k, e) {
        const char *id = json_string_value(json_object_get(e, "iothread"));
        if (!kvm_config_has_iothread(c, id)) {
            err_set(err, "%s: iothread-vq-mapping names iothread '%s', which is not an -object "
                    "iothread", what, id);
            ret = -EINVAL;
            break;
        }
        json_t *vqs = json_object_get(e, "vqs");
        if (!vqs) {
            without = true;
            continue;
        }
        with_vqs = true;
        size_t x;
        json_t *q;
        json_array_foreach(vqs, x, q) {
            json_int_t n = json_integer_value(q);
            if (n >= (json_int_t)nq) {
                err_set(err, "%s: iothread-vq-mapping names queue %" JSON_INTEGER_FORMAT
                        " of a device with %u queues", what, n, nq);
                ret = -EINVAL;
                break;
            }
            if (seen[n]++) {
                err_set(err, "%s: iothread-vq-mapping assigns queue %" JSON_INTEGER_FORMAT
                        " twice", what, n);
                ret = -EINVAL;
                break;
            }
        }
        if (ret < 0) {
            break;
        }
    }
    if (ret == 0 && with_vqs && without) {
        err_set(err, "%s: iothread-vq-mapping must give vqs in every entry or in none", what);
        ret = -EINVAL;
    }
    for (unsigned q = 0; ret == 0 && with_vqs && q < nq; q++) {
        if (!seen[q]) {
            err_set(err, "%s: iothread-vq-mapping leaves queue %u without an iothread", what, q);
            ret = -EINVAL;
        }
    }
    free(seen);
    return ret;
}

/* A virtio-blk device in the machine: the transport plus the device. */
struct vblk_dev {
    struct kvm_machine_dev mdev;
    struct vpci *pci;
};

static void vblk_mdev_stop(struct kvm_machine_dev *md)
{
    struct vblk_dev *v = md->opaque;
    vpci_stop(v->pci);
}

static void vblk_mdev_destroy(struct kvm_machine_dev *md)
{
    struct vblk_dev *v = md->opaque;
    vpci_destroy(v->pci);        /* releases the device and its backend reference */
    free(v->mdev.name);
    free(v);
}

static struct aio_context *iothread_ctx_by_id(const char *id)
{
    struct iothread *io = id ? iothread_find(id) : NULL;
    return io ? iothread_ctx(io) : NULL;
}

/*
 * Which loop serves each queue: iothread-vq-mapping (explicit vqs, or
 * round-robin over its iothreads), else the one iothread, else the main loop.
 */
static void vblk_queue_ctxs(const struct kvm_vblk_cfg *c, unsigned nq, struct aio_context **ctx)
{
    for (unsigned q = 0; q < nq; q++) {
        ctx[q] = iothread_ctx_by_id(c->iothread);
    }
    if (!c->vq_mapping) {
        return;
    }
    size_t n = json_array_size(c->vq_mapping), i;
    json_t *e;
    bool explicit = json_object_get(json_array_get(c->vq_mapping, 0), "vqs") != NULL;
    if (!explicit) {
        for (unsigned q = 0; q < nq; q++) {
            json_t *entry = json_array_get(c->vq_mapping, q % n);
            ctx[q] = iothread_ctx_by_id(json_string_value(json_object_get(entry, "iothread")));
        }
        return;
    }
    json_array_foreach(c->vq_mapping, i, e) {
        struct aio_context *io = iothread_ctx_by_id(json_string_value(json_object_get(e,
                                                                                    "iothread")));
        size_t k;
        json_t *vq;
        json_array_foreach(json_object_get(e, "vqs"), k, vq) {
            json_int_t qn = json_integer_value(vq);
            if (qn >= 0 && (unsigned)qn < nq) {
                ctx[qn] = io;
            }
        }
    }
}

/*
 * The device's path as QEMU's query-block reports it ("qdev"): under
 * /machine/peripheral by id, or /machine/peripheral-anon/device[N] for the
 * Nth -device without an id; child names the part that holds the drive.
 */
static const char *qdev_path(const struct kvm_config *c, const struct kvm_device_cfg *dev,
                             const char *child, char *buf, size_t size)
{
    if (dev->id) {
        snprintf(buf, size, "/machine/peripheral/%s/%s", dev->id, child);
        return buf;
    }
    unsigned anon = 0;
    for (unsigned i = 0; i < c->nr_devices && &c->devices[i] != dev; i++) {
        anon += !c->devices[i].id;
    }
    snprintf(buf, size, "/machine/peripheral-anon/device[%u]/%s", anon, child);
    return buf;
}

static int vblk_create(struct kvm_machine *m, struct kvm_device_cfg *dev, struct err *err)
{
    static unsigned count;
    const struct kvm_vblk_cfg *c = dev->cfg;
    char name[64], what[96], qdev[160];
    unsigned nq = c->num_queues ? c->num_queues : m->cfg->smp;

    snprintf(name, sizeof(name), "%s", c->id ? c->id : "");
    if (!name[0]) {
        snprintf(name, sizeof(name), "virtio-blk%u", count);
    }
    count++;
    snprintf(what, sizeof(what), "-device virtio-blk-pci,id=%s", name);
    struct block_backend *blk = kvm_storage_backend(&m->storage, c->drive, what, err);
    if (!blk) {
        return -EINVAL;
    }
    blk_set_dev_name(blk, qdev_path(m->cfg, dev, "virtio-backend", qdev, sizeof(qdev)));
    if (!c->write_cache) {
        blk_set_write_cache(blk, false);
    }
    struct aio_context **ctx = xcalloc(nq, sizeof(*ctx));
    vblk_queue_ctxs(c, nq, ctx);
    struct vblk_config vc = {
        .name = name,
        .blk = blk,
        .num_queues = nq,
        .queue_size = c->queue_size,
        .queue_ctx = ctx,
        .serial = c->serial,
        .logical_block_size = c->logical_block_size,
        .physical_block_size = c->physical_block_size,
        .discard = c->discard,
        .write_zeroes = c->write_zeroes,
        .read_only = blk_node(blk)->read_only,
    };
    struct vblk *b = vblk_new(&vc, err);
    free(ctx);
    blk_unref(blk);                   /* the device holds its own reference */
    if (!b) {
        err_prepend(err, "%s: ", what);
        return -EINVAL;
    }
    struct vblk_dev *v = xzalloc(sizeof(*v));
    v->pci = vpci_create(&m->pci, &m->vm, &m->ram.mem, vblk_virtio_dev(b), c->pci_slot, name,
                         err);
    if (!v->pci) {
        vblk_virtio_dev(b)->ops->release(vblk_virtio_dev(b));
        free(v);
        return -EINVAL;
    }
    v->mdev.name = xstrdup(name);
    v->mdev.stop = vblk_mdev_stop;
    v->mdev.destroy = vblk_mdev_destroy;
    v->mdev.opaque = v;
    kvm_machine_add_dev(m, &v->mdev);
    return 0;
}

static const struct kvm_dev_type vblk_type = {
    .name = "virtio-blk-pci",
    .parse = vblk_parse,
    .check = vblk_check,
    .create = vblk_create,
    .free_cfg = vblk_free,
};

const struct kvm_vblk_cfg *kvm_device_vblk_cfg(const struct kvm_device_cfg *d)
{
    return d->type == &vblk_type ? d->cfg : NULL;
}

/* ---- virtio-scsi-pci and scsi-hd ----------------------------------------- */

static void vscsi_free(void *p)
{
    struct kvm_vscsi_cfg *c = p;
    if (c) {
        free(c->id);
        free(c->iothread);
        free(c);
    }
}

static int vscsi_parse(struct kvm_opts *p, void **cfg, const char *what, struct err *err)
{
    struct kvm_vscsi_cfg *c = xzalloc(sizeof(*c));
    uint64_t nq = 0, qs = 256, cmd_per_lun = 128, max_sectors = 0xffff, ignored;
    const char *v;
    bool b;

    c->pci_slot = -1;
    if ((v = kvm_opts_get(p, "id"))) {
        c->id = xstrdup(v);
    }
    if ((v = kvm_opts_get(p, "iothread"))) {
        c->iothread = xstrdup(v);
    }
    if ((v = kvm_opts_get(p, "addr")) && parse_pci_addr(v, &c->pci_slot) < 0) {
        err_set(err, "%s: addr '%s' is not a PCI slot (1-31, function 0) on bus 0", what, v);
        goto fail;
    }
    if ((v = kvm_opts_get(p, "bus")) && strcmp(v, "pcie.0") && strcmp(v, "pci.0")) {
        err_set(err, "%s: bus '%s' does not exist (only pci.0 or pcie.0)", what, v);
        goto fail;
    }
    if (kvm_opts_get_u64(p, "num_queues", 1, VBLK_MAX_QUEUES, &nq, what, err) < 0 ||
        kvm_opts_get_u64(p, "virtqueue_size", 2, VBLK_MAX_QUEUE_SIZE, &qs, what, err) < 0 ||
        kvm_opts_get_u64(p, "cmd_per_lun", 1, 1024, &cmd_per_lun, what, err) < 0 ||
        kvm_opts_get_u64(p, "max_sectors", 1, 0xffff, &max_sectors, what, err) < 0 ||
        kvm_opts_get_u64(p, "vectors", 0, 2048, &ignored, what, err) < 0) {
        goto fail;
    }
    if (!is_power_of_2(qs)) {
        err_set(err, "%s: virtqueue_size %" PRIu64 " is not a power of 2", what, qs);
        goto fail;
    }
    static const char *const bools[] = {
        "hotplug", "param_change", "seg_max_adjust", "disable-legacy", "disable-modern",
        "ioeventfd", "event_idx", "indirect_desc", "iommu_platform", "packed",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bools); i++) {
        if (kvm_opts_get_bool(p, bools[i], &b, what, err) < 0) {
            goto fail;
        }
    }
    c->num_queues = (unsigned)nq;
    c->queue_size = (unsigned)qs;
    c->cmd_per_lun = (unsigned)cmd_per_lun;
    c->max_sectors = (unsigned)max_sectors;
    *cfg = c;
    return 0;
fail:
    vscsi_free(c);
    return -EINVAL;
}

static int vscsi_check(const struct kvm_config *c, struct kvm_device_cfg *d, const char *what,
                       struct err *err)
{
    const struct kvm_vscsi_cfg *v = d->cfg;
    if (v->iothread && !kvm_config_has_iothread(c, v->iothread)) {
        err_set(err, "%s: iothread '%s' is not an -object iothread", what, v->iothread);
        return -EINVAL;
    }
    return 0;
}

static int not_yet(struct kvm_machine *m, struct kvm_device_cfg *dev, struct err *err)
{
    /*
     * The integration point of the SCSI target: with it in, virtio-scsi-pci
     * builds dataplane/virtio-scsi on a vpci transport and scsi-hd adds a LUN
     * over the block backend of its drive.
     */
    err_set(err, "-device %s: this build has no SCSI target yet, so the device cannot be "
            "created", dev->type->name);
    return -ENOTSUP;
}

static const struct kvm_dev_type vscsi_type = {
    .name = "virtio-scsi-pci",
    .parse = vscsi_parse,
    .check = vscsi_check,
    .create = not_yet,
    .free_cfg = vscsi_free,
};

static void scsi_hd_free(void *p)
{
    struct kvm_scsi_hd_cfg *c = p;
    if (c) {
        free(c->drive);
        free(c->bus);
        free(c->serial);
        free(c);
    }
}

static int scsi_hd_parse(struct kvm_opts *p, void **cfg, const char *what, struct err *err)
{
    struct kvm_scsi_hd_cfg *c = xzalloc(sizeof(*c));
    uint64_t channel = 0, id = 0, lun = 0, lbs = 512, pbs = 512, ignored;
    const char *v;
    bool b;

    if (!(v = kvm_opts_get(p, "drive"))) {
        err_set(err, "%s: property 'drive' is required", what);
        goto fail;
    }
    c->drive = xstrdup(v);
    if ((v = kvm_opts_get(p, "bus"))) {
        size_t len = strlen(v);
        if (len < 3 || strcmp(v + len - 2, ".0")) {
            err_set(err, "%s: bus '%s' is not a SCSI bus (ID.0 of a virtio-scsi-pci)", what, v);
            goto fail;
        }
        c->bus = xstrdup(v);
        c->bus[len - 2] = '\0';
    }
    if ((v = kvm_opts_get(p, "serial"))) {
        c->serial = xstrdup(v);
    }
    if (kvm_opts_get_u64(p, "channel", 0, 0, &channel, what, err) < 0 ||
        kvm_opts_get_u64(p, "scsi-id", 0, 255, &id, what, err) < 0 ||
        kvm_opts_get_u64(p, "lun", 0, 16383, &lun, what, err) < 0 ||
        kvm_opts_get_size(p, "logical_block_size", &lbs, what, err) < 0 ||
        kvm_opts_get_size(p, "physical_block_size", &pbs, what, err) < 0 ||
        kvm_opts_get_u64(p, "rotation_rate", 0, 0xffff, &ignored, what, err) < 0 ||
        kvm_opts_get_u64(p, "bootindex", 0, 0xffff, &ignored, what, err) < 0 ||
        kvm_opts_get_bool(p, "write-cache", &b, what, err) < 0 ||
        kvm_opts_get_bool(p, "dpofua", &b, what, err) < 0 ||
        kvm_opts_get_bool(p, "removable", &b, what, err) < 0) {
        goto fail;
    }
    if (!is_power_of_2(lbs) || lbs < 512 || lbs > 32768 || !is_power_of_2(pbs) || pbs < lbs ||
        pbs > 32768) {
        err_set(err, "%s: block sizes must be powers of 2 from 512 to 32768, with "
                "physical_block_size >= logical_block_size", what);
        goto fail;
    }
    kvm_opts_get(p, "vendor");
    kvm_opts_get(p, "product");
    kvm_opts_get(p, "ver");
    kvm_opts_get(p, "wwn");
    kvm_opts_get(p, "device_id");
    c->scsi_id = (unsigned)id;
    c->lun = (unsigned)lun;
    c->logical_block_size = (uint32_t)lbs;
    c->physical_block_size = (uint32_t)pbs;
    *cfg = c;
    return 0;
fail:
    scsi_hd_free(c);
    return -EINVAL;
}

/* The bus is a virtio-scsi-pci's id (or the only one); the drive exists, unshared; the address is free. */
static int scsi_hd_check(const struct kvm_config *c, struct kvm_device_cfg *d, const char *what,
                         struct err *err)
{
    struct kvm_scsi_hd_cfg *h = d->cfg;
    const struct kvm_device_cfg *ctrl = NULL;
    unsigned controllers = 0;
    for (unsigned i = 0; i < c->nr_devices; i++) {
        const struct kvm_device_cfg *x = &c->devices[i];
        if (x->type != &vscsi_type) {
            continue;
        }
        controllers++;
        if (!h->bus || (x->id && !strcmp(x->id, h->bus))) {
            ctrl = x;
        }
    }
    if (h->bus && !ctrl) {
        err_set(err, "%s: bus '%s.0' is not the bus of a -device virtio-scsi-pci,id=%s", what,
                h->bus, h->bus);
        return -EINVAL;
    }
    if (!h->bus && controllers != 1) {
        err_set(err, "%s: no bus given, and there is %s virtio-scsi-pci to put it on", what,
                controllers ? "more than one" : "no");
        return -EINVAL;
    }
    h->controller = (int)(ctrl - c->devices);
    if (!kvm_config_has_block(c, h->drive)) {
        err_set(err, "%s: drive '%s' is neither a -drive id nor a -blockdev node-name", what,
                h->drive);
        return -EINVAL;
    }
    if (kvm_config_drive_users(c, h->drive) > 1) {
        err_set(err, "%s: drive '%s' is already used by another device", what, h->drive);
        return -EINVAL;
    }
    for (const struct kvm_device_cfg *x = c->devices; x < d; x++) {
        const struct kvm_scsi_hd_cfg *o = x->type == d->type ? x->cfg : NULL;
        if (o && o->controller == h->controller && o->scsi_id == h->scsi_id && o->lun == h->lun) {
            err_set(err, "%s: scsi-id %u lun %u is already taken on that bus", what, h->scsi_id,
                    h->lun);
            return -EINVAL;
        }
    }
    return 0;
}

static const struct kvm_dev_type scsi_hd_type = {
    .name = "scsi-hd",
    .parse = scsi_hd_parse,
    .check = scsi_hd_check,
    .create = not_yet,
    .free_cfg = scsi_hd_free,
};

const struct kvm_vscsi_cfg *kvm_device_vscsi_cfg(const struct kvm_device_cfg *d)
{
    return d->type == &vscsi_type ? d->cfg : NULL;
}

const struct kvm_scsi_hd_cfg *kvm_device_scsi_hd_cfg(const struct kvm_device_cfg *d)
{
    return d->type == &scsi_hd_type ? d->cfg : NULL;
}

/* The drive (or node-name) a device uses, for counting users. */
static const char *drive_of(const struct kvm_device_cfg *d)
{
    if (d->type == &vblk_type) {
        return ((const struct kvm_vblk_cfg *)d->cfg)->drive;
    }
    if (d->type == &scsi_hd_type) {
        return ((const struct kvm_scsi_hd_cfg *)d->cfg)->drive;
    }
    return NULL;
}

unsigned kvm_config_drive_users(const struct kvm_config *c, const char *drive)
{
    unsigned n = 0;
    for (unsigned i = 0; i < c->nr_devices; i++) {
        const char *dr = drive_of(&c->devices[i]);
        n += dr && !strcmp(dr, drive);
    }
    return n;
}

static void register_builtin_types(void)
{
    static bool done;
    if (!done) {
        done = true;
        kvm_dev_type_register(&debug_exit_type);
        kvm_dev_type_register(&vblk_type);
        kvm_dev_type_register(&vscsi_type);
        kvm_dev_type_register(&scsi_hd_type);
    }
}

