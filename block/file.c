/*
 * The file protocol: regular files and block devices.
 *
 * Data moves through one of three engines (aio=io_uring, native, threads;
 * see file-engine.h).  Here: opening with O_DIRECT for cache.direct and
 * finding its alignment, bouncing buffers the kernel would refuse,
 * resubmitting short transfers and -EAGAIN, discard by punching holes,
 * zero writes by zero-range fallocate, block status by SEEK_DATA/SEEK_HOLE,
 * preallocation, and QEMU-compatible image locking.
 */
#include "block/driver.h"
#include "block/file-engine.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "util/opts.h"

#define MAX_PROBE_ALIGN 4096
#define LOCAL_IOVS      64

struct file_state {
    int fd;
    bool direct;
    bool is_blockdev;
    bool has_punch_hole;
    bool has_zero_range;
    bool use_locking;
    const struct file_engine *engine;
    uint32_t req_align;     /* O_DIRECT offset and length alignment */
    uint32_t buf_align;     /* O_DIRECT memory alignment */
};

static const char *const file_keys[] = { "filename", "aio", "locking", NULL };

/* ---- Image locking, compatible with QEMU's ----------------------------- */

/*
 * QEMU locks one byte per permission: 100 + bit while holding it, 200 + bit
 * while not letting others have it.  Both are shared (read) OFD locks, so
 * holders coexist; a conflict is a lock at the byte the other side tests.
 */
enum {
    PERM_CONSISTENT_READ = 0,
    PERM_WRITE = 1,
    PERM_RESIZE = 3,
    LOCK_PERM_BASE = 100,
    LOCK_SHARED_BASE = 200,
};

static const char *perm_name(int bit)
{
    switch (bit) {
    case PERM_CONSISTENT_READ:
        return "consistent read";
    case PERM_WRITE:
        return "write";
    case PERM_RESIZE:
        return "resize";
    }
    return "?";
}

static int lock_byte(int fd, int64_t byte)
{
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* Whether someone else holds a lock on byte. */
static int byte_locked(int fd, int64_t byte, bool *locked)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    *locked = fl.l_type != F_UNLCK;
    return 0;
}

static int file_lock(int fd, const char *filename, bool writable, bool force_share,
                     struct err *err)
{
    int perms[3], nperms = 0, unshared[2], nunshared = 0;
    perms[nperms++] = PERM_CONSISTENT_READ;
    if (writable) {
        perms[nperms++] = PERM_WRITE;
        perms[nperms++] = PERM_RESIZE;
    }
    if (!force_share) {
        unshared[nunshared++] = PERM_WRITE;
        unshared[nunshared++] = PERM_RESIZE;
    }
    for (int i = 0; i < nperms; i++) {
        bool locked = false;
        int ret = byte_locked(fd, LOCK_SHARED_BASE + perms[i], &locked);
        if (ret == 0 && locked) {
            err_set(err, "Failed to get \"%s\" lock on '%s': is another process using the "
                    "image?", perm_name(perms[i]), filename);
            return -EAGAIN;
        }
    }
    for (int i = 0; i < nunshared; i++) {
        bool locked = false;
        int ret = byte_locked(fd, LOCK_PERM_BASE + unshared[i], &locked);
        if (ret == 0 && locked) {
            err_set(err, "Failed to get shared \"%s\" lock on '%s': is another process using "
                    "the image?", perm_name(unshared[i]), filename);
            return -EAGAIN;
        }
    }
    for (int i = 0; i < nperms; i++) {
        int ret = lock_byte(fd, LOCK_PERM_BASE + perms[i]);
        if (ret < 0) {
            return err_set_errno(err, ret, "Failed to lock byte %d of '%s'",
                                 LOCK_PERM_BASE + perms[i], filename);
        }
    }
    for (int i = 0; i < nunshared; i++) {
        int ret = lock_byte(fd, LOCK_SHARED_BASE + unshared[i]);
        if (ret < 0) {
            return err_set_errno(err, ret, "Failed to lock byte %d of '%s'",
                                 LOCK_SHARED_BASE + unshared[i], filename);
        }
    }
    return 0;
}

