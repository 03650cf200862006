/*
 * The qcow2 header: the fixed fields (versions 2 and 3), the extensions
 * after them, and the backing file name at the end of the first cluster.
 *
 * Reading checks every field against the file and QEMU's limits before
 * anything uses it.  Rewriting produces the layout QEMU writes (so an image
 * both programs touch stays byte-identical where it can): fields, then the
 * backing format, data file name, encryption pointer, feature name table
 * (v3), bitmaps extension, the unknown extensions we found, the end marker
 * and the backing file name.
 */
#include "qcow2/qcow2-int.h"

#include <stdio.h>

#include "util/log.h"

/* Header field offsets. */
enum {
    HDR_MAGIC = 0,
    HDR_VERSION = 4,
    HDR_BACKING_OFFSET = 8,
    HDR_BACKING_SIZE = 16,
    HDR_CLUSTER_BITS = 20,
    HDR_SIZE = 24,
    HDR_CRYPT_METHOD = 32,
    HDR_L1_SIZE = 36,
    HDR_L1_OFFSET = 40,
    HDR_REFTABLE_OFFSET = 48,
    HDR_REFTABLE_CLUSTERS = 56,
    HDR_NB_SNAPSHOTS = 60,
    HDR_SNAPSHOTS_OFFSET = 64,
    HDR_INCOMPAT = 72,
    HDR_COMPAT = 80,
    HDR_AUTOCLEAR = 88,
    HDR_REFCOUNT_ORDER = 96,
    HDR_HEADER_LENGTH = 100,
    HDR_COMPRESSION_TYPE = 104,
};

#define FEATURE_ENTRY_LEN 48

struct feature {
    uint8_t type;      /* 0 incompatible, 1 compatible, 2 autoclear */
    uint8_t bit;
    const char *name;
};

