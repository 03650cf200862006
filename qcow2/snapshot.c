/*
 * Internal snapshots: the snapshot table, and taking, applying and
 * deleting snapshots.
 *
 * A snapshot is a copy of the active L1 table; taking one adds a reference
 * to every L2 table and data cluster the active table reaches (so the next
 * write to them copies them first), applying one makes its L1 table the
 * active one (references moved accordingly), deleting one drops its
 * references.  COPIED flags of the active tables are recomputed after
 * each, since only they must be exact.
 */
#include "qcow2/qcow2-int.h"

#include <stdio.h>

#include "block/dirty-bitmap.h"
#include "util/log.h"

#define SN_HEADER_LEN   40
#define SN_EXTRA_LEN    24   /* vm_state_size_large, disk_size, icount */

static const char *image_name(const struct qcow2_state *s)
{
    return bnode_describe(s->bs);
}

void qcow2_free_snapshots(struct qcow2_state *s)
{
    for (uint32_t i = 0; i < s->nb_snapshots && s->snapshots; i++) {
        free(s->snapshots[i].id_str);
        free(s->snapshots[i].name);
        free(s->snapshots[i].unknown_extra);
    }
    free(s->snapshots);
    s->snapshots = NULL;
}

/* ---- Reading the table --------------------------------------------------------- */

/* A window over the table that reads more of it as parsing advances. */
struct reader {
    struct qcow2_state *s;
    uint64_t base;
    uint8_t *buf;
    uint64_t len;        /* bytes read so far */
    uint64_t limit;      /* the file's end, relative to base */
};

static int need(struct reader *r, uint64_t upto)
{
    if (upto <= r->len) {
        return 0;
    }
    if (upto > r->limit) {
        return -ENOSPC;
    }
    uint64_t want = MIN(MAX(upto, r->len * 2), MIN(r->limit, (uint64_t)QCOW2_MAX_SNAPSHOT_TABLE));
    want = MAX(want, upto);
    r->buf = xrealloc(r->buf, want);
    int ret = bnode_co_pread(r->s->bs->file, r->base + r->len, want - r->len, r->buf + r->len, 0);
    if (ret < 0) {
        return ret;
    }
    r->len = want;
    return 0;
}

