/*
 * The protocol's own commands (QEMU's control.json and query-version):
 * qmp_capabilities, query-version, query-commands.
 *
 * The version spindle reports is the QEMU release whose QMP it follows
 * (7.2.0), because clients decide what to send from that number; the
 * "package" says it is spindle.
 */
#ifndef SPINDLE_MONITOR_QMP_CONTROL_H
#define SPINDLE_MONITOR_QMP_CONTROL_H

#include <jansson.h>

#define MON_QEMU_MAJOR 7
#define MON_QEMU_MINOR 2
#define MON_QEMU_MICRO 0
#define MON_PACKAGE    "spindle 0.1"

/* {"qemu": {"major", "minor", "micro"}, "package"}: query-version, and the greeting's. */
json_t *qmp_version_info(void);

void qmp_control_register(void);

#endif
