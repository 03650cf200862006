/*
 * spindle-img map: where the data of an image lives, as qemu-img map
 * prints it.  Block status is asked layer by layer down the backing chain
 * until a layer says data or zero (its depth is the entry's), and
 * neighbouring runs that look the same are merged into one entry.
 */
#include "img.h"

#include "block/driver.h"

struct map_entry {
    int64_t start, length;
    int64_t offset;            /* valid when has_offset */
    int depth;
    bool data, zero, present, has_offset;
    const char *filename;      /* the node holding the data, when has_offset */
};

struct map {
    struct block_node *bs;
    int64_t start, end;
    bool json;
    int ret;                   /* 0, or -errno after the message */
};

/* The status of the first run at offset, from the first layer that decides it. */
static int coroutine_fn entry_at(struct block_node *bs, int64_t offset, int64_t bytes,
                                 struct map_entry *e)
{
    int64_t map = 0;
    struct block_node *file = NULL;
    int depth = 0, ret;

    for (;;) {
        bs = bnode_skip_filters(bs);
        ret = bnode_co_block_status(bs, true, offset, bytes, &bytes, &map, &file);
        if (ret < 0) {
            return ret;
        }
        if (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) {
            break;
        }
        bs = bnode_backing_bs(bs);
        if (!bs) {
            ret = 0;     /* nothing anywhere: reads as zeroes, but no layer says so */
            break;
        }
        depth++;
    }
    bool has_offset = ret & BDRV_BLOCK_OFFSET_VALID;
    *e = (struct map_entry){
        .start = offset,
        .length = bytes,
        .offset = has_offset ? map : 0,
        .depth = depth,
        .data = ret & BDRV_BLOCK_DATA,
        .zero = ret & BDRV_BLOCK_ZERO,
        .present = ret & BDRV_BLOCK_ALLOCATED,
        .has_offset = has_offset,
        .filename = has_offset && file ? file->filename : NULL,
    };
    return 0;
}

static bool mergeable(const struct map_entry *cur, const struct map_entry *next)
{
    if (cur->length == 0 || cur->zero != next->zero || cur->data != next->data ||
        cur->depth != next->depth || cur->present != next->present ||
        !cur->filename != !next->filename || cur->has_offset != next->has_offset) {
        return false;
    }
    if (cur->filename && strcmp(cur->filename, next->filename)) {
        return false;
    }
    return !cur->has_offset || cur->offset + cur->length == next->offset;
}

/* One entry; next (NULL for the last) is the one that will follow it. */
static int print_entry(bool json, const struct map_entry *e, struct map_entry *next)
{
    if (json) {
        printf("{ \"start\": %" PRId64 ", \"length\": %" PRId64 ", \"depth\": %d, "
               "\"present\": %s, \"zero\": %s, \"data\": %s", e->start, e->length, e->depth,
               e->present ? "true" : "false", e->zero ? "true" : "false",
               e->data ? "true" : "false");
        if (e->has_offset) {
            printf(", \"offset\": %" PRId64, e->offset);
        }
        printf(next ? "},\n" : "}");
        return 0;
    }
    if (e->data && !e->has_offset) {
        img_error("File contains external, encrypted or compressed clusters.");
        return -ENOTSUP;
    }
    if (e->data && !e->zero) {
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", (uint64_t)e->start,
               (uint64_t)e->length, (uint64_t)(e->has_offset ? e->offset : 0),
               e->filename ? e->filename : "");
    }
    /* The human form shows data only: everything else merges as "zero". */
    if (next && (!next->data || next->zero)) {
        next->data = false;
        next->zero = true;
    }
    return 0;
}

static void map_entry_co(void *opaque)
{
    struct map *m = opaque;
    struct map_entry cur = { .start = m->start }, next;

    while (cur.start + cur.length < m->end) {
        int64_t offset = cur.start + cur.length;
        int ret = entry_at(m->bs, offset, m->end - offset, &next);
        if (ret < 0) {
            img_error("Could not read file metadata: %s", strerror(-ret));
            m->ret = ret;
            return;
        }
        if (mergeable(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (cur.length > 0 && (m->ret = print_entry(m->json, &cur, &next)) < 0) {
            return;
        }
        cur = next;
    }
    m->ret = print_entry(m->json, &cur, NULL);
    if (m->json) {
        printf("]\n");
    }
}

int img_map(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "format", required_argument, NULL, 'f' },
        { "output", required_argument, NULL, 'o' },
        { "image-opts", no_argument, NULL, 'I' },
        { "force-share", no_argument, NULL, 'U' },
        { "start-offset", required_argument, NULL, 's' },
        { "max-length", required_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 },
    };
    struct image_open o = { 0 };
    const char *output = NULL;
    int64_t start = 0, max_length = -1;
    bool json = false;
    int c;

    while ((c = getopt_long(argc, argv, ":f:s:l:hU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.fmt = optarg;
            break;
        case 'U':
            o.force_share = true;
            break;
        case 'o':
            output = optarg;
            break;
        case 's':
            if (img_cvtnum("start offset", optarg, 0, INT64_MAX, &start) < 0) {
                return 1;
            }
            break;
        case 'l':
            if (img_cvtnum("max length", optarg, 0, INT64_MAX, &max_length) < 0) {
                return 1;
            }
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
    if (output && img_parse_output(output, &json) < 0) {
        return 1;
    }
    o.filename = argv[optind];
    struct block_backend *blk = img_open(&o);
    if (!blk) {
        return 1;
    }
    if (json) {
        printf("[");
    } else {
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    }
    struct map m = { .bs = blk_node(blk), .start = start, .json = json };
    m.end = blk_getlength(blk);
    if (m.end < 0) {
        img_error("Failed to get size for '%s'", o.filename);
        blk_unref(blk);
        return 1;
    }
    if (max_length != -1) {
        m.end = MIN(m.end, start + max_length);
    }
    co_run_sync(map_entry_co, &m);
    blk_unref(blk);
    return m.ret < 0;
}
