/* spindle-vm's command line; see config.h. */
#include "kvmcore/config.h"

#include <stdio.h>

#include "kvmcore/ram.h"
#include "util/opts.h"

#define MAX_SMP 254

/* ---- Options ----------------------------------------------------------- */

static int parse_machine(struct kvm_config *c, const char *arg, struct err *err)
{
    struct kvm_opts o;
    const char *what = "-machine";
    int ret = kvm_opts_parse(&o, arg, "type", what, err);
    if (ret < 0) {
        return ret;
    }
    const char *type = kvm_opts_get(&o, "type");
    const char *accel = kvm_opts_get(&o, "accel");
    const char *irqchip = kvm_opts_get(&o, "kernel-irqchip");
    bool b;
    ret = -EINVAL;
    if (type) {
        static const char *const ok[] = { "q35", "pc", "microvm", "none" };
        bool found = false;
        for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
            found |= !strcmp(type, ok[i]);
        }
        found |= !strncmp(type, "pc-q35-", 7) || !strncmp(type, "pc-i440fx-", 10);
        if (!found) {
            err_set(err, "-machine: machine type '%s' is not supported (q35, pc or microvm; "
                    "spindle-vm builds one PCI machine for all of them)", type);
            goto out;
        }
        free(c->machine_type);
        c->machine_type = xstrdup(type);
    }
    if (accel && strcmp(accel, "kvm")) {
        err_set(err, "-machine: accel=%s is not supported; spindle-vm runs on KVM only", accel);
        goto out;
    }
    if (irqchip && strcmp(irqchip, "on")) {
        err_set(err, "-machine: kernel-irqchip=%s is not supported (only on)", irqchip);
        goto out;
    }
    static const char *const bools[] = { "usb", "vmport", "smm", "dump-guest-core", "mem-merge",
                                         "graphics", "hpet", "sata", "pic", "pit", "rtc",
                                         "isa-serial", "acpi" };
    for (size_t i = 0; i < ARRAY_SIZE(bools); i++) {
        if (kvm_opts_get_bool(&o, bools[i], &b, what, err) < 0) {
            goto out;
        }
    }
    ret = kvm_opts_check_unused(&o, what, err);
out:
    kvm_opts_free(&o);
    return ret;
}

static int parse_memory(struct kvm_config *c, const char *arg, struct err *err)
{
    struct kvm_opts o;
    int ret = kvm_opts_parse(&o, arg, "size", "-m", err);
    if (ret < 0) {
        return ret;
    }
    const char *size = kvm_opts_get(&o, "size");
    ret = -EINVAL;
    if (kvm_opts_get(&o, "maxmem") || kvm_opts_get(&o, "slots")) {
        err_set(err, "-m: memory hotplug (slots, maxmem) is not supported");
        goto out;
    }
    if (!size || !(c->ram_size = kvm_parse_mem_size(size))) {
        err_set(err, "-m: '%s' is not a memory size (e.g. 512, 512M, 2G)", size ? size : "");
        goto out;
    }
    ret = kvm_opts_check_unused(&o, "-m", err);
out:
    kvm_opts_free(&o);
    return ret;
}

