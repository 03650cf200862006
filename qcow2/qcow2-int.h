/*
 * The qcow2 driver's private header: the on-disk constants, the state of an
 * open image, and the functions the files of qcow2/ share.
 *
 * Files, by concern:
 *   header.c    header and extensions: parse, validate, rewrite; feature bits
 *   qcow2.c     the driver table: open, close, options, flush, info
 *   cache.c     the metadata cache (L2 slices, refcount blocks) and its
 *               writeback order
 *   refcount.c  refcounts: lookup, update, cluster allocation, growth of
 *               the refcount table
 *   cluster.c   L1/L2: lookups, L2 allocation, linking new clusters, zero
 *               clusters, discard, L1 growth
 *   rw.c        the data path: reads, writes with copy-on-write and
 *               in-flight allocations, zero writes, discard, block status
 *   compress.c  zlib/zstd clusters on the thread pool
 *   overlap.c   metadata overlap checks before writes; corruption handling
 *   check.c     consistency check and repair
 *   create.c    image creation, preallocation, truncate
 *   bitmap.c    persistent dirty bitmaps
 *   snapshot.c  internal snapshots
 *   amend.c     changing options of an existing image
 *   measure.c   the size a new image needs (qemu-img measure)
 *
 * Locking.  s->lock (a co_mutex) guards all metadata: the L1 table, both
 * caches, the refcount table, the in-flight allocation list, the header.
 * Data I/O runs outside it.  s->map_lock (a pthread mutex, never held
 * across I/O) additionally guards what the lock-free lookup of the read
 * and in-place write paths looks at: the L1 table and the L2 cache's index
 * and contents.  Code that changes those holds both.
 */
#ifndef SPINDLE_QCOW2_INT_H
#define SPINDLE_QCOW2_INT_H

#include <endian.h>
#include <pthread.h>

#include "block/driver.h"
#include "qcow2/qcow2.h"
#include "util/aio.h"

/* ---- On-disk constants -------------------------------------------------- */

#define QCOW2_MAGIC              0x514649fbU
#define QCOW2_V2_HEADER_LEN      72
#define QCOW2_V3_HEADER_LEN      104     /* up to header_length */
#define QCOW2_HEADER_LEN_WRITTEN 112     /* with compression_type and padding */

#define QCOW2_MIN_CLUSTER_BITS   9
#define QCOW2_MAX_CLUSTER_BITS   21
#define QCOW2_DEFAULT_CLUSTER_BITS 16
#define QCOW2_EXTL2_MIN_CLUSTER_BITS 14

/* QEMU's implementation limits; images past them are refused. */
#define QCOW2_MAX_L1_BYTES       (32 * MiB)
#define QCOW2_MAX_REFTABLE_BYTES (8 * MiB)
#define QCOW2_MAX_SNAPSHOTS      65536
#define QCOW2_MAX_SNAPSHOT_TABLE (64 * MiB)
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024
#define QCOW2_MAX_BACKING_NAME   1023
#define QCOW2_MAX_ID_LEN         128     /* snapshot ids we generate */
/* Host offsets must fit bits 9..55 of an L1/L2 entry. */
#define QCOW2_MAX_HOST_OFFSET    ((1ULL << 56) - 1)

enum qcow2_ext_type {
    QCOW2_EXT_END         = 0x00000000,
    QCOW2_EXT_BACKING_FMT = 0xe2792aca,
    QCOW2_EXT_FEATURES    = 0x6803f857,
    QCOW2_EXT_BITMAPS     = 0x23852875,
    QCOW2_EXT_CRYPTO      = 0x0537be77,
    QCOW2_EXT_DATA_FILE   = 0x44415441,
};

#define QCOW2_INCOMPAT_DIRTY        (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN        0x1fULL

#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ULL << 0)
#define QCOW2_COMPAT_KNOWN          0x1ULL

#define QCOW2_AUTOCLEAR_BITMAPS     (1ULL << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW    (1ULL << 1)
#define QCOW2_AUTOCLEAR_KNOWN       0x3ULL

