/*
 * virtio-blk (virtio 1.2, 5.2) over a block backend, transport-free: it
 * implements dataplane/virtio.h, so kvmcore's virtio-pci and the vhost-user
 * server both serve it.
 *
 * Each virtqueue is served by one event loop (an iothread, or the main
 * loop): woken by the queue's kick eventfd, or found by that loop's busy
 * polling (while polling, the device asks the driver not to kick at all).
 * Each request runs as a coroutine on the backend; completions publish the
 * used ring at once and interrupt the driver once per batch.
 */
#ifndef SPINDLE_DATAPLANE_VIRTIO_BLK_H
#define SPINDLE_DATAPLANE_VIRTIO_BLK_H

#include "block/backend.h"
#include "dataplane/virtio.h"

#define VIRTIO_BLK_F_SIZE_MAX      1
#define VIRTIO_BLK_F_SEG_MAX       2
#define VIRTIO_BLK_F_GEOMETRY      4
#define VIRTIO_BLK_F_RO            5
#define VIRTIO_BLK_F_BLK_SIZE      6
#define VIRTIO_BLK_F_FLUSH         9
#define VIRTIO_BLK_F_TOPOLOGY      10
#define VIRTIO_BLK_F_CONFIG_WCE    11
#define VIRTIO_BLK_F_MQ            12
#define VIRTIO_BLK_F_DISCARD       13
#define VIRTIO_BLK_F_WRITE_ZEROES  14

#define VIRTIO_BLK_T_IN            0
#define VIRTIO_BLK_T_OUT           1
#define VIRTIO_BLK_T_FLUSH         4
#define VIRTIO_BLK_T_GET_ID        8
#define VIRTIO_BLK_T_GET_LIFETIME  10
#define VIRTIO_BLK_T_DISCARD       11
#define VIRTIO_BLK_T_WRITE_ZEROES  13
#define VIRTIO_BLK_T_SECURE_ERASE  14

#define VIRTIO_BLK_S_OK            0
#define VIRTIO_BLK_S_IOERR         1
#define VIRTIO_BLK_S_UNSUPP        2

#define VIRTIO_BLK_ID_BYTES        20
#define VIRTIO_BLK_CONFIG_SIZE     60

struct vblk;
struct aio_context;

struct vblk_config {
    const char *name;              /* for messages: the device id */
    struct block_backend *blk;     /* the device takes a reference */
    unsigned num_queues;
    unsigned queue_size;
    struct aio_context **queue_ctx;  /* num_queues loops; NULL entries: the main loop */
    const char *serial;            /* GET_ID, at most 20 bytes used */
    uint32_t logical_block_size;   /* 0: 512 */
    uint32_t physical_block_size;  /* 0: the logical size */
    bool discard;
    bool write_zeroes;
    bool read_only;
};

/* A device (not yet on any transport), or NULL with err. */
struct vblk *vblk_new(const struct vblk_config *cfg, struct err *err);
struct virtio_dev *vblk_virtio_dev(struct vblk *b);

/* Statistics for tests: requests popped per queue. */
uint64_t vblk_requests(struct vblk *b, unsigned queue);

#endif
