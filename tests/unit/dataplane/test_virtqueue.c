/*
 * The split ring against rings built by hand, most of them hostile: every
 * fault must break the queue (and only that), never read or write outside
 * guest memory, and never hang.
 */
#include "tests/unit/harness.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "dataplane/virtqueue.h"

#define GPA_BASE  0x100000ULL
#define MEM_SIZE  (1 * MiB)
#define QSIZE     16
#define DESC_GPA  (GPA_BASE + 0x0000)
#define AVAIL_GPA (GPA_BASE + 0x1000)
#define USED_GPA  (GPA_BASE + 0x2000)
#define DATA_GPA  (GPA_BASE + 0x10000)

struct ring {
    uint8_t *mem;
    struct guest_mem gm;
    struct virtio_queue_setup setup;
    struct vq vq;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    struct iovec iov[64];
    struct vq_elem elem;
};

static void ring_init(struct ring *r, uint64_t features)
{
    struct err err = { 0 };
    memset(r, 0, sizeof(*r));
    r->mem = xzalloc(MEM_SIZE);
    guest_mem_init(&r->gm);
    struct guest_mem_region reg = { .gpa = GPA_BASE, .size = MEM_SIZE, .hva = r->mem, .fd = -1 };
    CU_ASSERT_EQUAL_FATAL(guest_mem_add(&r->gm, &reg, &err), 0);
    r->setup = (struct virtio_queue_setup){ .size = QSIZE, .enabled = true, .desc = DESC_GPA,
                                            .avail = AVAIL_GPA, .used = USED_GPA,
                                            .kick_fd = -1, .call_fd = -1 };
    r->desc = (void *)(r->mem + (DESC_GPA - GPA_BASE));
    r->avail = (void *)(r->mem + (AVAIL_GPA - GPA_BASE));
    r->used = (void *)(r->mem + (USED_GPA - GPA_BASE));
    CU_ASSERT_EQUAL_FATAL(vq_init(&r->vq, &r->gm, &r->setup, features, "testq", &err), 0);
    r->elem.iov = r->iov;
    r->elem.max = ARRAY_SIZE(r->iov);
}

static void ring_free(struct ring *r)
{
    vq_destroy(&r->vq);
    free(r->mem);
}

