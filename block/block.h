/*
 * The block layer: nodes, the graph, and the request path.
 *
 * A node (struct block_node) is an instance of a driver: a protocol (file,
 * null, iscsi), a format (raw, qcow2) or a filter (throttle, blkdebug).
 * Nodes are joined by children (struct bdrv_child): a format's `file`, an
 * image's `backing`, a filter's `file`.  Whoever holds a node holds it
 * through a child edge: another node, a block backend (what devices,
 * exports and tools use, see backend.h), or a job.
 *
 * Requests are byte offsets with I/O vectors and flags, and run in
 * coroutines.  Any thread with an aio_context may issue them on any node;
 * the graph itself changes only on the main thread inside a drained section.
 */
#ifndef SPINDLE_BLOCK_BLOCK_H
#define SPINDLE_BLOCK_BLOCK_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>

#include "util/coroutine.h"
#include "util/error.h"
#include "util/iov.h"
#include "util/list.h"
#include "util/osdep.h"

struct block_driver;
struct block_node;
struct bdrv_child;
struct bdrv_dirty_bitmap;

/* The largest single request: whole 4 KiB blocks below 2 GiB. */
#define BDRV_REQUEST_MAX_BYTES  0x7ffff000LL
#define BDRV_SECTOR_SIZE        512
/* No node is larger: leaves room for offset arithmetic without overflow. */
#define BDRV_MAX_LENGTH         (INT64_MAX >> 2)

/* ---- Request flags ----------------------------------------------------- */

enum {
    /* Writes and zero writes: durable on stable storage when completed. */
    BDRV_REQ_FUA          = 1 << 0,
    /* Zero writes: the range may be deallocated rather than written. */
    BDRV_REQ_MAY_UNMAP    = 1 << 1,
    /* Zero writes: fail with -ENOTSUP instead of writing zero buffers. */
    BDRV_REQ_NO_FALLBACK  = 1 << 2,
    /* Wait for, and hold off, every overlapping request (copy-on-read, jobs). */
    BDRV_REQ_SERIALISING  = 1 << 3,
    /* Internal to the request path: this write carries zeroes only. */
    BDRV_REQ_ZERO_WRITE   = 1 << 4,
    /* Skip before-write notifiers (a job writing to its own target). */
    BDRV_REQ_NO_NOTIFY    = 1 << 5,
    /*
     * Reads: do not wait for serialising requests (backup's copy-before-write
     * reads inside the very write they wait on).
     */
    BDRV_REQ_NO_SERIALISING = 1 << 6,
    /*
     * Writes: store the data compressed (convert -c).  Drivers that offer it
     * list it in supported_write_flags; they may need whole clusters.
     */
    BDRV_REQ_WRITE_COMPRESSED = 1 << 7,
    /*
     * Truncate: only ever grow; when the node is already at least that long
     * (once the requests in flight past the new end are done), nothing changes.
     */
    BDRV_REQ_GROW_ONLY    = 1 << 8,
};

/* ---- Open flags -------------------------------------------------------- */

enum {
    BDRV_O_RDWR        = 1 << 0,
    BDRV_O_NOCACHE     = 1 << 1,   /* cache.direct: bypass the host page cache */
    BDRV_O_NO_FLUSH    = 1 << 2,   /* cache.no-flush: flushes do nothing (unsafe) */
    BDRV_O_NO_BACKING  = 1 << 3,   /* do not open the backing chain */
    BDRV_O_CHECK       = 1 << 4,   /* open for check/repair: tolerate inconsistencies */
    BDRV_O_PROTOCOL    = 1 << 5,   /* the filename names a protocol node: no probing */
    BDRV_O_UNMAP       = 1 << 6,   /* discard=unmap */
    BDRV_O_NO_IO       = 1 << 7,   /* metadata only (info); data requests are not made */
    BDRV_O_FORCE_SHARE = 1 << 8,   /* -U: open even if another process holds it */
};

/* ---- Block status ------------------------------------------------------ */

