/*
 * Nodes the user adds by name (block/blockdev.c): node-name is required at
 * the top, nodes open read-write unless read-only, blockdev_del refuses
 * with QEMU's sentences what it must not close, lookups by device or node
 * name, closing everything leaves the data in the file, and
 * blockdev-create's core makes file and raw images and refuses drivers
 * that cannot create.
 */
#include "tests/unit/harness.h"

#include <stdio.h>
#include <sys/stat.h>

#include "block/backend.h"
#include "block/blockdev.h"
#include "block/dirty-bitmap.h"

static json_t *file_opts(const char *node, const char *path)
{
    return json_pack("{s:s, s:s, s:s}", "driver", "file", "node-name", node, "filename", path);
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* A file of size bytes made through blockdev_create. */
static char *new_file(const char *name, int64_t size)
{
    struct err err = { 0 };
    char *path = test_tmpfile(name);
    json_t *o = json_pack("{s:s, s:s, s:I}", "driver", "file", "filename", path,
                          "size", (json_int_t)size);
    CU_ASSERT_EQUAL(blockdev_create(o, &err), 0);
    json_decref(o);
    return path;
}

static void test_add_and_del(void)
{
    struct err err = { 0 };
    char *path = new_file("a.raw", 1 << 20);
    CU_ASSERT_EQUAL(file_size(path), 1 << 20);

    json_t *o = json_pack("{s:s, s:s}", "driver", "file", "filename", path);
    CU_ASSERT_PTR_NULL(blockdev_add(o, &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "'node-name' must be specified for the root node");
    json_decref(o);
    err_clear(&err);

    o = file_opts("f0", path);
    struct block_node *f0 = blockdev_add(o, &err);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f0);
    CU_ASSERT_FALSE(f0->read_only);
    CU_ASSERT_TRUE(blockdev_is_user_node(f0));
    o = json_pack("{s:s, s:s, s:s, s:b}", "driver", "raw", "node-name", "r0", "file", "f0",
                  "read-only", 1);
    struct block_node *r0 = blockdev_add(o, &err);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r0);
    CU_ASSERT_TRUE(r0->read_only);

    CU_ASSERT_EQUAL(blockdev_del("zz", &err), -ENOENT);
    CU_ASSERT_STRING_EQUAL(err.msg, "Failed to find node with node-name='zz'");
    err_clear(&err);
    CU_ASSERT_EQUAL(blockdev_del("f0", &err), -EBUSY);
    CU_ASSERT_STRING_EQUAL(err.msg, "Block device f0 is in use");
    err_clear(&err);

    /* A backend (a device, an export) on it. */
    struct block_backend *blk = blk_new("d0");
    CU_ASSERT_EQUAL(blk_insert_node(blk, r0, &err), 0);
    CU_ASSERT_EQUAL(blockdev_del("r0", &err), -EBUSY);
    CU_ASSERT_STRING_EQUAL(err.msg, "Node r0 is in use");
    err_clear(&err);
    CU_ASSERT_PTR_EQUAL(blockdev_lookup("d0", NULL, &err), r0);
    CU_ASSERT_PTR_EQUAL(blockdev_lookup(NULL, "f0", &err), f0);
    CU_ASSERT_PTR_EQUAL(blockdev_lookup("zz", "r0", &err), r0);
    CU_ASSERT_PTR_NULL(blockdev_lookup("zz", "yy", &err));
    CU_ASSERT_STRING_EQUAL(err.msg, "Cannot find device='zz' nor node-name='yy'");
    err_clear(&err);
    blk_unref(blk);

    /* A bitmap left on a node goes with it (LSan would see it otherwise). */
    CU_ASSERT_PTR_NOT_NULL(bdrv_create_dirty_bitmap(r0, 0, "left", &err));
    CU_ASSERT_EQUAL(blockdev_del("r0", &err), 0);
    CU_ASSERT_PTR_NULL(bnode_find("r0"));
    CU_ASSERT_EQUAL(blockdev_del("f0", &err), 0);
    CU_ASSERT_PTR_NULL(bnode_find("f0"));
    free(path);
}