/* Release every lock byte this descriptor holds. */
static void unlock_all(int fd)
{
    struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = LOCK_PERM_BASE,
                        .l_len = LOCK_SHARED_BASE + 8 - LOCK_PERM_BASE };
    fcntl(fd, F_OFD_SETLK, &fl);
}

/* ---- O_DIRECT alignment ------------------------------------------------ */

/* The smallest read size and buffer alignment O_DIRECT accepts on fd. */
static void probe_alignment(struct file_state *s)
{
    unsigned int sector = 0;
    char *buf = xmemalign(MAX_PROBE_ALIGN, 2 * MAX_PROBE_ALIGN);

    s->req_align = 0;
    if (s->is_blockdev && ioctl(s->fd, BLKSSZGET, &sector) == 0 && sector) {
        s->req_align = sector;
    }
    for (uint32_t a = 512; !s->req_align && a <= MAX_PROBE_ALIGN; a <<= 1) {
        if (pread(s->fd, buf, a, 0) >= 0) {
            s->req_align = a;
        }
    }
    s->buf_align = 0;
    uint32_t len = s->req_align ? s->req_align : MAX_PROBE_ALIGN;
    for (uint32_t a = 512; a <= MAX_PROBE_ALIGN; a <<= 1) {
        if (pread(s->fd, buf + a, len, 0) >= 0) {
            s->buf_align = a;
            break;
        }
    }
    free(buf);
    /* Nothing worked (an empty file on some filesystems): be safe. */
    if (!s->req_align) {
        s->req_align = MAX_PROBE_ALIGN;
    }
    if (!s->buf_align) {
        s->buf_align = MAX_PROBE_ALIGN;
    }
}

/* ---- Open and close ---------------------------------------------------- */

static const struct file_engine *engine_by_name(const char *name)
{
    if (!strcmp(name, "io_uring")) {
        return &file_engine_io_uring;
    }
    if (!strcmp(name, "native")) {
        return &file_engine_native;
    }
    if (!strcmp(name, "threads")) {
        return &file_engine_threads;
    }
    return NULL;
}

static int file_open(struct block_node *bs, json_t *options, int flags, struct err *err)
{
    struct file_state *s = bs->opaque;
    const char *filename, *aio = "io_uring", *locking = "auto";
    struct stat st;

    if (opts_get_str(options, "filename", &filename, err) < 0) {
        if (!err_isset(err)) {
            err_set(err, "Parameter 'filename' is required");
        }
        return -EINVAL;
    }
    if (opts_get_str(options, "aio", &aio, err) == -EINVAL ||
        opts_get_str(options, "locking", &locking, err) == -EINVAL) {
        return -EINVAL;
    }
    s->engine = engine_by_name(aio);
    if (!s->engine) {
        err_set(err, "Invalid aio mode '%s' (expected threads, native or io_uring)", aio);
        return -EINVAL;
    }
    if (strcmp(locking, "on") && strcmp(locking, "off") && strcmp(locking, "auto")) {
        err_set(err, "Invalid locking option '%s' (expected on, off or auto)", locking);
        return -EINVAL;
    }
    s->use_locking = strcmp(locking, "off") != 0;
    s->direct = flags & BDRV_O_NOCACHE;
    if (s->engine == &file_engine_native && !s->direct) {
        err_set(err, "aio=native was specified, but it requires cache.direct=on, which was "
                "not specified.");
        return -EINVAL;
    }

    int oflags = O_CLOEXEC | ((flags & BDRV_O_RDWR) ? O_RDWR : O_RDONLY);
    if (s->direct) {
        oflags |= O_DIRECT;
    }
    s->fd = open(filename, oflags);
    if (s->fd < 0) {
        int e = -errno;
        if (e == -EINVAL && s->direct) {
            err_set(err, "Could not open '%s': the filesystem does not support O_DIRECT "
                    "(cache.direct=on)", filename);
        } else {
            err_set_errno(err, e, "Could not open '%s'", filename);
        }
        return e;
    }
    if (fstat(s->fd, &st) < 0) {
        int e = -errno;
        close(s->fd);
        return err_set_errno(err, e, "Could not stat '%s'", filename);
    }
    s->is_blockdev = S_ISBLK(st.st_mode);
    if (!s->is_blockdev && !S_ISREG(st.st_mode)) {
        close(s->fd);
        err_set(err, "'%s' is not a regular file or a block device", filename);
        return -EINVAL;
    }
    if (s->use_locking && !s->is_blockdev) {
        struct err lerr = { 0 };
        int ret = file_lock(s->fd, filename, flags & BDRV_O_RDWR, flags & BDRV_O_FORCE_SHARE,
                            &lerr);
        /* locking=auto tolerates a filesystem without OFD locks, not a conflict. */
        if (ret == -EAGAIN || (ret < 0 && !strcmp(locking, "on"))) {
            err_propagate(err, &lerr);
            close(s->fd);
            return ret;
        }
    }
    s->has_punch_hole = true;
    s->has_zero_range = true;
    if (s->direct) {
        probe_alignment(s);
    }
    return 0;
}