static int parse_smp(struct kvm_config *c, const char *arg, struct err *err)
{
    struct kvm_opts o;
    int ret = kvm_opts_parse(&o, arg, "cpus", "-smp", err);
    if (ret < 0) {
        return ret;
    }
    uint64_t cpus = 0, maxcpus = 0, sockets = 0, cores = 0, threads = 0, dies = 0;
    ret = -EINVAL;
    if (kvm_opts_get_u64(&o, "cpus", 1, MAX_SMP, &cpus, "-smp", err) < 0 ||
        kvm_opts_get_u64(&o, "maxcpus", 1, MAX_SMP, &maxcpus, "-smp", err) < 0 ||
        kvm_opts_get_u64(&o, "sockets", 1, MAX_SMP, &sockets, "-smp", err) < 0 ||
        kvm_opts_get_u64(&o, "dies", 1, MAX_SMP, &dies, "-smp", err) < 0 ||
        kvm_opts_get_u64(&o, "cores", 1, MAX_SMP, &cores, "-smp", err) < 0 ||
        kvm_opts_get_u64(&o, "threads", 1, MAX_SMP, &threads, "-smp", err) < 0 ||
        kvm_opts_check_unused(&o, "-smp", err) < 0) {
        goto out;
    }
    uint64_t topo = (sockets ? sockets : 1) * (dies ? dies : 1) * (cores ? cores : 1) *
                    (threads ? threads : 1);
    if (!cpus) {
        cpus = topo;
    }
    if ((sockets || cores || threads || dies) && topo != cpus) {
        err_set(err, "-smp: %" PRIu64 " CPUs do not match the topology's %" PRIu64, cpus, topo);
        goto out;
    }
    if (maxcpus && maxcpus != cpus) {
        err_set(err, "-smp: CPU hotplug (maxcpus > cpus) is not supported");
        goto out;
    }
    if (cpus > MAX_SMP) {
        err_set(err, "-smp: at most %d CPUs", MAX_SMP);
        goto out;
    }
    c->smp = (unsigned)cpus;
    ret = 0;
out:
    kvm_opts_free(&o);
    return ret;
}

static int parse_serial(struct kvm_config *c, const char *arg, struct err *err)
{
    free(c->serial_file);
    c->serial_file = NULL;
    if (!strcmp(arg, "stdio") || !strcmp(arg, "mon:stdio")) {
        c->serial = KVM_SERIAL_STDIO;
    } else if (!strcmp(arg, "none")) {
        c->serial = KVM_SERIAL_NONE;
    } else if (!strcmp(arg, "null") || !strcmp(arg, "vc")) {
        c->serial = KVM_SERIAL_NULL;
    } else if (!strncmp(arg, "file:", 5) && arg[5]) {
        c->serial = KVM_SERIAL_FILE;
        c->serial_file = xstrdup(arg + 5);
    } else {
        err_set(err, "-serial: '%s' is not supported (stdio, none, null or file:PATH)", arg);
        return -EINVAL;
    }
    return 0;
}

bool kvm_config_has_iothread(const struct kvm_config *c, const char *id)
{
    for (unsigned i = 0; i < c->nr_iothreads; i++) {
        if (!strcmp(c->iothreads[i].id, id)) {
            return true;
        }
    }
    return false;
}

static int parse_object(struct kvm_config *c, const char *arg, struct err *err)
{
    struct kvm_opts o;
    int ret = kvm_opts_parse(&o, arg, "qom-type", "-object", err);
    if (ret < 0) {
        return ret;
    }
    const char *type = kvm_opts_get(&o, "qom-type");
    const char *id = kvm_opts_get(&o, "id");
    struct kvm_iothread_cfg t;
    uint64_t max_ns, grow = 0, shrink = 0;
    ret = -EINVAL;
    if (!type || strcmp(type, "iothread")) {
        err_set(err, "-object: type '%s' is not supported (only iothread)", type ? type : "");
        goto out;
    }
    if (!id || !*id) {
        err_set(err, "-object iothread: property 'id' is required");
        goto out;
    }
    iothread_opts_default(&t.opts);
    max_ns = IOTHREAD_POLL_MAX_NS_DEFAULT;
    if (kvm_opts_get_u64(&o, "poll-max-ns", 0, INT64_MAX, &max_ns, "-object iothread", err) < 0 ||
        kvm_opts_get_u64(&o, "poll-grow", 0, INT64_MAX, &grow, "-object iothread", err) < 0 ||
        kvm_opts_get_u64(&o, "poll-shrink", 0, INT64_MAX, &shrink, "-object iothread", err) < 0 ||
        kvm_opts_check_unused(&o, "-object iothread", err) < 0) {
        goto out;
    }
    for (unsigned i = 0; i < c->nr_iothreads; i++) {
        if (!strcmp(c->iothreads[i].id, id)) {
            err_set(err, "-object iothread: id '%s' is used twice", id);
            goto out;
        }
    }
    t.opts.poll_max_ns = (int64_t)max_ns;
    t.opts.poll_grow = (int64_t)grow;
    t.opts.poll_shrink = (int64_t)shrink;
    t.id = xstrdup(id);
    c->iothreads = xrealloc(c->iothreads, (c->nr_iothreads + 1) * sizeof(t));
    c->iothreads[c->nr_iothreads++] = t;
    ret = 0;
out:
    kvm_opts_free(&o);
    return ret;
}