enum { QCOW2_COMPRESSION_ZLIB = 0, QCOW2_COMPRESSION_ZSTD = 1 };
enum { QCOW2_CRYPT_NONE = 0, QCOW2_CRYPT_AES = 1, QCOW2_CRYPT_LUKS = 2 };

#define L1E_OFFSET_MASK    0x00fffffffffffe00ULL
#define L1E_RESERVED_MASK  0x7f000000000001ffULL
#define L2E_OFFSET_MASK    0x00fffffffffffe00ULL
#define L2E_RESERVED_MASK  0x3f000000000001feULL
#define L2E_COMPRESSED_MASK 0x3fffffffffffffffULL
#define REFT_OFFSET_MASK   0xfffffffffffffe00ULL
#define REFT_RESERVED_MASK 0x1ffULL

#define QCOW_OFLAG_COPIED     (1ULL << 63)
#define QCOW_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW_OFLAG_ZERO       (1ULL << 0)

#define L2_BITMAP_ALL_ALLOC   0x00000000ffffffffULL
#define L2_BITMAP_ALL_ZERO    0xffffffff00000000ULL
#define QCOW2_EXTL2_SUBCLUSTERS 32

/* ---- Big-endian access ---------------------------------------------------- */

static inline uint64_t ld_be64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static inline uint32_t ld_be32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static inline uint16_t ld_be16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return be16toh(v);
}

