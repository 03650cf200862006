/*
 * The file driver in each aio mode (io_uring, native, threads) and cache
 * mode: pattern round trips with aligned and misaligned buffers, reads
 * across the end of a file of odd size, zero writes and discard seen by
 * block status, resize, creation with preallocation, and image locking.
 */
#include "tests/unit/harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/backend.h"
#include "block/driver.h"
#include "util/opts.h"

static struct block_backend *open_file(const char *path, const char *aio, bool direct,
                                       bool writable, struct err *err)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:{s:b}, s:s}", "driver", "file", "filename", path,
                          "aio", aio, "cache", "direct", direct, "discard", "unmap");
    struct block_backend *blk = blk_new_open("", NULL, o, writable ? BDRV_O_RDWR : 0, err);
    json_decref(o);
    return blk;
}

static char *make_file(const char *name, int64_t size)
{
    char *path = test_tmpfile(name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(ftruncate(fd, size) == 0);
    close(fd);
    return path;
}

static uint32_t rstate;

static uint32_t rnd(void)
{
    rstate ^= rstate << 13;
    rstate ^= rstate >> 17;
    rstate ^= rstate << 5;
    return rstate;
}

/* Random writes (some through misaligned buffers), then every byte compared. */
static void roundtrip(const char *aio, bool direct)
{
    const int64_t size = 1 * MiB;
    char name[64];
    snprintf(name, sizeof(name), "rt-%s-%d.img", aio, direct);
    char *path = make_file(name, size);
    struct err err = { 0 };
    struct block_backend *blk = open_file(path, aio, direct, true, &err);
    if (!blk) {
        printf("# open failed: %s\n", err.msg);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);

    uint8_t *model = xzalloc(size);
    uint8_t *buf = xmemalign(4096, size + 4096);
    rstate = test_seed() | 1;
    for (int i = 0; i < 300; i++) {
        int64_t off = rnd() % size;
        int64_t len = 1 + rnd() % MIN(size - off, 70000);
        uint8_t *p = buf + (rnd() % 2 ? 0 : 1 + rnd() % 511);
        if (rnd() % 2) {
            memset(p, (int)(rnd() & 0xff), len);
            CU_ASSERT_EQUAL_FATAL(blk_pwrite(blk, off, len, p, 0), 0);
            memcpy(model + off, p, len);
        } else {
            CU_ASSERT_EQUAL_FATAL(blk_pread(blk, off, len, p, 0), 0);
            CU_ASSERT_FATAL(memcmp(p, model + off, len) == 0);
        }
    }
    CU_ASSERT_EQUAL(blk_flush(blk), 0);
    blk_unref(blk);

    /* What reached the file is what the model says. */
    int fd = open(path, O_RDONLY);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(full_pread(fd, buf, size, 0), 0);
    CU_ASSERT(memcmp(buf, model, size) == 0);
    close(fd);
    free(model);
    free(buf);
    free(path);
}

static void test_io_uring_direct(void)
{
    roundtrip("io_uring", true);
}

static void test_io_uring_buffered(void)
{
    roundtrip("io_uring", false);
}

static void test_native_direct(void)
{
    roundtrip("native", true);
}

static void test_threads_direct(void)
{
    roundtrip("threads", true);
}

static void test_threads_buffered(void)
{
    roundtrip("threads", false);
}

static void test_native_needs_direct(void)
{
    char *path = make_file("native.img", 4096);
    struct err err = { 0 };
    struct block_backend *blk = open_file(path, "native", false, true, &err);
    CU_ASSERT_PTR_NULL(blk);
    CU_ASSERT(strstr(err.msg, "aio=native was specified, but it requires cache.direct=on") !=
              NULL);
    free(path);
}

static void test_bad_aio(void)
{
    char *path = make_file("badaio.img", 4096);
    struct err err = { 0 };
    struct block_backend *blk = open_file(path, "posix", false, true, &err);
    CU_ASSERT_PTR_NULL(blk);
    CU_ASSERT_STRING_EQUAL(err.msg, "Invalid aio mode 'posix' (expected threads, native or "
                                    "io_uring)");
    free(path);
}

static void test_missing_file(void)
{
    struct err err = { 0 };
    char *path = test_tmpfile("does-not-exist.img");
    struct block_backend *blk = open_file(path, "io_uring", false, false, &err);
    CU_ASSERT_PTR_NULL(blk);
    CU_ASSERT(strstr(err.msg, "Could not open") && strstr(err.msg, "No such file"));
    free(path);
}

/* A file whose size is not a multiple of the block size reads zeroes past its end. */
static void test_odd_size_eof(void)
{
    char *path = test_tmpfile("odd.img");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    uint8_t data[1000];
    memset(data, 0x77, sizeof(data));
    CU_ASSERT_FATAL(full_pwrite(fd, data, sizeof(data), 0) == 0);
    close(fd);
    struct err err = { 0 };
    for (int direct = 0; direct < 2; direct++) {
        struct block_backend *blk = open_file(path, "io_uring", direct, false, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
        CU_ASSERT_EQUAL(blk_getlength(blk), 1000);
        uint8_t buf[1000];
        CU_ASSERT_EQUAL(blk_pread(blk, 0, 1000, buf, 0), 0);
        CU_ASSERT(memcmp(buf, data, 1000) == 0);
        blk_unref(blk);
    }
    free(path);
}

static void test_zero_discard_status(void)
{
    const int64_t size = 1 * MiB;
    char *path = make_file("status.img", size);
    struct err err = { 0 };
    struct block_backend *blk = open_file(path, "io_uring", true, true, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct block_node *bs = blk_node(blk);
    uint8_t *buf = xmemalign(4096, size);
    memset(buf, 0x42, size);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, size, buf, 0), 0);

    int64_t pnum;
    int ret = bnode_block_status_above(bs, NULL, true, 0, size, &pnum, NULL, NULL, NULL);
    CU_ASSERT(ret & BDRV_BLOCK_DATA);
    CU_ASSERT_EQUAL(pnum, size);

    /* A discarded range becomes a hole. */
    CU_ASSERT_EQUAL(blk_pdiscard(blk, 256 * KiB, 256 * KiB), 0);
    ret = bnode_block_status_above(bs, NULL, true, 256 * KiB, 256 * KiB, &pnum, NULL, NULL, NULL);
    CU_ASSERT(ret & BDRV_BLOCK_ZERO);
    CU_ASSERT_FALSE(ret & BDRV_BLOCK_DATA);
    CU_ASSERT_EQUAL(pnum, 256 * KiB);

    /* A zero write reads back as zeroes. */
    CU_ASSERT_EQUAL(blk_pwrite_zeroes(blk, 600 * KiB, 100 * KiB + 100, 0), 0);
    CU_ASSERT_EQUAL(blk_pread(blk, 0, size, buf, 0), 0);
    CU_ASSERT_EQUAL(buf[256 * KiB - 1], 0x42);
    CU_ASSERT_TRUE(buffer_is_zero(buf + 256 * KiB, 256 * KiB));
    CU_ASSERT_EQUAL(buf[600 * KiB - 1], 0x42);
    CU_ASSERT_TRUE(buffer_is_zero(buf + 600 * KiB, 100 * KiB + 100));
    CU_ASSERT_EQUAL(buf[700 * KiB + 100], 0x42);
    blk_unref(blk);
    free(buf);
    free(path);
}

static void test_truncate(void)
{
    char *path = make_file("resize.img", 64 * KiB);
    struct err err = { 0 };
    struct block_backend *blk = open_file(path, "io_uring", false, true, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    CU_ASSERT_EQUAL(blk_truncate(blk, 1 * MiB, true, PREALLOC_MODE_OFF, 0, &err), 0);
    CU_ASSERT_EQUAL(blk_getlength(blk), 1 * MiB);
    CU_ASSERT_EQUAL(blk_truncate(blk, 2 * MiB, true, PREALLOC_MODE_FALLOC, 0, &err), 0);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_size, 2 * MiB);
    CU_ASSERT(st.st_blocks * 512 >= 1 * (int64_t)MiB);
    CU_ASSERT_EQUAL(blk_truncate(blk, 4096, true, PREALLOC_MODE_OFF, 0, &err), 0);
    CU_ASSERT_EQUAL(blk_getlength(blk), 4096);
    blk_unref(blk);
    free(path);
}

static void test_create_prealloc(void)
{
    char *path = test_tmpfile("created.img");
    struct err err = { 0 };
    json_t *o = json_pack("{s:s, s:I, s:s}", "filename", path, "size", (json_int_t)(4 * MiB),
                          "preallocation", "full");
    CU_ASSERT_EQUAL(bdrv_create("raw", o, &err), 0);
    json_decref(o);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_size, 4 * MiB);
    CU_ASSERT(st.st_blocks * 512 >= 4 * (int64_t)MiB);

    o = json_pack("{s:s, s:I, s:s}", "filename", path, "size", (json_int_t)MiB,
                  "preallocation", "sideways");
    CU_ASSERT(bdrv_create("raw", o, &err) < 0);
    CU_ASSERT_STRING_EQUAL(err.msg, "Invalid preallocation mode: 'sideways'");
    json_decref(o);
    free(path);
}

