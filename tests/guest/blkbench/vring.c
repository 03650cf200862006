/* vring.c: split virtqueue, driver side; see vring.h. */
#include "io.h"
#include "lib.h"
#include "mem.h"
#include "vring.h"

static volatile uint16_t *used_event(struct vring *vr)
{
    return &vr->avail->ring[vr->size];
}

static volatile uint16_t *avail_event(struct vring *vr)
{
    return (volatile uint16_t *)&vr->used->ring[vr->size];
}

/* virtio 1.2, 2.7.10: has the index moved from old to new past event? */
static int need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

int vring_alloc(struct vring *vr, uint16_t size, int event_idx)
{
    memset(vr, 0, sizeof(*vr));
    vr->size = size;
    vr->mask = (uint16_t)(size - 1);
    vr->event_idx = event_idx;
    vr->desc = mem_zalloc(sizeof(struct vring_desc) * size, 4096);
    vr->avail = mem_zalloc(sizeof(struct vring_avail) + 2u * size + 2, 4096);
    vr->used = mem_zalloc(sizeof(struct vring_used) +
                          sizeof(struct vring_used_elem) * size + 2, 4096);
    if (!vr->desc || !vr->avail || !vr->used)
        return -1;
    if (!event_idx)
        vr->avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
    vring_quiet(vr);
    return 0;
}

void vring_publish(struct vring *vr)
{
    uint16_t old = vr->published_idx, new_idx = vr->avail_idx;
    int kick;

    if (old == new_idx)
        return;
    barrier();                  /* ring entries before the index (x86: TSO) */
    ((volatile struct vring_avail *)vr->avail)->idx = new_idx;
    vr->published_idx = new_idx;
    mb();                       /* index store before the event/flags load */
    if (vr->event_idx)
        kick = need_event(*avail_event(vr), new_idx, old);
    else
        kick = !(((volatile struct vring_used *)vr->used)->flags &
                 VRING_USED_F_NO_NOTIFY);
    if (kick) {
        mmio_write16(vr->notify, vr->index);
        vr->kicks++;
    }
}

int vring_pop_used(struct vring *vr, uint32_t *id, uint32_t *len)
{
    uint16_t idx = ((volatile struct vring_used *)vr->used)->idx;

    if (idx == vr->last_used)
        return 0;
    barrier();                  /* the index before the element (x86: TSO) */
    volatile struct vring_used_elem *e = &vr->used->ring[vr->last_used & vr->mask];
    *id = e->id;
    *len = e->len;
    vr->last_used++;
    return 1;
}

void vring_quiet(struct vring *vr)
{
    if (vr->event_idx)
        *used_event(vr) = (uint16_t)(vr->last_used + 0x8000);
}