static inline void st_be64(void *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

static inline void st_be32(void *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static inline void st_be16(void *p, uint16_t v)
{
    v = htobe16(v);
    memcpy(p, &v, 2);
}

/* ---- Types ----------------------------------------------------------------- */

/*
 * What a (sub)cluster of the guest is, from its L2 entry.  With standard
 * L2 entries a subcluster is the whole cluster.
 */
enum qcow2_sc_type {
    QCOW2_SC_UNALLOC,        /* reads from the backing file (or zeroes) */
    QCOW2_SC_UNALLOC_ALLOC,  /* extended L2: unallocated, but a host cluster is there */
    QCOW2_SC_ZERO,           /* reads as zeroes, no host cluster */
    QCOW2_SC_ZERO_ALLOC,     /* reads as zeroes, host cluster kept (preallocated) */
    QCOW2_SC_NORMAL,         /* data at the host offset */
    QCOW2_SC_COMPRESSED,     /* compressed data (whole cluster) */
    QCOW2_SC_INVALID,        /* a bitmap that says allocated and zero at once */
};

/* Why clusters are freed, for the pass-discard-* options. */
enum qcow2_discard_type {
    QCOW2_DISCARD_NEVER,
    QCOW2_DISCARD_ALWAYS,
    QCOW2_DISCARD_REQUEST,
    QCOW2_DISCARD_SNAPSHOT,
    QCOW2_DISCARD_OTHER,
    QCOW2_DISCARD_MAX,
};

/* Metadata structures, for overlap checks. */
enum {
    QCOW2_OL_MAIN_HEADER    = 1 << 0,
    QCOW2_OL_ACTIVE_L1      = 1 << 1,
    QCOW2_OL_ACTIVE_L2      = 1 << 2,
    QCOW2_OL_REFCOUNT_TABLE = 1 << 3,
    QCOW2_OL_REFCOUNT_BLOCK = 1 << 4,
    QCOW2_OL_SNAPSHOT_TABLE = 1 << 5,
    QCOW2_OL_INACTIVE_L1    = 1 << 6,
    QCOW2_OL_INACTIVE_L2    = 1 << 7,
    QCOW2_OL_BITMAP_DIR     = 1 << 8,
    QCOW2_OL_NONE           = 0,
    QCOW2_OL_CONSTANT       = QCOW2_OL_MAIN_HEADER | QCOW2_OL_ACTIVE_L1 |
                              QCOW2_OL_REFCOUNT_TABLE | QCOW2_OL_SNAPSHOT_TABLE |
                              QCOW2_OL_INACTIVE_L1 | QCOW2_OL_BITMAP_DIR,
    QCOW2_OL_CACHED         = QCOW2_OL_CONSTANT | QCOW2_OL_ACTIVE_L2 |
                              QCOW2_OL_REFCOUNT_BLOCK,
    QCOW2_OL_ALL            = QCOW2_OL_CACHED | QCOW2_OL_INACTIVE_L2,
};

/* A header extension we do not know, kept as it was for rewrites. */
struct qcow2_unknown_ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
    struct list_node link;
};

struct qcow2_snapshot {
    uint64_t l1_table_offset;
    uint32_t l1_size;
    char *id_str;
    char *name;
    uint64_t disk_size;
    uint64_t vm_state_size;
    uint32_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;               /* UINT64_MAX: not recorded */
    uint32_t extra_data_size;
    uint8_t *unknown_extra;        /* extra data past what we know (preserved) */
};

/* A persistent bitmap as the bitmap directory describes it. */
struct qcow2_bitmap_entry {
    uint64_t table_offset;
    uint32_t table_size;
    uint32_t flags;
    uint8_t type;
    uint8_t granularity_bits;
    char *name;
    uint32_t extra_data_size;
    uint8_t *extra_data;
};

#define BME_FLAG_IN_USE        (1U << 0)
#define BME_FLAG_AUTO          (1U << 1)
#define BME_FLAG_EXTRA_COMPAT  (1U << 2)
#define BME_RESERVED_FLAGS     0xfffffff8U
#define BME_TYPE_DIRTY         1
#define BME_MIN_GRANULARITY_BITS 9
#define BME_MAX_GRANULARITY_BITS 31
#define BME_MAX_NAME_SIZE      1023
#define BME_MAX_TABLE_SIZE     0x8000000U
#define BME_MAX_PHYS_SIZE      0x20000000ULL
#define QCOW2_MAX_BITMAPS      65535
#define QCOW2_MAX_BITMAP_DIR   (1024ULL * QCOW2_MAX_BITMAPS)
#define BME_TABLE_ENTRY_OFFSET_MASK   0x00fffffffffffe00ULL
#define BME_TABLE_ENTRY_RESERVED_MASK 0xff000000000001feULL
#define BME_TABLE_ENTRY_FLAG_ALL_ONES 1ULL

/*
 * An allocating write between choosing its host clusters and linking them
 * into the L2 table.  Requests that touch these guest clusters wait for it.
 */
struct qcow2_alloc {
    uint64_t guest_offset;       /* first guest cluster (cluster aligned) */
    uint64_t host_offset;        /* its host cluster; the rest follow contiguously */
    int nb_clusters;
    bool keep_old;               /* host clusters were there already (in place) */
    bool fresh;                  /* host clusters were never written: read as zeroes */
    bool prealloc;               /* preallocation: no data; subclusters stay unallocated */
    /* Copy-on-write regions around the data, as offsets from guest_offset. */
    uint64_t cow_start_off, cow_start_len;
    uint64_t cow_end_off, cow_end_len;
    /* The data the request writes, as an offset from guest_offset. */
    uint64_t data_off, data_len;
    struct co_queue waiters;     /* under s->lock */
    struct list_node link;       /* in s->allocs */
};

struct qcow2_cache;

struct qcow2_state {
    struct block_node *bs;

    /* Geometry, fixed once open. */
    uint32_t cluster_bits;
    uint32_t cluster_size;
    bool ext_l2;
    uint32_t l2_entry_size;      /* 8, or 16 with extended L2 */
    uint32_t l2_bits;            /* log2 of the entries in an L2 table */
    uint32_t l2_size;            /* entries per L2 table */
    uint32_t l2_slice_size;      /* entries per cached L2 slice */
    uint32_t sc_bits;            /* log2 of the subcluster size */
    uint32_t sc_size;
    uint32_t sc_per_cluster;     /* 32 with extended L2, else 1 */
    uint32_t refcount_order;
    uint32_t refcount_bits;
    uint64_t refcount_max;
    uint32_t rb_bits;            /* log2 of the entries of a refcount block */
    uint32_t rb_size;
    uint32_t csize_shift;        /* compressed descriptors */
    uint64_t csize_mask;
    uint64_t cluster_offset_mask;

    /* The header, as read (and as rewritten). */
    uint32_t version;
    uint32_t header_length;
    uint8_t *header_tail;        /* bytes 112..header_length we do not know */
    uint32_t header_tail_len;
    uint64_t incompat;
    uint64_t compat;
    uint64_t autoclear;
    uint32_t crypt_method;
    uint8_t compression_type;
    uint64_t crypto_offset, crypto_length;
    char *data_file_name;        /* external data file name extension */
    struct list_node unknown_exts;
    uint64_t size;               /* virtual size */

    /* The active L1 table (guarded by lock and map_lock). */
    uint64_t *l1_table;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint32_t l1_vm_state_index;  /* first L1 entry past the guest disk */

    /* Refcounts. */
    uint64_t *refcount_table;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_size;    /* entries */
    uint32_t reftable_used;          /* highest used entry + 1 */
    uint64_t free_cluster_index;
    uint64_t free_byte_offset;       /* compressed data allocation */

    struct qcow2_cache *l2_cache;
    struct qcow2_cache *rb_cache;

    /* Snapshots. */
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t snapshots_size;         /* bytes of the table */
    struct qcow2_snapshot *snapshots;

    /* Persistent bitmaps (the extension). */
    uint32_t nb_bitmaps;
    uint64_t bitmap_directory_size;
    uint64_t bitmap_directory_offset;
    struct qcow2_bitmap_entry *bm_dir;   /* the directory as it is on disk */
    uint32_t bm_dir_n;

    /* External data file: bs->file when there is none. */
    struct bdrv_child *data_file;

    /* Options. */
    bool use_lazy_refcounts;
    bool discard_passthrough[QCOW2_DISCARD_MAX];
    bool discard_no_unref;
    int overlap_check;
    uint64_t cache_clean_interval;   /* seconds, 0: never */
    struct aio_timer clean_timer;
    bool clean_timer_armed;

    /* Host offsets at or past this read as zeroes: never written by anyone. */
    uint64_t fresh_from;
    uint8_t *zero_cluster;           /* a cluster of zeroes for COW writes (read-only) */
    /* The image file is fallocated ahead of allocations up to here (0: never). */
    atomic_bool grow_ahead;          /* read by writers on any iothread */
    bool file_grown;                 /* under grow_lock, or drained */
    _Atomic uint64_t falloc_end;
    uint64_t size_at_open;           /* never cut back below this */
    struct co_mutex grow_lock;
    bool metadata_prealloc;          /* block status asks the file about holes */
    bool metadata_prealloc_checked;  /* decided (at the first block status) */
    bool corrupt_signalled;
    bool closing;

    struct co_mutex lock;
    pthread_mutex_t map_lock;
    struct list_node allocs;         /* struct qcow2_alloc, under lock */
};

/* ---- Small arithmetic ---------------------------------------------------- */

static inline uint64_t offset_into_cluster(const struct qcow2_state *s, uint64_t off)
{
    return off & (s->cluster_size - 1);
}

static inline uint64_t start_of_cluster(const struct qcow2_state *s, uint64_t off)
{
    return off & ~((uint64_t)s->cluster_size - 1);
}

static inline uint64_t size_to_clusters(const struct qcow2_state *s, uint64_t size)
{
    return (size + s->cluster_size - 1) >> s->cluster_bits;
}

static inline uint64_t offset_to_l1_index(const struct qcow2_state *s, uint64_t off)
{
    return off >> (s->l2_bits + s->cluster_bits);
}

static inline uint32_t offset_to_l2_index(const struct qcow2_state *s, uint64_t off)
{
    return (off >> s->cluster_bits) & (s->l2_size - 1);
}

static inline uint32_t offset_to_l2_slice_index(const struct qcow2_state *s, uint64_t off)
{
    return (off >> s->cluster_bits) & (s->l2_slice_size - 1);
}

static inline uint32_t offset_to_sc_index(const struct qcow2_state *s, uint64_t off)
{
    return (off >> s->sc_bits) & (s->sc_per_cluster - 1);
}

/* L1 entries needed for a guest disk of size bytes. */
static inline uint64_t qcow2_l1_entries_for(uint32_t cluster_bits, uint32_t l2_bits,
                                            uint64_t size)
{
    uint64_t shift = cluster_bits + l2_bits;
    return (size + (1ULL << shift) - 1) >> shift;
}

static inline bool qcow2_has_data_file(const struct qcow2_state *s)
{
    return s->data_file != s->bs->file;
}

static inline bool qcow2_data_file_is_raw(const struct qcow2_state *s)
{
    return s->autoclear & QCOW2_AUTOCLEAR_DATA_RAW;
}

static inline bool qcow2_need_accurate_refcounts(const struct qcow2_state *s)
{
    return !(s->incompat & QCOW2_INCOMPAT_DIRTY);
}

/* L2 entries live in 8- or 16-byte slots of a cached slice. */
static inline uint64_t l2_get_entry(const struct qcow2_state *s, const uint64_t *slice,
                                   uint32_t idx)
{
    return be64toh(slice[idx * (s->l2_entry_size / 8)]);
}

static inline uint64_t l2_get_bitmap(const struct qcow2_state *s, const uint64_t *slice,
                                    uint32_t idx)
{
    return s->ext_l2 ? be64toh(slice[idx * 2 + 1]) : 0;
}

/* Callers hold s->lock; these take map_lock for the lock-free readers. */
void qcow2_l2_set(struct qcow2_state *s, uint64_t *slice, uint32_t idx, uint64_t entry,
                  uint64_t bitmap);

enum qcow2_sc_type qcow2_sc_type(const struct qcow2_state *s, uint64_t entry, uint64_t bitmap,
                                 uint32_t sc_index);

static inline bool qcow2_sc_is_zero(enum qcow2_sc_type t)
{
    return t == QCOW2_SC_ZERO || t == QCOW2_SC_ZERO_ALLOC;
}

/* Whether the entry references host data (normal or compressed, any bitmap). */
static inline bool qcow2_entry_has_host(const struct qcow2_state *s, uint64_t entry)
{
    return (entry & QCOW_OFLAG_COMPRESSED) || (entry & L2E_OFFSET_MASK) ||
           (qcow2_has_data_file(s) && (entry & QCOW_OFLAG_COPIED));
}

/* Host offset and size of a compressed cluster's data. */
void qcow2_parse_compressed(const struct qcow2_state *s, uint64_t entry, uint64_t *coffset,
                            uint64_t *csize);

/* ---- header.c ------------------------------------------------------------- */

/* Parse and check the header cluster (buf holds len bytes of it). */
int qcow2_read_header(struct qcow2_state *s, const uint8_t *buf, size_t len, int64_t file_size,
                      int flags, struct err *err);
/* Rewrite the header cluster from s (extensions included).  coroutine_fn, lock held. */
int qcow2_update_header(struct qcow2_state *s);
/* Set or clear incompatible bits in the image (flushing before setting DIRTY). */
int qcow2_mark_dirty(struct qcow2_state *s);
int qcow2_mark_clean(struct qcow2_state *s);
/* The name of a feature bit, from our table (NULL if unknown). */
const char *qcow2_feature_name(int type, int bit);
void qcow2_free_header_state(struct qcow2_state *s);

/* ---- cache.c --------------------------------------------------------------- */

struct qcow2_cache *qcow2_cache_new(struct qcow2_state *s, int nb_entries, uint32_t entry_size,
                                    int overlap_kind, bool map_locked, const char *what);
void qcow2_cache_free(struct qcow2_cache *c);
/* Get the table at offset, reading it when absent; holds a reference until put. */
int qcow2_cache_get(struct qcow2_cache *c, uint64_t offset, void **table);
/* The same without reading: the caller fills the whole table. */
int qcow2_cache_get_empty(struct qcow2_cache *c, uint64_t offset, void **table);
void qcow2_cache_put(struct qcow2_cache *c, void **table);
void qcow2_cache_mark_dirty(struct qcow2_cache *c, void *table);
/* Write dirty tables (their dependency first); flush adds an fdatasync. */
int qcow2_cache_write(struct qcow2_cache *c);
int qcow2_cache_flush(struct qcow2_cache *c);
/* c's tables may only be written after dep's are on disk. */
int qcow2_cache_set_dependency(struct qcow2_cache *c, struct qcow2_cache *dep);
/* Forget the table at offset (its cluster was freed); it must not be in use. */
void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset);
/* Write everything and forget it all. */
int qcow2_cache_empty(struct qcow2_cache *c);
/* Drop clean tables unused since the previous call (cache-clean-interval). */
void qcow2_cache_clean_unused(struct qcow2_cache *c);
uint32_t qcow2_cache_entry_size(const struct qcow2_cache *c);
int qcow2_cache_nb_entries(const struct qcow2_cache *c);
bool qcow2_cache_is_dirty(const struct qcow2_cache *c);
/*
 * The lock-free path: copy n 8-byte words at word index idx of the table at
 * offset if it is cached.  Caller holds map_lock.
 */
