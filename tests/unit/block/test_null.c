/* The null driver: size, read-zeroes, latency-ns, and its filename rules. */
#include "tests/unit/harness.h"

#include "block/backend.h"

static struct block_backend *open_null(const char *json, struct err *err)
{
    json_error_t jerr;
    json_t *o = json_loads(json, 0, &jerr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    struct block_backend *blk = blk_new_open("", NULL, o, BDRV_O_RDWR, err);
    json_decref(o);
    return blk;
}

static void test_defaults(void)
{
    struct err err = { 0 };
    struct block_backend *blk = open_null("{\"driver\":\"null-co\"}", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    CU_ASSERT_EQUAL(blk_getlength(blk), 1 * GiB);
    uint8_t buf[4096];
    memset(buf, 0xaa, sizeof(buf));
    /* Without read-zeroes the buffer is left alone (QEMU's null-co). */
    CU_ASSERT_EQUAL(blk_pread(blk, 0, sizeof(buf), buf, 0), 0);
    CU_ASSERT_EQUAL(buf[0], 0xaa);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 4096, sizeof(buf), buf, 0), 0);
    CU_ASSERT_EQUAL(blk_flush(blk), 0);
    blk_unref(blk);
}

static void test_read_zeroes_and_size(void)
{
    struct err err = { 0 };
    struct block_backend *blk = open_null(
        "{\"driver\":\"null-co\",\"size\":\"16M\",\"read-zeroes\":true}", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    CU_ASSERT_EQUAL(blk_getlength(blk), 16 * MiB);
    uint8_t buf[4096];
    memset(buf, 0xaa, sizeof(buf));
    CU_ASSERT_EQUAL(blk_pread(blk, 0, sizeof(buf), buf, 0), 0);
    CU_ASSERT_TRUE(buffer_is_zero(buf, sizeof(buf)));
    CU_ASSERT_EQUAL(blk_pread(blk, 16 * MiB, 4096, buf, 0), -EIO);
    int64_t pnum;
    int ret = bnode_block_status_above(blk_node(blk), NULL, true, 0, MiB, &pnum, NULL, NULL,
                                       NULL);
    CU_ASSERT(ret & BDRV_BLOCK_ZERO);
    blk_unref(blk);
}

static void test_latency(void)
{
    struct err err = { 0 };
    struct block_backend *blk = open_null(
        "{\"driver\":\"null-co\",\"latency-ns\":2000000}", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    uint8_t buf[512];
    int64_t start = clock_ns();
    CU_ASSERT_EQUAL(blk_pread(blk, 0, sizeof(buf), buf, 0), 0);
    CU_ASSERT(clock_ns() - start >= 2000000);
    blk_unref(blk);
}

static void test_bad_options(void)
{
    struct err err = { 0 };
    CU_ASSERT_PTR_NULL(open_null("{\"driver\":\"null-co\",\"size\":\"big\"}", &err));
    CU_ASSERT(strstr(err.msg, "size") != NULL);
    err_clear(&err);
    CU_ASSERT_PTR_NULL(open_null("{\"driver\":\"null-co\",\"colour\":\"red\"}", &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "Block driver 'null-co' does not support the option "
                                    "'colour'");
    err_clear(&err);
    CU_ASSERT_PTR_NULL(open_null("{\"driver\":\"null-co\",\"filename\":\"/dev/sda\"}", &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "The only allowed filename for this driver is "
                                    "'null-co://'");
    err_clear(&err);
    CU_ASSERT_PTR_NULL(open_null("{\"driver\":\"nope\"}", &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "Unknown driver 'nope'");
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("null", NULL, NULL);
    CU_add_test(s, "defaults", test_defaults);
    CU_add_test(s, "read_zeroes_and_size", test_read_zeroes_and_size);
    CU_add_test(s, "latency", test_latency);
    CU_add_test(s, "bad_options", test_bad_options);
}