enum {
    BDRV_BLOCK_DATA         = 1 << 0,  /* reads return data from this node or below */
    BDRV_BLOCK_ZERO         = 1 << 1,  /* reads return zeroes */
    BDRV_BLOCK_OFFSET_VALID = 1 << 2,  /* *map is the offset in *file */
    BDRV_BLOCK_RAW          = 1 << 3,  /* driver-internal: ask *file at *map instead */
    BDRV_BLOCK_ALLOCATED    = 1 << 4,  /* this node (not its backing) decides the content */
    BDRV_BLOCK_EOF          = 1 << 5,  /* the range reaches the end of the node */
    BDRV_BLOCK_RECURSE      = 1 << 6,  /* driver-internal: refine zero-ness from *file */
};

/* ---- Limits ------------------------------------------------------------ */

/*
 * What a driver promises and needs.  The request path aligns and splits
 * requests so drivers only ever see what their limits allow.
 */
struct block_limits {
    uint32_t request_alignment;    /* power of two; offsets and lengths handed down */
    uint64_t max_transfer;         /* 0: unlimited; else a multiple of request_alignment */
    uint64_t opt_transfer;         /* 0: none */
    uint32_t pwrite_zeroes_alignment;
    uint64_t max_pwrite_zeroes;    /* 0: unlimited */
    uint32_t pdiscard_alignment;
    uint64_t max_pdiscard;         /* 0: unlimited */
    uint32_t min_mem_alignment;    /* buffers must be aligned so (O_DIRECT) */
    uint32_t opt_mem_alignment;
    int max_iov;
};

/* ---- Children ---------------------------------------------------------- */

enum bdrv_child_role {
    BDRV_CHILD_FILE,        /* a format's or filter's storage */
    BDRV_CHILD_BACKING,     /* where unallocated ranges read from */
    BDRV_CHILD_DATA,        /* qcow2's external data file */
    BDRV_CHILD_ROOT,        /* held by a backend or a job */
    BDRV_CHILD_OTHER,
};

/*
 * What a parent that is not a node (a backend, a job) hears from the nodes
 * it holds.  Every callback is optional; all run on the main thread.
 */
struct bdrv_child_class {
    /* The node below is being drained: stop sending new requests. */
    void (*drained_begin)(struct bdrv_child *c);
    void (*drained_end)(struct bdrv_child *c);
    /* Whether requests the parent started are still on their way down. */
    bool (*drained_poll)(struct bdrv_child *c);
    /* For messages: who this parent is ("device 'disk0'", "job 'm0'"). */
    const char *(*describe)(struct bdrv_child *c);
    /* The child now points at another node (after a graph replace). */
    void (*changed)(struct bdrv_child *c);
};

struct bdrv_child {
    char *name;                       /* "file", "backing", "root", ... */
    struct block_node *bs;            /* the node held */
    struct block_node *parent;        /* the holding node, or NULL */
    const struct bdrv_child_class *klass;  /* for parents that are not nodes */
    void *opaque;                     /* the backend or job */
    enum bdrv_child_role role;
    struct list_node parent_link;     /* in parent->children */
    struct list_node child_link;      /* in bs->parents */
};

/* ---- Nodes ------------------------------------------------------------- */

/* Called before a write reaches the driver; a negative return fails it. */
struct bdrv_write_notifier {
    struct list_node link;
    int coroutine_fn (*before_write)(struct bdrv_write_notifier *n, struct block_node *bs,
                                     int64_t offset, int64_t bytes, int flags);
};

struct block_node {
    const struct block_driver *drv;
    void *opaque;                     /* the driver's state, instance_size bytes */
    char node_name[32];
    char filename[PATH_MAX];          /* what messages call it */
    json_t *options;                  /* the options it was opened with */
    int open_flags;                   /* BDRV_O_* */
    bool read_only;
    int detect_zeroes;                /* BDRV_DETECT_ZEROES_* */

