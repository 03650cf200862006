/* Commands of QEMU's misc.json that spindle has: query-iothreads. */
#ifndef SPINDLE_MONITOR_QMP_MISC_H
#define SPINDLE_MONITOR_QMP_MISC_H

void qmp_misc_register(void);

#endif