static void file_close(struct block_node *bs)
{
    struct file_state *s = bs->opaque;
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

static void file_refresh_limits(struct block_node *bs)
{
    struct file_state *s = bs->opaque;
    if (s->direct) {
        bs->bl.request_alignment = s->req_align;
        bs->bl.min_mem_alignment = s->buf_align;
        bs->bl.opt_mem_alignment = MAX(s->buf_align, 4096u);
    } else {
        bs->bl.opt_mem_alignment = 4096;
    }
    bs->bl.max_iov = IOV_MAX;
}

static int64_t file_getlength(struct block_node *bs)
{
    struct file_state *s = bs->opaque;
    if (s->is_blockdev) {
        uint64_t size;
        if (ioctl(s->fd, BLKGETSIZE64, &size) < 0) {
            return -errno;
        }
        return (int64_t)size;
    }
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return st.st_size;
}

static bool file_has_zero_init(struct block_node *bs)
{
    struct file_state *s = bs->opaque;
    /* A new regular file is a hole; a device holds whatever was there. */
    return !s->is_blockdev;
}

static int64_t file_get_allocated_file_size(struct block_node *bs)
{
    struct file_state *s = bs->opaque;
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

/* ---- Reads and writes -------------------------------------------------- */

/* Move the iovec window forward by n bytes. */
static void iov_advance(struct iovec **iov, int *niov, size_t n)
{
    while (n && *niov) {
        if (n >= (*iov)->iov_len) {
            n -= (*iov)->iov_len;
            (*iov)++;
            (*niov)--;
        } else {
            (*iov)->iov_base = (char *)(*iov)->iov_base + n;
            (*iov)->iov_len -= n;
            n = 0;
        }
    }
}

/* Whether pos is at or past the end of the file (a short read's reason). */
static bool at_eof(struct file_state *s, int64_t pos)
{
    struct stat st;
    return s->is_blockdev || fstat(s->fd, &st) < 0 || pos >= st.st_size;
}

/*
 * Transfer the whole iovec: resubmit after -EAGAIN, -EINTR and short
 * transfers; a read that reaches the end of the file reads zeroes (O_DIRECT
 * could not resubmit there anyway: the offset is no longer aligned).
 */
static int coroutine_fn rw_full(struct file_state *s, int64_t offset, struct iovec *iov,
                                int niov, size_t bytes, bool write, int rw_flags)
{
    size_t done = 0;
    while (done < bytes) {
        ssize_t n = s->engine->co_rw(s->fd, offset + done, iov, niov, write, rw_flags);
        if (n == -EAGAIN || n == -EINTR) {
            continue;
        }
        if (n < 0) {
            return (int)n;
        }
        if (n == 0 && write) {
            return -EIO;
        }
        done += n;
        iov_advance(&iov, &niov, n);
        if (!write && done < bytes && at_eof(s, offset + done)) {
            iov_memset(iov, niov, 0, 0, bytes - done);
            return 0;
        }
    }
    return 0;
}

/* O_DIRECT refuses misaligned buffers: go through an aligned bounce. */
static int coroutine_fn rw_bounced(struct file_state *s, int64_t offset, int64_t bytes,
                                   struct qiov *qiov, size_t qiov_offset, bool write,
                                   int rw_flags)
{
    void *buf = xmemalign(MAX(s->buf_align, 4096u), bytes);
    struct iovec iov = { buf, bytes };
    if (write) {
        qiov_to_buf(qiov, qiov_offset, buf, bytes);
    }
    int ret = rw_full(s, offset, &iov, 1, bytes, write, rw_flags);
    if (!write && ret == 0) {
        qiov_from_buf(qiov, qiov_offset, buf, bytes);
    }
    free(buf);
    return ret;
}

static int coroutine_fn file_co_rw(struct block_node *bs, int64_t offset, int64_t bytes,
                                   struct qiov *qiov, size_t qiov_offset, bool write,
                                   int flags)
{
    struct file_state *s = bs->opaque;
    struct iovec local[LOCAL_IOVS];
    struct iovec *iov = local;
    int rw_flags = (flags & BDRV_REQ_FUA) ? RWF_DSYNC : 0;
    int ret;

    if (s->direct && !qiov_is_aligned(qiov, qiov_offset, bytes, s->buf_align)) {
        return rw_bounced(s, offset, bytes, qiov, qiov_offset, write, rw_flags);
    }
    int niov = iov_slice(qiov->iov, qiov->niov, qiov_offset, bytes, local, LOCAL_IOVS);
    if (niov < 0) {
        iov = xmalloc(sizeof(*iov) * qiov->niov);
        niov = iov_slice(qiov->iov, qiov->niov, qiov_offset, bytes, iov, qiov->niov);
    }
    if (niov > IOV_MAX) {
        ret = rw_bounced(s, offset, bytes, qiov, qiov_offset, write, rw_flags);
    } else {
        ret = rw_full(s, offset, iov, niov, bytes, write, rw_flags);
    }
    if (iov != local) {
        free(iov);
    }
    return ret;
}

static int coroutine_fn file_co_preadv(struct block_node *bs, int64_t offset, int64_t bytes,
                                       struct qiov *qiov, size_t qiov_offset, int flags)
{
    return file_co_rw(bs, offset, bytes, qiov, qiov_offset, false, flags);
}

static int coroutine_fn file_co_pwritev(struct block_node *bs, int64_t offset, int64_t bytes,
                                        struct qiov *qiov, size_t qiov_offset, int flags)
{
    return file_co_rw(bs, offset, bytes, qiov, qiov_offset, true, flags);
}

static int coroutine_fn file_co_flush_to_disk(struct block_node *bs)
{
    struct file_state *s = bs->opaque;
    return s->engine->co_fdatasync(s->fd);
}

/* ---- Zeroes and discard ------------------------------------------------ */

static bool unsupported(int ret)
{
    return ret == -EOPNOTSUPP || ret == -ENOTSUP || ret == -ENOTTY || ret == -EINVAL;
}

static int coroutine_fn file_co_pwrite_zeroes(struct block_node *bs, int64_t offset,
                                              int64_t bytes, int flags)
{
    struct file_state *s = bs->opaque;
    int ret;

    if (s->is_blockdev) {
        uint64_t range[2] = { (uint64_t)offset, (uint64_t)bytes };
        if (flags & BDRV_REQ_MAY_UNMAP) {
            ret = s->engine->co_fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                          offset, bytes);
            if (ret == 0 || !unsupported(ret)) {
                return ret;
            }
        }
        ret = file_threads_co_ioctl(s->fd, BLKZEROOUT, range);
        return unsupported(ret) ? -ENOTSUP : ret;
    }
    /* A hole reads as zeroes; only inside the file (holes cannot extend it). */
    if ((flags & BDRV_REQ_MAY_UNMAP) && s->has_punch_hole &&
        offset + bytes <= bnode_size(bs)) {
        ret = s->engine->co_fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                      offset, bytes);
        if (ret == 0 || !unsupported(ret)) {
            return ret;
        }
        s->has_punch_hole = false;
    }
    if (s->has_zero_range) {
        ret = s->engine->co_fallocate(s->fd, FALLOC_FL_ZERO_RANGE, offset, bytes);
        if (ret == 0 || !unsupported(ret)) {
            return ret;
        }
        s->has_zero_range = false;
    }
    return -ENOTSUP;
}

