/*
 * virtio-blk driven through a fake transport: requests written into guest
 * memory by hand, a kick, and the status each one gets back.  Covers the
 * data path (write, read back, flush, GET_ID, discard, write zeroes), every
 * refusal a guest can provoke (past the end, unaligned, unknown type, bad
 * flags, read-only) and malformed chains that must put the device into
 * DEVICE_NEEDS_RESET without touching anything else.
 */
#include "tests/unit/harness.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block/backend.h"
#include "dataplane/virtio-blk.h"
#include "dataplane/virtqueue.h"
#include "util/aio.h"
#include "util/iothread.h"

#define GPA_BASE  0x100000ULL
#define MEM_SIZE  (4 * MiB)
#define QSIZE     64
#define DESC_OFF  0x0000
#define AVAIL_OFF 0x1000
#define USED_OFF  0x2000
#define REQ_OFF   0x10000       /* headers and status bytes */
#define DATA_OFF  0x100000      /* data buffers */
#define DISK_SIZE (1 * MiB)

struct fake {
    uint8_t *mem;
    struct guest_mem gm;
    struct virtio_queue_setup setup;
    struct vblk *b;
    struct virtio_dev *d;
    struct block_backend *blk;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t next_desc;
    int needs_reset;
    char *path;
};

static void on_needs_reset(struct virtio_dev *d)
{
    struct fake *f = d->transport;
    f->needs_reset++;
}

static void fake_init_ctx(struct fake *f, bool read_only, struct aio_context *ctx);

static void fake_init(struct fake *f, bool read_only)
{
    fake_init_ctx(f, read_only, NULL);
}

static void fake_init_ctx(struct fake *f, bool read_only, struct aio_context *ctx)
{
    struct err err = { 0 };
    memset(f, 0, sizeof(*f));
    f->mem = xzalloc(MEM_SIZE);
    guest_mem_init(&f->gm);
    struct guest_mem_region reg = { .gpa = GPA_BASE, .size = MEM_SIZE, .hva = f->mem, .fd = -1 };
    CU_ASSERT_EQUAL_FATAL(guest_mem_add(&f->gm, &reg, &err), 0);
    f->desc = (void *)(f->mem + DESC_OFF);
    f->avail = (void *)(f->mem + AVAIL_OFF);
    f->used = (void *)(f->mem + USED_OFF);

    f->path = test_tmpfile("vblk.raw");
    int fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CU_ASSERT_FATAL(fd >= 0 && ftruncate(fd, DISK_SIZE) == 0);
    close(fd);
    json_t *o = json_pack("{s:s, s:{s:s, s:s}, s:s}", "driver", "raw", "file", "driver", "file",
                          "filename", f->path, "discard", "unmap");
    f->blk = blk_new_open("vd0", NULL, o, read_only ? 0 : BDRV_O_RDWR, &err);
    json_decref(o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->blk);

    struct vblk_config cfg = { .name = "vd0", .blk = f->blk, .num_queues = 1,
                               .queue_size = QSIZE, .serial = "spindle-serial-01",
                               .discard = true, .write_zeroes = true, .read_only = read_only,
                               .queue_ctx = &ctx };
    f->b = vblk_new(&cfg, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->b);
    f->d = vblk_virtio_dev(f->b);
    f->setup = (struct virtio_queue_setup){
        .size = QSIZE, .enabled = true, .desc = GPA_BASE + DESC_OFF,
        .avail = GPA_BASE + AVAIL_OFF, .used = GPA_BASE + USED_OFF,
        .kick_fd = eventfd(0, EFD_NONBLOCK), .call_fd = eventfd(0, EFD_NONBLOCK),
    };
    f->d->mem = &f->gm;
    f->d->num_queues = 1;
    f->d->queues = &f->setup;
    f->d->guest_features = f->d->ops->features(f->d);
    f->d->transport_needs_reset = on_needs_reset;
    f->d->transport = f;
    CU_ASSERT_EQUAL_FATAL(f->d->ops->start(f->d), 0);
}

static void fake_free(struct fake *f)
{
    f->d->ops->stop(f->d);
    /* The kick handler's cancelled poll completes on the loop: let it. */
    while (aio_poll(aio_main_context(), false)) {
    }
    close(f->setup.kick_fd);
    close(f->setup.call_fd);
    f->d->ops->release(f->d);
    blk_unref(f->blk);
    unlink(f->path);
    free(f->path);
    free(f->mem);
}

