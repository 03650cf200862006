/*
 * The header: hand-corrupted headers are refused with a sentence naming
 * the field and the value, nothing past the file or QEMU's limits is
 * trusted, unknown incompatible features are named from the image's own
 * feature name table, and a rewrite keeps what it does not understand
 * (unknown extensions, unknown header fields) while clearing unknown
 * autoclear bits.
 */
#include "qcow2-test.h"

#include <fcntl.h>
#include <unistd.h>

static void poke(const char *path, off_t off, const void *buf, size_t len)
{
    int fd = open(path, O_RDWR);
    CU_ASSERT_TRUE_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(full_pwrite(fd, buf, len, off), 0);
    close(fd);
}

static void poke32(const char *path, off_t off, uint32_t v)
{
    uint8_t b[4];
    st_be32(b, v);
    poke(path, off, b, 4);
}

static void poke64(const char *path, off_t off, uint64_t v)
{
    uint8_t b[8];
    st_be64(b, v);
    poke(path, off, b, 8);
}

static void peek(const char *path, off_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    CU_ASSERT_TRUE_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(full_pread(fd, buf, len, off), 0);
    close(fd);
}

/* Open read-only; the error sentence (or "" when it opened). */
static const char *open_error(const char *path, int flags)
{
    static struct err err;
    err_clear(&err);
    json_t *o = json_pack("{s:s}", "driver", "qcow2");
    struct block_backend *blk = blk_new_open("", path, o, flags, &err);
    json_decref(o);
    if (blk) {
        blk_unref(blk);
        return "";
    }
    return err.msg;
}

static char *fresh(const char *name)
{
    char *path = test_tmpfile(name);
    unlink(path);
    CU_ASSERT_EQUAL(qt_create(path, NULL, 64 * MiB), 0);
    return path;
}

static void expect(const char *path, const char *want)
{
    const char *got = open_error(path, 0);
    if (!strstr(got, want)) {
        printf("# expected \"%s\" in \"%s\"\n", want, got);
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(got, want));
}

static void test_refusals(void)
{
    static const struct {
        off_t off;
        int width;
        uint64_t value;
        const char *want;
    } cases[] = {
        { 0, 32, 0x12345678, "Image is not in qcow2 format" },
        { 4, 32, 4, "unsupported qcow2 version 4" },
        { 20, 32, 8, "cluster_bits 8 is out of range" },
        { 20, 32, 22, "cluster_bits 22 is out of range" },
        { 100, 32, 100, "header_length 100 is invalid" },
        { 100, 32, 96, "header_length 96 is invalid" },
        { 100, 32, 0x20000, "header_length 131072 is invalid" },
        { 96, 32, 7, "refcount_order 7 is out of range" },
        { 32, 32, 1, "the image is encrypted (AES); encrypted qcow2 images are not supported yet" },
        { 36, 32, 0x400001, "active L1 table of 4194305 entries is too large (the limit is 32 MiB)" },
        { 36, 32, 0, "active L1 table of 0 entries is too small for a virtual size of 67108864" },
        { 40, 64, 0x30100, "active L1 table offset 0x30100 is not cluster aligned" },
        { 40, 64, 0x7fff0000, "active L1 table at 0x7fff0000 (8 bytes) extends past the end" },
        { 48, 64, 0x10008, "refcount table offset 0x10008 is not cluster aligned" },
        { 56, 32, 0, "refcount table of 0 clusters is empty" },
        { 56, 32, 129, "refcount table of 129 clusters is too large (at most 8 MiB)" },
        { 60, 32, 65537, "65537 snapshots are too many (at most 65536)" },
        { 72, 64, 1ULL << 40, "unsupported qcow2 feature(s): unknown incompatible feature bit 40" },
        { 72, 64, 1ULL << 3, "the compression type bit is set but compression_type is zlib" },
        { 104, 8, 1, "compression_type 1 is set without the compression type bit" },
        { 72, 64, 1ULL << 4, "extended L2 entries need clusters of at least 16 KiB" },
        { 24, 64, 1ULL << 62, "virtual size 4611686018427387904 is too large" },
        { 8, 64, 0x20000, "backing file name at 0x20000 (0 bytes) is not inside the first cluster" },
        { 16, 32, 2000, "" },   /* filled in below: a name too long */
    };
    for (size_t i = 0; i + 1 < ARRAY_SIZE(cases); i++) {
        char *path = fresh("h.qcow2");
        if (cases[i].width == 64) {
            poke64(path, cases[i].off, cases[i].value);
        } else if (cases[i].width == 32) {
            poke32(path, cases[i].off, (uint32_t)cases[i].value);
        } else {
            uint8_t b = (uint8_t)cases[i].value;
            poke(path, cases[i].off, &b, 1);
        }
        if (cases[i].off == 72 && cases[i].value == (1ULL << 4)) {
            /* Extended L2 on 64 KiB clusters is fine: make the clusters small. */
            poke32(path, 20, 12);
        }
        expect(path, cases[i].want);
        free(path);
    }
    /* A backing file name longer than 1023 bytes. */
    char *path = fresh("h.qcow2");
    poke64(path, 8, 0x1000);
    poke32(path, 16, 2000);
    expect(path, "is not inside the first cluster, or longer than 1023 bytes");
    free(path);
}