static int coroutine_fn file_co_pdiscard(struct block_node *bs, int64_t offset, int64_t bytes)
{
    struct file_state *s = bs->opaque;
    int ret;

    if (s->is_blockdev) {
        uint64_t range[2] = { (uint64_t)offset, (uint64_t)bytes };
        ret = file_threads_co_ioctl(s->fd, BLKDISCARD, range);
    } else {
        if (!s->has_punch_hole) {
            return -ENOTSUP;
        }
        ret = s->engine->co_fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                      offset, bytes);
        if (unsupported(ret)) {
            s->has_punch_hole = false;
        }
    }
    return unsupported(ret) ? -ENOTSUP : ret;
}

/* ---- Block status ------------------------------------------------------ */

/*
 * Data or hole at offset, from SEEK_DATA/SEEK_HOLE.  A file whose
 * filesystem cannot tell reports everything as data.
 */
static int coroutine_fn file_co_block_status(struct block_node *bs, bool want_zero,
                                             int64_t offset, int64_t bytes, int64_t *pnum,
                                             int64_t *map, struct block_node **file)
{
    struct file_state *s = bs->opaque;
    int ret = BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;

    *map = offset;
    *file = bs;
    *pnum = bytes;
    if (!want_zero) {
        return ret;
    }
    if (s->is_blockdev) {
        return ret;
    }
    off_t data = lseek(s->fd, offset, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {
            /* A hole up to the end of the file. */
            return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
        }
        return ret;
    }
    if (data > offset) {
        *pnum = MIN(bytes, data - offset);
        ret = BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    } else {
        off_t hole = lseek(s->fd, offset, SEEK_HOLE);
        if (hole > offset) {
            *pnum = MIN(bytes, hole - offset);
        }
    }
    /* Keep whole blocks: the request path aligned us. */
    int64_t align = bs->bl.request_alignment;
    if (*pnum > align) {
        *pnum = ALIGN_DOWN(*pnum, align);
    }
    return ret;
}