int qcow2_read_snapshots(struct qcow2_state *s, int64_t file_size, int flags, struct err *err)
{
    s->snapshots = NULL;
    s->snapshots_size = 0;
    if (!s->nb_snapshots) {
        return 0;
    }
    struct reader r = { .s = s, .base = s->snapshots_offset,
                        .limit = (uint64_t)file_size > s->snapshots_offset
                                 ? (uint64_t)file_size - s->snapshots_offset : 0 };
    s->snapshots = xcalloc(s->nb_snapshots, sizeof(*s->snapshots));
    uint64_t off = 0;
    int ret = 0;
    uint32_t i;

    for (i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        off = ALIGN_UP(off, 8);
        ret = need(&r, off + SN_HEADER_LEN);
        if (ret < 0) {
            break;
        }
        const uint8_t *h = r.buf + off;
        sn->l1_table_offset = ld_be64(h);
        sn->l1_size = ld_be32(h + 8);
        uint16_t id_len = ld_be16(h + 12);
        uint16_t name_len = ld_be16(h + 14);
        sn->date_sec = ld_be32(h + 16);
        sn->date_nsec = ld_be32(h + 20);
        sn->vm_clock_nsec = ld_be64(h + 24);
        sn->vm_state_size = ld_be32(h + 32);
        sn->extra_data_size = ld_be32(h + 36);
        off += SN_HEADER_LEN;
        if (sn->extra_data_size > QCOW2_MAX_SNAPSHOT_EXTRA) {
            err_set(err, "%s: snapshot table entry %u at 0x%" PRIx64 " has %u bytes of extra "
                    "data (at most 1024)", image_name(s), i, s->snapshots_offset + off - 40,
                    sn->extra_data_size);
            ret = -EFBIG;
            goto fail;
        }
        ret = need(&r, off + sn->extra_data_size + id_len + name_len);
        if (ret < 0) {
            break;
        }
        const uint8_t *x = r.buf + off;
        sn->disk_size = s->size;
        sn->icount = UINT64_MAX;
        if (sn->extra_data_size >= 8) {
            sn->vm_state_size = ld_be64(x);
        }
        if (sn->extra_data_size >= 16) {
            sn->disk_size = ld_be64(x + 8);
        }
        if (sn->extra_data_size >= 24) {
            sn->icount = ld_be64(x + 16);
        }
        if (sn->extra_data_size > SN_EXTRA_LEN) {
            sn->unknown_extra = xmalloc(sn->extra_data_size - SN_EXTRA_LEN);
            memcpy(sn->unknown_extra, x + SN_EXTRA_LEN, sn->extra_data_size - SN_EXTRA_LEN);
        }
        off += sn->extra_data_size;
        sn->id_str = xmalloc(id_len + 1);
        memcpy(sn->id_str, r.buf + off, id_len);
        sn->id_str[id_len] = '\0';
        off += id_len;
        sn->name = xmalloc(name_len + 1);
        memcpy(sn->name, r.buf + off, name_len);
        sn->name[name_len] = '\0';
        off += name_len;
        if (off > QCOW2_MAX_SNAPSHOT_TABLE) {
            err_set(err, "%s: snapshot table at 0x%" PRIx64 " is too big (more than 64 MiB)",
                    image_name(s), s->snapshots_offset);
            ret = -EFBIG;
            goto fail;
        }
        if (flags & BDRV_O_CHECK) {
            continue;
        }
        if ((sn->l1_table_offset & (s->cluster_size - 1)) ||
            (uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
            sn->l1_table_offset + (uint64_t)sn->l1_size * 8 > (uint64_t)file_size) {
            err_set(err, "%s: snapshot %u ('%s') has an invalid L1 table (offset 0x%" PRIx64
                    ", %u entries)", image_name(s), i, sn->name, sn->l1_table_offset,
                    sn->l1_size);
            ret = -EINVAL;
            goto fail;
        }
    }
    if (ret == -ENOSPC) {
        err_set(err, "%s: snapshot table at 0x%" PRIx64 " (%u entries) extends past the end "
                "of the file", image_name(s), s->snapshots_offset, s->nb_snapshots);
        ret = -EINVAL;
        goto fail;
    }
    if (ret < 0) {
        err_set_errno(err, ret, "%s: cannot read the snapshot table", image_name(s));
        goto fail;
    }
    s->snapshots_size = off;
    free(r.buf);
    return 0;

fail:
    free(r.buf);
    /* Entries past i were never filled: freeing all is safe (calloc'd). */
    qcow2_free_snapshots(s);
    return ret;
}

/* ---- Writing the table --------------------------------------------------------- */

int coroutine_fn qcow2_write_snapshots(struct qcow2_state *s)
{
    uint64_t size = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        size = ALIGN_UP(size, 8) + SN_HEADER_LEN + MAX(sn->extra_data_size, SN_EXTRA_LEN) +
               strlen(sn->id_str) + strlen(sn->name);
    }
    if (size > QCOW2_MAX_SNAPSHOT_TABLE) {
        return -EFBIG;
    }
    uint8_t *buf = xzalloc(MAX(size, 1));
    uint64_t off = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        uint32_t extra = MAX(sn->extra_data_size, SN_EXTRA_LEN);
        size_t id_len = strlen(sn->id_str), name_len = strlen(sn->name);
        off = ALIGN_UP(off, 8);
        uint8_t *h = buf + off;
        st_be64(h, sn->l1_table_offset);
        st_be32(h + 8, sn->l1_size);
        st_be16(h + 12, (uint16_t)id_len);
        st_be16(h + 14, (uint16_t)name_len);
        st_be32(h + 16, sn->date_sec);
        st_be32(h + 20, sn->date_nsec);
        st_be64(h + 24, sn->vm_clock_nsec);
        st_be32(h + 32, (uint32_t)sn->vm_state_size);
        st_be32(h + 36, extra);
        st_be64(h + 40, sn->vm_state_size);
        st_be64(h + 48, sn->disk_size);
        st_be64(h + 56, sn->icount);
        if (extra > SN_EXTRA_LEN && sn->unknown_extra) {
            memcpy(h + 40 + SN_EXTRA_LEN, sn->unknown_extra, extra - SN_EXTRA_LEN);
        }
        off += SN_HEADER_LEN + extra;
        memcpy(buf + off, sn->id_str, id_len);
        off += id_len;
        memcpy(buf + off, sn->name, name_len);
        off += name_len;
    }

    int64_t table = 0;
    int ret = 0;
    if (size) {
        table = qcow2_alloc_clusters(s, size, NULL);
        if (table < 0) {
            free(buf);
            return (int)table;
        }
        /* Its refcounts first, then the table, then the header points at it. */
        ret = qcow2_cache_flush(s->rb_cache);
        if (ret == 0) {
            ret = qcow2_write_meta(s, 0, (uint64_t)table, buf, size);
        }
        if (ret == 0) {
            ret = bnode_co_flush(s->bs->file->bs);
        }
    }
    free(buf);
    if (ret == 0) {
        uint8_t hdr[12];
        st_be32(hdr, s->nb_snapshots);
        st_be64(hdr + 4, (uint64_t)table);
        ret = qcow2_write_meta(s, QCOW2_OL_MAIN_HEADER, 60, hdr, sizeof(hdr));
    }
    if (ret == 0) {
        ret = bnode_co_flush(s->bs->file->bs);
    }
    if (ret < 0) {
        if (size) {
            qcow2_free_clusters(s, (uint64_t)table, size, QCOW2_DISCARD_NEVER);
        }
        return ret;
    }
    uint64_t old = s->snapshots_offset, old_size = s->snapshots_size;
    s->snapshots_offset = (uint64_t)table;
    s->snapshots_size = size;
    if (old_size) {
        qcow2_free_clusters(s, old, old_size, QCOW2_DISCARD_SNAPSHOT);
    }
    return 0;
}

