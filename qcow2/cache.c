/*
 * The metadata cache: L2 table slices and refcount blocks, written back
 * lazily (on eviction and flush) in an order that keeps the image
 * consistent at every point:
 *
 *   - an L2 table that points at newly allocated clusters is written only
 *     after the refcount blocks that count them (set_dependency(l2, rb)),
 *   - a refcount block that drops a reference is written only after the
 *     L2 table that no longer holds it (set_dependency(rb, l2)),
 *   - "written after" means after an fdatasync of the file in between.
 *
 * A cycle (each cache waiting for the other) is broken when the second
 * dependency is set, by flushing the first.  Everything here runs under
 * s->lock; the lock-free peek (qcow2_cache_peek) runs under map_lock,
 * which every change to the index of a map_locked cache also takes.
 */
#include "qcow2/qcow2-int.h"

#include <sys/mman.h>

#include "util/log.h"

struct cache_entry {
    uint64_t offset;              /* 0: holds nothing */
    void *table;                  /* its slot of c->tables */
    int ref;
    bool dirty;
    uint64_t lru;                 /* c->clock when last used */
    struct cache_entry *hnext;    /* hash chain */
};

struct qcow2_cache {
    struct qcow2_state *s;
    const char *what;             /* "L2 table", "refcount block" */
    int ol_kind;                  /* QCOW2_OL_* of what it holds */
    bool map_locked;
    uint32_t entry_size;
    int nb_entries;
    struct cache_entry *entries;
    uint8_t *tables;              /* nb_entries * entry_size; pages committed on use */
    struct cache_entry **hash;
    uint32_t hash_mask;
    uint64_t clock;
    uint64_t clean_mark;          /* clock at the last clean_unused */
    struct qcow2_cache *depends;  /* write this one first */
};

struct qcow2_cache *qcow2_cache_new(struct qcow2_state *s, int nb_entries, uint32_t entry_size,
                                    int ol_kind, bool map_locked, const char *what)
{
    struct qcow2_cache *c = xzalloc(sizeof(*c));
    c->s = s;
    c->what = what;
    c->ol_kind = ol_kind;
    c->map_locked = map_locked;
    c->entry_size = entry_size;
    c->nb_entries = nb_entries;
    c->entries = xcalloc(nb_entries, sizeof(*c->entries));
    c->tables = xmemalign(MAX(4096u, s->bs->file->bs->bl.min_mem_alignment),
                          (size_t)nb_entries * entry_size);
    for (int i = 0; i < nb_entries; i++) {
        c->entries[i].table = c->tables + (size_t)i * entry_size;
    }
    uint32_t buckets = (uint32_t)pow2_ceil((uint64_t)nb_entries * 2);
    c->hash = xcalloc(buckets, sizeof(*c->hash));
    c->hash_mask = buckets - 1;
    return c;
}

void qcow2_cache_free(struct qcow2_cache *c)
{
    if (!c) {
        return;
    }
    free(c->tables);
    free(c->entries);
    free(c->hash);
    free(c);
}

uint32_t qcow2_cache_entry_size(const struct qcow2_cache *c)
{
    return c->entry_size;
}

int qcow2_cache_nb_entries(const struct qcow2_cache *c)
{
    return c->nb_entries;
}

static uint32_t bucket(const struct qcow2_cache *c, uint64_t offset)
{
    uint64_t k = offset / c->entry_size;
    return (uint32_t)((k ^ (k >> 17)) & c->hash_mask);
}

static struct cache_entry *lookup(struct qcow2_cache *c, uint64_t offset)
{
    for (struct cache_entry *e = c->hash[bucket(c, offset)]; e; e = e->hnext) {
        if (e->offset == offset) {
            return e;
        }
    }
    return NULL;
}

static void map_lock(struct qcow2_cache *c)
{
    if (c->map_locked) {
        pthread_mutex_lock(&c->s->map_lock);
    }
}

static void map_unlock(struct qcow2_cache *c)
{
    if (c->map_locked) {
        pthread_mutex_unlock(&c->s->map_lock);
    }
}

