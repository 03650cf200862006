/*
 * Compressed clusters: zlib raw deflate (window 2^12, as QEMU writes it) or
 * zstd, by the image's compression_type.  The CPU work runs on the thread
 * pool, so concurrent requests (convert -c, -m N) use every core.
 *
 * A compressed cluster's data starts anywhere (byte granularity) and may
 * share host clusters with other compressed clusters: each host cluster it
 * touches counts one reference from it.
 */
#include "qcow2/qcow2-int.h"

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "util/log.h"
#include "util/thread-pool.h"

#define ZLIB_WINDOW_BITS (-12)

/* ---- Codecs ----------------------------------------------------------------------- */

static ssize_t zlib_compress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    z_stream z = { 0 };
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, ZLIB_WINDOW_BITS, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        return -ENOMEM;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)src_len;
    z.next_out = dst;
    z.avail_out = (uInt)dst_len;
    int ret = deflate(&z, Z_FINISH);
    ssize_t out = ret == Z_STREAM_END ? (ssize_t)(dst_len - z.avail_out) : -ENOSPC;
    deflateEnd(&z);
    return out;
}

static int zlib_decompress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    z_stream z = { 0 };
    if (inflateInit2(&z, ZLIB_WINDOW_BITS) != Z_OK) {
        return -ENOMEM;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)src_len;
    z.next_out = dst;
    z.avail_out = (uInt)dst_len;
    int ret = inflate(&z, Z_FINISH);
    /* Decompression stops once a whole cluster came out; padding may follow. */
    int result = ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && z.avail_out == 0) ? 0 : -EIO;
    inflateEnd(&z);
    return result;
}

static ssize_t zstd_compress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    size_t ret = ZSTD_compress(dst, dst_len, src, src_len, ZSTD_CLEVEL_DEFAULT);
    if (ZSTD_isError(ret)) {
        return ZSTD_getErrorCode(ret) == ZSTD_error_dstSize_tooSmall ? -ENOSPC : -EIO;
    }
    return (ssize_t)ret;
}

static int zstd_decompress(const void *src, size_t src_len, void *dst, size_t dst_len)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx) {
        return -ENOMEM;
    }
    ZSTD_inBuffer in = { src, src_len, 0 };
    ZSTD_outBuffer out = { dst, dst_len, 0 };
    int result = 0;
    /* Frames until the cluster is full; what follows is sector padding. */
    while (out.pos < out.size) {
        size_t ret = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(ret)) {
            result = -EIO;
            break;
        }
        if (out.pos < out.size && in.pos == in.size) {
            result = -EIO;
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return result;
}

ssize_t qcow2_compress(int type, const void *src, size_t src_len, void *dst, size_t dst_len)
{
    return type == QCOW2_COMPRESSION_ZSTD ? zstd_compress(src, src_len, dst, dst_len)
                                          : zlib_compress(src, src_len, dst, dst_len);
}

int qcow2_decompress(int type, const void *src, size_t src_len, void *dst, size_t dst_len)
{
    return type == QCOW2_COMPRESSION_ZSTD ? zstd_decompress(src, src_len, dst, dst_len)
                                          : zlib_decompress(src, src_len, dst, dst_len);
}

/* ---- On the thread pool ------------------------------------------------------------- */

struct codec_job {
    int type;
    bool compress;
    const void *src;
    size_t src_len;
    void *dst;
    size_t dst_len;
    ssize_t ret;
};

static int codec_worker(void *opaque)
{
    struct codec_job *j = opaque;
    if (j->compress) {
        j->ret = qcow2_compress(j->type, j->src, j->src_len, j->dst, j->dst_len);
    } else {
        j->ret = qcow2_decompress(j->type, j->src, j->src_len, j->dst, j->dst_len);
    }
    return 0;
}

ssize_t coroutine_fn qcow2_co_compress(int type, const void *src, size_t src_len, void *dst,
                                       size_t dst_len)
{
    struct codec_job j = { type, true, src, src_len, dst, dst_len, 0 };
    int ret = thread_pool_co_run(codec_worker, &j);
    return ret < 0 ? ret : j.ret;
}

int coroutine_fn qcow2_co_decompress(int type, const void *src, size_t src_len, void *dst,
                                     size_t dst_len)
{
    struct codec_job j = { type, false, src, src_len, dst, dst_len, 0 };
    int ret = thread_pool_co_run(codec_worker, &j);
    return ret < 0 ? ret : (int)j.ret;
}

/* ---- Reading ----------------------------------------------------------------------- */

