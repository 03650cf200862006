/* QMP's job commands and events (monitor/qmp-job.c). */
#ifndef SPINDLE_MONITOR_QMP_JOB_H
#define SPINDLE_MONITOR_QMP_JOB_H

void qmp_job_register(void);

#endif
