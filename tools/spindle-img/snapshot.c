/*
 * spindle-img snapshot: list, create, apply and delete internal snapshots
 * through the qcow2 driver's hooks, with qemu-img's messages; and the
 * snapshot table and JSON that info shows too.
 */
#include "img.h"

#include <time.h>

#include "qcow2/qcow2.h"
#include "util/opts.h"

enum snapshot_action { SN_NONE, SN_LIST, SN_CREATE, SN_APPLY, SN_DELETE };

/* The snapshots of bs, or 0 with *list NULL when its format has none. */
static int list_snapshots(struct block_node *bs, struct qcow2_snapshot_info **list)
{
    const struct qcow2_format_ops *ops = qcow2_get_ops(bs);
    int n = 0;
    *list = NULL;
    if (!ops || ops->snapshot_list(bs, list, &n, NULL) < 0) {
        return 0;
    }
    return n;
}

/* One line of the table: the header, or one snapshot of info's JSON. */
static void print_snapshot_line(json_t *sn)
{
    if (!sn) {
        printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
               "ICOUNT");
        return;
    }
    char size[32], date[32], clock[32], icount[32] = "";
    time_t t = (time_t)json_integer_value(json_object_get(sn, "date-sec"));
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    int64_t secs = json_integer_value(json_object_get(sn, "vm-clock-sec"));
    int64_t nsec = json_integer_value(json_object_get(sn, "vm-clock-nsec"));
    snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
             (int)(secs / 60 % 60), (int)(secs % 60), (int)(nsec / 1000000));
    format_size((uint64_t)json_integer_value(json_object_get(sn, "vm-state-size")), size,
                sizeof(size));
    json_t *ic = json_object_get(sn, "icount");
    if (ic) {
        snprintf(icount, sizeof(icount), "%" PRIu64, (uint64_t)json_integer_value(ic));
    }
    printf("%-9s %-16s %8s%20s%13s%11s\n", json_string_value(json_object_get(sn, "id")),
           json_string_value(json_object_get(sn, "name")), size, date, clock, icount);
}

void img_print_snapshot_table(json_t *snapshots)
{
    size_t i;
    json_t *sn;
    if (!json_array_size(snapshots)) {
        return;
    }
    printf("Snapshot list:\n");
    print_snapshot_line(NULL);
    json_array_foreach(snapshots, i, sn) {
        print_snapshot_line(sn);
    }
}

json_t *img_snapshots_json(struct block_node *bs)
{
    struct qcow2_snapshot_info *list;
    int n = list_snapshots(bs, &list);
    json_t *a = n > 0 ? json_array() : NULL;
    for (int i = 0; i < n; i++) {
        const struct qcow2_snapshot_info *sn = &list[i];
        json_t *o = json_object();
        /* qemu-img's key order. */
        if (sn->icount != UINT64_MAX) {
            json_object_set_new(o, "icount", json_integer((json_int_t)sn->icount));
        }
        json_object_set_new(o, "vm-clock-nsec",
                            json_integer((json_int_t)(sn->vm_clock_nsec % 1000000000ULL)));
        json_object_set_new(o, "name", json_string(sn->name));
        json_object_set_new(o, "date-sec", json_integer(sn->date_sec));
        json_object_set_new(o, "date-nsec", json_integer(sn->date_nsec));
        json_object_set_new(o, "vm-clock-sec",
                            json_integer((json_int_t)(sn->vm_clock_nsec / 1000000000ULL)));
        json_object_set_new(o, "id", json_string(sn->id));
        json_object_set_new(o, "vm-state-size", json_integer((json_int_t)sn->vm_state_size));
        json_array_append_new(a, o);
    }
    qcow2_snapshot_info_free(list, n);
    return a;
}

static int do_create(struct block_node *bs, const char *name)
{
    struct err err = { 0 };
    const struct qcow2_format_ops *ops = qcow2_get_ops(bs);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct qcow2_snapshot_info sn = {
        .name = (char *)name,
        .date_sec = (uint32_t)now.tv_sec,
        .date_nsec = (uint32_t)(now.tv_nsec / 1000 * 1000),
        .icount = 0,
        .disk_size = (uint64_t)bnode_getlength(bs),
    };
    int ret = -ENOTSUP;
    if (ops) {
        bnode_drained_begin(bs);
        ret = ops->snapshot_create(bs, &sn, &err);
        bnode_drained_end(bs);
    }
    if (ret < 0) {
        img_error("Could not create snapshot '%s': %d (%s)", name, ret, strerror(-ret));
    }
    return ret;
}