bool qcow2_cache_peek(struct qcow2_cache *c, uint64_t offset, uint32_t idx, uint32_t n,
                      uint64_t *out);

/* ---- refcount.c ------------------------------------------------------------- */

int qcow2_refcount_init(struct qcow2_state *s, int64_t file_size, int flags, struct err *err);
void qcow2_refcount_close(struct qcow2_state *s);
uint64_t qcow2_rb_get(const struct qcow2_state *s, const void *block, uint64_t index);
void qcow2_rb_set(const struct qcow2_state *s, void *block, uint64_t index, uint64_t value);
int qcow2_get_refcount(struct qcow2_state *s, uint64_t cluster_index, uint64_t *refcount);
/*
 * Allocate size bytes of contiguous clusters; returns the offset or -errno.
 * *fresh (may be NULL): the clusters were never written and read as zeroes.
 */
int64_t qcow2_alloc_clusters(struct qcow2_state *s, uint64_t size, bool *fresh);
/* Allocate up to n clusters at offset if free; returns how many, or -errno. */
int64_t qcow2_alloc_clusters_at(struct qcow2_state *s, uint64_t offset, int64_t n);
/* Allocate size bytes for compressed data; returns the offset or -errno. */
int64_t qcow2_alloc_bytes(struct qcow2_state *s, uint64_t size);
int qcow2_update_refcount(struct qcow2_state *s, uint64_t offset, uint64_t length,
                          int64_t addend, enum qcow2_discard_type type);