bool kvm_config_has_block(const struct kvm_config *c, const char *name)
{
    for (unsigned i = 0; i < c->nr_drives; i++) {
        if (c->drives[i].id && !strcmp(c->drives[i].id, name)) {
            return true;
        }
    }
    for (unsigned i = 0; i < c->nr_blockdevs; i++) {
        if (!strcmp(c->blockdevs[i].node_name, name)) {
            return true;
        }
    }
    return false;
}

static int parse_blockdev(struct kvm_config *c, const char *arg, struct err *err)
{
    /* The block layer's own form: key=val with dotted keys, or JSON. */
    json_t *j = opts_parse(arg, NULL, err);
    if (!j) {
        err_prepend(err, "-blockdev: ");
        return -EINVAL;
    }
    const char *driver = json_string_value(json_object_get(j, "driver"));
    const char *node = json_string_value(json_object_get(j, "node-name"));
    if (!driver || !*driver) {
        err_set(err, "-blockdev: property 'driver' is required");
        json_decref(j);
        return -EINVAL;
    }
    if (!node || !*node) {
        err_set(err, "-blockdev: property 'node-name' is required at the top level");
        json_decref(j);
        return -EINVAL;
    }
    if (kvm_config_has_block(c, node)) {
        err_set(err, "-blockdev: node-name '%s' is already in use", node);
        json_decref(j);
        return -EINVAL;
    }
    c->blockdevs = xrealloc(c->blockdevs, (c->nr_blockdevs + 1) * sizeof(*c->blockdevs));
    c->blockdevs[c->nr_blockdevs++] = (struct kvm_blockdev_cfg){
        .node_name = xstrdup(node), .options = j,
    };
    return 0;
}

/*
 * -qmp unix:PATH,server=on,wait=off, or QEMU's older unix:PATH,server,nowait:
 * a QMP socket that the monitor listens on.  PATH runs to the first single
 * comma (",," is a comma in it).  Client sockets, TCP and wait=on (waiting
 * for a client before the guest starts) are not supported.
 */
static int parse_qmp(struct kvm_config *c, const char *arg, struct err *err)
{
    bool server = false, wait = true;
    size_t len = strlen(arg), i;
    char *path;

    if (strncmp(arg, "unix:", 5)) {
        err_set(err, "-qmp %s: only UNIX sockets are supported "
                "(unix:PATH,server=on,wait=off)", arg);
        return -EINVAL;
    }
    path = xmalloc(len);
    size_t n = 0;
    for (i = 5; i < len; i++) {
        if (arg[i] == ',' && arg[i + 1] == ',') {
            path[n++] = ',';
            i++;
        } else if (arg[i] == ',') {
            break;
        } else {
            path[n++] = arg[i];
        }
    }
    path[n] = '\0';
    while (i < len) {
        const char *flag = arg + i + 1;
        size_t flen = strcspn(flag, ",");
        char word[32];
        snprintf(word, sizeof(word), "%.*s", (int)MIN(flen, sizeof(word) - 1), flag);
        if (!strcmp(word, "server") || !strcmp(word, "server=on")) {
            server = true;
        } else if (!strcmp(word, "server=off")) {
            server = false;
        } else if (!strcmp(word, "nowait") || !strcmp(word, "wait=off")) {
            wait = false;
        } else if (!strcmp(word, "wait") || !strcmp(word, "wait=on")) {
            wait = true;
        } else {
            err_set(err, "-qmp: unknown property '%.*s' (server=on, wait=off)", (int)flen, flag);
            free(path);
            return -EINVAL;
        }
        i += flen + 1;
    }
    if (!path[0]) {
        err_set(err, "-qmp %s: the socket path is empty", arg);
    } else if (!server) {
        err_set(err, "-qmp %s: only a server socket is supported: add server=on", arg);
    } else if (wait) {
        err_set(err, "-qmp %s: waiting for a client is not supported: add wait=off", arg);
    } else {
        c->qmp = xrealloc(c->qmp, (c->nr_qmp + 1) * sizeof(*c->qmp));
        c->qmp[c->nr_qmp++] = path;
        return 0;
    }
    free(path);
    return -EINVAL;
}