/* ---- Resize and create ------------------------------------------------- */

/* Allocate [from, to) of the file: falloc reserves, full writes zeroes. */
static int preallocate(int fd, int64_t from, int64_t to, enum prealloc_mode mode,
                       struct err *err, const char *filename)
{
    if (to <= from || mode == PREALLOC_MODE_OFF || mode == PREALLOC_MODE_METADATA) {
        return 0;
    }
    if (mode == PREALLOC_MODE_FALLOC) {
        int ret = posix_fallocate(fd, from, to - from);
        if (ret) {
            return err_set_errno(err, -ret, "Could not preallocate data for '%s'", filename);
        }
        return 0;
    }
    size_t chunk = 1 * MiB;
    char *zeroes = xzalloc(chunk);
    int ret = 0;
    for (int64_t off = from; off < to && ret == 0; off += chunk) {
        ret = full_pwrite(fd, zeroes, MIN((int64_t)chunk, to - off), off);
    }
    free(zeroes);
    if (ret < 0) {
        return err_set_errno(err, ret, "Could not write zeroes to preallocate '%s'", filename);
    }
    return 0;
}

static int coroutine_fn file_co_truncate(struct block_node *bs, int64_t offset, bool exact,
                                         enum prealloc_mode prealloc, int flags,
                                         struct err *err)
{
    struct file_state *s = bs->opaque;
    int64_t cur = file_getlength(bs);

    if (cur < 0) {
        return err_set_errno(err, (int)cur, "Could not get the size of '%s'", bs->filename);
    }
    if (s->is_blockdev) {
        if (offset > cur || (exact && offset != cur)) {
            err_set(err, "Cannot grow device files ('%s')", bs->filename);
            return -EINVAL;
        }
        return 0;
    }
    if (prealloc == PREALLOC_MODE_METADATA) {
        err_set(err, "Unsupported preallocation mode 'metadata' for the file protocol");
        return -ENOTSUP;
    }
    if (ftruncate(s->fd, offset) < 0) {
        return err_set_errno(err, -errno, "Could not resize '%s'", bs->filename);
    }
    return preallocate(s->fd, cur, offset, prealloc, err, bs->filename);
}