static void test_not_user_node(void)
{
    struct err err = { 0 };
    json_t *o = json_pack("{s:s, s:s}", "driver", "null-co", "node-name", "internal");
    struct block_node *bs = bnode_open(NULL, o, BDRV_O_RDWR, &err);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bs);
    CU_ASSERT_EQUAL(blockdev_del("internal", &err), -EPERM);
    CU_ASSERT_STRING_EQUAL(err.msg, "Node internal is not owned by the monitor");
    bnode_unref(bs);
}

static void test_close_all(void)
{
    struct err err = { 0 };
    char *path = new_file("b.raw", 64 * 1024);
    json_t *o = json_pack("{s:s, s:s, s:o}", "driver", "raw", "node-name", "rb", "file",
                          file_opts("fb", path));
    json_object_del(json_object_get(o, "file"), "node-name");
    struct block_node *rb = blockdev_add(o, &err);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rb);
    struct block_backend *blk = blk_new("");
    blk_insert_node(blk, rb, &err);
    char buf[4096];
    memset(buf, 0xab, sizeof(buf));
    CU_ASSERT_EQUAL(blk_pwrite(blk, 0, sizeof(buf), buf, 0), 0);
    blk_unref(blk);
    blockdev_close_all();
    CU_ASSERT_PTR_NULL(bnode_find("rb"));
    FILE *f = fopen(path, "rb");
    char back[4096] = { 0 };
    CU_ASSERT_EQUAL(fread(back, 1, sizeof(back), f), sizeof(back));
    fclose(f);
    CU_ASSERT_EQUAL(memcmp(buf, back, sizeof(buf)), 0);
    free(path);
}

static void test_create(void)
{
    struct err err = { 0 };
    char *path = new_file("c.raw", 0);
    CU_ASSERT_EQUAL(file_size(path), 0);

    /* raw: the file node becomes the image, at its size. */
    json_t *o = file_opts("fc", path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blockdev_add(o, &err));
    json_decref(o);
    o = json_pack("{s:s, s:s, s:I}", "driver", "raw", "file", "fc", "size", (json_int_t)(3 << 20));
    CU_ASSERT_EQUAL(blockdev_create(o, &err), 0);
    json_decref(o);
    CU_ASSERT_EQUAL(file_size(path), 3 << 20);
    CU_ASSERT_EQUAL(bnode_getlength(bnode_find("fc")), 3 << 20);
    CU_ASSERT_EQUAL(blockdev_del("fc", &err), 0);

    o = json_pack("{s:s, s:s, s:I}", "driver", "raw", "file", "nowhere", "size", (json_int_t)1);
    CU_ASSERT(blockdev_create(o, &err) < 0);
    CU_ASSERT_STRING_EQUAL(err.msg, "Cannot find device='' nor node-name='nowhere'");
    json_decref(o);
    err_clear(&err);

    o = json_pack("{s:s, s:I}", "driver", "null-co", "size", (json_int_t)1);
    CU_ASSERT_EQUAL(blockdev_create(o, &err), -ENOTSUP);
    CU_ASSERT_STRING_EQUAL(err.msg, "Driver does not support blockdev-create");
    json_decref(o);
    err_clear(&err);

    o = json_pack("{s:s}", "driver", "nosuch");
    CU_ASSERT(blockdev_create(o, &err) < 0);
    CU_ASSERT_STRING_EQUAL(err.msg, "Unknown driver 'nosuch'");
    json_decref(o);
    free(path);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("blockdev", NULL, NULL);
    CU_add_test(s, "add_and_del", test_add_and_del);
    CU_add_test(s, "not_user_node", test_not_user_node);
    CU_add_test(s, "close_all", test_close_all);
    CU_add_test(s, "create", test_create);
}
