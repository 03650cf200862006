/*
 * The run state over QMP: query-status, stop, cont, quit, and the events
 * its changes become (STOP, RESUME, SHUTDOWN with "guest" and "reason").
 *
 * When the state leaves "running" every node is drained and flushed, as
 * QEMU's vm_stop does, so a paused VM's images are consistent on disk;
 * cont resets every backend's io-status, and on resume the requests that
 * an rerror/werror=stop policy held are retried.  The machine itself (the vCPUs)
 * is paused and resumed by whoever registered with util/runstate.h.
 */
#ifndef SPINDLE_MONITOR_QMP_RUNSTATE_H
#define SPINDLE_MONITOR_QMP_RUNSTATE_H

void qmp_runstate_register(void);
/* Stop turning run state changes into events (mon_cleanup). */
void qmp_runstate_unregister(void);

#endif