static void hash_insert(struct qcow2_cache *c, struct cache_entry *e)
{
    struct cache_entry **head = &c->hash[bucket(c, e->offset)];
    map_lock(c);
    e->hnext = *head;
    *head = e;
    map_unlock(c);
}

/* Take e out of the index and make it hold nothing. */
static void hash_remove(struct qcow2_cache *c, struct cache_entry *e)
{
    if (!e->offset) {
        return;
    }
    struct cache_entry **pp = &c->hash[bucket(c, e->offset)];
    map_lock(c);
    while (*pp && *pp != e) {
        pp = &(*pp)->hnext;
    }
    if (*pp) {
        *pp = e->hnext;
    }
    e->hnext = NULL;
    e->offset = 0;
    map_unlock(c);
}

static struct cache_entry *entry_of(struct qcow2_cache *c, void *table)
{
    size_t i = ((uint8_t *)table - c->tables) / c->entry_size;
    return i < (size_t)c->nb_entries ? &c->entries[i] : NULL;
}

/* Write whatever must reach the disk before c's tables. */
static int flush_dependency(struct qcow2_cache *c)
{
    int ret = qcow2_cache_flush(c->depends);
    if (ret == 0) {
        c->depends = NULL;
    }
    return ret;
}

static int entry_write(struct qcow2_cache *c, struct cache_entry *e)
{
    if (!e->dirty || !e->offset) {
        return 0;
    }
    if (c->depends) {
        int ret = flush_dependency(c);
        if (ret < 0) {
            return ret;
        }
    }
    int ign = c->ol_kind == QCOW2_OL_ACTIVE_L2 ? QCOW2_OL_ACTIVE_L2 | QCOW2_OL_INACTIVE_L2
                                               : c->ol_kind;
    int ret = qcow2_write_meta(c->s, ign, e->offset, e->table, c->entry_size);
    if (ret == 0) {
        e->dirty = false;
    }
    return ret;
}

int qcow2_cache_write(struct qcow2_cache *c)
{
    int result = 0;
    for (int i = 0; i < c->nb_entries; i++) {
        int ret = entry_write(c, &c->entries[i]);
        if (ret < 0 && result != -ENOSPC) {
            result = ret;
        }
    }
    return result;
}

int qcow2_cache_flush(struct qcow2_cache *c)
{
    int ret = qcow2_cache_write(c);
    if (ret == 0) {
        ret = bnode_co_flush(c->s->bs->file->bs);
    }
    return ret;
}

bool qcow2_cache_is_dirty(const struct qcow2_cache *c)
{
    for (int i = 0; i < c->nb_entries; i++) {
        if (c->entries[i].dirty) {
            return true;
        }
    }
    return false;
}

int qcow2_cache_set_dependency(struct qcow2_cache *c, struct qcow2_cache *dep)
{
    int ret;
    if (c->depends == dep) {
        return 0;
    }
    if (dep->depends) {
        /* dep waits for something itself (perhaps for c): settle that first. */
        ret = flush_dependency(dep);
        if (ret < 0) {
            return ret;
        }
    }
    if (c->depends && c->depends != dep) {
        ret = flush_dependency(c);
        if (ret < 0) {
            return ret;
        }
    }
    c->depends = dep;
    return 0;
}

/* The least recently used entry nobody holds, written back if dirty. */
static int find_victim(struct qcow2_cache *c, struct cache_entry **out)
{
    struct cache_entry *best = NULL;
    for (int i = 0; i < c->nb_entries; i++) {
        struct cache_entry *e = &c->entries[i];
        if (e->ref) {
            continue;
        }
        if (!e->offset) {
            best = e;
            break;
        }
        if (!best || e->lru < best->lru) {
            best = e;
        }
    }
    if (!best) {
        log_error("qcow2: every %s cache entry is in use", c->what);
        return -ENOSPC;
    }
    if (best->dirty) {
        trace("qcow2_cache_evict", "%s at 0x%" PRIx64 " (dirty)", c->what, best->offset);
        int ret = entry_write(c, best);
        if (ret < 0) {
            return ret;
        }
    }
    hash_remove(c, best);
    *out = best;
    return 0;
}