/* ---- References of a whole L1 table ------------------------------------------- */

/*
 * Add addend (+1, -1, or 0 to only fix COPIED flags) to the refcount of
 * every L2 table and data cluster an L1 table reaches, and recompute the
 * COPIED flags on the way.  l1 is the table in memory when it is the active
 * one, else NULL (read from l1_offset).
 */
static int coroutine_fn update_l1_refcounts(struct qcow2_state *s, uint64_t *l1,
                                            uint64_t l1_offset, uint32_t l1_size, int addend,
                                            bool check_only)
{
    bool allocated = false;
    bool l1_modified = false;
    int ret = 0;

    if (!l1) {
        l1 = xmalloc(MAX((uint64_t)l1_size * 8, 8));
        allocated = true;
        ret = bnode_co_pread(s->bs->file, l1_offset, (uint64_t)l1_size * 8, l1, 0);
        if (ret < 0) {
            free(l1);
            return ret;
        }
        for (uint32_t i = 0; i < l1_size; i++) {
            l1[i] = be64toh(l1[i]);
        }
    }
    for (uint32_t i = 0; i < l1_size && ret == 0; i++) {
        uint64_t l2 = l1[i] & L1E_OFFSET_MASK;
        if (!l2) {
            continue;
        }
        if (l2 & (s->cluster_size - 1)) {
            qcow2_signal_corruption(s, "L2 table offset 0x%" PRIx64 " is not cluster aligned "
                                    "(L1 index %u)", l2, i);
            ret = -EIO;
            break;
        }
        for (uint32_t sl = 0; sl < s->l2_size && ret == 0; sl += s->l2_slice_size) {
            uint64_t *slice;
            ret = qcow2_cache_get(s->l2_cache, l2 + (uint64_t)sl * s->l2_entry_size,
                                  (void **)&slice);
            if (ret < 0) {
                break;
            }
            for (uint32_t j = 0; j < s->l2_slice_size && ret == 0; j++) {
                uint64_t old = l2_get_entry(s, slice, j);
                uint64_t e = old & ~QCOW_OFLAG_COPIED;
                uint64_t off = e & L2E_OFFSET_MASK;
                uint64_t rc = 0;
                uint64_t coff = 0, csize = 0, start = 0;
                bool compressed = e & QCOW_OFLAG_COMPRESSED;
                if (compressed) {
                    qcow2_parse_compressed(s, e, &coff, &csize);
                    start = coff & ~511ULL;
                } else if (off & (s->cluster_size - 1)) {
                    qcow2_signal_corruption(s, "L2 entry 0x%" PRIx64 " points at an "
                                            "unaligned host offset", old);
                    ret = -EIO;
                    break;
                }
                if (check_only) {
                    /* Would one more reference fit? */
                    if (compressed || off) {
                        ret = qcow2_get_refcount(s, (compressed ? start : off) >> s->cluster_bits,
                                                 &rc);
                        if (ret == 0 && rc >= s->refcount_max) {
                            ret = -ERANGE;
                        }
                    }
                    continue;
                }
                if (compressed) {
                    if (addend) {
                        ret = qcow2_update_refcount(s, start, coff + csize - start, addend,
                                                    QCOW2_DISCARD_SNAPSHOT);
                    }
                    rc = 2;   /* never written in place */
                } else if (off) {
                    if (addend) {
                        ret = qcow2_update_refcount(s, off, s->cluster_size, addend,
                                                    QCOW2_DISCARD_SNAPSHOT);
                    }
                    if (ret == 0) {
                        ret = qcow2_get_refcount(s, off >> s->cluster_bits, &rc);
                    }
                }
                if (ret < 0) {
                    break;
                }
                if (rc == 1) {
                    e |= QCOW_OFLAG_COPIED;
                }
                if (e != old) {
                    if (addend > 0) {
                        ret = qcow2_cache_set_dependency(s->l2_cache, s->rb_cache);
                    }
                    qcow2_l2_set(s, slice, j, e, l2_get_bitmap(s, slice, j));
                    qcow2_cache_mark_dirty(s->l2_cache, slice);
                }
            }
            qcow2_cache_put(s->l2_cache, (void **)&slice);
        }
        if (ret < 0 || check_only) {
            if (check_only && ret == 0) {
                uint64_t rc;
                ret = qcow2_get_refcount(s, l2 >> s->cluster_bits, &rc);
                if (ret == 0 && rc >= s->refcount_max) {
                    ret = -ERANGE;
                }
            }
            continue;
        }
        if (addend) {
            ret = qcow2_update_refcount(s, l2, s->cluster_size, addend, QCOW2_DISCARD_SNAPSHOT);
            if (ret < 0) {
                break;
            }
        }
        uint64_t rc;
        ret = qcow2_get_refcount(s, l2 >> s->cluster_bits, &rc);
        if (ret < 0) {
            break;
        }
        uint64_t ne = rc == 1 ? l2 | QCOW_OFLAG_COPIED : l2;
        if (ne != l1[i]) {
            if (!allocated) {
                pthread_mutex_lock(&s->map_lock);
            }
            l1[i] = ne;
            if (!allocated) {
                pthread_mutex_unlock(&s->map_lock);
            }
            l1_modified = true;
        }
    }
    if (ret == 0 && !check_only) {
        ret = qcow2_cache_flush(s->l2_cache);
        if (ret == 0) {
            ret = qcow2_cache_flush(s->rb_cache);
        }
    }
    /* A table that is being deleted (-1) need not be written. */
    if (ret == 0 && !check_only && addend >= 0 && l1_modified) {
        uint64_t *be = xmalloc(MAX((uint64_t)l1_size * 8, 8));
        for (uint32_t i = 0; i < l1_size; i++) {
            be[i] = htobe64(l1[i]);
        }
        int ign = l1_offset == s->l1_table_offset ? QCOW2_OL_ACTIVE_L1 : QCOW2_OL_INACTIVE_L1;
        ret = qcow2_write_meta(s, ign, l1_offset, be, (uint64_t)l1_size * 8);
        free(be);
        if (ret == 0) {
            ret = bnode_co_flush(s->bs->file->bs);
        }
    }
    if (allocated) {
        free(l1);
    }
    return ret;
}