void qcow2_free_clusters(struct qcow2_state *s, uint64_t offset, uint64_t size,
                         enum qcow2_discard_type type);
/* Drop the reference an L2 entry holds (normal, zero-alloc or compressed). */
void qcow2_free_any_cluster(struct qcow2_state *s, uint64_t entry,
                            enum qcow2_discard_type type);
/* Recompute reftable_used after the refcount table changed. */
void qcow2_reftable_note_used(struct qcow2_state *s);
/* Whether [offset, offset+size) is fresh (see fresh_from); marks it written. */
bool qcow2_take_fresh(struct qcow2_state *s, uint64_t offset, uint64_t size);
/* The end of the last cluster with a non-zero refcount (for truncate). */
int64_t qcow2_refcount_area_end(struct qcow2_state *s);

/* ---- cluster.c ----------------------------------------------------------------- */

int qcow2_grow_l1_table(struct qcow2_state *s, uint64_t min_size, bool exact);
/* Write the 512-byte part of the L1 table that holds entry idx. */
int qcow2_write_l1_entry(struct qcow2_state *s, uint32_t idx);
/*
 * The L2 slice for a guest offset: *slice NULL (and 0 returned) when the L1
 * entry is empty.  With allocate, an empty or shared L2 table is replaced
 * by a new one first.  Put the slice back with qcow2_cache_put.
 */