/* What QEMU 7.2 writes, in its order. */
static const struct feature known_features[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

const char *qcow2_feature_name(int type, int bit)
{
    for (size_t i = 0; i < ARRAY_SIZE(known_features); i++) {
        if (known_features[i].type == type && known_features[i].bit == bit) {
            return known_features[i].name;
        }
    }
    return NULL;
}

static const char *image_name(const struct qcow2_state *s)
{
    return bnode_describe(s->bs->filename[0] || !s->bs->file ? s->bs : s->bs->file->bs);
}

/* ---- Reading --------------------------------------------------------------- */

/* A table [offset, offset + bytes) must be cluster aligned and inside the file. */
static int check_table(struct qcow2_state *s, const char *what, uint64_t offset,
                       uint64_t bytes, int64_t file_size, bool check_eof, struct err *err)
{
    if (offset & (s->cluster_size - 1)) {
        err_set(err, "%s: %s offset 0x%" PRIx64 " is not cluster aligned", image_name(s), what,
                offset);
        return -EINVAL;
    }
    if (offset > QCOW2_MAX_HOST_OFFSET || bytes > QCOW2_MAX_HOST_OFFSET - offset) {
        err_set(err, "%s: %s at 0x%" PRIx64 " (%" PRIu64 " bytes) is past the largest "
                "possible offset", image_name(s), what, offset, bytes);
        return -EINVAL;
    }
    if (check_eof && bytes && offset + bytes > (uint64_t)file_size) {
        err_set(err, "%s: %s at 0x%" PRIx64 " (%" PRIu64 " bytes) extends past the end of "
                "the file (0x%" PRIx64 ")", image_name(s), what, offset, bytes,
                (uint64_t)file_size);
        return -EINVAL;
    }
    return 0;
}

/* The names of the unknown incompatible bits, from the image's own table. */
static void report_unknown_features(struct qcow2_state *s, uint64_t unknown,
                                    const uint8_t *table, uint32_t table_len, struct err *err)
{
    char msg[768] = "";
    size_t pos = 0;
    for (int bit = 0; bit < 64; bit++) {
        if (!(unknown & (1ULL << bit))) {
            continue;
        }
        char name[FEATURE_ENTRY_LEN] = "";
        for (uint32_t i = 0; table && i + FEATURE_ENTRY_LEN <= table_len;
             i += FEATURE_ENTRY_LEN) {
            if (table[i] == 0 && table[i + 1] == bit) {
                memcpy(name, table + i + 2, FEATURE_ENTRY_LEN - 2);
                name[FEATURE_ENTRY_LEN - 2] = '\0';
                break;
            }
        }
        int n;
        if (name[0]) {
            n = snprintf(msg + pos, sizeof(msg) - pos, "%s%s (incompatible bit %d)",
                         pos ? ", " : "", name, bit);
        } else {
            n = snprintf(msg + pos, sizeof(msg) - pos, "%sunknown incompatible feature bit %d",
                         pos ? ", " : "", bit);
        }
        if (n < 0 || (size_t)n >= sizeof(msg) - pos) {
            break;
        }
        pos += n;
    }
    err_set(err, "%s: unsupported qcow2 feature(s): %s", image_name(s), msg);
}

static void free_unknown_exts(struct qcow2_state *s)
{
    while (!list_empty(&s->unknown_exts)) {
        struct qcow2_unknown_ext *e =
            list_entry(s->unknown_exts.next, struct qcow2_unknown_ext, link);
        list_del(&e->link);
        free(e->data);
        free(e);
    }
}

/* A string extension: not NUL terminated, at most max bytes. */
static char *ext_string(const uint8_t *data, uint32_t len)
{
    char *str = xmalloc(len + 1);
    memcpy(str, data, len);
    str[len] = '\0';
    return str;
}

/*
 * Walk the extensions in buf[start, end).  Feature tables are returned in
 * *features (pointing into buf) for error messages.
 */
static int read_extensions(struct qcow2_state *s, const uint8_t *buf, uint32_t start,
                           uint32_t end, int64_t file_size, const uint8_t **features,
                           uint32_t *features_len, struct err *err)
{
    struct block_node *bs = s->bs;
    uint32_t off = start;
    bool seen_bitmaps = false;

    while (off < end) {
        if (end - off < 8) {
            err_set(err, "%s: header extension at 0x%x is cut by the end of the header "
                    "area (0x%x)", image_name(s), off, end);
            return -EINVAL;
        }
        uint32_t type = ld_be32(buf + off);
        uint32_t len = ld_be32(buf + off + 4);
        off += 8;
        if (type == QCOW2_EXT_END) {
            return 0;
        }
        if (len > end - off) {
            err_set(err, "%s: header extension 0x%08x at 0x%x (%u bytes) runs past the end of "
                    "the header area (0x%x)", image_name(s), type, off - 8, len, end);
            return -EINVAL;
        }
        const uint8_t *data = buf + off;
        switch (type) {
        case QCOW2_EXT_BACKING_FMT:
            if (len >= sizeof(bs->backing_format)) {
                err_set(err, "%s: backing format extension of %u bytes is too long (at most "
                        "%zu)", image_name(s), len, sizeof(bs->backing_format) - 1);
                return -EINVAL;
            }
            memcpy(bs->backing_format, data, len);
            bs->backing_format[len] = '\0';
            break;
        case QCOW2_EXT_FEATURES:
            *features = data;
            *features_len = len;
            break;
        case QCOW2_EXT_CRYPTO:
            if (len != 16) {
                err_set(err, "%s: encryption header extension has length %u, not 16",
                        image_name(s), len);
                return -EINVAL;
            }
            s->crypto_offset = ld_be64(data);
            s->crypto_length = ld_be64(data + 8);
            break;
        case QCOW2_EXT_DATA_FILE:
            if (len > PATH_MAX - 1) {
                err_set(err, "%s: data file name extension of %u bytes is too long",
                        image_name(s), len);
                return -EINVAL;
            }
            free(s->data_file_name);
            s->data_file_name = ext_string(data, len);
            break;
        case QCOW2_EXT_BITMAPS:
            if (seen_bitmaps) {
                err_set(err, "%s: the bitmaps extension appears twice", image_name(s));
                return -EINVAL;
            }
            seen_bitmaps = true;
            if (s->version < 3) {
                log_warn("%s: ignoring the bitmaps extension of a version 2 image",
                         image_name(s));
                break;
            }
            int ret = qcow2_read_bitmap_ext(s, data, len, file_size, err);
            if (ret < 0) {
                return ret;
            }
            break;
        default: {
            struct qcow2_unknown_ext *e = xzalloc(sizeof(*e));
            e->type = type;
            e->len = len;
            e->data = xmalloc(len ? len : 1);
            memcpy(e->data, data, len);
            list_add_tail(&s->unknown_exts, &e->link);
            break;
        }
        }
        off += ALIGN_UP(len, 8);
    }
    return 0;
}

int qcow2_read_header(struct qcow2_state *s, const uint8_t *buf, size_t len, int64_t file_size,
                      int flags, struct err *err)
{
    struct block_node *bs = s->bs;

    list_init(&s->unknown_exts);
    if (len < QCOW2_V2_HEADER_LEN || ld_be32(buf + HDR_MAGIC) != QCOW2_MAGIC) {
        err_set(err, "%s: Image is not in qcow2 format", image_name(s));
        return -EINVAL;
    }
    s->version = ld_be32(buf + HDR_VERSION);
    if (s->version != 2 && s->version != 3) {
        err_set(err, "%s: unsupported qcow2 version %u", image_name(s), s->version);
        return -ENOTSUP;
    }
    s->cluster_bits = ld_be32(buf + HDR_CLUSTER_BITS);
    if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        err_set(err, "%s: cluster_bits %u is out of range (cluster size must be between 512 "
                "bytes and 2 MiB)", image_name(s), s->cluster_bits);
        return -EINVAL;
    }
    s->cluster_size = 1U << s->cluster_bits;

    if (s->version == 2) {
        s->header_length = QCOW2_V2_HEADER_LEN;
        s->refcount_order = 4;
    } else {
        if (len < QCOW2_V3_HEADER_LEN) {
            err_set(err, "%s: version 3 header is cut short (%zu bytes)", image_name(s), len);
            return -EINVAL;
        }
        s->header_length = ld_be32(buf + HDR_HEADER_LENGTH);
        if (s->header_length < QCOW2_V3_HEADER_LEN || s->header_length % 8 ||
            s->header_length > s->cluster_size || s->header_length > len) {
            err_set(err, "%s: header_length %u is invalid (a multiple of 8 from 104 to the "
                    "cluster size)", image_name(s), s->header_length);
            return -EINVAL;
        }
        s->incompat = ld_be64(buf + HDR_INCOMPAT);
        s->compat = ld_be64(buf + HDR_COMPAT);
        s->autoclear = ld_be64(buf + HDR_AUTOCLEAR);
        s->refcount_order = ld_be32(buf + HDR_REFCOUNT_ORDER);
        if (s->refcount_order > 6) {
            err_set(err, "%s: refcount_order %u is out of range (at most 6, 64-bit refcounts)",
                    image_name(s), s->refcount_order);
            return -EINVAL;
        }
        if (s->header_length > HDR_COMPRESSION_TYPE) {
            s->compression_type = buf[HDR_COMPRESSION_TYPE];
        }
        if (s->header_length > QCOW2_HEADER_LEN_WRITTEN) {
            s->header_tail_len = s->header_length - QCOW2_HEADER_LEN_WRITTEN;
            s->header_tail = xmalloc(s->header_tail_len);
            memcpy(s->header_tail, buf + QCOW2_HEADER_LEN_WRITTEN, s->header_tail_len);
        }
    }

    s->size = ld_be64(buf + HDR_SIZE);
    s->crypt_method = ld_be32(buf + HDR_CRYPT_METHOD);
    s->l1_size = ld_be32(buf + HDR_L1_SIZE);
    s->l1_table_offset = ld_be64(buf + HDR_L1_OFFSET);
    s->refcount_table_offset = ld_be64(buf + HDR_REFTABLE_OFFSET);
    uint32_t reftable_clusters = ld_be32(buf + HDR_REFTABLE_CLUSTERS);
    s->nb_snapshots = ld_be32(buf + HDR_NB_SNAPSHOTS);
    s->snapshots_offset = ld_be64(buf + HDR_SNAPSHOTS_OFFSET);
    uint64_t backing_offset = ld_be64(buf + HDR_BACKING_OFFSET);
    uint32_t backing_size = ld_be32(buf + HDR_BACKING_SIZE);

    /* Extensions end where the backing file name begins, or at the cluster's end. */
    uint32_t ext_end = MIN((uint64_t)s->cluster_size, len);
    if (backing_offset) {
        if (backing_offset >= s->cluster_size || backing_size > QCOW2_MAX_BACKING_NAME ||
            backing_offset + backing_size > MIN((uint64_t)s->cluster_size, len)) {
            err_set(err, "%s: backing file name at 0x%" PRIx64 " (%u bytes) is not inside the "
                    "first cluster, or longer than 1023 bytes", image_name(s), backing_offset,
                    backing_size);
            return -EINVAL;
        }
        ext_end = MIN(ext_end, (uint32_t)backing_offset);
    }
    const uint8_t *features = NULL;
    uint32_t features_len = 0;
    int ret = read_extensions(s, buf, s->header_length, ext_end, file_size, &features,
                              &features_len, err);
    if (ret < 0) {
        return ret;
    }

    uint64_t unknown = s->incompat & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown) {
        report_unknown_features(s, unknown, features, features_len, err);
        return -ENOTSUP;
    }
    if (s->crypt_method) {
        err_set(err, "%s: the image is encrypted (%s); encrypted qcow2 images are not "
                "supported yet", image_name(s),
                s->crypt_method == QCOW2_CRYPT_AES ? "AES" :
                s->crypt_method == QCOW2_CRYPT_LUKS ? "LUKS" : "unknown method");
        return -ENOTSUP;
    }
    if ((s->incompat & QCOW2_INCOMPAT_CORRUPT) && (flags & BDRV_O_RDWR) &&
        !(flags & BDRV_O_CHECK)) {
        err_set(err, "%s: the image is marked corrupt; it cannot be opened read/write (run "
                "'qemu-img check -r all' to repair it)", image_name(s));
        return -EACCES;
    }
    if (s->incompat & QCOW2_INCOMPAT_COMPRESSION) {
        if (s->compression_type == QCOW2_COMPRESSION_ZLIB) {
            err_set(err, "%s: the compression type bit is set but compression_type is zlib",
                    image_name(s));
            return -EINVAL;
        }
    } else if (s->compression_type != QCOW2_COMPRESSION_ZLIB) {
        err_set(err, "%s: compression_type %u is set without the compression type bit",
                image_name(s), s->compression_type);
        return -EINVAL;
    }
    if (s->compression_type > QCOW2_COMPRESSION_ZSTD) {
        err_set(err, "%s: unknown compression type %u", image_name(s), s->compression_type);
        return -ENOTSUP;
    }
    s->ext_l2 = s->incompat & QCOW2_INCOMPAT_EXTL2;
    if (s->ext_l2 && s->cluster_bits < QCOW2_EXTL2_MIN_CLUSTER_BITS) {
        err_set(err, "%s: extended L2 entries need clusters of at least 16 KiB (this image "
                "has %u bytes)", image_name(s), s->cluster_size);
        return -EINVAL;
    }

    /* Geometry. */
    s->l2_entry_size = s->ext_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->ext_l2 ? 4 : 3);
    s->l2_size = 1U << s->l2_bits;
    s->sc_per_cluster = s->ext_l2 ? QCOW2_EXTL2_SUBCLUSTERS : 1;
    s->sc_size = s->cluster_size / s->sc_per_cluster;
    s->sc_bits = ctz64(s->sc_size);
    s->refcount_bits = 1U << s->refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ULL << s->refcount_bits) - 1;
    s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
    s->rb_size = 1U << s->rb_bits;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ULL << (s->cluster_bits - 8)) - 1;
    s->cluster_offset_mask = (1ULL << s->csize_shift) - 1;

    /* The virtual size and the L1 table. */
    if (s->size > (uint64_t)BDRV_MAX_LENGTH) {
        err_set(err, "%s: virtual size %" PRIu64 " is too large", image_name(s), s->size);
        return -EFBIG;
    }
    uint64_t l1_needed = qcow2_l1_entries_for(s->cluster_bits, s->l2_bits, s->size);
    if ((uint64_t)s->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        err_set(err, "%s: active L1 table of %u entries is too large (the limit is 32 MiB)",
                image_name(s), s->l1_size);
        return -EFBIG;
    }
    if (s->l1_size < l1_needed) {
        err_set(err, "%s: active L1 table of %u entries is too small for a virtual size of "
                "%" PRIu64 " bytes", image_name(s), s->l1_size, s->size);
        return -EINVAL;
    }
    s->l1_vm_state_index = (uint32_t)l1_needed;
    if (s->l1_size) {
        ret = check_table(s, "active L1 table", s->l1_table_offset, (uint64_t)s->l1_size * 8,
                          file_size, true, err);
        if (ret < 0) {
            return ret;
        }
    }
    if (reftable_clusters == 0 ||
        (uint64_t)reftable_clusters * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES) {
        err_set(err, "%s: refcount table of %u clusters is %s (at most 8 MiB)", image_name(s),
                reftable_clusters, reftable_clusters ? "too large" : "empty");
        return reftable_clusters ? -EFBIG : -EINVAL;
    }
    s->refcount_table_size = reftable_clusters << (s->cluster_bits - 3);
    ret = check_table(s, "refcount table", s->refcount_table_offset,
                      (uint64_t)reftable_clusters * s->cluster_size, file_size, true, err);
    if (ret < 0) {
        return ret;
    }
    if (s->refcount_table_offset == 0 || s->l1_table_offset == 0) {
        if (s->refcount_table_offset == 0 || s->l1_size) {
            err_set(err, "%s: %s table offset 0 overlaps the header", image_name(s),
                    s->refcount_table_offset == 0 ? "refcount" : "active L1");
            return -EINVAL;
        }
    }
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
        err_set(err, "%s: %u snapshots are too many (at most 65536)", image_name(s),
                s->nb_snapshots);
        return -EFBIG;
    }
    if (s->nb_snapshots) {
        ret = check_table(s, "snapshot table", s->snapshots_offset, 0, file_size, false, err);
        if (ret < 0) {
            return ret;
        }
    }
    if (s->crypto_offset || s->crypto_length) {
        ret = check_table(s, "encryption header", s->crypto_offset, s->crypto_length,
                          file_size, false, err);
        if (ret < 0) {
            return ret;
        }
    }

    /* The backing file. */
    if (backing_offset) {
        if (s->incompat & QCOW2_INCOMPAT_DATA_FILE &&
            (s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW)) {
            err_set(err, "%s: an image with a raw external data file cannot have a backing "
                    "file", image_name(s));
            return -EINVAL;
        }
        memcpy(bs->backing_file, buf + backing_offset, backing_size);
        bs->backing_file[backing_size] = '\0';
        if (memchr(bs->backing_file, '\0', backing_size)) {
            err_set(err, "%s: the backing file name contains a NUL byte", image_name(s));
            return -EINVAL;
        }
    } else {
        bs->backing_file[0] = '\0';
        bs->backing_format[0] = '\0';
    }
    if (!(s->incompat & QCOW2_INCOMPAT_DATA_FILE)) {
        if (s->data_file_name) {
            /* A name without the bit means nothing (QEMU ignores it too). */
            free(s->data_file_name);
            s->data_file_name = NULL;
        }
        /* Raw external data without external data is not a thing: drop the bit. */
        s->autoclear &= ~QCOW2_AUTOCLEAR_DATA_RAW;
    }
    return 0;
}