static void drive_free(struct kvm_drive_cfg *d)
{
    free(d->id);
    free(d->file);
    free(d->format);
    free(d->cache);
    free(d->aio);
    free(d->discard);
    free(d->detect_zeroes);
    free(d->werror);
    free(d->rerror);
    json_decref(d->options);
}

static int one_of(const char *v, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(v, set[i])) {
            return 0;
        }
    }
    return -EINVAL;
}

static char *dup_checked(struct kvm_opts *o, const char *key, const char *const *set, size_t n,
                         struct err *err, int *ret)
{
    const char *v = kvm_opts_get(o, key);
    if (!v) {
        return NULL;
    }
    if (one_of(v, set, n) < 0) {
        char list[256] = "";
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", set[i]);
        }
        err_set(err, "-drive: %s=%s is not one of %s", key, v, list);
        *ret = -EINVAL;
        return NULL;
    }
    return xstrdup(v);
}

static int add_vblk_for_drive(struct kvm_config *c, const char *drive_id, struct err *err);

/*
 * -drive's file=NAME sits beside file.locking=off and the like (QEMU's
 * legacy); in the one option form that is file.filename=NAME.
 */
static char *drive_spelling(const char *arg)
{
    size_t len = strlen(arg);
    char *out = xmalloc(len * 2 + 16);
    size_t n = 0;
    bool start = true;
    for (size_t i = 0; i < len; i++) {
        if (start && !strncmp(arg + i, "file=", 5)) {
            memcpy(out + n, "file.filename=", 14);
            n += 14;
            i += 4;
            start = false;
            continue;
        }
        start = false;
        if (arg[i] == ',') {
            if (arg[i + 1] == ',') {
                out[n++] = arg[i++];
            } else {
                start = true;
            }
        }
        out[n++] = arg[i];
    }
    out[n] = '\0';
    return out;
}