int qcow2_get_l2_slice(struct qcow2_state *s, uint64_t offset, bool allocate,
                       uint64_t **slice, uint32_t *slice_index);
/*
 * Map [offset, offset + *bytes): the type of the subcluster at offset and
 * the host offset there; *bytes shrinks to the run that shares both (host
 * offsets contiguous), within one L2 slice.
 */
int qcow2_get_host_offset(struct qcow2_state *s, uint64_t offset, uint64_t *bytes,
                          uint64_t *host_offset, enum qcow2_sc_type *type,
                          uint64_t *entry_out);
/* Lock-free form: false when the L2 slice is not cached (take the lock then). */
bool qcow2_peek_host_offset(struct qcow2_state *s, uint64_t offset, uint64_t *bytes,
                            uint64_t *host_offset, enum qcow2_sc_type *type,
                            uint64_t *entry_out);
/*
 * Choose where [offset, offset + *bytes) is written: in place, or in new
 * clusters (*m set, listed in s->allocs).  *bytes shrinks to what one host
 * range takes.  Waits for in-flight allocations it overlaps.
 */
int qcow2_alloc_host_offset(struct qcow2_state *s, uint64_t offset, uint64_t *bytes,
                            uint64_t *host_offset, struct qcow2_alloc **m);
/* After the data (and COW) is written: point the L2 entries at it. */
int qcow2_alloc_link(struct qcow2_state *s, struct qcow2_alloc *m);
/* After a failed write: give back clusters that were newly allocated. */
void qcow2_alloc_abort(struct qcow2_state *s, struct qcow2_alloc *m);
/* Remove m from s->allocs and wake whoever waits for it. */
void qcow2_alloc_done(struct qcow2_state *s, struct qcow2_alloc *m);
/* Wait until no in-flight allocation touches [offset, offset+bytes). */
void qcow2_wait_allocs(struct qcow2_state *s, uint64_t offset, uint64_t bytes);
/* Zero (sub)clusters of v3 images; offset/bytes subcluster aligned (or to the end). */
int qcow2_zero_clusters(struct qcow2_state *s, uint64_t offset, uint64_t bytes, int flags);
/* Discard clusters; full: back to unallocated (falls through to backing). */
int qcow2_discard_clusters(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
                           enum qcow2_discard_type type, bool full);