static int do_get(struct qcow2_cache *c, uint64_t offset, void **table, bool read)
{
    struct qcow2_state *s = c->s;
    struct cache_entry *e = lookup(c, offset);

    if (offset == 0 || (offset & (c->entry_size - 1))) {
        qcow2_signal_corruption(s, "%s offset 0x%" PRIx64 " is not aligned to %u bytes",
                                c->what, offset, c->entry_size);
        return -EIO;
    }
    if (e) {
        e->ref++;
        e->lru = ++c->clock;
        *table = e->table;
        return 0;
    }
    int ret = find_victim(c, &e);
    if (ret < 0) {
        return ret;
    }
    if (read) {
        trace("qcow2_cache_load", "%s at 0x%" PRIx64, c->what, offset);
        ret = bnode_co_pread(s->bs->file, offset, c->entry_size, e->table, 0);
        if (ret < 0) {
            return ret;
        }
    }
    /* While it was being read, nobody else could take the lock and ask for it. */
    e->offset = offset;
    e->dirty = false;
    e->ref = 1;
    e->lru = ++c->clock;
    hash_insert(c, e);
    *table = e->table;
    return 0;
}

int qcow2_cache_get(struct qcow2_cache *c, uint64_t offset, void **table)
{
    return do_get(c, offset, table, true);
}

int qcow2_cache_get_empty(struct qcow2_cache *c, uint64_t offset, void **table)
{
    return do_get(c, offset, table, false);
}

void qcow2_cache_put(struct qcow2_cache *c, void **table)
{
    if (!*table) {
        return;
    }
    struct cache_entry *e = entry_of(c, *table);
    if (e && e->ref > 0) {
        e->ref--;
    }
    *table = NULL;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, void *table)
{
    struct cache_entry *e = entry_of(c, table);
    if (e) {
        e->dirty = true;
    }
}

void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset)
{
    /* A freed cluster of c's kind: each of its slices may be cached. */
    uint64_t cluster = offset & ~((uint64_t)c->s->cluster_size - 1);
    for (uint64_t off = cluster; off < cluster + c->s->cluster_size; off += c->entry_size) {
        struct cache_entry *e = lookup(c, off);
        if (e && !e->ref) {
            e->dirty = false;
            hash_remove(c, e);
        }
    }
}

int qcow2_cache_empty(struct qcow2_cache *c)
{
    int ret = qcow2_cache_flush(c);
    if (ret < 0) {
        return ret;
    }
    for (int i = 0; i < c->nb_entries; i++) {
        struct cache_entry *e = &c->entries[i];
        if (!e->ref) {
            hash_remove(c, e);
        }
    }
    return 0;
}

void qcow2_cache_clean_unused(struct qcow2_cache *c)
{
    for (int i = 0; i < c->nb_entries; i++) {
        struct cache_entry *e = &c->entries[i];
        if (e->offset && !e->ref && !e->dirty && e->lru <= c->clean_mark) {
            hash_remove(c, e);
            /* Give whole pages back; a later use faults in zeroes, then reads. */
            uintptr_t start = ALIGN_UP((uintptr_t)e->table, 4096);
            uintptr_t end = ALIGN_DOWN((uintptr_t)e->table + c->entry_size, 4096);
            if (end > start) {
                madvise((void *)start, end - start, MADV_DONTNEED);
            }
        }
    }
    c->clean_mark = c->clock;
}

bool qcow2_cache_peek(struct qcow2_cache *c, uint64_t offset, uint32_t idx, uint32_t n,
                      uint64_t *out)
{
    struct cache_entry *e = lookup(c, offset);
    if (!e) {
        return false;
    }
    memcpy(out, (uint64_t *)e->table + idx, (size_t)n * 8);
    /* A hint for eviction only: a torn or stale value does no harm. */
    __atomic_store_n(&e->lru, __atomic_load_n(&c->clock, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    return true;
}
