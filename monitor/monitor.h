/*
 * The monitor, as programs use it: start it, point it at sockets, stop it.
 *
 *     mon_init();                                  commands, events, listeners
 *     mon_server_listen("/run/x.sock", NULL, &err);   any number of sockets
 *     ... run the main loop ...
 *     mon_cleanup();                               flush, disconnect, forget
 *
 * mon_init also makes the monitor the block layer's error listener
 * (BLOCK_IO_ERROR, and a stop of the VM for the `stop` policy) and a
 * run-state notifier (STOP, RESUME, SHUTDOWN), so programs call it even
 * without a socket.
 *
 * The parts: json-stream (framing), schema (argument checks), command (the
 * table, dispatch), event (events), server (sockets and clients), and the
 * command groups qmp-control, qmp-runstate, qmp-misc, block-info,
 * qmp-block, qmp-bitmap.  See README.md for how a job module adds its
 * commands and events.
 */
#ifndef SPINDLE_MONITOR_MONITOR_H
#define SPINDLE_MONITOR_MONITOR_H

#include "monitor/server.h"

/* Main thread, once, after aio_main_init. */
void mon_init(void);
/* Close every server and client (after a last flush) and unregister everything. */
void mon_cleanup(void);

#endif
