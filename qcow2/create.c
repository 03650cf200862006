/*
 * Creating images (every -o option of qemu-img create -f qcow2), growing
 * and shrinking them, and preallocation.
 *
 * Creation follows QEMU's steps, so a new image is byte-identical to one
 * qemu-img makes: a header with one refcount table cluster and one refcount
 * block, then the image is opened, its first three clusters counted, the
 * full header written, and the image resized to its size (the L1 table
 * lands in cluster 3) with the preallocation asked for.
 */
#include "qcow2/qcow2-int.h"

#include <fcntl.h>
#include <unistd.h>

#include "util/log.h"
#include "util/opts.h"

/* The options, in the order qemu-img prints them in "Formatting ...". */
const struct bdrv_create_opt qcow2_create_opts[] = {
    { "encryption", BDRV_OPT_BOOL, NULL,
      "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", false },
    { "encrypt.format", BDRV_OPT_STRING, NULL, "Encrypt the image, format choices: 'aes', 'luks'", false },
    { "encrypt.key-secret", BDRV_OPT_STRING, NULL,
      "ID of secret providing qcow AES key or LUKS passphrase", false },
    { "encrypt.cipher-alg", BDRV_OPT_STRING, NULL, "Name of encryption cipher algorithm", false },
    { "encrypt.cipher-mode", BDRV_OPT_STRING, NULL, "Name of encryption cipher mode", false },
    { "encrypt.ivgen-alg", BDRV_OPT_STRING, NULL, "Name of IV generator algorithm", false },
    { "encrypt.ivgen-hash-alg", BDRV_OPT_STRING, NULL, "Name of IV generator hash algorithm", false },
    { "encrypt.hash-alg", BDRV_OPT_STRING, NULL, "Name of encryption hash algorithm", false },
    { "encrypt.iter-time", BDRV_OPT_NUMBER, NULL, "Time to spend in PBKDF in milliseconds", false },
    { "cluster_size", BDRV_OPT_SIZE, "65536", "qcow2 cluster size", false },
    { "extended_l2", BDRV_OPT_BOOL, "off", "Extended L2 tables", false },
    { "preallocation", BDRV_OPT_STRING, NULL,
      "Preallocation mode (allowed values: off, metadata, falloc, full)", false },
    { "compression_type", BDRV_OPT_STRING, "zlib",
      "Compression method used for image cluster compression", false },
    { "size", BDRV_OPT_SIZE, NULL, "Virtual disk size", false },
    { "compat", BDRV_OPT_STRING, NULL, "Compatibility level (v2 [0.10] or v3 [1.1])", false },
    { "backing_file", BDRV_OPT_STRING, NULL, "File name of a base image", false },
    { "backing_fmt", BDRV_OPT_STRING, NULL, "Image format of the base image", false },
    { "data_file", BDRV_OPT_STRING, NULL, "File name of an external data file", false },
    { "data_file_raw", BDRV_OPT_BOOL, NULL,
      "The external data file must stay valid as a raw image", false },
    { "lazy_refcounts", BDRV_OPT_BOOL, "off", "Postpone refcount updates", false },
    { "refcount_bits", BDRV_OPT_NUMBER, "16", "Width of a reference count entry in bits", false },
    /* The file protocol's: accepted as qemu-img does; spindle gives them no effect. */
    { "nocow", BDRV_OPT_BOOL, NULL, "Turn off copy-on-write (valid only on btrfs)", true },
    { "extent_size_hint", BDRV_OPT_SIZE, NULL,
      "Extent size hint for the image file, 0 to disable", true },
    { NULL, 0, NULL, NULL, false },
};

struct create_args {
    const char *filename;
    const char *file_node;      /* QMP blockdev-create: the protocol node to format */
    uint64_t size;
    bool has_size;
    int version;
    const char *backing_file, *backing_fmt;
    bool unsafe_backing;
    uint32_t cluster_bits;
    enum prealloc_mode prealloc;
    bool lazy_refcounts;
    uint32_t refcount_order;
    uint8_t compression_type;
    bool extended_l2;
    const char *data_file;
    bool data_file_raw;
};

static int get_bool(json_t *o, const char *key, bool *out, struct err *err)
{
    int r = opts_get_bool(o, key, out, NULL);
    if (r == -EINVAL) {
        err_set(err, "Parameter '%s' expects 'on' or 'off'", key);
    }
    return r;
}