/* ---- Lookups ---------------------------------------------------------------------- */

static int find_by_id_and_name(struct qcow2_state *s, const char *id, const char *name)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if ((!id || !strcmp(s->snapshots[i].id_str, id)) &&
            (!name || !strcmp(s->snapshots[i].name, name))) {
            return (int)i;
        }
    }
    return -ENOENT;
}

static int find_by_id_or_name(struct qcow2_state *s, const char *str)
{
    int i = find_by_id_and_name(s, str, NULL);
    return i >= 0 ? i : find_by_id_and_name(s, NULL, str);
}

static void new_id(struct qcow2_state *s, char *buf, size_t len)
{
    unsigned long max = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        unsigned long v = strtoul(s->snapshots[i].id_str, NULL, 10);
        max = MAX(max, v);
    }
    snprintf(buf, len, "%lu", max + 1);
}

/* ---- The hooks ----------------------------------------------------------------------- */

struct sn_op {
    struct block_node *bs;
    const struct qcow2_snapshot_info *info;
    const char *id, *name;
    struct err *err;
    int ret;
};

static struct block_node *format_node(struct block_node *bs)
{
    return bnode_skip_filters(bs);
}

static void create_entry(void *opaque)
{
    struct sn_op *op = opaque;
    struct qcow2_state *s = op->bs->opaque;
    const struct qcow2_snapshot_info *info = op->info;
    char id[32];
    int ret;

    co_mutex_lock(&s->lock);
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS) {
        err_set(op->err, "%s: the image has the most snapshots it can have", image_name(s));
        ret = -EFBIG;
        goto out;
    }
    if (qcow2_has_data_file(s)) {
        err_set(op->err, "%s: images with an external data file cannot have snapshots",
                image_name(s));
        ret = -ENOTSUP;
        goto out;
    }
    if (info->id && find_by_id_and_name(s, info->id, NULL) >= 0) {
        err_set(op->err, "%s: a snapshot with id '%s' exists already", image_name(s), info->id);
        ret = -EEXIST;
        goto out;
    }
    ret = update_l1_refcounts(s, s->l1_table, s->l1_table_offset, s->l1_size, 1, true);
    if (ret == -ERANGE) {
        err_set(op->err, "%s: refcounts of %u bits cannot count one more snapshot",
                image_name(s), s->refcount_bits);
        goto out;
    }
    if (ret < 0) {
        goto fail;
    }
    uint64_t l1_bytes = (uint64_t)s->l1_size * 8;
    int64_t l1_off = 0;
    if (l1_bytes) {
        l1_off = qcow2_alloc_clusters(s, l1_bytes, NULL);
        if (l1_off < 0) {
            ret = (int)l1_off;
            goto fail;
        }
        uint64_t *be = xmalloc(l1_bytes);
        for (uint32_t i = 0; i < s->l1_size; i++) {
            be[i] = htobe64(s->l1_table[i]);
        }
        ret = qcow2_write_meta(s, 0, (uint64_t)l1_off, be, l1_bytes);
        free(be);
        if (ret < 0) {
            qcow2_free_clusters(s, (uint64_t)l1_off, l1_bytes, QCOW2_DISCARD_NEVER);
            goto fail;
        }
    }
    /* Every cluster gains a reference, durably, before the table names the copy. */
    ret = update_l1_refcounts(s, s->l1_table, s->l1_table_offset, s->l1_size, 1, false);
    if (ret < 0) {
        goto fail;
    }
    struct qcow2_snapshot *list = xcalloc(s->nb_snapshots + 1, sizeof(*list));
    if (s->nb_snapshots) {
        memcpy(list, s->snapshots, sizeof(*list) * s->nb_snapshots);
    }
    struct qcow2_snapshot *sn = &list[s->nb_snapshots];
    if (!info->id) {
        new_id(s, id, sizeof(id));
    }
    sn->id_str = xstrdup(info->id ? info->id : id);
    sn->name = xstrdup(info->name ? info->name : "");
    sn->l1_table_offset = (uint64_t)l1_off;
    sn->l1_size = s->l1_size;
    sn->disk_size = s->size;
    sn->vm_state_size = info->vm_state_size;
    sn->date_sec = info->date_sec;
    sn->date_nsec = info->date_nsec;
    sn->vm_clock_nsec = info->vm_clock_nsec;
    sn->icount = info->icount;
    sn->extra_data_size = SN_EXTRA_LEN;
    struct qcow2_snapshot *old = s->snapshots;
    s->snapshots = list;
    s->nb_snapshots++;
    ret = qcow2_write_snapshots(s);
    if (ret < 0) {
        s->nb_snapshots--;
        s->snapshots = old;
        free(sn->id_str);
        free(sn->name);
        free(list);
        goto fail;
    }
    free(old);
    trace("qcow2_snapshot_create", "%s '%s'", sn->id_str, sn->name);
    goto out;