    _Atomic int64_t size;             /* bytes; refreshed by the driver */
    struct block_limits bl;

    struct bdrv_child *file;          /* shortcuts into children */
    struct bdrv_child *backing;
    struct list_node children;        /* struct bdrv_child.parent_link */
    struct list_node parents;         /* struct bdrv_child.child_link */

    /* What the image says about its backing file, for info and rebase. */
    char backing_file[PATH_MAX];
    char backing_format[32];

    int refcnt;
    atomic_uint in_flight;            /* requests inside this node */
    atomic_int quiesce_counter;       /* > 0: drained */

    pthread_mutex_t reqs_lock;        /* protects tracked_reqs */
    struct list_node tracked_reqs;
    atomic_int serialising_in_flight;

    /* Flushes: skip when nothing was written since the last one. */
    atomic_uint_fast64_t write_gen;
    uint64_t flushed_gen;
    struct co_mutex flush_lock;

    struct list_node write_notifiers; /* changed only while drained */
    pthread_mutex_t dirty_lock;       /* protects dirty_bitmaps and their bits */
    struct list_node dirty_bitmaps;

    _Atomic int64_t wr_highest_offset;
    struct list_node all_link;        /* every node, for lookups */
};

enum {
    BDRV_DETECT_ZEROES_OFF,
    BDRV_DETECT_ZEROES_ON,
    BDRV_DETECT_ZEROES_UNMAP,
};

/* ---- Opening and the graph (main thread) ------------------------------- */

/*
 * Open a node graph.  options is a blockdev-style object (borrowed; keys
 * as in QEMU's --blockdev: driver, node-name, file, backing, cache.direct,
 * read-only, ...).  filename, if not NULL, names the image: its protocol
 * comes from a "proto:" prefix or is "file", and its format, when options
 * have no "driver", is probed.  flags are BDRV_O_*.  The new node has one
 * reference, owned by the caller.
 */
struct block_node *bnode_open(const char *filename, json_t *options, int flags,
                              struct err *err);

void bnode_ref(struct block_node *bs);
void bnode_unref(struct block_node *bs);

struct block_node *bnode_find(const char *node_name);
/* Every open node, in creation order; fn returns non-zero to stop. */
int bnode_foreach(int (*fn)(struct block_node *bs, void *opaque), void *opaque);

/*
 * A filter node of an internal driver (a job's), not opened from options:
 * child becomes its "file", it takes child's size, limits and read-only
 * state.  The caller fills bs->opaque and inserts it with bnode_replace_node.
 * One reference, owned by the caller.
 */
struct block_node *bnode_new_filter(const struct block_driver *drv, struct block_node *child,
                                    const char *node_name, struct err *err);

/* The child edge of bs named name, or NULL. */
struct bdrv_child *bnode_child(struct block_node *bs, const char *name);

/*
 * Open (or reference, when the value is a node name) the child `name` of
 * bs from options[name], or from fallback_filename when options has none.
 * allow_none: a missing child is not an error (returns NULL, no err).
 * Drivers call this from open().
 */
struct bdrv_child *bnode_open_child(struct block_node *bs, json_t *options, const char *name,
                                    const char *fallback_filename, enum bdrv_child_role role,
                                    int flags, bool allow_none, struct err *err);

/* Attach child_bs below parent as `name` (takes a reference). */
struct bdrv_child *bnode_attach_child(struct block_node *parent, struct block_node *child_bs,
                                      const char *name, enum bdrv_child_role role);
/* Attach for a parent that is not a node (takes a reference). */
struct bdrv_child *bnode_root_attach(struct block_node *bs, const char *name,
                                     const struct bdrv_child_class *klass, void *opaque);
/* Drop the edge and its reference. */
void bnode_detach_child(struct bdrv_child *c);

/* Make c point at new_bs (references moved).  Drained, main thread. */
void bnode_child_replace(struct bdrv_child *c, struct block_node *new_bs);

