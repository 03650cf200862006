/*
 * The transport-free virtio device interface.
 *
 * A device (virtio-blk, virtio-scsi, a test double) implements
 * struct virtio_dev_ops and embeds a struct virtio_dev.  A transport
 * (kvmcore's virtio-pci, the vhost-user server) owns the negotiation state
 * and hands the device, when the driver is ready, a set of queues: each is
 * the guest addresses of a split ring plus two eventfds.  The device watches
 * kick_fd for the driver's notifications and writes call_fd to interrupt
 * the driver; what a write to call_fd becomes (an MSI-X message through a
 * KVM irqfd, a pending bit, a vhost-user call) is the transport's business.
 * This is how vhost-user hands queues over, so one device serves both.
 *
 * Threads and locking.  The transport calls every op with its own lock
 * held, from a thread that does not serve the device's queues (a vCPU
 * thread, the main thread, the vhost-user server's thread), one call at a
 * time.  Between start() and stop() the device serves its queues on
 * whatever threads it chose (normally iothreads); the queue setup and
 * guest memory stay fixed in that time.  The device calls
 * virtio_dev_needs_reset() and virtio_dev_config_changed() from any thread.
 */
#ifndef SPINDLE_DATAPLANE_VIRTIO_H
#define SPINDLE_DATAPLANE_VIRTIO_H

#include "dataplane/guest-mem.h"
#include "util/osdep.h"

/* Device status bits (virtio 1.2, 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE        0x01
#define VIRTIO_STATUS_DRIVER             0x02
#define VIRTIO_STATUS_DRIVER_OK          0x04
#define VIRTIO_STATUS_FEATURES_OK        0x08
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED             0x80

/* Reserved feature bits (virtio 1.2, 6). */
#define VIRTIO_F_INDIRECT_DESC     28
#define VIRTIO_F_EVENT_IDX         29
#define VIRTIO_F_VERSION_1         32
#define VIRTIO_F_ACCESS_PLATFORM   33
#define VIRTIO_F_RING_PACKED       34
#define VIRTIO_F_IN_ORDER          35
#define VIRTIO_F_ORDER_PLATFORM    36
#define VIRTIO_F_NOTIFICATION_DATA 38

#define VIRTIO_BIT(b) (1ULL << (b))

/* Device types (virtio 1.2, 5). */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_SCSI    8

/* The largest split ring (virtio 1.2, 2.7). */
#define VIRTIO_QUEUE_SIZE_MAX 32768

struct virtio_dev;

/*
 * One virtqueue as the driver set it up.  desc/avail/used are guest-physical
 * addresses of the split ring's three parts, not yet checked against guest
 * memory: the device maps them with guest_mem_map() and refuses the start
 * (or marks itself NEEDS_RESET) if they do not fit.
 */
struct virtio_queue_setup {
    uint16_t size;           /* entries, 1..max_queue_size (not necessarily a power of 2) */
    bool enabled;            /* the driver enabled it; a disabled queue is not served */
    uint64_t desc, avail, used;
    uint16_t avail_base;     /* first avail index to serve: 0 after a reset; the device
                                stores where it stopped here in stop() (vhost-user's
                                SET/GET_VRING_BASE) */
    uint16_t vector;         /* the transport's interrupt vector; informational */
    int kick_fd;             /* eventfd the driver's notifications arrive on */
    int call_fd;             /* eventfd the device writes to interrupt the driver */
};

/*
 * What a device implements.  Every callback runs with the transport's
 * lock held (see above) and must not wait for the guest.
 */
struct virtio_dev_ops {
    const char *name;                 /* "virtio-blk", for messages */
    uint16_t device_id;               /* VIRTIO_ID_* */
    uint32_t config_size;             /* bytes of device-specific config space */
    uint16_t max_queues;              /* queues the transport exposes (num_queues) */
    uint16_t max_queue_size;          /* largest ring the device accepts */

    /* Features offered to the driver; must include VIRTIO_F_VERSION_1. */
    uint64_t (*features)(struct virtio_dev *d);

    /*
     * The driver's accepted subset, at FEATURES_OK.  0, or -EINVAL when
     * the device cannot work with that combination (FEATURES_OK then stays
     * clear).  Optional: NULL accepts any subset of features().
     */
    int (*set_features)(struct virtio_dev *d, uint64_t features);

    /*
     * Device-specific config space, [off, off+len) within config_size
     * (the transport checks the bounds; len is 1, 2, 4 or 8, or the whole
     * space for vhost-user).  Little-endian, as the spec lays it out.
     */
    void (*read_config)(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len);
    /* Optional: NULL ignores config writes. */
    void (*write_config)(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len);

    /*
     * DRIVER_OK: serve the enabled queues in d->queues.  0, or a negative
     * errno (the transport then sets DEVICE_NEEDS_RESET); on failure the
     * device serves nothing and stop() is not called.
     */
    int (*start)(struct virtio_dev *d);

    /*
     * Reset, or the VM going away: stop serving, complete or drop the
     * requests in flight, and return only once no thread of the device
     * touches guest memory or writes a call_fd any more.  May block.
     * Called only after a successful start().
     */
    void (*stop)(struct virtio_dev *d);

    /* Optional: free the device's own state (the transport is gone). */
    void (*release)(struct virtio_dev *d);
};

/*
 * The state shared by a device and its transport.  The transport fills it;
 * the device reads it (and writes only queues[i].avail_base, in stop()).
 */
struct virtio_dev {
    const struct virtio_dev_ops *ops;
    struct guest_mem *mem;            /* set by the transport before start() */
    uint64_t guest_features;          /* accepted at FEATURES_OK */
    uint8_t status;                   /* the driver's last status write */
    uint16_t num_queues;              /* == ops->max_queues */
    struct virtio_queue_setup *queues;

    /* The transport's hooks behind the two calls below. */
    void (*transport_needs_reset)(struct virtio_dev *d);
    void (*transport_config_changed)(struct virtio_dev *d);
    void *transport;
};

static inline bool virtio_has_feature(const struct virtio_dev *d, unsigned bit)
{
    return d->guest_features & VIRTIO_BIT(bit);
}

/*
 * The device found the driver breaking the rules (a bad descriptor, a ring
 * outside guest memory): the transport sets DEVICE_NEEDS_RESET and tells
 * the driver.  The device stops serving that queue on its own.  Any thread.
 */
void virtio_dev_needs_reset(struct virtio_dev *d);

/* The device-specific config space changed (capacity).  Any thread. */
void virtio_dev_config_changed(struct virtio_dev *d);

/* Interrupt the driver for queue q: one write to its call_fd.  Any thread. */
void virtio_queue_notify(const struct virtio_queue_setup *q);

#endif