/* Two writers may not hold one image; QEMU's lock bytes say why. */
static void test_locking(void)
{
    char *path = make_file("locked.img", 64 * KiB);
    struct err err = { 0 };
    struct block_backend *a = open_file(path, "io_uring", false, true, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    struct block_backend *b = open_file(path, "io_uring", false, true, &err);
    CU_ASSERT_PTR_NULL(b);
    CU_ASSERT(strstr(err.msg, "Failed to get \"write\" lock") != NULL ||
              strstr(err.msg, "Failed to get shared \"write\" lock") != NULL);
    /* A reader that does not share writing cannot come in either... */
    err_clear(&err);
    struct block_backend *c = open_file(path, "io_uring", false, false, &err);
    CU_ASSERT_PTR_NULL(c);
    blk_unref(a);
    /* ...but can once the writer is gone. */
    c = open_file(path, "io_uring", false, false, &err);
    CU_ASSERT_PTR_NOT_NULL(c);
    blk_unref(c);
    free(path);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("file", NULL, NULL);
    CU_add_test(s, "io_uring_direct", test_io_uring_direct);
    CU_add_test(s, "io_uring_buffered", test_io_uring_buffered);
    CU_add_test(s, "native_direct", test_native_direct);
    CU_add_test(s, "threads_direct", test_threads_direct);
    CU_add_test(s, "threads_buffered", test_threads_buffered);
    CU_add_test(s, "native_needs_direct", test_native_needs_direct);
    CU_add_test(s, "bad_aio", test_bad_aio);
    CU_add_test(s, "missing_file", test_missing_file);
    CU_add_test(s, "odd_size_eof", test_odd_size_eof);
    CU_add_test(s, "zero_discard_status", test_zero_discard_status);
    CU_add_test(s, "truncate", test_truncate);
    CU_add_test(s, "create_prealloc", test_create_prealloc);
    CU_add_test(s, "locking", test_locking);
}