/*
 * Space for csize bytes of compressed data for the (unallocated) guest
 * cluster at offset: -EEXIST when the cluster is allocated.  Then, after
 * the data is written, qcow2_link_compressed points the L2 entry at it.
 */
int qcow2_alloc_compressed(struct qcow2_state *s, uint64_t offset, uint64_t csize,
                           uint64_t *host_offset);
int qcow2_link_compressed(struct qcow2_state *s, uint64_t offset, uint64_t coffset,
                          uint64_t csize);
/* Clusters a write of bytes at offset may need from one L2 slice, at most. */
uint64_t qcow2_slice_bytes_left(const struct qcow2_state *s, uint64_t offset);

/* ---- rw.c ------------------------------------------------------------------- */

int qcow2_co_preadv(struct block_node *bs, int64_t offset, int64_t bytes, struct qiov *qiov,
                    size_t qiov_offset, int flags);
int qcow2_co_pwritev(struct block_node *bs, int64_t offset, int64_t bytes, struct qiov *qiov,
                     size_t qiov_offset, int flags);
int qcow2_co_pwrite_zeroes(struct block_node *bs, int64_t offset, int64_t bytes, int flags);
int qcow2_co_pdiscard(struct block_node *bs, int64_t offset, int64_t bytes);
int qcow2_co_block_status(struct block_node *bs, bool want_zero, int64_t offset,
                          int64_t bytes, int64_t *pnum, int64_t *map,
                          struct block_node **file);
/* Make sure the image file has allocated blocks up to end (see rw.c). */
int qcow2_grow_file_ahead(struct qcow2_state *s, uint64_t end);

/* ---- compress.c ------------------------------------------------------------- */

/* Decompress src into exactly dst_len bytes; -EIO when the data is bad. */
int qcow2_decompress(int type, const void *src, size_t src_len, void *dst, size_t dst_len);
/* Compress; returns the compressed size, or -ENOSPC if it would not fit in dst_len. */
ssize_t qcow2_compress(int type, const void *src, size_t src_len, void *dst, size_t dst_len);
/* The same on the thread pool.  coroutine_fn. */
ssize_t qcow2_co_compress(int type, const void *src, size_t src_len, void *dst,
                          size_t dst_len);
int qcow2_co_decompress(int type, const void *src, size_t src_len, void *dst,
                        size_t dst_len);
/* Read one compressed cluster into buf (cluster_size bytes). */
int qcow2_read_compressed(struct qcow2_state *s, uint64_t entry, uint8_t *buf);
/* Write whole clusters compressed (the last may be cut by the end of the disk). */
int qcow2_co_pwrite_compressed(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
                               struct qiov *qiov, size_t qiov_offset);