static int parse_drive(struct kvm_config *c, const char *arg, struct err *err)
{
    struct kvm_opts o;
    struct kvm_drive_cfg d = { 0 };
    char *spelled = drive_spelling(arg);
    int ret = kvm_opts_parse(&o, spelled, NULL, "-drive", err);
    free(spelled);
    if (ret < 0) {
        return ret;
    }
    static const char *const caches[] = { "none", "writeback", "writethrough", "directsync",
                                          "unsafe" };
    static const char *const aios[] = { "threads", "native", "io_uring" };
    static const char *const discards[] = { "ignore", "off", "unmap", "on" };
    static const char *const zeroes[] = { "off", "on", "unmap" };
    static const char *const errs[] = { "ignore", "report", "stop", "enospc" };
    const char *v;
    ret = 0;
    d.cache = dup_checked(&o, "cache", caches, ARRAY_SIZE(caches), err, &ret);
    d.aio = dup_checked(&o, "aio", aios, ARRAY_SIZE(aios), err, &ret);
    d.discard = dup_checked(&o, "discard", discards, ARRAY_SIZE(discards), err, &ret);
    d.detect_zeroes = dup_checked(&o, "detect-zeroes", zeroes, ARRAY_SIZE(zeroes), err, &ret);
    d.werror = dup_checked(&o, "werror", errs, ARRAY_SIZE(errs), err, &ret);
    d.rerror = dup_checked(&o, "rerror", errs, ARRAY_SIZE(errs), err, &ret);
    if (ret < 0) {
        goto fail;
    }
    ret = -EINVAL;
    if ((v = kvm_opts_get(&o, "id"))) {
        d.id = xstrdup(v);
    }
    if ((v = kvm_opts_get(&o, "file.filename"))) {
        d.file = xstrdup(v);
    }
    if ((v = kvm_opts_get(&o, "format"))) {
        d.format = xstrdup(v);
    }
    if (kvm_opts_get_bool(&o, "readonly", &d.read_only, "-drive", err) < 0 ||
        kvm_opts_get_bool(&o, "read-only", &d.read_only, "-drive", err) < 0) {
        goto fail;
    }
    v = kvm_opts_get(&o, "if");
    if (!v || !strcmp(v, "ide") || !strcmp(v, "scsi") || !strcmp(v, "sd")) {
        err_set(err, "-drive: if=%s is not supported; use if=virtio, or if=none with "
                "-device virtio-blk-pci,drive=ID", v ? v : "ide (the default)");
        goto fail;
    } else if (!strcmp(v, "none")) {
        d.interface = KVM_DRIVE_IF_NONE;
    } else if (!strcmp(v, "virtio")) {
        d.interface = KVM_DRIVE_IF_VIRTIO;
    } else {
        err_set(err, "-drive: if=%s is not supported (none or virtio)", v);
        goto fail;
    }
    if (!d.file) {
        err_set(err, "-drive: property 'file' is required (spindle-vm has no removable media)");
        goto fail;
    }
    if (d.interface == KVM_DRIVE_IF_NONE && !d.id) {
        err_set(err, "-drive: if=none needs an id for -device ...,drive=ID");
        goto fail;
    }
    if (!d.id) {
        d.id = xasprintf("virtio%u", c->nr_drives);
    }
    if (kvm_config_has_block(c, d.id)) {
        err_set(err, "-drive: id '%s' is already in use", d.id);
        goto fail;
    }
    /* Dotted driver options (file.locking=off) and a few format ones go to the node. */
    static const char *const node_keys[] = { "copy-on-read", "l2-cache-size", "cache-size",
                                             "refcount-cache-size", "node-name",
                                             "auto-read-only" };
    for (unsigned i = 0; i < o.n; i++) {
        if (!o.opt[i].used && !strchr(o.opt[i].key, '.') &&
            one_of(o.opt[i].key, node_keys, ARRAY_SIZE(node_keys)) < 0) {
            err_set(err, "-drive: unknown property '%s'", o.opt[i].key);
            goto fail;
        }
    }
    d.options = kvm_opts_unused_json(&o, err);
    if (!d.options) {
        goto fail;
    }
    c->drives = xrealloc(c->drives, (c->nr_drives + 1) * sizeof(d));
    c->drives[c->nr_drives++] = d;
    kvm_opts_free(&o);
    if (d.interface == KVM_DRIVE_IF_VIRTIO) {
        return add_vblk_for_drive(c, d.id, err);
    }
    return 0;
fail:
    drive_free(&d);
    kvm_opts_free(&o);
    return ret < 0 ? ret : -EINVAL;
}

static void device_cfg_free(struct kvm_device_cfg *d)
{
    if (d->type && d->type->free_cfg) {
        d->type->free_cfg(d->cfg);
    }
    free(d->id);
}

