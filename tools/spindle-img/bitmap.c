/*
 * spindle-img bitmap: change one persistent dirty bitmap of an image by
 * actions run in the order given (--add, --remove, --clear, --enable,
 * --disable, --merge SOURCE), as qemu-img 7.2 does.  The bitmaps are the
 * block layer's; the format stores the persistent ones when the image
 * closes (qcow2: the bitmap directory), so a failed action leaves the
 * earlier ones done, as in qemu-img.
 */
#include "img.h"

#include "block/dirty-bitmap.h"
#include "qcow2/qcow2.h"

enum bitmap_op { OP_ADD, OP_REMOVE, OP_CLEAR, OP_ENABLE, OP_DISABLE, OP_MERGE };

static const char *const op_names[] = { "add", "remove", "clear", "enable", "disable", "merge" };

struct bitmap_action {
    enum bitmap_op op;
    const char *src;              /* merge: the source bitmap */
};

struct bitmap_args {
    struct image_open o;
    const char *bitmap;
    const char *src_file, *src_fmt;
    int64_t granularity;
    struct bitmap_action *actions;
    int n;
};

static int do_add(struct block_node *bs, const char *name, uint32_t granularity,
                  struct err *err)
{
    if (!name[0]) {
        err_set(err, "Bitmap name cannot be empty");
        return -EINVAL;
    }
    if (granularity && (granularity < 512 || (granularity & (granularity - 1)))) {
        err_set(err, "Granularity must be power of 2 and at least 512");
        return -EINVAL;
    }
    if (bdrv_find_dirty_bitmap(bs, name)) {
        err_set(err, "Bitmap already exists: %s", name);
        return -EEXIST;
    }
    const struct qcow2_format_ops *ops = qcow2_get_ops(bs);
    if (!ops) {
        err_set(err, "Can't store persistent bitmaps to %s: %s", bnode_describe(bs),
                strerror(ENOTSUP));
        return -ENOTSUP;
    }
    if (!granularity) {
        granularity = bdrv_default_bitmap_granularity(bs);
    }
    int ret = ops->bitmap_can_store(bs, name, granularity, err);
    if (ret < 0) {
        return ret;
    }
    struct bdrv_dirty_bitmap *bm = bdrv_create_dirty_bitmap(bs, granularity, name, err);
    if (!bm) {
        return -EINVAL;
    }
    bm->persistent = true;
    return 0;
}

/* The bitmap a user may change, or NULL with qemu's sentence. */
static struct bdrv_dirty_bitmap *find_user_bitmap(struct block_node *bs, const char *name,
                                                  bool modify, struct err *err)
{
    struct bdrv_dirty_bitmap *bm = bdrv_find_dirty_bitmap(bs, name);
    if (!bm) {
        err_set(err, "Dirty bitmap '%s' not found", name);
        return NULL;
    }
    if (modify && bdrv_dirty_bitmap_check_user(bm, err) < 0) {
        return NULL;
    }
    return bm;
}

/* Merge src (of this image, or of the -b image) into the bitmap. */
static int do_merge(struct block_node *bs, const struct bitmap_args *a, const char *src,
                    struct err *err)
{
    struct block_backend *src_blk = NULL;
    struct block_node *src_bs = bs;
    int ret = -EINVAL;
    if (a->src_file) {
        struct image_open so = { .filename = a->src_file, .fmt = a->src_fmt,
                                 .force_share = true };
        src_blk = img_open(&so);
        if (!src_blk) {
            return -EIO;     /* reported */
        }
        src_bs = bnode_skip_filters(blk_node(src_blk));
    }
    struct bdrv_dirty_bitmap *dst = find_user_bitmap(bs, a->bitmap, true, err);
    struct bdrv_dirty_bitmap *s = dst ? find_user_bitmap(src_bs, src, false, err) : NULL;
    if (s) {
        ret = bdrv_merge_dirty_bitmap(dst, s, err);
    }
    if (src_blk) {
        blk_unref(src_blk);
    }
    return ret;
}

static int run_action(struct block_node *bs, const struct bitmap_args *a,
                      const struct bitmap_action *act, struct err *err)
{
    struct bdrv_dirty_bitmap *bm;
    switch (act->op) {
    case OP_ADD:
        return do_add(bs, a->bitmap, (uint32_t)a->granularity, err);
    case OP_REMOVE: {
        const struct qcow2_format_ops *ops = qcow2_get_ops(bs);
        bm = find_user_bitmap(bs, a->bitmap, true, err);
        if (!bm) {
            return -ENOENT;
        }
        if (ops && bm->persistent) {
            return ops->bitmap_remove(bs, a->bitmap, err);
        }
        bdrv_release_dirty_bitmap(bm);
        return 0;
    }
    case OP_MERGE:
        return do_merge(bs, a, act->src, err);
    default:
        break;
    }
    bm = find_user_bitmap(bs, a->bitmap, true, err);
    if (!bm) {
        return -ENOENT;
    }
    if (act->op == OP_CLEAR) {
        bdrv_clear_dirty_bitmap(bm);
    } else if (act->op == OP_ENABLE) {
        bdrv_enable_dirty_bitmap(bm);
    } else {
        bdrv_disable_dirty_bitmap(bm);
    }
    return 0;
}