static int parse_args(json_t *o, struct create_args *a, struct err *err)
{
    const char *str;
    uint64_t v;
    bool b;
    int r;
    static const char *const allowed[] = {
        "filename", "size", "compat", "backing_file", "backing_fmt", "x-unsafe-backing",
        "cluster_size", "preallocation", "lazy_refcounts", "refcount_bits", "compression_type",
        "extended_l2", "data_file", "data_file_raw", "encryption", "encrypt", "nocow",
        "extent_size_hint", "file", NULL,
    };

    *a = (struct create_args){ .version = 3, .cluster_bits = QCOW2_DEFAULT_CLUSTER_BITS,
                               .refcount_order = 4 };
    if (opts_check_keys(o, allowed, NULL, err) < 0) {
        return -EINVAL;
    }
    /* blockdev-create names an open protocol node; qemu-img create a file. */
    if (opts_get_str(o, "file", &a->file_node, err) == 0) {
        struct block_node *file = bnode_find(a->file_node);
        if (!file) {
            err_set(err, "Cannot find device='' nor node-name='%s'", a->file_node);
            return -ENOENT;
        }
        a->filename = file->filename;
    } else if (opts_get_str(o, "filename", &a->filename, err) < 0) {
        if (!err_isset(err)) {
            err_set(err, "Parameter 'filename' is required");
        }
        return -EINVAL;
    }
    r = opts_get_size(o, "size", &a->size, err);
    if (r == -EINVAL) {
        return r;
    }
    a->has_size = r == 0;
    if (opts_get_str(o, "compat", &str, NULL) == 0) {
        if (!strcmp(str, "0.10") || !strcmp(str, "v2")) {
            a->version = 2;
        } else if (!strcmp(str, "1.1") || !strcmp(str, "v3")) {
            a->version = 3;
        } else {
            err_set(err, "Parameter 'version' does not accept value '%s'", str);
            return -EINVAL;
        }
    }
    if (opts_get_str(o, "backing_file", &str, NULL) == 0 && str[0]) {
        a->backing_file = str;
    }
    if (opts_get_str(o, "backing_fmt", &str, NULL) == 0 && str[0]) {
        a->backing_fmt = str;
    }
    if (get_bool(o, "x-unsafe-backing", &a->unsafe_backing, err) == -EINVAL) {
        return -EINVAL;
    }
    bool encrypt = false;
    if (get_bool(o, "encryption", &encrypt, err) == -EINVAL) {
        return -EINVAL;
    }
    if (encrypt || json_object_get(o, "encrypt")) {
        err_set(err, "encrypted qcow2 images are not supported yet");
        return -ENOTSUP;
    }
    r = opts_get_size(o, "cluster_size", &v, err);
    if (r == -EINVAL) {
        return r;
    }
    if (r == 0) {
        if (!is_power_of_2(v) || v < 512 || v > 2 * MiB) {
            err_set(err, "Cluster size must be a power of two between 512 and 2048k");
            return -EINVAL;
        }
        a->cluster_bits = ctz64(v);
    }
    if (opts_get_str(o, "preallocation", &str, NULL) == 0 &&
        prealloc_mode_parse(str, &a->prealloc) < 0) {
        err_set(err, "Parameter 'preallocation' does not accept value '%s'", str);
        return -EINVAL;
    }
    if (get_bool(o, "lazy_refcounts", &a->lazy_refcounts, err) == -EINVAL) {
        return -EINVAL;
    }
    r = opts_get_uint(o, "refcount_bits", &v, NULL);
    if (r == -EINVAL || (r == 0 && (!is_power_of_2(v) || v > 64))) {
        err_set(err, "Refcount width must be a power of two and may not exceed 64 bits");
        return -EINVAL;
    }
    if (r == 0) {
        a->refcount_order = ctz64(v);
    }
    if (opts_get_str(o, "compression_type", &str, NULL) == 0) {
        if (!strcmp(str, "zlib")) {
            a->compression_type = QCOW2_COMPRESSION_ZLIB;
        } else if (!strcmp(str, "zstd")) {
            a->compression_type = QCOW2_COMPRESSION_ZSTD;
        } else {
            err_set(err, "Parameter 'compression-type' does not accept value '%s'", str);
            return -EINVAL;
        }
    }
    if (get_bool(o, "extended_l2", &a->extended_l2, err) == -EINVAL) {
        return -EINVAL;
    }
    if (opts_get_str(o, "data_file", &str, NULL) == 0 && str[0]) {
        a->data_file = str;
    }
    if (get_bool(o, "data_file_raw", &a->data_file_raw, err) == -EINVAL ||
        get_bool(o, "nocow", &b, err) == -EINVAL ||
        opts_get_size(o, "extent_size_hint", &v, err) == -EINVAL) {
        return -EINVAL;
    }

    /* What the version allows, in QEMU's order and words. */
    const char *v3 = "compatibility level 1.1 and above (use version=v3 or greater)";
    if (a->version < 3 && a->lazy_refcounts) {
        err_set(err, "Lazy refcounts only supported with %s", v3);
        return -EINVAL;
    }
    if (a->version < 3 && a->refcount_order != 4) {
        err_set(err, "Different refcount widths than 16 bits require compatibility level 1.1 "
                "or above (use version=v3 or greater)");
        return -EINVAL;
    }
    if (a->version < 3 && a->compression_type != QCOW2_COMPRESSION_ZLIB) {
        err_set(err, "Non-zlib compression type is only supported with %s", v3);
        return -EINVAL;
    }
    if (a->extended_l2) {
        if (a->version < 3) {
            err_set(err, "Extended L2 entries are only supported with %s", v3);
            return -EINVAL;
        }
        if (a->cluster_bits < QCOW2_EXTL2_MIN_CLUSTER_BITS) {
            err_set(err, "Extended L2 entries are only supported with cluster sizes of at "
                    "least 16384 bytes");
            return -EINVAL;
        }
    }
    if (a->data_file && a->version < 3) {
        err_set(err, "External data files are only supported with %s", v3);
        return -EINVAL;
    }
    if (a->data_file_raw && !a->data_file) {
        err_set(err, "data-file-raw requires data-file");
        return -EINVAL;
    }
    if (a->data_file_raw && a->backing_file) {
        err_set(err, "Backing file and data-file-raw cannot be used at the same time");
        return -EINVAL;
    }
    if (a->backing_fmt && !a->backing_file) {
        err_set(err, "Backing format cannot be used without backing file");
        return -EINVAL;
    }
    if (a->backing_file && a->prealloc != PREALLOC_MODE_OFF && !a->extended_l2) {
        err_set(err, "Backing file and preallocation can only be used at the same time if "
                "extended_l2 is on");
        return -EINVAL;
    }
    if (a->data_file_raw && a->prealloc == PREALLOC_MODE_OFF) {
        /* The raw data file must read right: every cluster mapped from the start. */
        a->prealloc = PREALLOC_MODE_METADATA;
    }
    return 0;
}