static uint16_t add_desc(struct fake *f, uint64_t off, uint32_t len, uint16_t flags)
{
    uint16_t i = f->next_desc++ % QSIZE;
    f->desc[i] = (struct vring_desc){ .addr = GPA_BASE + off, .len = len, .flags = flags };
    return i;
}

/* Chain descriptors head..: each links to the next one added. */
static void link_chain(struct fake *f, uint16_t *ids, int n)
{
    for (int i = 0; i + 1 < n; i++) {
        f->desc[ids[i]].flags |= VRING_DESC_F_NEXT;
        f->desc[ids[i]].next = ids[i + 1];
    }
}

/* Make head available, kick, and run the loop until the device answers. */
static bool submit(struct fake *f, uint16_t head)
{
    uint16_t before = f->used->idx;
    f->avail->ring[f->avail->idx % QSIZE] = head;
    __atomic_store_n(&f->avail->idx, (uint16_t)(f->avail->idx + 1), __ATOMIC_RELEASE);
    uint64_t one = 1;
    CU_ASSERT_EQUAL(write(f->setup.kick_fd, &one, sizeof(one)), 8);
    int64_t deadline = clock_ns() + 5000000000LL;
    while (__atomic_load_n(&f->used->idx, __ATOMIC_ACQUIRE) == before && clock_ns() < deadline &&
           !f->needs_reset) {
        aio_poll(aio_main_context(), false);
    }
    return f->used->idx != before;
}

struct hdr {
    uint32_t type, ioprio;
    uint64_t sector;
};

/* A request: header, optional data, status.  Returns the status byte. */
static int request(struct fake *f, uint32_t type, uint64_t sector, uint32_t data_len,
                   bool data_in, uint32_t *used_len)
{
    struct hdr *h = (void *)(f->mem + REQ_OFF);
    uint8_t *status = f->mem + REQ_OFF + 64;
    *h = (struct hdr){ .type = type, .sector = sector };
    *status = 0xee;
    uint16_t ids[3];
    int n = 0;
    ids[n++] = add_desc(f, REQ_OFF, sizeof(*h), 0);
    if (data_len) {
        ids[n++] = add_desc(f, DATA_OFF, data_len, data_in ? VRING_DESC_F_WRITE : 0);
    }
    ids[n++] = add_desc(f, REQ_OFF + 64, 1, VRING_DESC_F_WRITE);
    link_chain(f, ids, n);
    if (!submit(f, ids[0])) {
        return -1;
    }
    if (used_len) {
        *used_len = f->used->ring[(f->used->idx - 1) % QSIZE].len;
    }
    return *status;
}

static void test_write_read(void)
{
    struct fake f;
    uint32_t len;
    fake_init(&f, false);
    memset(f.mem + DATA_OFF, 0x3c, 4096);
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_OUT, 8, 4096, false, &len), VIRTIO_BLK_S_OK);
    CU_ASSERT_EQUAL(len, 1);
    memset(f.mem + DATA_OFF, 0, 4096);
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_IN, 8, 4096, true, &len), VIRTIO_BLK_S_OK);
    CU_ASSERT_EQUAL(len, 4097);
    CU_ASSERT_EQUAL(f.mem[DATA_OFF], 0x3c);
    CU_ASSERT_EQUAL(f.mem[DATA_OFF + 4095], 0x3c);
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_FLUSH, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
    /* The data reached the image. */
    uint8_t buf[4096];
    CU_ASSERT_EQUAL(blk_pread(f.blk, 4096, 4096, buf, 0), 0);
    CU_ASSERT_EQUAL(buf[100], 0x3c);
    CU_ASSERT_EQUAL(f.needs_reset, 0);
    fake_free(&f);
}

static void test_refusals(void)
{
    struct fake f;
    uint32_t len;
    fake_init(&f, false);
    /* Past the end, straddling the end, unaligned: IOERR, nothing written. */
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_IN, DISK_SIZE / 512, 512, true, NULL),
                    VIRTIO_BLK_S_IOERR);
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_OUT, DISK_SIZE / 512 - 1, 1024, false, NULL),
                    VIRTIO_BLK_S_IOERR);
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_OUT, 0, 100, false, NULL), VIRTIO_BLK_S_IOERR);
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_IN, UINT64_MAX / 8, 512, true, NULL),
                    VIRTIO_BLK_S_IOERR);
    CU_ASSERT_EQUAL(request(&f, 99, 0, 0, false, NULL), VIRTIO_BLK_S_UNSUPP);
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_GET_LIFETIME, 0, 16, true, NULL),
                    VIRTIO_BLK_S_UNSUPP);
    /* GET_ID: the serial, 20 bytes at most. */
    memset(f.mem + DATA_OFF, 0, 64);
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_GET_ID, 0, 64, true, &len), VIRTIO_BLK_S_OK);
    CU_ASSERT_EQUAL(len, 21);
    CU_ASSERT(memcmp(f.mem + DATA_OFF, "spindle-serial-01", 17) == 0);
    CU_ASSERT_EQUAL(f.needs_reset, 0);
    fake_free(&f);
}

