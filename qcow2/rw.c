/*
 * The data path: reads, writes (in place, or into new clusters with
 * copy-on-write around the data), zero writes, discard and block status.
 *
 * A lookup whose L2 slice is cached runs without s->lock (map_lock only,
 * for the in-memory copy): reads of allocated data and writes into
 * clusters that are ours and allocated never wait behind metadata work.
 * Everything else takes s->lock for the metadata and drops it for data.
 */
#include "qcow2/qcow2-int.h"

#include "util/log.h"

/* ---- Mapping ---------------------------------------------------------------------- */

static int coroutine_fn lookup(struct qcow2_state *s, uint64_t offset, uint64_t *bytes,
                               uint64_t *host, enum qcow2_sc_type *type, uint64_t *entry)
{
    if (qcow2_peek_host_offset(s, offset, bytes, host, type, entry)) {
        return 0;
    }
    co_mutex_lock(&s->lock);
    int ret = qcow2_get_host_offset(s, offset, bytes, host, type, entry);
    co_mutex_unlock(&s->lock);
    return ret;
}

/* Whether an unallocated range reads as zeroes: no backing file there. */
static bool unallocated_is_zero(struct qcow2_state *s, uint64_t offset)
{
    struct block_node *backing = s->bs->backing ? s->bs->backing->bs : NULL;
    return !backing || (int64_t)offset >= bnode_getlength(backing);
}

/* ---- Reads ------------------------------------------------------------------------- */

static int coroutine_fn read_compressed_part(struct qcow2_state *s, uint64_t entry,
                                             uint64_t offset, uint64_t bytes,
                                             struct qiov *qiov, size_t qoff)
{
    uint8_t *buf = xmalloc(s->cluster_size);
    int ret = qcow2_read_compressed(s, entry, buf);
    if (ret == 0) {
        qiov_from_buf(qiov, qoff, buf + offset_into_cluster(s, offset), bytes);
    }
    free(buf);
    return ret;
}

/* The guest-visible content of [offset, offset + bytes). */
static int coroutine_fn do_read(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
                                struct qiov *qiov, size_t qoff)
{
    struct block_node *bs = s->bs;
    while (bytes) {
        uint64_t n = bytes, host, entry;
        enum qcow2_sc_type type;
        int ret = lookup(s, offset, &n, &host, &type, &entry);
        if (ret < 0) {
            return ret;
        }
        switch (type) {
        case QCOW2_SC_UNALLOC:
        case QCOW2_SC_UNALLOC_ALLOC:
            if (bs->backing && !unallocated_is_zero(s, offset)) {
                /* The request path zero-fills what lies past the backing file's end. */
                ret = bnode_co_preadv(bs->backing, offset, n, qiov, qoff, 0);
            } else {
                qiov_memset(qiov, qoff, 0, n);
            }
            break;
        case QCOW2_SC_ZERO:
        case QCOW2_SC_ZERO_ALLOC:
            qiov_memset(qiov, qoff, 0, n);
            break;
        case QCOW2_SC_COMPRESSED:
            ret = read_compressed_part(s, entry, offset, n, qiov, qoff);
            break;
        case QCOW2_SC_NORMAL:
            ret = bnode_co_preadv(s->data_file, host, n, qiov, qoff, 0);
            break;
        default:
            ret = -EIO;
            break;
        }
        if (ret < 0) {
            return ret;
        }
        offset += n;
        qoff += n;
        bytes -= n;
    }
    return 0;
}

int coroutine_fn qcow2_co_preadv(struct block_node *bs, int64_t offset, int64_t bytes,
                                 struct qiov *qiov, size_t qiov_offset, int flags)
{
    return do_read(bs->opaque, offset, bytes, qiov, qiov_offset);
}

/* ---- Copy-on-write ----------------------------------------------------------------- */

/*
 * Read what [offset, offset + len) shows the guest now, unless all of it
 * reads as zeroes (then *zero and buf untouched).
 */