/* Extensions: lengths, and names of unknown features from the image's table. */
static void test_extensions(void)
{
    /* The feature table starts at 0x70: type at 0x70, length at 0x74. */
    char *path = fresh("x.qcow2");
    poke32(path, 0x74, 0x10000);
    expect(path, "header extension 0x6803f857 at 0x70 (65536 bytes) runs past the end of the "
                 "header area (0x10000)");
    free(path);

    path = fresh("x.qcow2");
    poke32(path, 0x70, QCOW2_EXT_BITMAPS);
    poke32(path, 0x74, 16);
    expect(path, "bitmaps extension has length 16, not 24");
    free(path);

    path = fresh("x.qcow2");
    poke32(path, 0x70, QCOW2_EXT_BACKING_FMT);
    poke32(path, 0x74, 40);
    expect(path, "backing format extension of 40 bytes is too long");
    free(path);

    /* Bit 9, named in the table (entry 0 renamed and renumbered). */
    path = fresh("x.qcow2");
    uint8_t entry[48] = { 0, 9 };
    memcpy(entry + 2, "flux capacitor", 14);
    poke(path, 0x78, entry, sizeof(entry));
    poke64(path, 72, (1ULL << 9) | (1ULL << 11));
    expect(path, "unsupported qcow2 feature(s): flux capacitor (incompatible bit 9), unknown "
                 "incompatible feature bit 11");
    free(path);

    /* An extension cut by the end of the area: 4 bytes left before the backing name. */
    path = fresh("x.qcow2");
    poke64(path, 8, 0x74);
    poke32(path, 16, 4);
    expect(path, "header extension at 0x70 is cut by the end of the header area (0x74)");
    free(path);
}

/* Corrupt bit: read-only opens only, until repaired. */
static void test_corrupt_bit(void)
{
    char *path = fresh("c.qcow2");
    poke64(path, 72, QCOW2_INCOMPAT_CORRUPT);
    CU_ASSERT_STRING_EQUAL(open_error(path, 0), "");
    CU_ASSERT_PTR_NOT_NULL(strstr(open_error(path, BDRV_O_RDWR),
                                  "the image is marked corrupt; it cannot be opened read/write"));
    CU_ASSERT_STRING_EQUAL(open_error(path, BDRV_O_RDWR | BDRV_O_CHECK), "");
    free(path);
}

struct rewrite {
    int ret;
};

static void rewrite_locked(struct qcow2_state *s, void *opaque)
{
    struct rewrite *r = opaque;
    r->ret = qcow2_update_header(s);
}

/* What a rewrite keeps and what it drops. */
static void test_rewrite_preserves(void)
{
    char *path = fresh("p.qcow2");
    /* Make room: an unknown extension after the feature table, a longer header. */
    uint8_t hdr[65536];
    peek(path, 0, hdr, sizeof(hdr));
    uint32_t feat_len = ld_be32(hdr + 0x74);
    uint32_t end = 0x70 + 8 + feat_len;
    /* Shift the extensions by 8 for a 120-byte header with 8 unknown bytes. */
    memmove(hdr + 0x78, hdr + 0x70, end - 0x70);
    memcpy(hdr + 0x70, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    st_be32(hdr + 100, 120);
    end += 8;
    st_be32(hdr + end, 0x12345678);
    st_be32(hdr + end + 4, 5);
    memcpy(hdr + end + 8, "hello\0\0\0", 8);
    st_be32(hdr + end + 16, 0);
    st_be32(hdr + end + 20, 0);
    st_be64(hdr + 88, 0x8000000000000000ULL);    /* an unknown autoclear bit */
    poke(path, 0, hdr, sizeof(hdr));

    struct err err = { 0 };
    struct block_backend *blk = qt_open(path, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct rewrite r = { 0 };
    qt_locked(qt_state(blk), rewrite_locked, &r);
    CU_ASSERT_EQUAL(r.ret, 0);
    blk_unref(blk);

    uint8_t after[65536];
    peek(path, 0, after, sizeof(after));
    CU_ASSERT_EQUAL(ld_be32(after + 100), 120);
    CU_ASSERT_EQUAL(memcmp(after + 0x70, "\x01\x02\x03\x04\x05\x06\x07\x08", 8), 0);
    CU_ASSERT_EQUAL(ld_be64(after + 88), 0);           /* unknown autoclear bit cleared */
    bool found = false;
    for (uint32_t off = 120; off + 8 <= sizeof(after);) {
        uint32_t type = ld_be32(after + off), len = ld_be32(after + off + 4);
        if (type == 0) {
            break;
        }
        if (type == 0x12345678) {
            found = len == 5 && !memcmp(after + off + 8, "hello", 5);
        }
        off += 8 + ALIGN_UP(len, 8);
    }
    CU_ASSERT_TRUE(found);
    CU_ASSERT_STRING_EQUAL(open_error(path, 0), "");
    free(path);
}

/* A version 2 header has no room for features: rewritten as it was. */
static void test_v2_roundtrip(void)
{
    char *path = test_tmpfile("v2.qcow2");
    CU_ASSERT_EQUAL_FATAL(qt_create(path, "compat=0.10", 64 * MiB), 0);
    uint8_t before[4096], after[4096];
    peek(path, 0, before, sizeof(before));
    struct err err = { 0 };
    struct block_backend *blk = qt_open(path, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    struct rewrite r = { 0 };
    qt_locked(qt_state(blk), rewrite_locked, &r);
    CU_ASSERT_EQUAL(r.ret, 0);
    blk_unref(blk);
    peek(path, 0, after, sizeof(after));
    CU_ASSERT_EQUAL(memcmp(before, after, sizeof(before)), 0);
    free(path);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("qcow2_header", NULL, NULL);
    CU_add_test(s, "refusals", test_refusals);
    CU_add_test(s, "extensions", test_extensions);
    CU_add_test(s, "corrupt_bit", test_corrupt_bit);
    CU_add_test(s, "rewrite_preserves", test_rewrite_preserves);
    CU_add_test(s, "v2_roundtrip", test_v2_roundtrip);
}