fail:
    err_set_errno(op->err, ret, "%s: could not create snapshot '%s'", image_name(s),
                  info->name ? info->name : "");
out:
    co_mutex_unlock(&s->lock);
    op->ret = ret;
}

static int snapshot_create(struct block_node *bs, const struct qcow2_snapshot_info *sn,
                           struct err *err)
{
    struct sn_op op = { .bs = format_node(bs), .info = sn, .err = err };
    if (op.bs->read_only) {
        err_set(err, "%s: the image is read-only", bnode_describe(op.bs));
        return -EPERM;
    }
    co_run_sync(create_entry, &op);
    return op.ret;
}

static void delete_entry(void *opaque)
{
    struct sn_op *op = opaque;
    struct qcow2_state *s = op->bs->opaque;
    int ret;

    co_mutex_lock(&s->lock);
    int i = find_by_id_and_name(s, op->id, op->name);
    if (i < 0) {
        err_set(op->err, "Can't find the snapshot");
        ret = -ENOENT;
        goto out;
    }
    struct qcow2_snapshot sn = s->snapshots[i];
    memmove(&s->snapshots[i], &s->snapshots[i + 1],
            sizeof(sn) * (s->nb_snapshots - (uint32_t)i - 1));
    s->nb_snapshots--;
    ret = qcow2_write_snapshots(s);
    if (ret < 0) {
        memmove(&s->snapshots[i + 1], &s->snapshots[i],
                sizeof(sn) * (s->nb_snapshots - (uint32_t)i));
        s->snapshots[i] = sn;
        s->nb_snapshots++;
        err_set_errno(op->err, ret, "%s: could not delete snapshot '%s'", image_name(s),
                      sn.name);
        goto out;
    }
    /* From here on a failure only leaks clusters. */
    ret = update_l1_refcounts(s, NULL, sn.l1_table_offset, sn.l1_size, -1, false);
    if (ret == 0) {
        qcow2_free_clusters(s, sn.l1_table_offset, (uint64_t)sn.l1_size * 8,
                            QCOW2_DISCARD_SNAPSHOT);
        ret = update_l1_refcounts(s, s->l1_table, s->l1_table_offset, s->l1_size, 0, false);
    }
    if (ret < 0) {
        err_set_errno(op->err, ret, "%s: snapshot '%s' was deleted, but its clusters could not "
                      "all be freed (run 'qemu-img check -r leaks')", image_name(s), sn.name);
    }
    free(sn.id_str);
    free(sn.name);
    free(sn.unknown_extra);
out:
    co_mutex_unlock(&s->lock);
    op->ret = ret;
}

