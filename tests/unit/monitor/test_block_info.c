/*
 * What QMP reports about a backend and its nodes: BlockInfo (query-block),
 * BlockDeviceInfo with ImageInfo ("inserted", query-named-block-nodes) and
 * BlockStats (query-blockstats), with exactly the members QEMU 7.2 reports
 * for `-drive if=none,id=d0,file=F,format=raw` (taken from its replies),
 * with and without a device, with dirty bitmaps (newest first) and a
 * backing chain.
 */
#include "tests/unit/harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "block/dirty-bitmap.h"
#include "monitor/block-info.h"

static char *img;

static int setup(void)
{
    img = test_tmpfile("d0.raw");
    int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0) {
        return 1;
    }
    close(fd);
    return 0;
}

static int teardown(void)
{
    free(img);
    return 0;
}

static struct block_backend *drive(void)
{
    struct err err = { 0 };
    json_t *o = json_pack("{s:s, s:{s:s, s:s}}", "driver", "raw", "file", "driver", "file",
                          "filename", img);
    struct block_backend *blk = blk_new_open("d0", NULL, o, BDRV_O_RDWR, &err);
    json_decref(o);
    if (!blk) {
        printf("# %s\n", err.msg);
    }
    return blk;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether o's member names, sorted, are the JSON array text want. */
static bool has_keys(json_t *o, const char *want)
{
    const char *names[64];
    size_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (n < ARRAY_SIZE(names)) {
            names[n++] = key;
        }
    }
    qsort(names, n, sizeof(names[0]), cmp_str);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(list, json_string(names[i]));
    }
    char *got = json_dumps(list, JSON_COMPACT);
    bool ok = !strcmp(got, want);
    if (!ok) {
        printf("# keys %s\n# want %s\n", got, want);
    }
    free(got);
    json_decref(list);
    return ok;
}

static void test_drive_without_device(void)
{
    struct err err = { 0 };
    struct block_backend *blk = drive();
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    json_t *info = mon_block_info(blk, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(info);
    CU_ASSERT(has_keys(info, "[\"device\",\"inserted\",\"locked\",\"removable\",\"type\"]"));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "device")), "d0");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "type")), "unknown");
    CU_ASSERT_TRUE(json_is_true(json_object_get(info, "removable")));
    CU_ASSERT_TRUE(json_is_false(json_object_get(info, "locked")));
    json_t *ins = json_object_get(info, "inserted");
    CU_ASSERT(has_keys(ins, "[\"backing_file_depth\",\"bps\",\"bps_rd\",\"bps_wr\",\"cache\","
                            "\"detect_zeroes\",\"drv\",\"encrypted\",\"file\",\"image\",\"iops\","
                            "\"iops_rd\",\"iops_wr\",\"node-name\",\"ro\",\"write_threshold\"]"));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ins, "file")), img);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ins, "drv")), "raw");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ins, "detect_zeroes")), "off");
    CU_ASSERT_EQUAL(json_string_value(json_object_get(ins, "node-name"))[0], '#');
    json_t *cache = json_object_get(ins, "cache");
    CU_ASSERT(has_keys(cache, "[\"direct\",\"no-flush\",\"writeback\"]"));
    CU_ASSERT_TRUE(json_is_true(json_object_get(cache, "writeback")));
    json_t *image = json_object_get(ins, "image");
    CU_ASSERT(has_keys(image, "[\"actual-size\",\"dirty-flag\",\"filename\",\"format\","
                              "\"virtual-size\"]"));
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(image, "virtual-size")), 1 << 20);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(image, "format")), "raw");
    json_decref(info);

    /* writethrough shows as writeback=false on the backend's view, not the node's. */
    blk_set_write_cache(blk, false);
    info = mon_block_info(blk, &err);
    CU_ASSERT_TRUE(json_is_false(json_object_get(json_object_get(json_object_get(info,
                   "inserted"), "cache"), "writeback")));
    json_decref(info);
    info = mon_block_device_info(NULL, blk_node(blk), true, &err);
    CU_ASSERT_TRUE(json_is_true(json_object_get(json_object_get(info, "cache"), "writeback")));
    json_decref(info);
    blk_unref(blk);
}

static void test_drive_with_device(void)
{
    struct err err = { 0 };
    struct block_backend *blk = drive();
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    blk_set_dev_name(blk, "/machine/peripheral/vd0/virtio-backend");
    CU_ASSERT_TRUE(mon_backend_is_listed(blk));
    json_t *info = mon_block_info(blk, &err);
    CU_ASSERT(has_keys(info, "[\"device\",\"inserted\",\"io-status\",\"locked\",\"qdev\","
                             "\"removable\",\"type\"]"));
    CU_ASSERT_TRUE(json_is_false(json_object_get(info, "removable")));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "io-status")), "ok");
    json_decref(info);
    blk_error_action(blk, BLK_ERROR_ACTION_REPORT, false, ENOSPC);
    info = mon_block_info(blk, &err);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "io-status")), "nospace");
    json_decref(info);
    /* An anonymous backend without a device (a job's, a tool's) is not listed. */
    struct block_backend *anon = blk_new("");
    CU_ASSERT_FALSE(mon_backend_is_listed(anon));
    blk_unref(anon);
    blk_unref(blk);
}

