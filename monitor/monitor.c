/* Starting and stopping the monitor; see monitor.h. */
#include "monitor/monitor.h"

#include "block/backend.h"
#include "monitor/block-info.h"
#include "monitor/command.h"
#include "monitor/event.h"
#include "monitor/qmp-bitmap.h"
#include "monitor/qmp-job.h"
#include "monitor/qmp-block.h"
#include "monitor/qmp-control.h"
#include "monitor/qmp-misc.h"
#include "monitor/qmp-runstate.h"
#include "util/runstate.h"

/* The block layer's failed requests: BLOCK_IO_ERROR, and the VM stops for `stop`. */
static void block_io_error(struct block_backend *blk, enum blk_error_action action,
                           bool is_read, int error, void *opaque)
{
    mon_event_block_io_error(blk, blk_error_action_name(action), is_read, error);
    if (action == BLK_ERROR_ACTION_STOP) {
        runstate_request_stop(RUN_STATE_IO_ERROR);
    }
}

static const struct blk_error_listener io_error_listener = { .io_error = block_io_error };

void mon_init(void)
{
    mon_event_init();
    mon_event_set_sink(mon_server_broadcast, NULL);
    qmp_control_register();
    qmp_runstate_register();
    qmp_misc_register();
    qmp_block_info_register();
    qmp_block_register();
    qmp_bitmap_register();
    qmp_job_register();
    blk_set_error_listener(&io_error_listener);
}

void mon_cleanup(void)
{
    static const struct blk_error_listener none;

    mon_server_close_all();
    blk_set_error_listener(&none);
    qmp_runstate_unregister();
    mon_event_cleanup();
    mon_cmd_unregister_all();
}