int coroutine_fn qcow2_read_compressed(struct qcow2_state *s, uint64_t entry, uint8_t *buf)
{
    uint64_t coff, csize;
    qcow2_parse_compressed(s, entry, &coff, &csize);
    int64_t file_size = bnode_getlength(s->bs->file->bs);
    if (file_size < 0) {
        return (int)file_size;
    }
    if (coff >= (uint64_t)file_size || coff < s->cluster_size) {
        co_mutex_lock(&s->lock);
        qcow2_signal_corruption(s, "compressed cluster data at 0x%" PRIx64 " (%" PRIu64
                                " bytes) is %s", coff, csize,
                                coff < s->cluster_size ? "inside the header"
                                                       : "past the end of the file");
        co_mutex_unlock(&s->lock);
        return -EIO;
    }
    uint8_t *cbuf = xmalloc(csize);
    /* The last sector may end past the end of the file: it reads as zeroes. */
    int ret = bnode_co_pread(s->bs->file, coff, csize, cbuf, 0);
    if (ret == 0) {
        ret = qcow2_co_decompress(s->compression_type, cbuf, csize, buf, s->cluster_size);
        if (ret < 0) {
            log_error("%s: compressed cluster at 0x%" PRIx64 " cannot be decompressed",
                      bnode_describe(s->bs), coff);
            ret = -EIO;
        }
    }
    free(cbuf);
    return ret;
}

/* ---- Writing ----------------------------------------------------------------------- */

/* One cluster: compress it, or write it plainly when that does not save space. */
static int coroutine_fn write_one(struct qcow2_state *s, uint64_t offset, const uint8_t *data)
{
    uint8_t *out = xmalloc(s->cluster_size);
    ssize_t len = qcow2_co_compress(s->compression_type, data, s->cluster_size, out,
                                    s->cluster_size - 1);
    int ret;

    if (len == -ENOSPC) {
        free(out);
        struct qiov q;
        uint64_t n = MIN((uint64_t)s->cluster_size, s->size - offset);
        qiov_init_buf(&q, (void *)data, n);
        return qcow2_co_pwritev(s->bs, offset, n, &q, 0, 0);
    }
    if (len < 0) {
        free(out);
        return (int)len;
    }
    uint64_t host;
    struct qcow2_alloc *m;
    co_mutex_lock(&s->lock);
    qcow2_wait_allocs(s, offset, s->cluster_size);
    ret = qcow2_alloc_compressed(s, offset, (uint64_t)len, &host);
    if (ret == 0) {
        ret = qcow2_pre_write_check(s, 0, host, (uint64_t)len);
        if (ret < 0) {
            qcow2_free_clusters(s, host, (uint64_t)len, QCOW2_DISCARD_NEVER);
        }
    }
    if (ret < 0) {
        co_mutex_unlock(&s->lock);
        free(out);
        if (ret == -EEXIST) {
            log_error("%s: a compressed write to guest offset 0x%" PRIx64 " would overwrite "
                      "an allocated cluster", bnode_describe(s->bs), offset);
            ret = -EIO;
        }
        return ret;
    }
    /* Others wait for this cluster until its entry is in place. */
    m = xzalloc(sizeof(*m));
    m->guest_offset = offset;
    m->nb_clusters = 1;
    m->keep_old = true;
    co_queue_init(&m->waiters);
    list_add_tail(&s->allocs, &m->link);
    co_mutex_unlock(&s->lock);

    ret = bnode_co_pwrite(s->bs->file, host, len, out, 0);

    co_mutex_lock(&s->lock);
    if (ret == 0) {
        ret = qcow2_link_compressed(s, offset, host, (uint64_t)len);
    }
    if (ret < 0) {
        qcow2_free_clusters(s, host, (uint64_t)len, QCOW2_DISCARD_NEVER);
    }
    qcow2_alloc_done(s, m);
    co_mutex_unlock(&s->lock);
    free(m);
    free(out);
    return ret;
}

int coroutine_fn qcow2_co_pwrite_compressed(struct qcow2_state *s, uint64_t offset,
                                            uint64_t bytes, struct qiov *qiov,
                                            size_t qiov_offset)
{
    if (qcow2_has_data_file(s)) {
        return -ENOTSUP;
    }
    if (offset_into_cluster(s, offset) ||
        (offset_into_cluster(s, bytes) && offset + bytes != s->size)) {
        return -EINVAL;
    }
    uint8_t *buf = xmalloc(s->cluster_size);
    int ret = 0;
    for (uint64_t done = 0; done < bytes && ret == 0; done += s->cluster_size) {
        uint64_t n = MIN((uint64_t)s->cluster_size, bytes - done);
        qiov_to_buf(qiov, qiov_offset + done, buf, n);
        if (n < s->cluster_size) {
            memset(buf + n, 0, s->cluster_size - n);
        }
        ret = write_one(s, offset + done, buf);
    }
    free(buf);
    return ret;
}