static int snapshot_delete(struct block_node *bs, const char *id, const char *name,
                           struct err *err)
{
    struct sn_op op = { .bs = format_node(bs), .id = id, .name = name, .err = err };
    if (op.bs->read_only) {
        err_set(err, "%s: the image is read-only", bnode_describe(op.bs));
        return -EPERM;
    }
    co_run_sync(delete_entry, &op);
    return op.ret;
}

static void apply_entry(void *opaque)
{
    struct sn_op *op = opaque;
    struct block_node *bs = op->bs;
    struct qcow2_state *s = bs->opaque;
    int ret;

    co_mutex_lock(&s->lock);
    int i = find_by_id_or_name(s, op->id);
    if (i < 0) {
        co_mutex_unlock(&s->lock);
        err_set(op->err, "Can't find snapshot");
        op->ret = -ENOENT;
        return;
    }
    struct qcow2_snapshot *sn = &s->snapshots[i];
    uint64_t disk_size = sn->disk_size;
    co_mutex_unlock(&s->lock);
    if (disk_size != s->size) {
        struct bdrv_child *c = bnode_root_attach(bs, "snapshot", NULL, NULL);
        ret = bnode_co_truncate(c, (int64_t)disk_size, true, PREALLOC_MODE_OFF, 0, op->err);
        bnode_detach_child(c);
        if (ret < 0) {
            op->ret = ret;
            return;
        }
    }
    co_mutex_lock(&s->lock);
    sn = &s->snapshots[i];
    ret = qcow2_grow_l1_table(s, sn->l1_size, true);
    if (ret < 0) {
        goto out;
    }
    uint64_t cur_bytes = (uint64_t)s->l1_size * 8;
    uint64_t *sn_l1 = xzalloc(MAX(cur_bytes, 8));
    if (sn->l1_size) {
        ret = bnode_co_pread(bs->file, sn->l1_table_offset, (uint64_t)sn->l1_size * 8, sn_l1, 0);
    }
    /* The snapshot's clusters gain the active table's references first... */
    if (ret == 0) {
        ret = update_l1_refcounts(s, NULL, sn->l1_table_offset, sn->l1_size, 1, true);
        if (ret == -ERANGE) {
            err_set(op->err, "%s: refcounts of %u bits cannot count the references applying "
                    "the snapshot adds", image_name(s), s->refcount_bits);
        }
    }
    if (ret == 0) {
        ret = update_l1_refcounts(s, NULL, sn->l1_table_offset, sn->l1_size, 1, false);
    }
    if (ret == 0 && cur_bytes) {
        ret = qcow2_write_meta(s, QCOW2_OL_ACTIVE_L1, s->l1_table_offset, sn_l1, cur_bytes);
        if (ret == 0) {
            ret = bnode_co_flush(bs->file->bs);
        }
    }
    if (ret < 0) {
        free(sn_l1);
        goto out;
    }
    /* ...then the old active tables lose theirs, and the new ones become active. */
    ret = qcow2_cache_empty(s->l2_cache);
    int r2 = update_l1_refcounts(s, s->l1_table, s->l1_table_offset, s->l1_size, -1, false);
    pthread_mutex_lock(&s->map_lock);
    for (uint32_t k = 0; k < s->l1_size; k++) {
        s->l1_table[k] = be64toh(sn_l1[k]);
    }
    pthread_mutex_unlock(&s->map_lock);
    free(sn_l1);
    int r3 = qcow2_cache_empty(s->l2_cache);
    if (ret == 0) {
        ret = r2 ? r2 : r3;
    }
    if (ret == 0) {
        ret = update_l1_refcounts(s, s->l1_table, s->l1_table_offset, s->l1_size, 0, false);
    }
out:
    if (ret < 0 && !err_isset(op->err)) {
        err_set_errno(op->err, ret, "%s: could not apply snapshot '%s'", image_name(s), op->id);
    }
    co_mutex_unlock(&s->lock);
    op->ret = ret;
}

