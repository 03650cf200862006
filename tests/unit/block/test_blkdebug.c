/*
 * blkdebug: rules armed by named events fail the requests they match
 * (type, sector), once or until disarmed, immediately or after a yield;
 * set-state rules gate them; bad rules are refused with a sentence.
 */
#include "tests/unit/harness.h"

#include <fcntl.h>
#include <unistd.h>

#include "block/backend.h"
#include "block/debug-events.h"

static char *image;

static struct block_backend *open_dbg(const char *rules_json, struct err *err)
{
    char *json = xasprintf("{\"driver\":\"blkdebug\",\"image\":{\"driver\":\"file\","
                           "\"filename\":\"%s\"},%s}", image, rules_json);
    json_error_t jerr;
    json_t *o = json_loads(json, 0, &jerr);
    free(json);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    struct block_backend *blk = blk_new_open("", NULL, o, BDRV_O_RDWR, err);
    json_decref(o);
    return blk;
}

static int setup(void)
{
    image = test_tmpfile("dbg.raw");
    int fd = open(image, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int ret = fd >= 0 && ftruncate(fd, 1 * MiB) == 0 ? 0 : -1;
    close(fd);
    return ret;
}

static void test_once(void)
{
    struct err err = { 0 };
    uint8_t buf[4096] = { 0 };
    struct block_backend *blk = open_dbg(
        "\"inject-error\":[{\"event\":\"pwritev\",\"errno\":28,\"once\":true}]", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 4096, buf, 0), -ENOSPC);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 4096, buf, 0), 0);
    CU_ASSERT_EQUAL(blk_pread(blk, 0, 4096, buf, 0), 0);
    blk_unref(blk);
}

static void test_sticky_and_iotype(void)
{
    struct err err = { 0 };
    uint8_t buf[4096] = { 0 };
    struct block_backend *blk = open_dbg(
        "\"inject-error\":[{\"event\":\"pwritev\",\"iotype\":\"read\",\"immediately\":true}]",
        &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    /* The write arms the rule (and, being no read, passes); every read fails after. */
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 4096, buf, 0), 0);
    CU_ASSERT_EQUAL(blk_pread(blk, 0, 4096, buf, 0), -EIO);
    CU_ASSERT_EQUAL(blk_pread(blk, 8192, 4096, buf, 0), -EIO);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 4096, buf, 0), 0);
    blk_unref(blk);
}

static void test_sector(void)
{
    struct err err = { 0 };
    uint8_t buf[4096] = { 0 };
    struct block_backend *blk = open_dbg(
        "\"inject-error\":[{\"event\":\"pwritev\",\"sector\":16}]", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 4096, buf, 0), 0);        /* sectors 0..7 */
    CU_ASSERT_EQUAL(blk_pwrite(blk, 8192, 4096, buf, 0), -EIO);  /* covers sector 16 */
    blk_unref(blk);
}

static void test_states(void)
{
    struct err err = { 0 };
    uint8_t buf[512] = { 0 };
    /* Armed only in state 2; a flush moves us there. */
    struct block_backend *blk = open_dbg(
        "\"inject-error\":[{\"event\":\"pwritev\",\"state\":2,\"once\":true}],"
        "\"set-state\":[{\"event\":\"flush_to_disk\",\"new_state\":2}]", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 512, buf, 0), 0);
    CU_ASSERT_EQUAL(blk_flush(blk), 0);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 512, buf, 0), -EIO);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 512, buf, 0), 0);
    blk_unref(blk);
}

static void test_bad_rules(void)
{
    struct err err = { 0 };
    CU_ASSERT_PTR_NULL(open_dbg("\"inject-error\":[{\"event\":\"frobnicate\"}]", &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "blkdebug: unknown event 'frobnicate'");
    err_clear(&err);
    CU_ASSERT_PTR_NULL(open_dbg("\"inject-error\":[{\"event\":\"pwritev\",\"iotype\":\"x\"}]",
                                &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "blkdebug: unknown iotype 'x'");
    err_clear(&err);
    CU_ASSERT_PTR_NULL(open_dbg("\"set-state\":[{\"event\":\"pwritev\"}]", &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "blkdebug: set-state needs new_state");
    err_clear(&err);
    CU_ASSERT_PTR_NULL(open_dbg("\"config\":\"/etc/blkdebug.conf\"", &err));
    CU_ASSERT(strstr(err.msg, "config files are not supported") != NULL);
    err_clear(&err);
    CU_ASSERT_PTR_NULL(open_dbg("\"align\":3000", &err));
    CU_ASSERT(strstr(err.msg, "align must be a power of two") != NULL);
}

static void test_names(void)
{
    CU_ASSERT_EQUAL(blkdbg_event_lookup("l2_load"), BLKDBG_L2_LOAD);
    CU_ASSERT_STRING_EQUAL(blkdbg_event_name(BLKDBG_REFBLOCK_ALLOC_SWITCH_TABLE),
                           "refblock_alloc.switch_table");
    CU_ASSERT_EQUAL(blkdbg_event_lookup("none"), BLKDBG_NONE);
    CU_ASSERT_EQUAL(blkdbg_event_lookup("nope"), -1);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("blkdebug", setup, NULL);
    CU_add_test(s, "once", test_once);
    CU_add_test(s, "sticky_and_iotype", test_sticky_and_iotype);
    CU_add_test(s, "sector", test_sector);
    CU_add_test(s, "states", test_states);
    CU_add_test(s, "bad_rules", test_bad_rules);
    CU_add_test(s, "names", test_names);
}
