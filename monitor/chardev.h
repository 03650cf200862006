/*
 * qemu-storage-daemon's way to name a QMP socket on the command line:
 *
 *   --chardev socket,id=ID,path=PATH,server=on,wait=off
 *   --monitor [chardev=]ID[,mode=control][,pretty=on|off][,id=NAME]
 *
 * with QEMU's older spelling of the flags too ("socket,id=c,path=p,server,
 * nowait").  A chardev here is a UNIX socket server that does not wait for
 * a client; other backends, client sockets, TCP and wait=on are refused
 * with a sentence that says so, as is a monitor in readline mode.
 */
#ifndef SPINDLE_MONITOR_CHARDEV_H
#define SPINDLE_MONITOR_CHARDEV_H

#include "util/error.h"

struct mon_chardev {
    char *id;
    char *path;
};

struct mon_monitor_opts {
    char *chardev;
    bool pretty;
};

int mon_chardev_parse(const char *arg, struct mon_chardev *out, struct err *err);
void mon_chardev_free(struct mon_chardev *c);

int mon_monitor_parse(const char *arg, struct mon_monitor_opts *out, struct err *err);
void mon_monitor_opts_free(struct mon_monitor_opts *m);

/*
 * QEMU's legacy flags in an option string: a bare "server" is server=on,
 * "nowait" wait=off, "wait" wait=on ("nodelay" nodelay=on), in any element
 * but the first.  Returns a new string for opts_parse.
 */
char *mon_legacy_flags(const char *arg);

#endif