static int coroutine_fn cow_read(struct qcow2_state *s, uint64_t offset, uint64_t len,
                                 uint8_t *buf, bool *zero)
{
    uint64_t pos = offset;
    *zero = true;
    while (pos < offset + len) {
        uint64_t n = offset + len - pos, host, entry;
        enum qcow2_sc_type type;
        int ret = lookup(s, pos, &n, &host, &type, &entry);
        if (ret < 0) {
            return ret;
        }
        bool z = qcow2_sc_is_zero(type) ||
                 ((type == QCOW2_SC_UNALLOC || type == QCOW2_SC_UNALLOC_ALLOC) &&
                  unallocated_is_zero(s, pos));
        if (!z) {
            *zero = false;
            break;
        }
        pos += n;
    }
    if (*zero) {
        return 0;
    }
    struct qiov q;
    qiov_init_buf(&q, buf, len);
    return do_read(s, offset, len, &q, 0);
}

/* Write the data of m with its copy-on-write regions around it. */
static int coroutine_fn write_with_cow(struct qcow2_state *s, struct qcow2_alloc *m,
                                       struct qiov *qiov, size_t qoff)
{
    struct block_node *file = s->data_file->bs;
    uint8_t *head = NULL, *tail = NULL;
    bool head_zero = true, tail_zero = true;
    int ret = 0;

    if (m->cow_start_len) {
        head = bnode_blockalign(file, m->cow_start_len);
        ret = cow_read(s, m->guest_offset + m->cow_start_off, m->cow_start_len, head,
                       &head_zero);
    }
    if (ret == 0 && m->cow_end_len) {
        tail = bnode_blockalign(file, m->cow_end_len);
        ret = cow_read(s, m->guest_offset + m->cow_end_off, m->cow_end_len, tail, &tail_zero);
    }
    if (ret < 0) {
        goto out;
    }
    /* Fresh clusters read as zeroes already: zero regions need no write. */
    bool skip_head = !m->cow_start_len || (m->fresh && head_zero);
    bool skip_tail = !m->cow_end_len || (m->fresh && tail_zero);
    struct qiov q;
    qiov_init(&q, qiov->niov + 2);
    uint64_t start = m->data_off;
    if (!skip_head) {
        qiov_add(&q, head_zero ? s->zero_cluster : head, m->cow_start_len);
        start = m->cow_start_off;
    }
    qiov_concat(&q, qiov, qoff, m->data_len);
    if (!skip_tail) {
        qiov_add(&q, tail_zero ? s->zero_cluster : tail, m->cow_end_len);
    }
    trace("qcow2_cow", "guest 0x%" PRIx64 " head %" PRIu64 "%s tail %" PRIu64 "%s",
          m->guest_offset, m->cow_start_len, skip_head ? " skipped" : "", m->cow_end_len,
          skip_tail ? " skipped" : "");
    ret = bnode_co_pwritev(s->data_file, m->host_offset + start, q.size, &q, 0, 0);
    qiov_destroy(&q);
out:
    free(head);
    free(tail);
    return ret;
}

/* ---- Growing the image file ahead of allocations ------------------------------------ */

/*
 * Filesystems serialise direct writes into holes and past the end of a file
 * (the block allocation, the size change); writes into blocks that are
 * allocated already run in parallel.  So the image file is grown with
 * fallocate in steps ahead of the clusters being allocated, and cut back to
 * the last used cluster on close.
 */
#define GROW_STEP (64 * MiB)

int coroutine_fn qcow2_grow_file_ahead(struct qcow2_state *s, uint64_t end)
{
    if (!s->grow_ahead || end <= s->falloc_end) {
        return 0;
    }
    co_mutex_lock(&s->grow_lock);
    if (end > s->falloc_end) {
        uint64_t target = ALIGN_UP(end, GROW_STEP) + GROW_STEP;
        int64_t cur = bnode_getlength(s->bs->file->bs);
        int ret = 0;
        if (cur >= 0 && (uint64_t)cur < target) {
            /* Set first: a failed fallocate may leave the file longer all the same. */
            s->file_grown = true;
            ret = bnode_co_truncate(s->bs->file, (int64_t)target, false, PREALLOC_MODE_FALLOC,
                                    BDRV_REQ_GROW_ONLY, NULL);
        }
        if (ret < 0) {
            /* Not worth failing a write for: carry on without it. */
            s->grow_ahead = false;
        } else {
            s->falloc_end = target;
            trace("qcow2_grow_file", "fallocated up to 0x%" PRIx64, target);
        }
    }
    co_mutex_unlock(&s->grow_lock);
    return 0;
}

/* ---- Writes ------------------------------------------------------------------------ */