struct range {
    uint64_t sector;
    uint32_t num;
    uint32_t flags;
};

static void test_discard_zeroes(void)
{
    struct fake f;
    fake_init(&f, false);
    memset(f.mem + DATA_OFF, 0x77, 8192);
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_OUT, 0, 8192, false, NULL), VIRTIO_BLK_S_OK);
    /* The ranges travel as the request's data (device-readable). */
    struct range *r = (void *)(f.mem + DATA_OFF);
    *r = (struct range){ .sector = 0, .num = 8, .flags = 1 };
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof(*r), false, NULL),
                    VIRTIO_BLK_S_OK);
    /* Discard with the unmap flag, or reserved flags: unsupported. */
    *r = (struct range){ .sector = 8, .num = 8, .flags = 1 };
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_DISCARD, 0, sizeof(*r), false, NULL),
                    VIRTIO_BLK_S_UNSUPP);
    *r = (struct range){ .sector = 8, .num = 8, .flags = 0x100 };
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof(*r), false, NULL),
                    VIRTIO_BLK_S_UNSUPP);
    *r = (struct range){ .sector = DISK_SIZE / 512, .num = 8 };
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_DISCARD, 0, sizeof(*r), false, NULL),
                    VIRTIO_BLK_S_IOERR);
    *r = (struct range){ .sector = 8, .num = 8 };
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_DISCARD, 0, sizeof(*r), false, NULL),
                    VIRTIO_BLK_S_OK);
    uint8_t buf[8192];
    CU_ASSERT_EQUAL(blk_pread(f.blk, 0, 8192, buf, 0), 0);
    CU_ASSERT_TRUE(buffer_is_zero(buf, 4096));
    fake_free(&f);
}

static void test_read_only(void)
{
    struct fake f;
    fake_init(&f, true);
    CU_ASSERT(f.d->ops->features(f.d) & VIRTIO_BIT(VIRTIO_BLK_F_RO));
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_OUT, 0, 512, false, NULL), VIRTIO_BLK_S_IOERR);
    CU_ASSERT_EQUAL(request(&f, VIRTIO_BLK_T_IN, 0, 512, true, NULL), VIRTIO_BLK_S_OK);
    fake_free(&f);
}

/* No status byte (nothing writable): the device cannot answer, so it needs a reset. */
static void test_no_status(void)
{
    struct fake f;
    fake_init(&f, false);
    struct hdr *h = (void *)(f.mem + REQ_OFF);
    *h = (struct hdr){ .type = VIRTIO_BLK_T_IN };
    uint16_t id = add_desc(&f, REQ_OFF, sizeof(*h), 0);
    CU_ASSERT_FALSE(submit(&f, id));
    CU_ASSERT_EQUAL(f.needs_reset, 1);
    fake_free(&f);
}

static void test_short_header(void)
{
    struct fake f;
    fake_init(&f, false);
    uint16_t ids[2] = { add_desc(&f, REQ_OFF, 8, 0), add_desc(&f, REQ_OFF + 64, 1,
                                                                VRING_DESC_F_WRITE) };
    link_chain(&f, ids, 2);
    CU_ASSERT_FALSE(submit(&f, ids[0]));
    CU_ASSERT_EQUAL(f.needs_reset, 1);
    fake_free(&f);
}

static void test_bad_ring(void)
{
    struct fake f;
    fake_init(&f, false);
    uint16_t id = add_desc(&f, MEM_SIZE + 0x1000, 16, 0);
    CU_ASSERT_FALSE(submit(&f, id));
    CU_ASSERT_EQUAL(f.needs_reset, 1);
    fake_free(&f);
}