static int run_bitmap(struct bitmap_args *a)
{
    struct block_backend *blk = img_open(&a->o);
    if (!blk) {
        return 1;
    }
    struct block_node *bs = bnode_skip_filters(blk_node(blk));
    int ret = 0;
    for (int i = 0; i < a->n && ret == 0; i++) {
        struct err err = { 0 };
        ret = run_action(bs, a, &a->actions[i], &err);
        if (ret < 0 && err.msg[0]) {
            img_error("Operation %s on bitmap %s failed: %s", op_names[a->actions[i].op],
                      a->bitmap, err.msg);
        }
    }
    /* The format writes its persistent bitmaps as the image closes. */
    blk_unref(blk);
    return ret < 0;
}

static void add_action(struct bitmap_args *a, enum bitmap_op op, const char *src)
{
    a->actions = xrealloc(a->actions, (size_t)(a->n + 1) * sizeof(*a->actions));
    a->actions[a->n++] = (struct bitmap_action){ op, src };
}

enum { OPT_ADD = 256, OPT_REMOVE, OPT_CLEAR, OPT_ENABLE, OPT_DISABLE, OPT_MERGE, OPT_OBJECT };

static int parse_args(int argc, char **argv, struct bitmap_args *a)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "image-opts", no_argument, NULL, 'I' },
        { "add", no_argument, NULL, OPT_ADD },
        { "remove", no_argument, NULL, OPT_REMOVE },
        { "clear", no_argument, NULL, OPT_CLEAR },
        { "enable", no_argument, NULL, OPT_ENABLE },
        { "disable", no_argument, NULL, OPT_DISABLE },
        { "merge", required_argument, NULL, OPT_MERGE },
        { "granularity", required_argument, NULL, 'g' },
        { "source-file", required_argument, NULL, 'b' },
        { "source-format", required_argument, NULL, 'F' },
        { NULL, 0, NULL, 0 },
    };
    /* qemu-img reports these without pointing at --help. */
    bool merge = false;
    const char *gran = NULL;
    int c;
    while ((c = getopt_long(argc, argv, ":b:f:F:g:hq", long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            img_help();
            return 0;
        case 'b':
            a->src_file = optarg;
            break;
        case 'f':
            a->o.fmt = optarg;
            break;
        case 'F':
            a->src_fmt = optarg;
            break;
        case 'g':
            gran = optarg;
            break;
        case 'q':
            break;
        case 'I':
            a->o.image_opts = true;
            break;
        case OPT_ADD:
        case OPT_REMOVE:
        case OPT_CLEAR:
        case OPT_ENABLE:
        case OPT_DISABLE:
            add_action(a, (enum bitmap_op)(c - OPT_ADD), NULL);
            break;
        case OPT_MERGE:
            add_action(a, OP_MERGE, optarg);
            merge = true;
            break;
        default:
            return img_bad_option(c, argv);
        }
    }
    if (!a->n) {
        img_error("Need at least one of --add, --remove, --clear, --enable, "
                  "--disable, or --merge");
        return 1;
    }
    bool add = false;
    for (int i = 0; i < a->n; i++) {
        add |= a->actions[i].op == OP_ADD;
    }
    if (gran && !add) {
        img_error("granularity only supported with --add");
        return 1;
    }
    if (a->src_fmt && !a->src_file) {
        img_error("-F only supported with -b");
        return 1;
    }
    if (a->src_file && !merge) {
        img_error("Merge bitmap source file only supported with --merge");
        return 1;
    }
    if (optind != argc - 2) {
        img_error("Expecting filename and bitmap name");
        return 1;
    }
    if (gran && img_cvtnum("granularity", gran, 0, INT64_MAX, &a->granularity) < 0) {
        return 1;
    }
    if (a->granularity > UINT32_MAX) {
        a->granularity = 1;          /* refused as not a power of two at least 512 */
    }
    a->o.filename = argv[optind];
    a->bitmap = argv[optind + 1];
    return -1;
}

int img_bitmap(int argc, char **argv)
{
    struct bitmap_args a = { .o = { .writable = true } };
    int ret = parse_args(argc, argv, &a);
    if (ret < 0) {
        ret = run_bitmap(&a);
    }
    free(a.actions);
    return ret;
}