static int add_device(struct kvm_config *c, struct kvm_opts *o, struct err *err)
{
    const char *driver = kvm_opts_get(o, "driver");
    char what[128];
    if (!driver || !*driver) {
        err_set(err, "-device: property 'driver' is required");
        return -EINVAL;
    }
    const struct kvm_dev_type *t = kvm_dev_type_find(driver);
    if (!t) {
        err_set(err, "-device: '%s' is not a device spindle-vm has (isa-debug-exit, "
                "virtio-blk-pci, virtio-scsi-pci, scsi-hd)", driver);
        return -EINVAL;
    }
    snprintf(what, sizeof(what), "-device %s", driver);
    struct kvm_device_cfg d = { .type = t };
    const char *id = kvm_opts_get(o, "id");
    if (id) {
        for (unsigned i = 0; i < c->nr_devices; i++) {
            if (c->devices[i].id && !strcmp(c->devices[i].id, id)) {
                err_set(err, "%s: id '%s' is used twice", what, id);
                return -EINVAL;
            }
        }
        d.id = xstrdup(id);
    }
    int ret = t->parse(o, &d.cfg, what, err);
    if (ret == 0) {
        ret = kvm_opts_check_unused(o, what, err);
    }
    if (ret < 0) {
        device_cfg_free(&d);
        return ret;
    }
    c->devices = xrealloc(c->devices, (c->nr_devices + 1) * sizeof(d));
    c->devices[c->nr_devices++] = d;
    return 0;
}

static int parse_device(struct kvm_config *c, const char *arg, struct err *err)
{
    struct kvm_opts o;
    int ret;
    if (!strcmp(arg, "help") || !strcmp(arg, "?")) {
        err_set(err, "-device: available devices: isa-debug-exit, virtio-blk-pci, "
                "virtio-scsi-pci, scsi-hd");
        return -EINVAL;
    }
    /* key=val,... or, as QEMU takes it too, a JSON object. */
    ret = kvm_opts_parse(&o, arg, "driver", "-device", err);
    if (ret < 0) {
        return ret;
    }
    ret = add_device(c, &o, err);
    kvm_opts_free(&o);
    return ret;
}

static int add_vblk_for_drive(struct kvm_config *c, const char *drive_id, struct err *err)
{
    struct kvm_opts o;
    char *spec = xasprintf("virtio-blk-pci,drive=%s", drive_id);
    int ret = kvm_opts_parse(&o, spec, "driver", "-drive", err);
    free(spec);
    if (ret == 0) {
        ret = add_device(c, &o, err);
        kvm_opts_free(&o);
    }
    return ret;
}

/* Cross references, once everything is read: each device checks its own. */
static int check_references(struct kvm_config *c, struct err *err)
{
    for (unsigned i = 0; i < c->nr_devices; i++) {
        struct kvm_device_cfg *d = &c->devices[i];
        if (d->type->check) {
            char what[128];
            snprintf(what, sizeof(what), "-device %s", d->type->name);
            int ret = d->type->check(c, d, what, err);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

/* ---- argv -------------------------------------------------------------- */

enum { ARG_NONE, ARG_ONE };

struct option_def {
    const char *name;
    int arg;
};

static const struct option_def options[] = {
    { "enable-kvm", ARG_NONE }, { "accel", ARG_ONE }, { "machine", ARG_ONE }, { "M", ARG_ONE },
    { "cpu", ARG_ONE }, { "m", ARG_ONE }, { "smp", ARG_ONE }, { "kernel", ARG_ONE },
    { "initrd", ARG_ONE }, { "append", ARG_ONE }, { "nographic", ARG_NONE },
    { "serial", ARG_ONE }, { "display", ARG_ONE }, { "no-reboot", ARG_NONE },
    { "no-shutdown", ARG_NONE }, { "mem-path", ARG_ONE }, { "mem-prealloc", ARG_NONE },
    { "object", ARG_ONE }, { "device", ARG_ONE }, { "blockdev", ARG_ONE }, { "drive", ARG_ONE },
    { "nodefaults", ARG_NONE }, { "no-user-config", ARG_NONE }, { "monitor", ARG_ONE },
    { "vga", ARG_ONE }, { "bios", ARG_ONE }, { "name", ARG_ONE }, { "qmp", ARG_ONE },
    { "help", ARG_NONE }, { "h", ARG_NONE }, { "version", ARG_NONE }, { "S", ARG_NONE },
};

void kvm_config_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options]\n"
            "  -enable-kvm | -accel kvm | -machine q35|pc|microvm[,accel=kvm]\n"
            "  -cpu host[,-feature|+feature|feature=on|off]   -smp N   -m SIZE\n"
            "  -mem-path DIR|FILE [-mem-prealloc]\n"
            "  -kernel FILE (ELF with a PVH note, or bzImage)  -initrd FILE  -append CMDLINE\n"
            "  -nographic  -serial stdio|none|null|file:PATH  -display none  -no-reboot\n"
            "  -object iothread,id=ID[,poll-max-ns=N,poll-grow=N,poll-shrink=N]\n"
            "  -device isa-debug-exit[,iobase=0x501,iosize=2]\n"
            "  -device virtio-blk-pci,drive=ID[,iothread=ID,num-queues=N,queue-size=N,\n"
            "          iothread-vq-mapping=JSON,id=ID,addr=SLOT]\n"
            "  -device virtio-scsi-pci,id=ID[,iothread=ID,num_queues=N,virtqueue_size=N]\n"
            "  -device scsi-hd,drive=ID[,bus=ID.0,scsi-id=N,lun=N]\n"
            "  -blockdev driver=...,node-name=...[,...] | -blockdev '{JSON}'\n"
            "  -drive if=none|virtio,id=ID,file=PATH[,format=,cache=,aio=,readonly=on]\n"
            "  -qmp unix:PATH,server=on,wait=off   a QMP socket (also unix:PATH,server,nowait)\n"
            "  -S                          start with the vCPUs paused until QMP cont\n"
            "Exit status: the guest's through isa-debug-exit ((v << 1) | 1), 0 on reset with\n"
            "-no-reboot or on a signal, 1 for a bad command line or setup error, 2 when the\n"
            "guest crashed a vCPU (triple fault, KVM internal error, failed entry).\n",
            prog);
}