static int coroutine_fn file_co_create(json_t *options, struct err *err)
{
    const char *filename, *prealloc_name = "off";
    uint64_t size = 0;
    enum prealloc_mode prealloc;

    if (opts_get_str(options, "filename", &filename, err) < 0) {
        if (!err_isset(err)) {
            err_set(err, "Parameter 'filename' is required");
        }
        return -EINVAL;
    }
    if (opts_get_size(options, "size", &size, err) == -EINVAL ||
        opts_get_str(options, "preallocation", &prealloc_name, err) == -EINVAL) {
        return -EINVAL;
    }
    if (prealloc_mode_parse(prealloc_name, &prealloc) < 0 ||
        prealloc == PREALLOC_MODE_METADATA) {
        err_set(err, "Invalid preallocation mode: '%s'", prealloc_name);
        return -EINVAL;
    }
    if (size > (uint64_t)INT64_MAX) {
        err_set(err, "Image size must be less than 8 EiB!");
        return -EINVAL;
    }
    /* Whole sectors, as QEMU's file driver creates them. */
    size = ALIGN_UP(size, (uint64_t)BDRV_SECTOR_SIZE);
    int fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return err_set_errno(err, -errno, "Could not create '%s'", filename);
    }
    struct stat st;
    int ret = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        /* Refuse to clobber an image another process has open. */
        ret = file_lock(fd, filename, true, false, err);
        if (ret == 0 && ftruncate(fd, 0) < 0) {
            ret = err_set_errno(err, -errno, "Could not truncate '%s'", filename);
        }
        if (ret == 0 && ftruncate(fd, (off_t)size) < 0) {
            ret = err_set_errno(err, -errno, "Could not resize '%s'", filename);
        }
        if (ret == 0) {
            ret = preallocate(fd, 0, (int64_t)size, prealloc, err, filename);
        }
    }
    close(fd);
    return ret;
}

static int file_parse_filename(const char *filename, json_t *options, struct err *err)
{
    if (!strncmp(filename, "file:", 5)) {
        filename += 5;
    }
    json_object_set_new(options, "filename", json_string(filename));
    return 0;
}

static int file_reopen_rw(struct block_node *bs, bool writable, struct err *err)
{
    struct file_state *s = bs->opaque;
    int oflags = O_CLOEXEC | (writable ? O_RDWR : O_RDONLY) | (s->direct ? O_DIRECT : 0);
    int fd = open(bs->filename, oflags);
    if (fd < 0) {
        return err_set_errno(err, -errno, "Could not reopen '%s' %s", bs->filename,
                             writable ? "read-write" : "read-only");
    }
    if (s->use_locking && !s->is_blockdev) {
        /* Our own old descriptor's lock bytes would conflict with the new one's. */
        unlock_all(s->fd);
        struct err lerr = { 0 };
        int ret = file_lock(fd, bs->filename, writable, false, &lerr);
        if (ret == -EAGAIN) {
            err_propagate(err, &lerr);
            close(fd);
            file_lock(s->fd, bs->filename, !writable, false, NULL);
            return ret;
        }
    }
    close(s->fd);
    s->fd = fd;
    return 0;
}

static const struct block_driver bdrv_file = {
    .format_name = "file",
    .protocol_name = "file",
    .instance_size = sizeof(struct file_state),
    .option_keys = file_keys,
    .parse_filename = file_parse_filename,
    .open = file_open,
    .close = file_close,
    .co_create = file_co_create,
    .has_zero_init = file_has_zero_init,
    .getlength = file_getlength,
    .get_allocated_file_size = file_get_allocated_file_size,
    .refresh_limits = file_refresh_limits,
    .co_preadv = file_co_preadv,
    .co_pwritev = file_co_pwritev,
    .supported_write_flags = BDRV_REQ_FUA,
    .co_pwrite_zeroes = file_co_pwrite_zeroes,
    .supported_zero_flags = BDRV_REQ_MAY_UNMAP,
    .co_pdiscard = file_co_pdiscard,
    .co_flush_to_disk = file_co_flush_to_disk,
    .co_block_status = file_co_block_status,
    .co_truncate = file_co_truncate,
    .reopen_rw = file_reopen_rw,
};

BLOCK_DRIVER_REGISTER(bdrv_file)