void qcow2_free_header_state(struct qcow2_state *s)
{
    free_unknown_exts(s);
    free(s->header_tail);
    s->header_tail = NULL;
    free(s->data_file_name);
    s->data_file_name = NULL;
}

/* ---- Writing ------------------------------------------------------------------ */

/* Append an extension at *off of buf (cluster bytes); -ENOSPC if it does not fit. */
static int put_ext(uint8_t *buf, uint32_t size, uint32_t *off, uint32_t type, const void *data,
                   uint32_t len)
{
    uint32_t need = 8 + ALIGN_UP(len, 8);
    if (*off > size || need > size - *off) {
        return -ENOSPC;
    }
    st_be32(buf + *off, type);
    st_be32(buf + *off + 4, len);
    if (len) {
        memcpy(buf + *off + 8, data, len);
    }
    *off += need;
    return 0;
}

/* The bitmaps extension payload. */
static void bitmap_ext_payload(const struct qcow2_state *s, uint8_t out[24])
{
    memset(out, 0, 24);
    st_be32(out, s->nb_bitmaps);
    st_be64(out + 8, s->bitmap_directory_size);
    st_be64(out + 16, s->bitmap_directory_offset);
}

int qcow2_update_header(struct qcow2_state *s)
{
    struct block_node *bs = s->bs;
    uint32_t size = s->cluster_size;
    uint8_t *buf = bnode_blockalign(bs->file->bs, size);
    uint32_t hlen = s->version >= 3 ? QCOW2_HEADER_LEN_WRITTEN + s->header_tail_len
                                    : QCOW2_V2_HEADER_LEN;
    int ret;

    memset(buf, 0, size);
    st_be32(buf + HDR_MAGIC, QCOW2_MAGIC);
    st_be32(buf + HDR_VERSION, s->version);
    st_be32(buf + HDR_CLUSTER_BITS, s->cluster_bits);
    st_be64(buf + HDR_SIZE, s->size);
    st_be32(buf + HDR_CRYPT_METHOD, s->crypt_method);
    st_be32(buf + HDR_L1_SIZE, s->l1_size);
    st_be64(buf + HDR_L1_OFFSET, s->l1_table_offset);
    st_be64(buf + HDR_REFTABLE_OFFSET, s->refcount_table_offset);
    st_be32(buf + HDR_REFTABLE_CLUSTERS, (uint32_t)(((uint64_t)s->refcount_table_size * 8) >>
                                                    s->cluster_bits));
    st_be32(buf + HDR_NB_SNAPSHOTS, s->nb_snapshots);
    st_be64(buf + HDR_SNAPSHOTS_OFFSET, s->snapshots_offset);
    if (s->version >= 3) {
        st_be64(buf + HDR_INCOMPAT, s->incompat);
        st_be64(buf + HDR_COMPAT, s->compat);
        st_be64(buf + HDR_AUTOCLEAR, s->autoclear);
        st_be32(buf + HDR_REFCOUNT_ORDER, s->refcount_order);
        st_be32(buf + HDR_HEADER_LENGTH, hlen);
        buf[HDR_COMPRESSION_TYPE] = s->compression_type;
        if (s->header_tail_len) {
            memcpy(buf + QCOW2_HEADER_LEN_WRITTEN, s->header_tail, s->header_tail_len);
        }
    }

    uint32_t off = hlen;
    ret = 0;
    if (bs->backing_file[0] && bs->backing_format[0]) {
        ret = put_ext(buf, size, &off, QCOW2_EXT_BACKING_FMT, bs->backing_format,
                      strlen(bs->backing_format));
    }
    if (ret == 0 && s->data_file_name) {
        ret = put_ext(buf, size, &off, QCOW2_EXT_DATA_FILE, s->data_file_name,
                      strlen(s->data_file_name));
    }
    if (ret == 0 && (s->crypto_offset || s->crypto_length)) {
        uint8_t c[16];
        st_be64(c, s->crypto_offset);
        st_be64(c + 8, s->crypto_length);
        ret = put_ext(buf, size, &off, QCOW2_EXT_CRYPTO, c, sizeof(c));
    }
    /* Small header clusters keep their room for the backing file name (as QEMU). */
    if (ret == 0 && s->version >= 3 && s->cluster_size > 4096) {
        uint8_t table[ARRAY_SIZE(known_features) * FEATURE_ENTRY_LEN];
        memset(table, 0, sizeof(table));
        for (size_t i = 0; i < ARRAY_SIZE(known_features); i++) {
            uint8_t *e = table + i * FEATURE_ENTRY_LEN;
            e[0] = known_features[i].type;
            e[1] = known_features[i].bit;
            memcpy(e + 2, known_features[i].name, strlen(known_features[i].name));
        }
        ret = put_ext(buf, size, &off, QCOW2_EXT_FEATURES, table, sizeof(table));
    }
    if (ret == 0 && s->nb_bitmaps) {
        uint8_t b[24];
        bitmap_ext_payload(s, b);
        ret = put_ext(buf, size, &off, QCOW2_EXT_BITMAPS, b, sizeof(b));
    }
    struct qcow2_unknown_ext *e;
    list_for_each(e, &s->unknown_exts, link) {
        if (ret == 0) {
            ret = put_ext(buf, size, &off, e->type, e->data, e->len);
        }
    }
    if (ret == 0) {
        ret = put_ext(buf, size, &off, QCOW2_EXT_END, NULL, 0);
    }
    if (ret == 0 && bs->backing_file[0]) {
        size_t blen = strlen(bs->backing_file);
        if (blen > size - off) {
            ret = -ENOSPC;
        } else {
            memcpy(buf + off, bs->backing_file, blen);
            st_be64(buf + HDR_BACKING_OFFSET, off);
            st_be32(buf + HDR_BACKING_SIZE, (uint32_t)blen);
        }
    }
    if (ret == 0) {
        ret = qcow2_write_meta(s, QCOW2_OL_MAIN_HEADER, 0, buf, size);
    } else {
        log_error("%s: the header and its extensions do not fit in the first cluster",
                  image_name(s));
    }
    free(buf);
    return ret;
}