static const struct option_def *find_option(const char *arg)
{
    if (arg[0] != '-' || !arg[1]) {
        return NULL;
    }
    const char *name = arg + 1 + (arg[1] == '-');
    for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
        if (!strcmp(options[i].name, name)) {
            return &options[i];
        }
    }
    return NULL;
}

static int handle_option(struct kvm_config *c, const char *name, const char *arg,
                         struct err *err)
{
    if (!strcmp(name, "enable-kvm") || !strcmp(name, "nodefaults") ||
        !strcmp(name, "no-user-config") || !strcmp(name, "no-shutdown")) {
        return 0;
    }
    if (!strcmp(name, "accel")) {
        if (strcmp(arg, "kvm") && strncmp(arg, "kvm,", 4)) {
            err_set(err, "-accel %s: spindle-vm runs on KVM only", arg);
            return -EINVAL;
        }
        return 0;
    }
    if (!strcmp(name, "machine") || !strcmp(name, "M")) {
        return parse_machine(c, arg, err);
    }
    if (!strcmp(name, "cpu")) {
        free(c->cpu);
        c->cpu = xstrdup(arg);
        return kvm_cpu_model_parse(&c->cpu_model, arg, err);
    }
    if (!strcmp(name, "m")) {
        return parse_memory(c, arg, err);
    }
    if (!strcmp(name, "smp")) {
        return parse_smp(c, arg, err);
    }
    if (!strcmp(name, "kernel") || !strcmp(name, "initrd") || !strcmp(name, "append") ||
        !strcmp(name, "mem-path")) {
        char **slot = !strcmp(name, "kernel") ? &c->kernel :
                      !strcmp(name, "initrd") ? &c->initrd :
                      !strcmp(name, "append") ? &c->append : &c->mem_path;
        free(*slot);
        *slot = xstrdup(arg);
        return 0;
    }
    if (!strcmp(name, "nographic")) {
        c->serial = KVM_SERIAL_STDIO;
        return 0;
    }
    if (!strcmp(name, "serial")) {
        return parse_serial(c, arg, err);
    }
    if (!strcmp(name, "display") || !strcmp(name, "vga") || !strcmp(name, "monitor")) {
        if (strcmp(arg, "none")) {
            err_set(err, "-%s %s: spindle-vm has no %s; only '-%s none'", name, arg,
                    !strcmp(name, "monitor") ? "human monitor" : "display", name);
            return -EINVAL;
        }
        return 0;
    }
    if (!strcmp(name, "no-reboot")) {
        c->no_reboot = true;
        return 0;
    }
    if (!strcmp(name, "mem-prealloc")) {
        c->mem_prealloc = true;
        return 0;
    }
    if (!strcmp(name, "object")) {
        return parse_object(c, arg, err);
    }
    if (!strcmp(name, "device")) {
        return parse_device(c, arg, err);
    }
    if (!strcmp(name, "blockdev")) {
        return parse_blockdev(c, arg, err);
    }
    if (!strcmp(name, "drive")) {
        return parse_drive(c, arg, err);
    }
    if (!strcmp(name, "bios") || !strcmp(name, "name")) {
        return 0;    /* no firmware runs here: the kernel is booted directly */
    }
    if (!strcmp(name, "qmp")) {
        return parse_qmp(c, arg, err);
    }
    if (!strcmp(name, "S")) {
        c->start_paused = true;
        return 0;
    }
    if (!strcmp(name, "help") || !strcmp(name, "h")) {
        c->help = true;
        return 0;
    }
    if (!strcmp(name, "version")) {
        c->version = true;
        return 0;
    }
    err_set(err, "-%s: not handled", name);
    return -EINVAL;
}