static int snapshot_apply(struct block_node *bs, const char *id_or_name, struct err *err)
{
    struct sn_op op = { .bs = format_node(bs), .id = id_or_name, .err = err };
    if (op.bs->read_only) {
        err_set(err, "%s: the image is read-only", bnode_describe(op.bs));
        return -EPERM;
    }
    co_run_sync(apply_entry, &op);
    return op.ret;
}

void qcow2_snapshot_info_free(struct qcow2_snapshot_info *list, int n)
{
    for (int i = 0; i < n; i++) {
        free(list[i].id);
        free(list[i].name);
    }
    free(list);
}

static int snapshot_list(struct block_node *bs, struct qcow2_snapshot_info **list, int *n,
                         struct err *err)
{
    struct qcow2_state *s = format_node(bs)->opaque;
    struct qcow2_snapshot_info *l = xcalloc(MAX(s->nb_snapshots, 1), sizeof(*l));
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snapshots[i];
        l[i] = (struct qcow2_snapshot_info){
            .id = xstrdup(sn->id_str),
            .name = xstrdup(sn->name),
            .vm_state_size = sn->vm_state_size,
            .date_sec = sn->date_sec,
            .date_nsec = sn->date_nsec,
            .vm_clock_nsec = sn->vm_clock_nsec,
            .icount = sn->icount,
            .disk_size = sn->disk_size,
        };
    }
    *list = l;
    *n = (int)s->nb_snapshots;
    return 0;
}

/* ---- The table of hooks (bitmap.c and amend.c provide the rest) ---------------- */

const struct qcow2_format_ops qcow2_ops = {
    .snapshot_list = snapshot_list,
    .snapshot_create = snapshot_create,
    .snapshot_apply = snapshot_apply,
    .snapshot_delete = snapshot_delete,
    .bitmap_can_store = qcow2_bitmap_can_store,
    .bitmap_remove = qcow2_bitmap_remove,
    .bitmaps_store = qcow2_bitmaps_store_hook,
    .make_empty = qcow2_make_empty,
    .amend = qcow2_amend,
    .measure = qcow2_measure,
};