static void set_desc(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

static void make_avail(struct ring *r, uint16_t head)
{
    r->avail->ring[r->avail->idx % QSIZE] = head;
    r->avail->idx++;
}

static void test_good_chain(void)
{
    struct ring r;
    ring_init(&r, 0);
    set_desc(&r.desc[0], DATA_GPA, 16, VRING_DESC_F_NEXT, 5);
    set_desc(&r.desc[5], DATA_GPA + 100, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
    set_desc(&r.desc[2], DATA_GPA + 8192, 1, VRING_DESC_F_WRITE, 0);
    CU_ASSERT_EQUAL(vq_pop(&r.vq, &r.elem), 0);    /* nothing available yet */
    CU_ASSERT_FALSE(vq_has_work(&r.vq));
    make_avail(&r, 0);
    CU_ASSERT_TRUE(vq_has_work(&r.vq));
    CU_ASSERT_EQUAL(vq_pop(&r.vq, &r.elem), 1);
    CU_ASSERT_EQUAL(r.elem.head, 0);
    CU_ASSERT_EQUAL(r.elem.out_num, 1);
    CU_ASSERT_EQUAL(r.elem.in_num, 2);
    CU_ASSERT_EQUAL(r.elem.out_len, 16);
    CU_ASSERT_EQUAL(r.elem.in_len, 4097);
    CU_ASSERT_PTR_EQUAL(r.iov[1].iov_base, r.mem + 0x10000 + 100);
    vq_push(&r.vq, &r.elem, 4097);
    CU_ASSERT_EQUAL(r.used->idx, 1);
    CU_ASSERT_EQUAL(r.used->ring[0].id, 0);
    CU_ASSERT_EQUAL(r.used->ring[0].len, 4097);
    CU_ASSERT_FALSE(r.vq.broken);
    ring_free(&r);
}

static void test_indirect(void)
{
    struct ring r;
    ring_init(&r, VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
    struct vring_desc *table = (void *)(r.mem + 0x8000);
    set_desc(&table[0], DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
    set_desc(&table[1], DATA_GPA + 512, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
    set_desc(&table[2], DATA_GPA + 2048, 1, VRING_DESC_F_WRITE, 0);
    set_desc(&r.desc[3], GPA_BASE + 0x8000, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    make_avail(&r, 3);
    CU_ASSERT_EQUAL(vq_pop(&r.vq, &r.elem), 1);
    CU_ASSERT_EQUAL(r.elem.out_num + r.elem.in_num, 3);
    CU_ASSERT_EQUAL(r.elem.head, 3);
    ring_free(&r);
}

/* Each case sets up one fault in a fresh ring and expects the queue to break. */
typedef void fault_fn(struct ring *r);

static void fault_head_out_of_range(struct ring *r)
{
    make_avail(r, QSIZE + 3);
}

static void fault_next_out_of_range(struct ring *r)
{
    set_desc(&r->desc[0], DATA_GPA, 16, VRING_DESC_F_NEXT, 200);
    make_avail(r, 0);
}

static void fault_loop(struct ring *r)
{
    set_desc(&r->desc[0], DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
    set_desc(&r->desc[1], DATA_GPA, 16, VRING_DESC_F_NEXT, 0);
    make_avail(r, 0);
}

static void fault_self_loop(struct ring *r)
{
    set_desc(&r->desc[4], DATA_GPA, 16, VRING_DESC_F_NEXT, 4);
    make_avail(r, 4);
}

static void fault_buffer_outside(struct ring *r)
{
    set_desc(&r->desc[0], GPA_BASE + MEM_SIZE - 8, 16, 0, 0);
    make_avail(r, 0);
}

static void fault_buffer_wraps(struct ring *r)
{
    set_desc(&r->desc[0], UINT64_MAX - 4, 64, 0, 0);
    make_avail(r, 0);
}

static void fault_buffer_below(struct ring *r)
{
    set_desc(&r->desc[0], 0x1000, 16, 0, 0);
    make_avail(r, 0);
}

static void fault_read_after_write(struct ring *r)
{
    set_desc(&r->desc[0], DATA_GPA, 16, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
    set_desc(&r->desc[1], DATA_GPA, 16, 0, 0);
    make_avail(r, 0);
}

static void fault_indirect_not_negotiated(struct ring *r)
{
    set_desc(&r->desc[0], DATA_GPA, 32, VRING_DESC_F_INDIRECT, 0);
    make_avail(r, 0);
}

static void fault_avail_jump(struct ring *r)
{
    set_desc(&r->desc[0], DATA_GPA, 16, 0, 0);
    r->avail->idx = QSIZE + 5;
}

static void fault_too_many_buffers(struct ring *r)
{
    for (int i = 0; i < QSIZE; i++) {
        set_desc(&r->desc[i], DATA_GPA + 16 * i, 16, i + 1 < QSIZE ? VRING_DESC_F_NEXT : 0,
                 (uint16_t)(i + 1));
    }
    r->elem.max = 4;
    make_avail(r, 0);
}

static void run_fault(fault_fn *fn, uint64_t features)
{
    struct ring r;
    ring_init(&r, features);
    fn(&r);
    CU_ASSERT_EQUAL(vq_pop(&r.vq, &r.elem), -EINVAL);
    CU_ASSERT_TRUE(r.vq.broken);
    /* A broken queue serves nothing more, even a good chain. */
    set_desc(&r.desc[7], DATA_GPA, 16, 0, 0);
    make_avail(&r, 7);
    CU_ASSERT_EQUAL(vq_pop(&r.vq, &r.elem), -EINVAL);
    CU_ASSERT_FALSE(vq_has_work(&r.vq));
    ring_free(&r);
}

static void test_faults(void)
{
    fault_fn *direct[] = {
        fault_head_out_of_range, fault_next_out_of_range, fault_loop, fault_self_loop,
        fault_buffer_outside, fault_buffer_wraps, fault_buffer_below, fault_read_after_write,
        fault_indirect_not_negotiated, fault_avail_jump, fault_too_many_buffers,
    };
    for (size_t i = 0; i < ARRAY_SIZE(direct); i++) {
        run_fault(direct[i], 0);
    }
}

static void ind_nested(struct ring *r)
{
    struct vring_desc *t = (void *)(r->mem + 0x8000);
    set_desc(&t[0], GPA_BASE + 0x9000, 16, VRING_DESC_F_INDIRECT, 0);
    set_desc(&r->desc[0], GPA_BASE + 0x8000, 16, VRING_DESC_F_INDIRECT, 0);
    make_avail(r, 0);
}

static void ind_bad_len(struct ring *r)
{
    set_desc(&r->desc[0], GPA_BASE + 0x8000, 24, VRING_DESC_F_INDIRECT, 0);
    make_avail(r, 0);
}

static void ind_zero_len(struct ring *r)
{
    set_desc(&r->desc[0], GPA_BASE + 0x8000, 0, VRING_DESC_F_INDIRECT, 0);
    make_avail(r, 0);
}

static void ind_outside(struct ring *r)
{
    set_desc(&r->desc[0], GPA_BASE + MEM_SIZE - 16, 64, VRING_DESC_F_INDIRECT, 0);
    make_avail(r, 0);
}

static void ind_loop(struct ring *r)
{
    struct vring_desc *t = (void *)(r->mem + 0x8000);
    set_desc(&t[0], DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
    set_desc(&t[1], DATA_GPA, 16, VRING_DESC_F_NEXT, 0);
    set_desc(&r->desc[0], GPA_BASE + 0x8000, 32, VRING_DESC_F_INDIRECT, 0);
    make_avail(r, 0);
}

static void ind_with_next(struct ring *r)
{
    set_desc(&r->desc[0], GPA_BASE + 0x8000, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    make_avail(r, 0);
}

static void ind_huge(struct ring *r)
{
    set_desc(&r->desc[0], GPA_BASE, 16u * 40000, VRING_DESC_F_INDIRECT, 0);
    make_avail(r, 0);
}

static void test_indirect_faults(void)
{
    fault_fn *cases[] = { ind_nested, ind_bad_len, ind_zero_len, ind_outside, ind_loop,
                          ind_with_next, ind_huge };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        run_fault(cases[i], VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
    }
}

static void test_rings_outside_memory(void)
{
    struct ring r;
    struct err err = { 0 };
    ring_init(&r, 0);
    struct vq vq;
    struct virtio_queue_setup s = r.setup;
    s.used = GPA_BASE + MEM_SIZE - 8;
    CU_ASSERT(vq_init(&vq, &r.gm, &s, 0, "q", &err) < 0);
    CU_ASSERT(strstr(err.msg, "used ring") != NULL);
    err_clear(&err);
    s = r.setup;
    s.desc = DESC_GPA + 1;
    CU_ASSERT(vq_init(&vq, &r.gm, &s, 0, "q", &err) < 0);
    err_clear(&err);
    s = r.setup;
    s.size = 0;
    CU_ASSERT(vq_init(&vq, &r.gm, &s, 0, "q", &err) < 0);
    ring_free(&r);
}

/* Interrupt suppression: EVENT_IDX's used_event, and NO_INTERRUPT without it. */
static uint64_t drain_fd(int fd)
{
    uint64_t v = 0;
    if (read(fd, &v, sizeof(v)) < 0) {
        return 0;
    }
    return v;
}

static void test_notify(void)
{
    struct ring r;
    int efd = eventfd(0, EFD_NONBLOCK);
    ring_init(&r, VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
    r.vq.call_fd = efd;
    set_desc(&r.desc[0], DATA_GPA, 16, 0, 0);
    uint16_t *used_event = &r.avail->ring[QSIZE];

    /* The first completion always interrupts; then only passing used_event does. */
    make_avail(&r, 0);
    CU_ASSERT_EQUAL(vq_pop(&r.vq, &r.elem), 1);
    vq_push(&r.vq, &r.elem, 0);
    vq_notify(&r.vq);
    CU_ASSERT_EQUAL(drain_fd(efd), 1);
    *used_event = 5;
    for (int idx = 2; idx <= 6; idx++) {
        make_avail(&r, 0);
        CU_ASSERT_EQUAL(vq_pop(&r.vq, &r.elem), 1);
        vq_push(&r.vq, &r.elem, 0);
        vq_notify(&r.vq);
        CU_ASSERT_EQUAL(r.used->idx, idx);
        CU_ASSERT_EQUAL(drain_fd(efd), idx == 6 ? 1 : 0);
    }
    /* Nothing new pushed: no interrupt. */
    vq_notify(&r.vq);
    CU_ASSERT_EQUAL(drain_fd(efd), 0);
    ring_free(&r);

    ring_init(&r, 0);
    r.vq.call_fd = efd;
    set_desc(&r.desc[0], DATA_GPA, 16, 0, 0);
    r.avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
    make_avail(&r, 0);
    CU_ASSERT_EQUAL(vq_pop(&r.vq, &r.elem), 1);
    vq_push(&r.vq, &r.elem, 0);
    vq_notify(&r.vq);
    CU_ASSERT_EQUAL(drain_fd(efd), 0);
    r.avail->flags = 0;
    vq_notify(&r.vq);
    CU_ASSERT_EQUAL(drain_fd(efd), 1);
    /* Kick suppression: NO_NOTIFY in used->flags while disabled. */
    vq_set_notification(&r.vq, false);
    CU_ASSERT(r.used->flags & VRING_USED_F_NO_NOTIFY);
    vq_set_notification(&r.vq, true);
    CU_ASSERT_FALSE(r.used->flags & VRING_USED_F_NO_NOTIFY);
    ring_free(&r);
    close(efd);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("virtqueue", NULL, NULL);
    CU_add_test(s, "good_chain", test_good_chain);
    CU_add_test(s, "indirect", test_indirect);
    CU_add_test(s, "faults", test_faults);
    CU_add_test(s, "indirect_faults", test_indirect_faults);
    CU_add_test(s, "rings_outside_memory", test_rings_outside_memory);
    CU_add_test(s, "notify", test_notify);
}