/* The size of the backing file, when none was given. */
static int backing_size(struct create_args *a, struct err *err)
{
    char *path = bdrv_resolve_relative(a->filename, a->backing_file);
    json_t *opts = json_object();
    if (a->backing_fmt) {
        json_object_set_new(opts, "driver", json_string(a->backing_fmt));
    }
    struct err e = { 0 };
    struct block_node *bs = bnode_open(path, opts, BDRV_O_NO_BACKING | BDRV_O_NO_IO, &e);
    json_decref(opts);
    free(path);
    if (!bs) {
        if (a->has_size && a->unsafe_backing) {
            return 0;
        }
        err_set(err, "Could not open backing file: %s", e.msg);
        return -ENOENT;
    }
    if (!a->has_size) {
        a->size = (uint64_t)bnode_getlength(bs);
        a->has_size = true;
    }
    if (!a->backing_fmt) {
        /* qemu-img refuses a backing file without its format (unless -u). */
        if (!a->unsafe_backing) {
            bnode_unref(bs);
            err_set(err, "Backing file specified without backing format");
            return -EINVAL;
        }
    }
    bnode_unref(bs);
    return 0;
}

/* The first three clusters: header, refcount table, one (empty) refcount block. */
static int write_skeleton(struct block_node *file, const struct create_args *a)
{
    uint32_t cs = 1U << a->cluster_bits;
    uint8_t *buf = xzalloc(3 * (size_t)cs);
    st_be32(buf, QCOW2_MAGIC);
    st_be32(buf + 4, a->version);
    st_be32(buf + 20, a->cluster_bits);
    st_be64(buf + 48, cs);
    st_be32(buf + 56, 1);
    if (a->version >= 3) {
        uint64_t incompat = 0, compat = 0, autoclear = 0;
        if (a->data_file) {
            incompat |= QCOW2_INCOMPAT_DATA_FILE;
        }
        if (a->compression_type != QCOW2_COMPRESSION_ZLIB) {
            incompat |= QCOW2_INCOMPAT_COMPRESSION;
        }
        if (a->extended_l2) {
            incompat |= QCOW2_INCOMPAT_EXTL2;
        }
        if (a->lazy_refcounts) {
            compat |= QCOW2_COMPAT_LAZY_REFCOUNTS;
        }
        if (a->data_file_raw) {
            autoclear |= QCOW2_AUTOCLEAR_DATA_RAW;
        }
        st_be64(buf + 72, incompat);
        st_be64(buf + 80, compat);
        st_be64(buf + 88, autoclear);
        st_be32(buf + 96, a->refcount_order);
        st_be32(buf + 100, QCOW2_HEADER_LEN_WRITTEN);
        buf[104] = a->compression_type;
    }
    st_be64(buf + cs, 2ULL * cs);
    struct bdrv_child *c = bnode_root_attach(file, "create", NULL, NULL);
    int ret = bnode_co_pwrite(c, 0, 3 * (int64_t)cs, buf, 0);
    bnode_detach_child(c);
    free(buf);
    return ret;
}