int kvm_config_parse(struct kvm_config *c, int argc, char **argv, struct err *err)
{
    memset(c, 0, sizeof(*c));
    c->ram_size = 128 * MiB;      /* QEMU's default */
    c->smp = 1;
    c->serial = KVM_SERIAL_NULL;
    kvm_cpu_model_parse(&c->cpu_model, "host", NULL);

    for (int i = 1; i < argc; i++) {
        const struct option_def *o = find_option(argv[i]);
        if (!o) {
            if (argv[i][0] == '-') {
                err_set(err, "%s: unknown option", argv[i]);
            } else {
                err_set(err, "'%s': not an option (spindle-vm takes no bare arguments; "
                        "use -kernel FILE)", argv[i]);
            }
            return -EINVAL;
        }
        const char *arg = NULL;
        if (o->arg == ARG_ONE) {
            if (i + 1 >= argc) {
                err_set(err, "%s: requires an argument", argv[i]);
                return -EINVAL;
            }
            arg = argv[++i];
        }
        int ret = handle_option(c, o->name, arg, err);
        if (ret < 0) {
            return ret;
        }
    }
    if (c->help || c->version) {
        return 0;
    }
    if (!c->kernel) {
        err_set(err, "no kernel: spindle-vm boots only with -kernel FILE (there is no firmware)");
        return -EINVAL;
    }
    if (c->initrd && !c->kernel) {
        err_set(err, "-initrd needs -kernel");
        return -EINVAL;
    }
    return check_references(c, err);
}

void kvm_config_free(struct kvm_config *c)
{
    free(c->machine_type);
    free(c->mem_path);
    free(c->cpu);
    free(c->kernel);
    free(c->initrd);
    free(c->append);
    free(c->serial_file);
    for (unsigned i = 0; i < c->nr_qmp; i++) {
        free(c->qmp[i]);
    }
    free(c->qmp);
    for (unsigned i = 0; i < c->nr_iothreads; i++) {
        free(c->iothreads[i].id);
    }
    free(c->iothreads);
    for (unsigned i = 0; i < c->nr_blockdevs; i++) {
        free(c->blockdevs[i].node_name);
        json_decref(c->blockdevs[i].options);
    }
    free(c->blockdevs);
    for (unsigned i = 0; i < c->nr_drives; i++) {
        drive_free(&c->drives[i]);
    }
    free(c->drives);
    for (unsigned i = 0; i < c->nr_devices; i++) {
        device_cfg_free(&c->devices[i]);
    }
    free(c->devices);
    memset(c, 0, sizeof(*c));
}