static int do_apply(struct block_node *bs, const char *name)
{
    struct err err = { 0 };
    const struct qcow2_format_ops *ops = qcow2_get_ops(bs);
    if (!ops) {
        img_error("Could not apply snapshot '%s': Block driver does not support snapshots",
                  name);
        return -ENOTSUP;
    }
    bnode_drained_begin(bs);
    int ret = ops->snapshot_apply(bs, name, &err);
    bnode_drained_end(bs);
    if (ret < 0) {
        /* qemu-img says why in errno's words only. */
        img_error("Could not apply snapshot '%s': Failed to load snapshot: %s", name,
                  strerror(-ret));
    }
    return ret;
}

/* The id and name of the first snapshot named name (qemu-img deletes by name only). */
static int find_snapshot(struct block_node *bs, const char *name, char **id, char **tag)
{
    struct qcow2_snapshot_info *list;
    int n = list_snapshots(bs, &list), found = -1;
    for (int i = 0; i < n && found < 0; i++) {
        found = strcmp(list[i].name, name) ? -1 : i;
    }
    if (found >= 0) {
        *id = xstrdup(list[found].id);
        *tag = xstrdup(list[found].name);
    }
    qcow2_snapshot_info_free(list, n);
    return found < 0 ? -ENOENT : 0;
}

static int do_delete(struct block_node *bs, const char *name)
{
    struct err err = { 0 };
    char *id = NULL, *tag = NULL;
    if (find_snapshot(bs, name, &id, &tag) < 0) {
        img_error("Could not delete snapshot '%s': snapshot not found", name);
        return -ENOENT;
    }
    const struct qcow2_format_ops *ops = qcow2_get_ops(bs);
    bnode_drained_begin(bs);
    int ret = ops->snapshot_delete(bs, id, tag, &err);
    bnode_drained_end(bs);
    if (ret < 0) {
        img_error("Could not delete snapshot '%s': %s", name, err.msg);
    }
    free(id);
    free(tag);
    return ret;
}

static int set_action(enum snapshot_action *action, enum snapshot_action a)
{
    if (*action != SN_NONE) {
        return img_usage_error("Cannot mix '-l', '-a', '-c', '-d'");
    }
    *action = a;
    return 0;
}

int img_snapshot(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'I' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    struct image_open o = { .writable = true };
    enum snapshot_action action = SN_NONE;
    const char *name = NULL;
    int c;

    while ((c = getopt_long(argc, argv, ":la:c:d:hqU", long_opts, NULL)) != -1) {
        enum snapshot_action a = c == 'l' ? SN_LIST : c == 'a' ? SN_APPLY :
                                 c == 'c' ? SN_CREATE : c == 'd' ? SN_DELETE : SN_NONE;
        if (a != SN_NONE) {
            if (set_action(&action, a)) {
                return 1;
            }
            name = optarg;
            continue;
        }
        switch (c) {
        case 'q':
            break;      /* snapshot prints nothing but errors anyway */
        case 'U':
            o.force_share = true;
            break;
        case 'I':
            o.image_opts = true;
            break;
        case 'h':
            return img_help();
        default:
            return img_bad_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        return img_usage_error("Expecting one image file name");
    }
    o.filename = argv[optind];
    o.writable = action != SN_LIST;
    struct block_backend *blk = img_open(&o);
    if (!blk) {
        return 1;
    }
    struct block_node *bs = blk_node(blk);
    json_t *snapshots;
    int ret = 0;
    switch (action) {
    case SN_LIST:
        snapshots = img_snapshots_json(bs);
        img_print_snapshot_table(snapshots);
        json_decref(snapshots);
        break;
    case SN_CREATE:
        ret = do_create(bs, name);
        break;
    case SN_APPLY:
        ret = do_apply(bs, name);
        break;
    case SN_DELETE:
        ret = do_delete(bs, name);
        break;
    case SN_NONE:
        break;
    }
    blk_unref(blk);
    return ret < 0;
}