static int refuse_if_corrupt(struct qcow2_state *s)
{
    if (s->corrupt_signalled || (s->incompat & QCOW2_INCOMPAT_CORRUPT)) {
        if (!(s->bs->open_flags & BDRV_O_CHECK)) {
            return -EIO;
        }
    }
    return 0;
}

/* The overlap check of a data write, against a stable view of the tables. */
static int check_data_write(struct qcow2_state *s, uint64_t host, uint64_t bytes)
{
    if (qcow2_has_data_file(s) || !s->overlap_check) {
        return 0;
    }
    /* Inactive L2 tables need reads: not under map_lock. */
    pthread_mutex_lock(&s->map_lock);
    int hit = qcow2_check_overlap(s, QCOW2_OL_INACTIVE_L2, host, bytes);
    pthread_mutex_unlock(&s->map_lock);
    if (!hit && (s->overlap_check & QCOW2_OL_INACTIVE_L2)) {
        co_mutex_lock(&s->lock);
        hit = qcow2_check_overlap(s, ~QCOW2_OL_INACTIVE_L2, host, bytes);
        co_mutex_unlock(&s->lock);
    }
    if (hit) {
        co_mutex_lock(&s->lock);
        qcow2_signal_corruption(s, "preventing a data write at 0x%" PRIx64 " (%" PRIu64
                                " bytes): it overlaps %s", host, bytes,
                                qcow2_overlap_name(hit));
        co_mutex_unlock(&s->lock);
        return -EIO;
    }
    return 0;
}

/* Write [offset, offset + *bytes) if it can go in place without the lock. */
static bool fast_write(struct qcow2_state *s, uint64_t offset, uint64_t *bytes, uint64_t *host)
{
    uint64_t n = *bytes, entry;
    enum qcow2_sc_type type;
    if (!qcow2_peek_host_offset(s, offset, &n, host, &type, &entry)) {
        return false;
    }
    if (type != QCOW2_SC_NORMAL || !(entry & QCOW_OFLAG_COPIED)) {
        return false;
    }
    *bytes = n;
    return true;
}

static int coroutine_fn write_chunk(struct qcow2_state *s, uint64_t offset, uint64_t *bytes,
                                    struct qiov *qiov, size_t qoff)
{
    uint64_t host;
    struct qcow2_alloc *m = NULL;
    int ret;

    if (fast_write(s, offset, bytes, &host)) {
        ret = check_data_write(s, host, *bytes);
        if (ret == 0) {
            ret = bnode_co_pwritev(s->data_file, host, *bytes, qiov, qoff, 0);
        }
        return ret;
    }
    co_mutex_lock(&s->lock);
    ret = qcow2_alloc_host_offset(s, offset, bytes, &host, &m);
    co_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    if (!m) {
        ret = check_data_write(s, host, *bytes);
        if (ret == 0) {
            ret = bnode_co_pwritev(s->data_file, host, *bytes, qiov, qoff, 0);
        }
        return ret;
    }
    ret = check_data_write(s, m->host_offset + m->cow_start_off,
                           m->cow_end_off + m->cow_end_len - m->cow_start_off);
    if (ret == 0 && !m->keep_old) {
        ret = qcow2_grow_file_ahead(s, m->host_offset + ((uint64_t)m->nb_clusters <<
                                                         s->cluster_bits));
    }
    if (ret == 0) {
        ret = write_with_cow(s, m, qiov, qoff);
    }
    co_mutex_lock(&s->lock);
    if (ret == 0) {
        ret = qcow2_alloc_link(s, m);
    }
    if (ret < 0) {
        qcow2_alloc_abort(s, m);
    }
    qcow2_alloc_done(s, m);
    co_mutex_unlock(&s->lock);
    free(m);
    return ret;
}

int coroutine_fn qcow2_co_pwritev(struct block_node *bs, int64_t offset, int64_t bytes,
                                  struct qiov *qiov, size_t qiov_offset, int flags)
{
    struct qcow2_state *s = bs->opaque;
    int ret = refuse_if_corrupt(s);
    if (ret < 0) {
        return ret;
    }
    if ((uint64_t)offset + (uint64_t)bytes > s->size) {
        return -EIO;
    }
    if (flags & BDRV_REQ_WRITE_COMPRESSED) {
        return qcow2_co_pwrite_compressed(s, offset, bytes, qiov, qiov_offset);
    }
    while (bytes > 0) {
        uint64_t n = (uint64_t)bytes;
        ret = write_chunk(s, offset, &n, qiov, qiov_offset);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        qiov_offset += n;
        bytes -= n;
    }
    return 0;
}