static void test_config(void)
{
    struct fake f;
    fake_init(&f, false);
    uint64_t cap;
    uint32_t seg_max;
    uint16_t nq;
    uint8_t wce;
    f.d->ops->read_config(f.d, 0, &cap, 8);
    f.d->ops->read_config(f.d, 12, &seg_max, 4);
    f.d->ops->read_config(f.d, 34, &nq, 2);
    f.d->ops->read_config(f.d, 32, &wce, 1);
    CU_ASSERT_EQUAL(cap, DISK_SIZE / 512);
    CU_ASSERT_EQUAL(seg_max, QSIZE - 2);
    CU_ASSERT_EQUAL(nq, 1);
    CU_ASSERT_EQUAL(wce, 1);
    /* Writethrough from the guest: the backend makes every write durable. */
    uint8_t zero = 0;
    f.d->ops->write_config(f.d, 32, &zero, 1);
    CU_ASSERT_FALSE(blk_write_cache_enabled(f.blk));
    fake_free(&f);
}

/*
 * A driver that kicks only when EVENT_IDX says so, against a queue served
 * by a busy-polling iothread whose window keeps opening and closing: every
 * request must complete (a device that leaves avail_event behind after
 * serving with kicks on makes the driver wait forever).
 */
static uint16_t avail_event_of(struct fake *f)
{
    return __atomic_load_n((uint16_t *)&f->used->ring[QSIZE], __ATOMIC_ACQUIRE);
}

static void test_event_idx_no_lost_kick(void)
{
    struct err err = { 0 };
    struct iothread_opts io_opts;
    iothread_opts_default(&io_opts);
    io_opts.poll_max_ns = 20000;
    struct iothread *io = iothread_create("vblk-poll", &io_opts, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(io);
    struct fake f;
    fake_init_ctx(&f, false, iothread_ctx(io));
    CU_ASSERT_TRUE(virtio_has_feature(f.d, VIRTIO_F_EVENT_IDX));

    /* Flush requests: no data, so any number can share the header area. */
    struct hdr *h = (void *)(f.mem + REQ_OFF);
    *h = (struct hdr){ .type = VIRTIO_BLK_T_FLUSH };
    for (int i = 0; i < QSIZE / 2; i++) {
        f.desc[2 * i] = (struct vring_desc){ .addr = GPA_BASE + REQ_OFF, .len = sizeof(*h),
                                             .flags = VRING_DESC_F_NEXT,
                                             .next = (uint16_t)(2 * i + 1) };
        f.desc[2 * i + 1] = (struct vring_desc){ .addr = GPA_BASE + REQ_OFF + 64 + i, .len = 1,
                                                 .flags = VRING_DESC_F_WRITE };
    }
    unsigned seed = test_seed();
    int rounds = test_sanitized() ? 300 : 2000, stalls = 0;
    uint16_t idx = 0;
    for (int r = 0; r < rounds && !stalls; r++) {
        uint16_t old = idx, n = (uint16_t)(1 + rand_r(&seed) % 8);
        for (uint16_t k = 0; k < n; k++, idx++) {
            f.avail->ring[idx % QSIZE] = (uint16_t)(2 * (idx % (QSIZE / 2)));
        }
        __atomic_store_n(&f.avail->idx, idx, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        uint16_t ev = avail_event_of(&f);
        if ((uint16_t)(idx - ev - 1) < (uint16_t)(idx - old)) {
            uint64_t one = 1;
            CU_ASSERT_EQUAL(write(f.setup.kick_fd, &one, sizeof(one)), 8);
        }
        int64_t deadline = clock_ns() + 2000000000LL;
        while (__atomic_load_n(&f.used->idx, __ATOMIC_ACQUIRE) != idx) {
            if (clock_ns() > deadline) {
                stalls++;
                break;
            }
        }
        /* Sometimes pause past the poll window, so the loop goes back to sleep. */
        if (rand_r(&seed) % 4 == 0) {
            usleep(rand_r(&seed) % 200);
        }
    }
    CU_ASSERT_EQUAL(stalls, 0);
    fake_free(&f);
    iothread_destroy(io);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("virtio_blk", NULL, NULL);
    CU_add_test(s, "write_read", test_write_read);
    CU_add_test(s, "refusals", test_refusals);
    CU_add_test(s, "discard_zeroes", test_discard_zeroes);
    CU_add_test(s, "read_only", test_read_only);
    CU_add_test(s, "no_status", test_no_status);
    CU_add_test(s, "short_header", test_short_header);
    CU_add_test(s, "bad_ring", test_bad_ring);
    CU_add_test(s, "config", test_config);
    CU_add_test(s, "event_idx_no_lost_kick", test_event_idx_no_lost_kick);
}