static void fsync_path(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int coroutine_fn create_on_node(struct create_args *a, struct err *err);
static int coroutine_fn format(struct block_node *file, const struct create_args *a,
                               const char *data_path, struct err *err);

int coroutine_fn qcow2_co_create(json_t *options, struct err *err)
{
    struct create_args a;
    int ret = parse_args(options, &a, err);
    if (ret < 0) {
        return ret;
    }
    if (a.backing_file) {
        ret = backing_size(&a, err);
        if (ret < 0) {
            return ret;
        }
    }
    if (!a.has_size) {
        err_set(err, "Parameter 'size' is required");
        return -EINVAL;
    }
    a.size = ALIGN_UP(a.size, (uint64_t)BDRV_SECTOR_SIZE);
    uint32_t l2_bits = a.cluster_bits - (a.extended_l2 ? 4 : 3);
    if (a.size > (uint64_t)BDRV_MAX_LENGTH ||
        qcow2_l1_entries_for(a.cluster_bits, l2_bits, a.size) * 8 > QCOW2_MAX_L1_BYTES) {
        err_set(err, "The image size is too large for file format 'qcow2' (try using a larger "
                "cluster size)");
        return -EFBIG;
    }

    /* The files: the node blockdev-create names (emptied), or new ones. */
    if (a.file_node) {
        return create_on_node(&a, err);
    }
    const struct block_driver *proto = bdrv_find_protocol(a.filename, err);
    if (!proto || !proto->co_create) {
        if (!err_isset(err)) {
            err_set(err, "Protocol driver '%s' does not support image creation",
                    proto->format_name);
        }
        return -ENOTSUP;
    }
    json_t *fopts = json_object();
    json_object_set_new(fopts, "filename", json_string(a.filename));
    json_object_set_new(fopts, "size", json_integer(0));
    ret = proto->co_create(fopts, err);
    json_decref(fopts);
    if (ret < 0) {
        return ret;
    }
    char *data_path = NULL;
    if (a.data_file) {
        /* As qemu-img: created where the name points from here; opened relative to the image. */
        data_path = xstrdup(a.data_file);
        fopts = json_object();
        json_object_set_new(fopts, "filename", json_string(data_path));
        json_object_set_new(fopts, "size", json_integer(0));
        const struct block_driver *dproto = bdrv_find_protocol(data_path, err);
        ret = dproto && dproto->co_create ? dproto->co_create(fopts, err) : -ENOTSUP;
        json_decref(fopts);
        if (ret < 0) {
            free(data_path);
            return ret;
        }
    }

    json_t *popts = json_object();
    json_object_set_new(popts, "cache", json_pack("{s:b}", "no-flush", 1));
    struct block_node *file = bnode_open(a.filename, popts, BDRV_O_RDWR | BDRV_O_PROTOCOL, err);
    json_decref(popts);
    if (!file) {
        free(data_path);
        return -EIO;
    }
    ret = format(file, &a, data_path, err);
    if (ret == 0) {
        fsync_path(a.filename);
        if (data_path) {
            fsync_path(data_path);
        }
    }
    free(data_path);
    return ret;
}

/* QMP blockdev-create: format the protocol node it names, emptied first. */
static int coroutine_fn create_on_node(struct create_args *a, struct err *err)
{
    if (a->data_file) {
        err_set(err, "blockdev-create with a data-file is not supported yet");
        return -ENOTSUP;
    }
    struct block_node *file = bnode_find(a->file_node);
    bnode_ref(file);
    struct bdrv_child *c = bnode_root_attach(file, "create", NULL, NULL);
    int ret = bnode_co_truncate(c, 0, true, PREALLOC_MODE_OFF, 0, err);
    bnode_detach_child(c);
    if (ret < 0) {
        bnode_unref(file);
        return ret;
    }
    /* The user's reference keeps file alive after format() drops ours. */
    ret = format(file, a, NULL, err);
    if (ret == 0) {
        ret = bnode_co_flush(file);
        if (ret < 0) {
            err_set_errno(err, ret, "%s: cannot flush", bnode_describe(file));
        }
    }
    return ret;
}

/*
 * Write the skeleton into file (taking over the caller's reference), open it
 * as qcow2 and finish the image: header, size, preallocation, backing file.
 */
static int coroutine_fn format(struct block_node *file, const struct create_args *ap,
                               const char *data_path, struct err *err)
{
    struct create_args a = *ap;
    int ret = write_skeleton(file, &a);
    if (ret < 0) {
        err_set_errno(err, ret, "Could not write qcow2 header");
        bnode_unref(file);
        return ret;
    }

    /* Open it as qcow2 and finish it with the driver's own code. */
    json_t *qopts = json_object();
    json_object_set_new(qopts, "driver", json_string("qcow2"));
    json_object_set_new(qopts, "file", json_string(file->node_name));
    json_object_set_new(qopts, "cache", json_pack("{s:b}", "no-flush", 1));
    if (data_path) {
        json_t *d = json_object();
        json_object_set_new(d, "driver", json_string("file"));
        json_object_set_new(d, "filename", json_string(data_path));
        json_object_set_new(qopts, "data-file", d);
    }
    struct block_node *bs = bnode_open(NULL, qopts, BDRV_O_RDWR | BDRV_O_NO_BACKING, err);
    json_decref(qopts);
    bnode_unref(file);
    if (!bs) {
        return -EIO;
    }
    struct qcow2_state *s = bs->opaque;
    co_mutex_lock(&s->lock);
    int64_t off = qcow2_alloc_clusters(s, 3ULL * s->cluster_size, NULL);
    ret = off < 0 ? (int)off : 0;
    if (ret == 0 && a.data_file) {
        s->data_file_name = xstrdup(a.data_file);
    }
    if (ret == 0) {
        ret = qcow2_update_header(s);
    }
    co_mutex_unlock(&s->lock);
    if (ret < 0) {
        err_set_errno(err, ret, "Could not write qcow2 header");
        goto out;
    }
    struct bdrv_child *c = bnode_root_attach(bs, "create", NULL, NULL);
    ret = bnode_co_truncate(c, (int64_t)a.size, false, a.prealloc, 0, err);
    bnode_detach_child(c);
    if (ret < 0) {
        goto out;
    }
    if (a.backing_file) {
        ret = bs->drv->co_change_backing_file(bs, a.backing_file, a.backing_fmt);
        if (ret < 0) {
            err_set_errno(err, ret, "Could not assign backing file '%s'", a.backing_file);
            goto out;
        }
    }
out:
    bnode_unref(bs);
    return ret;
}

/* ---- Preallocation --------------------------------------------------------------- */

/* Give [off, off + len) of the file real blocks: falloc reserves, full writes zeroes. */
static int coroutine_fn prealloc_range(struct qcow2_state *s, struct bdrv_child *file,
                                       uint64_t off, uint64_t len, enum prealloc_mode mode)
{
    if (mode == PREALLOC_MODE_FALLOC) {
        return bnode_co_pwrite_zeroes(file, off, len, 0);
    }
    int ret = 0;
    for (uint64_t done = 0; done < len && ret == 0;) {
        uint64_t n = MIN(len - done, (uint64_t)s->cluster_size);
        ret = bnode_co_pwrite(file, off + done, n, s->zero_cluster, 0);
        done += n;
    }
    return ret;
}

int coroutine_fn qcow2_preallocate(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
                                   enum prealloc_mode mode, struct err *err)
{
    uint64_t host_end = 0;
    int ret = 0;

    offset = start_of_cluster(s, offset);
    bytes = ALIGN_UP(offset + bytes, (uint64_t)s->cluster_size) - offset;
    while (bytes) {
        uint64_t n = bytes, host;
        struct qcow2_alloc *m;
        co_mutex_lock(&s->lock);
        ret = qcow2_alloc_host_offset(s, offset, &n, &host, &m);
        if (ret == 0 && m) {
            m->prealloc = true;
            ret = qcow2_alloc_link(s, m);
            if (ret < 0) {
                qcow2_alloc_abort(s, m);
            }
            qcow2_alloc_done(s, m);
        }
        co_mutex_unlock(&s->lock);
        if (ret == 0 && m && mode != PREALLOC_MODE_METADATA && !qcow2_has_data_file(s)) {
            ret = prealloc_range(s, s->bs->file, m->host_offset,
                                 (uint64_t)m->nb_clusters << s->cluster_bits, mode);
        }
        if (m) {
            host_end = MAX(host_end, m->host_offset + ((uint64_t)m->nb_clusters <<
                                                       s->cluster_bits));
            free(m);
        }
        if (ret < 0) {
            err_set_errno(err, ret, "%s: cannot preallocate", bnode_describe(s->bs));
            return ret;
        }
        offset += n;
        bytes -= n;
    }
    /* Reads must find every allocated cluster inside the file. */
    struct bdrv_child *f = s->data_file;
    int64_t len = bnode_getlength(f->bs);
    if (len >= 0 && host_end > (uint64_t)len) {
        enum prealloc_mode fmode = qcow2_has_data_file(s) && mode != PREALLOC_MODE_METADATA
                                   ? mode : PREALLOC_MODE_OFF;
        ret = bnode_co_truncate(f, (int64_t)host_end, false, fmode, 0, err);
    }
    return ret;
}

/* ---- Resize ---------------------------------------------------------------------- */

static int coroutine_fn write_size(struct qcow2_state *s, uint64_t size)
{
    uint8_t v[8];
    st_be64(v, size);
    int ret = qcow2_write_meta(s, QCOW2_OL_MAIN_HEADER, 24, v, sizeof(v));
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    return ret;
}

/* Drop the L2 tables past new_l1 entries (their clusters were discarded already). */
static int coroutine_fn shrink_l1(struct qcow2_state *s, uint64_t new_l1)
{
    for (uint64_t i = new_l1; i < s->l1_size; i++) {
        uint64_t l2 = s->l1_table[i] & L1E_OFFSET_MASK;
        if (!l2) {
            continue;
        }
        pthread_mutex_lock(&s->map_lock);
        s->l1_table[i] = 0;
        pthread_mutex_unlock(&s->map_lock);
        int ret = qcow2_write_l1_entry(s, (uint32_t)i);
        if (ret < 0) {
            return ret;
        }
        qcow2_cache_discard(s->l2_cache, l2);
        qcow2_free_clusters(s, l2, s->cluster_size, QCOW2_DISCARD_ALWAYS);
    }
    return 0;
}

int coroutine_fn qcow2_co_truncate(struct block_node *bs, int64_t offset, bool exact,
                                   enum prealloc_mode prealloc, int flags, struct err *err)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t old = s->size;
    uint64_t new_size = (uint64_t)offset;
    int ret;

    if (new_size % BDRV_SECTOR_SIZE) {
        err_set(err, "The new size must be a multiple of %d", BDRV_SECTOR_SIZE);
        return -EINVAL;
    }
    if (s->corrupt_signalled) {
        err_set(err, "%s: the image is corrupt", bnode_describe(bs));
        return -EIO;
    }
    uint64_t new_l1 = qcow2_l1_entries_for(s->cluster_bits, s->l2_bits, new_size);
    if (new_l1 * 8 > QCOW2_MAX_L1_BYTES) {
        err_set(err, "The image size is too large for file format 'qcow2' (try using a larger "
                "cluster size)");
        return -EFBIG;
    }
    if (new_size < old) {
        if (prealloc != PREALLOC_MODE_OFF) {
            err_set(err, "Preallocation can't be used for shrinking an image");
            return -EINVAL;
        }
        co_mutex_lock(&s->lock);
        uint64_t cut = ALIGN_UP(new_size, (uint64_t)s->cluster_size);
        ret = cut < old ? qcow2_discard_clusters(s, cut, old - cut, QCOW2_DISCARD_ALWAYS, true)
                        : 0;
        if (ret < 0) {
            err_set_errno(err, ret, "Failed to discard cropped clusters");
        }
        if (ret == 0) {
            ret = shrink_l1(s, new_l1);
            if (ret < 0) {
                err_set_errno(err, ret, "Failed to reduce the number of L2 tables");
            }
        }
        if (ret == 0) {
            ret = qcow2_cache_flush(s->l2_cache);
            if (ret == 0) {
                ret = qcow2_cache_flush(s->rb_cache);
            }
        }
        if (ret == 0) {
            s->size = new_size;
            s->l1_vm_state_index = (uint32_t)new_l1;
            ret = write_size(s, new_size);
        }
        int64_t end = ret == 0 ? qcow2_refcount_area_end(s) : -1;
        co_mutex_unlock(&s->lock);
        if (ret < 0) {
            return ret;
        }
        int64_t file_size = bnode_getlength(bs->file->bs);
        if (end > 0 && end < file_size) {
            struct err e = { 0 };
            if (bnode_co_truncate(bs->file, end, false, PREALLOC_MODE_OFF, 0, &e) < 0) {
                log_warn("%s: failed to truncate the tail of the image: %s",
                         bnode_describe(bs), e.msg);
            } else {
                /* The file grows ahead from its new end again (rw.c). */
                s->falloc_end = (uint64_t)end;
                s->size_at_open = MIN(s->size_at_open, (uint64_t)end);
            }
        }
        if (qcow2_has_data_file(s)) {
            bnode_co_truncate(s->data_file, offset, exact, PREALLOC_MODE_OFF, 0, NULL);
        }
        return 0;
    }

    co_mutex_lock(&s->lock);
    ret = qcow2_grow_l1_table(s, new_l1, true);
    co_mutex_unlock(&s->lock);
    if (ret < 0) {
        err_set_errno(err, ret, "Failed to grow the L1 table");
        return ret;
    }
    if (qcow2_data_file_is_raw(s) && prealloc == PREALLOC_MODE_OFF) {
        /* The raw data file keeps reading right only with everything mapped. */
        prealloc = PREALLOC_MODE_METADATA;
    }
    if (prealloc == PREALLOC_MODE_OFF) {
        if (qcow2_has_data_file(s)) {
            ret = bnode_co_truncate(s->data_file, offset, exact, PREALLOC_MODE_OFF, 0, err);
            if (ret < 0) {
                return ret;
            }
        }
    } else if (new_size > old) {
        ret = qcow2_preallocate(s, old, new_size - old, prealloc, err);
        if (ret < 0) {
            return ret;
        }
        if (qcow2_has_data_file(s)) {
            int64_t len = bnode_getlength(s->data_file->bs);
            if (len >= 0 && len < offset) {
                ret = bnode_co_truncate(s->data_file, offset, false,
                                        prealloc == PREALLOC_MODE_METADATA ? PREALLOC_MODE_OFF
                                                                           : prealloc, 0, err);
                if (ret < 0) {
                    return ret;
                }
            }
        }
    }
    co_mutex_lock(&s->lock);
    s->size = new_size;
    s->l1_vm_state_index = (uint32_t)new_l1;
    ret = write_size(s, new_size);
    co_mutex_unlock(&s->lock);
    if (ret < 0) {
        err_set_errno(err, ret, "Failed to update the image size");
    }
    return ret;
}
