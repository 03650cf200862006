/*
 * Dirty bitmaps of a node: the request path marks every enabled bitmap,
 * disabled ones stay still, names are unique, merge widens across
 * granularities, successors record while their parent is busy and are
 * abdicated or reclaimed, and a resize follows the node.
 */
#include "tests/unit/harness.h"

#include "block/backend.h"
#include "block/dirty-bitmap.h"

static struct block_backend *null_disk(int64_t size)
{
    struct err err = { 0 };
    json_t *o = json_pack("{s:s, s:I}", "driver", "null-co", "size", (json_int_t)size);
    struct block_backend *blk = blk_new_open("", NULL, o, BDRV_O_RDWR, &err);
    json_decref(o);
    return blk;
}

static void test_writes_mark(void)
{
    struct block_backend *blk = null_disk(16 * MiB);
    struct err err = { 0 };
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct block_node *bs = blk_node(blk);
    struct bdrv_dirty_bitmap *a = bdrv_create_dirty_bitmap(bs, 64 * KiB, "a", &err);
    struct bdrv_dirty_bitmap *b = bdrv_create_dirty_bitmap(bs, 4096, "b", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    uint8_t buf[512] = { 0 };
    CU_ASSERT_EQUAL(blk_pwrite(blk, 100 * KiB, 512, buf, 0), 0);
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(a), 64 * KiB);
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(b), 4096);
    CU_ASSERT_TRUE(bdrv_dirty_bitmap_get(a, 64 * KiB));
    CU_ASSERT_FALSE(bdrv_dirty_bitmap_get(a, 0));
    CU_ASSERT_EQUAL(bdrv_dirty_bitmap_next_dirty(b, 0, 16 * MiB), 100 * KiB - (100 * KiB) % 4096);

    /* A disabled bitmap records nothing; zero writes count as writes. */
    bdrv_disable_dirty_bitmap(b);
    CU_ASSERT_EQUAL(blk_pwrite_zeroes(blk, 1 * MiB, 4096, 0), 0);
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(b), 4096);
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(a), 128 * KiB);

    int64_t start, bytes;
    CU_ASSERT_TRUE(bdrv_dirty_bitmap_next_dirty_area(a, 0, 16 * MiB, 16 * MiB, &start, &bytes));
    CU_ASSERT_EQUAL(start, 64 * KiB);
    CU_ASSERT_EQUAL(bytes, 64 * KiB);
    bdrv_clear_dirty_bitmap(a);
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(a), 0);
    bdrv_release_dirty_bitmap(a);
    bdrv_release_dirty_bitmap(b);
    blk_unref(blk);
}

static void test_names_and_errors(void)
{
    struct block_backend *blk = null_disk(MiB);
    struct err err = { 0 };
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct block_node *bs = blk_node(blk);
    struct bdrv_dirty_bitmap *a = bdrv_create_dirty_bitmap(bs, 0, "x", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_EQUAL(a->granularity, 64 * KiB);
    CU_ASSERT_PTR_EQUAL(bdrv_find_dirty_bitmap(bs, "x"), a);
    CU_ASSERT_PTR_NULL(bdrv_create_dirty_bitmap(bs, 0, "x", &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "Bitmap already exists: x");
    err_clear(&err);
    CU_ASSERT_PTR_NULL(bdrv_create_dirty_bitmap(bs, 3000, "y", &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "Granularity must be power of 2 between 512 and "
                                    "2147483648");
    a->busy = true;
    err_clear(&err);
    CU_ASSERT_EQUAL(bdrv_dirty_bitmap_check_user(a, &err), -EBUSY);
    CU_ASSERT(strstr(err.msg, "Bitmap 'x' is currently in use") != NULL);
    a->busy = false;
    bdrv_release_dirty_bitmap(a);
    CU_ASSERT_PTR_NULL(bdrv_find_dirty_bitmap(bs, "x"));
    blk_unref(blk);
}

static void test_merge_granularities(void)
{
    struct block_backend *blk = null_disk(4 * MiB);
    struct err err = { 0 };
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct block_node *bs = blk_node(blk);
    struct bdrv_dirty_bitmap *fine = bdrv_create_dirty_bitmap(bs, 4096, "fine", &err);
    struct bdrv_dirty_bitmap *coarse = bdrv_create_dirty_bitmap(bs, 1 * MiB, "coarse", &err);
    bdrv_disable_dirty_bitmap(coarse);
    bdrv_set_dirty_bitmap(fine, 5000, 100);
    CU_ASSERT_EQUAL(bdrv_merge_dirty_bitmap(coarse, fine, &err), 0);
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(coarse), 1 * MiB);
    bdrv_clear_dirty_bitmap(fine);
    bdrv_set_dirty_bitmap(coarse, 2 * MiB, 1);
    CU_ASSERT_EQUAL(bdrv_merge_dirty_bitmap(fine, coarse, &err), 0);
    /* Coarse bits cover whole megabytes of the fine bitmap. */
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(fine), 2 * MiB);
    bdrv_release_dirty_bitmap(fine);
    bdrv_release_dirty_bitmap(coarse);
    blk_unref(blk);
}

static void test_successor(void)
{
    struct block_backend *blk = null_disk(4 * MiB);
    struct err err = { 0 };
    uint8_t buf[512] = { 0 };
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct block_node *bs = blk_node(blk);
    struct bdrv_dirty_bitmap *bm = bdrv_create_dirty_bitmap(bs, 64 * KiB, "inc", &err);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, 512, buf, 0), 0);
    CU_ASSERT_EQUAL(bdrv_dirty_bitmap_create_successor(bm, &err), 0);
    CU_ASSERT_TRUE(bm->busy);
    /* Writes during the "backup" go to the successor only. */
    CU_ASSERT_EQUAL(blk_pwrite(blk, 1 * MiB, 512, buf, 0), 0);
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(bm), 64 * KiB);
    /* Failure: the successor's bits are merged back. */
    bdrv_dirty_bitmap_reclaim(bm);
    CU_ASSERT_FALSE(bm->busy);
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(bm), 128 * KiB);
    /* Success: only what was written after the start remains. */
    CU_ASSERT_EQUAL(bdrv_dirty_bitmap_create_successor(bm, &err), 0);
    CU_ASSERT_EQUAL(blk_pwrite(blk, 2 * MiB, 512, buf, 0), 0);
    bdrv_dirty_bitmap_abdicate(bm);
    CU_ASSERT_EQUAL(bdrv_get_dirty_count(bm), 64 * KiB);
    CU_ASSERT_TRUE(bdrv_dirty_bitmap_get(bm, 2 * MiB));
    CU_ASSERT_FALSE(bm->disabled);
    bdrv_release_dirty_bitmap(bm);
    blk_unref(blk);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("dirty_bitmap", NULL, NULL);
    CU_add_test(s, "writes_mark", test_writes_mark);
    CU_add_test(s, "names_and_errors", test_names_and_errors);
    CU_add_test(s, "merge_granularities", test_merge_granularities);
    CU_add_test(s, "successor", test_successor);
}