static void test_stats(void)
{
    struct block_backend *blk = drive();
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    char buf[4096] = { 1 };
    CU_ASSERT_EQUAL(blk_pwrite(blk, 8192, sizeof(buf), buf, 0), 0);
    json_t *st = mon_block_stats(blk, blk_node(blk));
    CU_ASSERT(has_keys(st, "[\"device\",\"node-name\",\"parent\",\"stats\"]"));
    json_t *s = json_object_get(st, "stats");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(s, "wr_operations")), 1);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(s, "wr_bytes")), 4096);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(s, "wr_highest_offset")), 12288);
    CU_ASSERT_TRUE(json_is_true(json_object_get(s, "account_invalid")));
    /* A node keeps no accounting: zeroes, account_* false, no histograms. */
    json_t *parent = json_object_get(st, "parent");
    CU_ASSERT(has_keys(parent, "[\"node-name\",\"stats\"]"));
    json_t *ps = json_object_get(parent, "stats");
    CU_ASSERT(has_keys(ps, "[\"account_failed\",\"account_invalid\",\"failed_flush_operations\","
                           "\"failed_rd_operations\",\"failed_unmap_operations\","
                           "\"failed_wr_operations\",\"flush_operations\",\"flush_total_time_ns\","
                           "\"invalid_flush_operations\",\"invalid_rd_operations\","
                           "\"invalid_unmap_operations\",\"invalid_wr_operations\",\"rd_bytes\","
                           "\"rd_merged\",\"rd_operations\",\"rd_total_time_ns\",\"timed_stats\","
                           "\"unmap_bytes\",\"unmap_merged\",\"unmap_operations\","
                           "\"unmap_total_time_ns\",\"wr_bytes\",\"wr_highest_offset\","
                           "\"wr_merged\",\"wr_operations\",\"wr_total_time_ns\"]"));
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(ps, "wr_operations")), 0);
    CU_ASSERT_TRUE(json_is_false(json_object_get(ps, "account_invalid")));
    json_decref(st);
    blk_unref(blk);
}

static void test_bitmaps_newest_first(void)
{
    struct err err = { 0 };
    struct block_backend *blk = drive();
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct block_node *bs = blk_node(blk);
    json_t *info = mon_block_device_info(NULL, bs, false, &err);
    CU_ASSERT_PTR_NULL(json_object_get(info, "dirty-bitmaps"));
    json_decref(info);
    struct bdrv_dirty_bitmap *a = bdrv_create_dirty_bitmap(bs, 0, "a", &err);
    struct bdrv_dirty_bitmap *b = bdrv_create_dirty_bitmap(bs, 4096, "b", &err);
    info = mon_block_device_info(NULL, bs, false, &err);
    json_t *list = json_object_get(info, "dirty-bitmaps");
    CU_ASSERT_EQUAL_FATAL(json_array_size(list), 2);
    json_t *newest = json_array_get(list, 0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(newest, "name")), "b");
    CU_ASSERT(has_keys(json_array_get(list, 0),
                       "[\"busy\",\"count\",\"granularity\",\"name\",\"persistent\","
                       "\"recording\"]"));
    json_decref(info);
    bdrv_release_dirty_bitmap(a);
    bdrv_release_dirty_bitmap(b);
    blk_unref(blk);
}

static void test_backing_chain(void)
{
    struct err err = { 0 };
    json_t *o = json_pack("{s:s, s:s, s:I}", "driver", "null-co", "node-name", "base",
                          "size", (json_int_t)(1 << 20));
    struct block_node *base = bnode_open(NULL, o, BDRV_O_RDWR, &err);
    json_decref(o);
    o = json_pack("{s:s, s:s, s:I}", "driver", "null-co", "node-name", "top",
                  "size", (json_int_t)(1 << 20));
    struct block_node *top = bnode_open(NULL, o, BDRV_O_RDWR, &err);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(base);
    CU_ASSERT_PTR_NOT_NULL_FATAL(top);
    /* What an image header would say, and the chain attached below it. */
    pstrcpy(top->backing_file, sizeof(top->backing_file), "base.img");
    bnode_attach_child(top, base, "backing", BDRV_CHILD_BACKING);
    json_t *info = mon_block_device_info(NULL, top, false, &err);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(info, "backing_file_depth")), 1);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "backing_file")), "base.img");
    json_t *image = json_object_get(info, "image");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(image, "backing-filename")),
                           "base.img");
    CU_ASSERT_PTR_NOT_NULL(json_object_get(image, "full-backing-filename"));
    CU_ASSERT_PTR_NOT_NULL(json_object_get(image, "backing-image"));
    json_decref(info);
    info = mon_block_device_info(NULL, top, true, &err);
    CU_ASSERT_PTR_NULL(json_object_get(json_object_get(info, "image"), "backing-image"));
    json_decref(info);
    bnode_unref(top);
    bnode_unref(base);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("monitor_block_info", setup, teardown);
    CU_add_test(s, "drive_without_device", test_drive_without_device);
    CU_add_test(s, "drive_with_device", test_drive_with_device);
    CU_add_test(s, "stats", test_stats);
    CU_add_test(s, "bitmaps_newest_first", test_bitmaps_newest_first);
    CU_add_test(s, "backing_chain", test_backing_chain);
}