/* ---- Zero writes and discard -------------------------------------------------------- */

/* Whether [offset, offset + bytes) reads as zeroes (as far as block status can tell). */
static bool coroutine_fn range_is_zero(struct block_node *bs, int64_t offset, int64_t bytes)
{
    while (bytes > 0) {
        int64_t pnum;
        int ret = bnode_co_block_status_above(bs, NULL, true, offset, bytes, &pnum, NULL, NULL,
                                              NULL);
        if (ret < 0 || !(ret & BDRV_BLOCK_ZERO) || pnum <= 0) {
            return false;
        }
        offset += pnum;
        bytes -= pnum;
    }
    return true;
}

/* Whether [start, end) holds no data of this layer (s->lock held). */
static bool coroutine_fn still_unwritten(struct qcow2_state *s, uint64_t start, uint64_t end)
{
    while (start < end) {
        uint64_t n = end - start, host, entry;
        enum qcow2_sc_type type;
        if (qcow2_get_host_offset(s, start, &n, &host, &type, &entry) < 0 ||
            type == QCOW2_SC_NORMAL || type == QCOW2_SC_COMPRESSED) {
            return false;
        }
        start += n;
    }
    return true;
}

int coroutine_fn qcow2_co_pwrite_zeroes(struct block_node *bs, int64_t offset, int64_t bytes,
                                        int flags)
{
    struct qcow2_state *s = bs->opaque;
    int ret = refuse_if_corrupt(s);
    if (ret < 0) {
        return ret;
    }
    if (s->version < 3) {
        return -ENOTSUP;
    }
    uint64_t head = offset & (s->sc_size - 1);
    uint64_t end = offset + bytes;
    uint64_t tail = end & (s->sc_size - 1);
    if (end >= s->size) {
        tail = 0;
    }
    uint64_t orig_start = offset, orig_end = end;
    bool widened = false;
    if (head || tail) {
        /* Zero whole subclusters only where the rest of them reads as zeroes already. */
        uint64_t start = offset - head;
        uint64_t new_end = tail ? MIN(ALIGN_UP(end, (uint64_t)s->sc_size), s->size) : end;
        if ((head && !range_is_zero(bs, start, head)) ||
            (tail && !range_is_zero(bs, end, new_end - end))) {
            return -ENOTSUP;
        }
        offset = start;
        end = new_end;
        widened = true;
    }
    if (qcow2_data_file_is_raw(s)) {
        /* The raw data file must show the zeroes by itself. */
        ret = bnode_co_pwrite_zeroes(s->data_file, orig_start, orig_end - orig_start, flags);
        if (ret < 0) {
            return ret;
        }
    }
    co_mutex_lock(&s->lock);
    if (widened) {
        /*
         * A write may have landed in the widened part since it was looked
         * at: once nothing is in flight there, it must still hold no data.
         */
        qcow2_wait_allocs(s, offset, end - offset);
        if (!still_unwritten(s, offset, orig_start) || !still_unwritten(s, orig_end, end)) {
            co_mutex_unlock(&s->lock);
            return -ENOTSUP;
        }
    }
    ret = qcow2_zero_clusters(s, offset, end - offset, flags);
    co_mutex_unlock(&s->lock);
    return ret;
}

int coroutine_fn qcow2_co_pdiscard(struct block_node *bs, int64_t offset, int64_t bytes)
{
    struct qcow2_state *s = bs->opaque;
    int ret = refuse_if_corrupt(s);
    if (ret < 0) {
        return ret;
    }
    if (s->version < 3 && bs->backing) {
        /* Without zero clusters, a discarded cluster would show the backing file. */
        return -ENOTSUP;
    }
    if ((offset | bytes) & (s->cluster_size - 1)) {
        /* Partial clusters are left alone, but for the last one of the disk. */
        if ((offset & (s->cluster_size - 1)) || (uint64_t)(offset + bytes) != s->size) {
            return -ENOTSUP;
        }
    }
    co_mutex_lock(&s->lock);
    ret = qcow2_discard_clusters(s, offset, bytes, QCOW2_DISCARD_REQUEST, false);
    co_mutex_unlock(&s->lock);
    return ret;
}