/*
 * Point every parent of `from` at `to` instead, except the edge from `to`
 * itself and edges of nodes below `to` (so a filter inserted above `from`
 * keeps its child).  Both must be drained.
 */
int bnode_replace_node(struct block_node *from, struct block_node *to, struct err *err);

/* Change the backing child (NULL: none); the image header is not touched. */
void bnode_set_backing(struct block_node *bs, struct block_node *backing);

/*
 * Make bs writable, or read-only again, through its driver's reopen_rw (a
 * commit's base, an image rebase writes into).  Main thread, nothing in
 * flight.  -ENOTSUP with err when the driver cannot.
 */
int bnode_reopen_rw(struct block_node *bs, bool writable, struct err *err);

/* The node below a filter chain, and the next layer of the backing chain. */
struct block_node *bnode_skip_filters(struct block_node *bs);
struct block_node *bnode_backing_bs(struct block_node *bs);
/* Whether base is in the backing chain below top (not top itself). */
bool bnode_chain_contains(struct block_node *top, struct block_node *base);

/* Open flags for a cache mode name: none, writeback, writethrough, directsync, unsafe. */
int bdrv_parse_cache_mode(const char *mode, int *flags, bool *writethrough);
/* Put cache.direct / cache.no-flush for flags into a node's options. */
void bdrv_cache_flags_to_options(json_t *options, int flags);

/* ---- Drain (main thread) ----------------------------------------------- */

/*
 * Quiesce bs: its parents (nodes above, backends, jobs) stop issuing new
 * requests, and this returns once no request is in flight in bs or above.
 * Sections nest.  Main thread; from a coroutine (a job), the wait runs in
 * the loop while the coroutine yields.
 */
void bnode_drained_begin(struct block_node *bs);
void bnode_drained_end(struct block_node *bs);
/* The same for bs and every node below it. */
void bnode_subtree_drained_begin(struct block_node *bs);
void bnode_subtree_drained_end(struct block_node *bs);
/* Every node. */
void bnode_drain_all_begin(void);
void bnode_drain_all_end(void);
bool bnode_is_drained(const struct block_node *bs);

/* ---- Requests (coroutine_fn unless noted) ------------------------------- */

int coroutine_fn bnode_co_preadv(struct bdrv_child *child, int64_t offset, int64_t bytes,
                                 struct qiov *qiov, size_t qiov_offset, int flags);
int coroutine_fn bnode_co_pwritev(struct bdrv_child *child, int64_t offset, int64_t bytes,
                                  struct qiov *qiov, size_t qiov_offset, int flags);
int coroutine_fn bnode_co_pwrite_zeroes(struct bdrv_child *child, int64_t offset,
                                        int64_t bytes, int flags);
int coroutine_fn bnode_co_pdiscard(struct bdrv_child *child, int64_t offset, int64_t bytes);
int coroutine_fn bnode_co_flush(struct block_node *bs);

/* Convenience forms over one flat buffer. */
int coroutine_fn bnode_co_pread(struct bdrv_child *child, int64_t offset, int64_t bytes,
                                void *buf, int flags);
int coroutine_fn bnode_co_pwrite(struct bdrv_child *child, int64_t offset, int64_t bytes,
                                 const void *buf, int flags);

/*
 * Status of [offset, offset+bytes) of bs: returns BDRV_BLOCK_* flags for the
 * first *pnum bytes (at least 1 unless offset is at the end), or -errno.
 * *map and *file, when OFFSET_VALID, say where the data is stored.
 * want_zero asks for an exact ZERO flag even when it costs lookups.
 */
int coroutine_fn bnode_co_block_status(struct block_node *bs, bool want_zero, int64_t offset,
                                       int64_t bytes, int64_t *pnum, int64_t *map,
                                       struct block_node **file);

/*
 * The same through the backing chain from top down to (not including) base:
 * the status of the first layer that allocates the range.  *depth (may be
 * NULL) is that layer's distance from top (0: top), or the chain length
 * when no layer allocates it.
 */
