/* The calls a virtio device makes towards its transport; see virtio.h. */
#include "dataplane/virtio.h"

#include <unistd.h>

#include "util/log.h"

void virtio_dev_needs_reset(struct virtio_dev *d)
{
    if (d->transport_needs_reset) {
        d->transport_needs_reset(d);
    }
}

void virtio_dev_config_changed(struct virtio_dev *d)
{
    if (d->transport_config_changed) {
        d->transport_config_changed(d);
    }
}

void virtio_queue_notify(const struct virtio_queue_setup *q)
{
    uint64_t one = 1;
    if (q->call_fd < 0) {
        return;
    }
    /* EAGAIN: the counter is at its maximum, the driver is being told anyway. */
    if (write(q->call_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        log_debug("virtio: cannot signal a queue's call eventfd: %s", strerror(errno));
    }
}