/* ---- Emptying (commit) ---------------------------------------------------------------- */

struct make_empty_op {
    struct qcow2_state *s;
    int ret;
};

static void make_empty_entry(void *opaque)
{
    struct make_empty_op *op = opaque;
    struct qcow2_state *s = op->s;
    co_mutex_lock(&s->lock);
    /* full: unallocated, not zero clusters; the snapshot type frees them like deletion. */
    op->ret = qcow2_discard_clusters(s, 0, s->size, QCOW2_DISCARD_SNAPSHOT, true);
    co_mutex_unlock(&s->lock);
    if (op->ret == 0) {
        op->ret = bnode_co_flush(s->bs);
    }
}

int qcow2_make_empty(struct block_node *bs, struct err *err)
{
    bs = bnode_skip_filters(bs);
    struct make_empty_op op = { bs->opaque, 0 };
    if (bs->read_only) {
        err_set(err, "%s: the image is read-only", bnode_describe(bs));
        return -EPERM;
    }
    co_run_sync(make_empty_entry, &op);
    if (op.ret < 0) {
        err_set_errno(err, op.ret, "%s: cannot empty the image", bnode_describe(bs));
    }
    return op.ret;
}

/* ---- Block status ------------------------------------------------------------------ */

/*
 * Whether the image was preallocated with metadata, by QEMU's test (so
 * block status, and qemu-img map, agree with it): the refcounts count at
 * least a ninth more clusters in use than the file really allocates (and
 * two more at least).  Data clusters may then be holes in the file, which
 * block status asks about.  Decided once, at the first block status, as
 * the count reads refcount blocks.  Called with s->lock held.
 */
static int coroutine_fn detect_metadata_prealloc(struct qcow2_state *s)
{
    struct block_node *file = s->bs->file->bs;
    int64_t length = bnode_getlength(file);
    int64_t allocated = bnode_get_allocated_file_size(file);
    if (length < 0 || allocated < 0) {
        return false;
    }
    int64_t real = allocated / (int64_t)s->cluster_size;
    int64_t threshold = MAX(real * 10 / 9, real + 2);
    int64_t end = DIV_ROUND_UP(length, (int64_t)s->cluster_size), used = 0;
    for (int64_t i = 0; i < end && used < threshold; i++) {
        uint64_t refcount;
        int ret = qcow2_get_refcount(s, (uint64_t)i, &refcount);
        if (ret < 0) {
            return ret;
        }
        used += refcount != 0;
    }
    return used >= threshold;
}

int coroutine_fn qcow2_co_block_status(struct block_node *bs, bool want_zero, int64_t offset,
                                       int64_t bytes, int64_t *pnum, int64_t *map,
                                       struct block_node **file)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t n = bytes, host, entry;
    enum qcow2_sc_type type;
    int status = 0;

    int ret = lookup(s, offset, &n, &host, &type, &entry);
    if (ret < 0) {
        return ret;
    }
    *pnum = (int64_t)n;
    if (type == QCOW2_SC_NORMAL || type == QCOW2_SC_ZERO_ALLOC ||
        type == QCOW2_SC_UNALLOC_ALLOC) {
        *map = (int64_t)host;
        *file = s->data_file->bs;
        status |= BDRV_BLOCK_OFFSET_VALID;
    }
    if (qcow2_sc_is_zero(type)) {
        status |= BDRV_BLOCK_ZERO;
    } else if (type == QCOW2_SC_NORMAL || type == QCOW2_SC_COMPRESSED) {
        status |= BDRV_BLOCK_DATA;
    }
    if (!s->metadata_prealloc_checked && (status & BDRV_BLOCK_DATA)) {
        co_mutex_lock(&s->lock);
        if (!s->metadata_prealloc_checked) {
            s->metadata_prealloc = detect_metadata_prealloc(s) > 0;
            s->metadata_prealloc_checked = true;
        }
        co_mutex_unlock(&s->lock);
    }
    if (s->metadata_prealloc && (status & BDRV_BLOCK_DATA) &&
        (status & BDRV_BLOCK_OFFSET_VALID)) {
        status |= BDRV_BLOCK_RECURSE;
    }
    return status;
}