int coroutine_fn bnode_co_block_status_above(struct block_node *top, struct block_node *base,
                                             bool want_zero, int64_t offset, int64_t bytes,
                                             int64_t *pnum, int64_t *map,
                                             struct block_node **file, int *depth);

/*
 * Whether [offset, offset+*pnum) is allocated in some layer from top down
 * to base (base included when include_base).  Returns 1, 0 or -errno, and
 * the length with the same answer in *pnum.
 */
int coroutine_fn bnode_co_is_allocated_above(struct block_node *top, struct block_node *base,
                                             bool include_base, int64_t offset, int64_t bytes,
                                             int64_t *pnum);

enum prealloc_mode {
    PREALLOC_MODE_OFF,
    PREALLOC_MODE_METADATA,
    PREALLOC_MODE_FALLOC,
    PREALLOC_MODE_FULL,
};

int prealloc_mode_parse(const char *s, enum prealloc_mode *out);
const char *prealloc_mode_name(enum prealloc_mode m);

/*
 * Resize to offset bytes.  exact: the result must be exactly that size
 * (else a larger size is acceptable for a protocol that cannot shrink).
 */
int coroutine_fn bnode_co_truncate(struct bdrv_child *child, int64_t offset, bool exact,
                                   enum prealloc_mode prealloc, int flags, struct err *err);

/* The node's size in bytes, or -errno.  Cheap: the size drivers keep current. */
int64_t bnode_getlength(struct block_node *bs);
/* Ask the driver again (a file may have been resized behind our back). */
int64_t bnode_refresh_length(struct block_node *bs);
/* Whether the node, as created, reads as zeroes everywhere. */
bool bnode_has_zero_init(struct block_node *bs);
/* Bytes the node uses on its storage, or -errno / -ENOTSUP. */
int64_t bnode_get_allocated_file_size(struct block_node *bs);

/*
 * Copy what bs reads in [offset, offset+bytes) from its backing chain into
 * bs itself, where bs does not allocate it yet (stream, copy-on-read).
 * One serialising request: a guest write to the range waits for it, so it
 * can never be overwritten with older data.  The content bs reads does not
 * change, so before-write notifiers are not called.
 */
int coroutine_fn bnode_co_copy_on_read(struct bdrv_child *child, int64_t offset, int64_t bytes);

/* Synchronous forms for tools and tests (not coroutine_fn). */
int bnode_pread(struct bdrv_child *child, int64_t offset, int64_t bytes, void *buf, int flags);
int bnode_pwrite(struct bdrv_child *child, int64_t offset, int64_t bytes, const void *buf,
                 int flags);
int bnode_flush(struct block_node *bs);
int bnode_block_status_above(struct block_node *top, struct block_node *base, bool want_zero,
                             int64_t offset, int64_t bytes, int64_t *pnum, int64_t *map,
                             struct block_node **file, int *depth);

/* A buffer suitably aligned for requests to bs (free with free()). */
void *bnode_blockalign(struct block_node *bs, size_t size);

/* ---- Before-write notifiers (changed while drained) --------------------- */

void bnode_add_write_notifier(struct block_node *bs, struct bdrv_write_notifier *n);
void bnode_remove_write_notifier(struct bdrv_write_notifier *n);

/* ---- Fault injection ---------------------------------------------------- */

/*
 * A driver is about to do the named thing (block/debug-events.h) on bs
 * (usually its file child's node): a blkdebug node there may arm a fault
 * for the next request.  One branch when bs is not a blkdebug node.
 */
void bnode_debug_event(struct block_node *bs, int event);

/* ---- Information ------------------------------------------------------- */

const char *bnode_format_name(const struct block_node *bs);
/* A short description for messages: the node name or the file name. */
const char *bnode_describe(const struct block_node *bs);

/*
 * The format-specific part of `qemu-img info --output=json` for bs (a new
 * object, or NULL if the driver has none).
 */
json_t *bnode_get_specific_info(struct block_node *bs, struct err *err);

#endif