/* Write the 8-byte incompatible features field alone. */
static int write_incompat(struct qcow2_state *s, uint64_t incompat)
{
    uint8_t v[8];
    st_be64(v, incompat);
    return qcow2_write_meta(s, QCOW2_OL_MAIN_HEADER, HDR_INCOMPAT, v, sizeof(v));
}

int qcow2_mark_dirty(struct qcow2_state *s)
{
    if (s->version < 3 || (s->incompat & QCOW2_INCOMPAT_DIRTY)) {
        return 0;
    }
    /*
     * The bit must be on disk before any L2 table written without waiting
     * for its refcounts; tables written so far kept that order.
     */
    int ret = write_incompat(s, s->incompat | QCOW2_INCOMPAT_DIRTY);
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret == 0) {
        s->incompat |= QCOW2_INCOMPAT_DIRTY;
    }
    return ret;
}

int qcow2_mark_clean(struct qcow2_state *s)
{
    if (!(s->incompat & QCOW2_INCOMPAT_DIRTY)) {
        return 0;
    }
    int ret = qcow2_cache_flush(s->l2_cache);
    if (ret == 0) {
        ret = qcow2_cache_flush(s->rb_cache);
    }
    if (ret < 0) {
        return ret;
    }
    ret = write_incompat(s, s->incompat & ~QCOW2_INCOMPAT_DIRTY);
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret == 0) {
        s->incompat &= ~QCOW2_INCOMPAT_DIRTY;
    }
    return ret;
}