/* ---- overlap.c -------------------------------------------------------------- */

int qcow2_overlap_mode_parse(const char *name, int *mode);
/* Which structure [offset, offset+size) overlaps (one QCOW2_OL_* bit), or 0. */
int qcow2_check_overlap(struct qcow2_state *s, int ign, uint64_t offset, uint64_t size);
/* Check, and on a hit mark the image corrupt and return -EIO. */
int qcow2_pre_write_check(struct qcow2_state *s, int ign, uint64_t offset, uint64_t size);
/* The sentence "<image>: <what>" is logged; a writable image is marked corrupt. */
void qcow2_signal_corruption(struct qcow2_state *s, const char *fmt, ...) PRINTF_FMT(2, 3);
const char *qcow2_overlap_name(int bit);
/* Write metadata to the image file after the overlap check.  coroutine_fn. */
int qcow2_write_meta(struct qcow2_state *s, int ign, uint64_t offset, const void *buf,
                     uint64_t len);

/* ---- check.c ------------------------------------------------------------------ */

int qcow2_co_check_locked(struct qcow2_state *s, struct bdrv_check_result *res, int fix);
int qcow2_co_check(struct block_node *bs, struct bdrv_check_result *res, int fix);

/* ---- create.c ------------------------------------------------------------------- */

int qcow2_co_create(json_t *options, struct err *err);
int qcow2_co_truncate(struct block_node *bs, int64_t offset, bool exact,
                      enum prealloc_mode prealloc, int flags, struct err *err);
/* Allocate and link clusters for [offset, offset+bytes) (preallocation=metadata and up). */
int qcow2_preallocate(struct qcow2_state *s, uint64_t offset, uint64_t bytes,
                      enum prealloc_mode mode, struct err *err);
extern const struct bdrv_create_opt qcow2_create_opts[];

/* ---- bitmap.c --------------------------------------------------------------- */

int qcow2_read_bitmap_ext(struct qcow2_state *s, const uint8_t *data, uint32_t len,
                          int64_t file_size, struct err *err);
int qcow2_load_bitmaps(struct qcow2_state *s, struct err *err);
int qcow2_store_bitmaps(struct qcow2_state *s, bool release, struct err *err);
/* Mark the loaded bitmaps in use in the image (read-write open). */
int qcow2_bitmaps_mark_in_use(struct qcow2_state *s, struct err *err);
int qcow2_read_bitmap_directory(struct qcow2_state *s, struct qcow2_bitmap_entry **list,
                                uint32_t *n, struct err *err);
void qcow2_bitmap_list_free(struct qcow2_bitmap_entry *list, uint32_t n);
json_t *qcow2_bitmaps_info(struct qcow2_state *s);
/* Bitmap clusters for check: call fn for every cluster the bitmaps use. */
int qcow2_bitmaps_for_each_cluster(struct qcow2_state *s,
                                   int (*fn)(void *opaque, uint64_t offset, uint64_t size),
                                   void *opaque);
int qcow2_bitmaps_drop_all(struct qcow2_state *s);
/* The hooks of struct qcow2_format_ops (qcow2.h). */
int qcow2_bitmap_can_store(struct block_node *bs, const char *name, uint32_t granularity,
                           struct err *err);
int qcow2_bitmap_remove(struct block_node *bs, const char *name, struct err *err);
int qcow2_bitmaps_store_hook(struct block_node *bs, struct err *err);
int qcow2_make_empty(struct block_node *bs, struct err *err);      /* rw.c */
extern const struct qcow2_format_ops qcow2_ops;

/* ---- amend.c ------------------------------------------------------------------- */

int qcow2_amend(struct block_node *bs, json_t *options, bool force, struct err *err);

/* ---- measure.c: qcow2_measure (qcow2.h) ---------------------------------------- */

/* ---- snapshot.c ------------------------------------------------------------- */

int qcow2_read_snapshots(struct qcow2_state *s, int64_t file_size, int flags, struct err *err);
void qcow2_free_snapshots(struct qcow2_state *s);
int qcow2_write_snapshots(struct qcow2_state *s);

#endif
