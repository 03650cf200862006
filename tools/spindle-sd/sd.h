/*
 * spindle-sd: the storage daemon.  qemu-storage-daemon's command line;
 * runs block nodes, (later) jobs and exports, and the QMP monitor, without
 * a VM, until `quit` or SIGINT/SIGTERM/SIGHUP, then closes every node
 * flushed and exits 0.  A bad command line or a failed start: one sentence
 * on stderr and exit status 1.
 */
#ifndef SPINDLE_TOOLS_SD_H
#define SPINDLE_TOOLS_SD_H

#include <stdio.h>

#include "monitor/chardev.h"
#include "util/error.h"

/* One option of the command line, kept in order: they are applied in that order. */
enum sd_opt_kind {
    SD_OPT_BLOCKDEV,
    SD_OPT_OBJECT,
    SD_OPT_CHARDEV,
    SD_OPT_MONITOR,
};

struct sd_opt {
    enum sd_opt_kind kind;
    const char *arg;
};

struct sd_config {
    struct sd_opt *opts;
    size_t nr_opts;
    struct mon_chardev *chardevs;
    size_t nr_chardevs;
    const char *pidfile;
    bool daemonize;
    bool help, version;
};

/* Read argv; syntax only (chardevs are parsed whole here). */
int sd_config_parse(struct sd_config *c, int argc, char **argv, struct err *err);
void sd_config_free(struct sd_config *c);
void sd_usage(FILE *out);

/* Apply one --object / --blockdev / --monitor (main loop running). */
int sd_apply(struct sd_config *c, const struct sd_opt *o, struct err *err);

#endif
