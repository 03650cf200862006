/* spindle-sd's command line; see sd.h. */
#include "sd.h"

#include <getopt.h>

#include "block/blockdev.h"
#include "monitor/monitor.h"
#include "util/iothread.h"
#include "util/opts.h"

void sd_usage(FILE *out)
{
    fprintf(out,
            "usage: spindle-sd [options]\n"
            "The storage daemon: block nodes and the QMP monitor without a VM.\n"
            "\n"
            "  -h, --help                 print this and exit\n"
            "  -V, --version              print the version and exit\n"
            "  --blockdev OPTIONS         a node graph: driver=...,node-name=...[,...] or JSON\n"
            "  --object iothread,id=ID[,poll-max-ns=N][,poll-grow=N][,poll-shrink=N]\n"
            "  --chardev socket,id=ID,path=PATH,server=on,wait=off\n"
            "  --monitor [chardev=]ID[,mode=control][,pretty=on|off]\n"
            "  --export ...               not supported yet\n"
            "  --pidfile PATH             write the daemon's process id there\n"
            "  --daemonize                run in the background once started\n"
            "\n"
            "Options are applied in the order given.  The daemon runs until QMP quit or\n"
            "SIGINT/SIGTERM/SIGHUP, then closes every node (flushed) and exits 0; a bad\n"
            "option or a failed start prints one line and exits 1.\n");
}

static void add_opt(struct sd_config *c, enum sd_opt_kind kind, const char *arg)
{
    c->opts = xrealloc(c->opts, (c->nr_opts + 1) * sizeof(*c->opts));
    c->opts[c->nr_opts++] = (struct sd_opt){ kind, arg };
}

static int add_chardev(struct sd_config *c, const char *arg, struct err *err)
{
    struct mon_chardev cd;
    if (mon_chardev_parse(arg, &cd, err) < 0) {
        return -EINVAL;
    }
    for (size_t i = 0; i < c->nr_chardevs; i++) {
        if (!strcmp(c->chardevs[i].id, cd.id)) {
            err_set(err, "--chardev: id '%s' is used twice", cd.id);
            mon_chardev_free(&cd);
            return -EINVAL;
        }
    }
    c->chardevs = xrealloc(c->chardevs, (c->nr_chardevs + 1) * sizeof(*c->chardevs));
    c->chardevs[c->nr_chardevs++] = cd;
    return 0;
}

int sd_config_parse(struct sd_config *c, int argc, char **argv, struct err *err)
{
    enum { OPT_BLOCKDEV = 256, OPT_OBJECT, OPT_CHARDEV, OPT_MONITOR, OPT_EXPORT, OPT_NBD,
           OPT_PIDFILE, OPT_DAEMONIZE };
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "blockdev", required_argument, NULL, OPT_BLOCKDEV },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "chardev", required_argument, NULL, OPT_CHARDEV },
        { "monitor", required_argument, NULL, OPT_MONITOR },
        { "export", required_argument, NULL, OPT_EXPORT },
        { "nbd-server", required_argument, NULL, OPT_NBD },
        { "pidfile", required_argument, NULL, OPT_PIDFILE },
        { "daemonize", no_argument, NULL, OPT_DAEMONIZE },
        { NULL, 0, NULL, 0 },
    };
    int ch;

    memset(c, 0, sizeof(*c));
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "+:hV", long_opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            c->help = true;
            break;
        case 'V':
            c->version = true;
            break;
        case OPT_BLOCKDEV:
            add_opt(c, SD_OPT_BLOCKDEV, optarg);
            break;
        case OPT_OBJECT:
            add_opt(c, SD_OPT_OBJECT, optarg);
            break;
        case OPT_CHARDEV:
            if (add_chardev(c, optarg, err) < 0) {
                return -EINVAL;
            }
            break;
        case OPT_MONITOR:
            add_opt(c, SD_OPT_MONITOR, optarg);
            break;
        case OPT_EXPORT:
            err_set(err, "--export: exports are not supported yet (no NBD, FUSE or "
                    "vhost-user-blk server in this build)");
            return -ENOTSUP;
        case OPT_NBD:
            err_set(err, "--nbd-server: exports are not supported yet");
            return -ENOTSUP;
        case OPT_PIDFILE:
            c->pidfile = optarg;
            break;
        case OPT_DAEMONIZE:
            c->daemonize = true;
            break;
        case ':':
            err_set(err, "%s: requires an argument", argv[optind - 1]);
            return -EINVAL;
        default:
            err_set(err, "%s: unknown option (see --help)", argv[optind - 1]);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        err_set(err, "'%s': unexpected argument (spindle-sd takes only options)", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

void sd_config_free(struct sd_config *c)
{
    for (size_t i = 0; i < c->nr_chardevs; i++) {
        mon_chardev_free(&c->chardevs[i]);
    }
    free(c->chardevs);
    free(c->opts);
    memset(c, 0, sizeof(*c));
}

/* ---- Applying ---------------------------------------------------------- */

static int apply_object(const char *arg, struct err *err)
{
    json_t *o = opts_parse(arg, "qom-type", err);
    const char *type = NULL, *id = NULL;
    struct iothread_opts t;
    int ret = -EINVAL;

    if (!o) {
        err_prepend(err, "--object: ");
        return -EINVAL;
    }
    opts_get_str(o, "qom-type", &type, NULL);
    opts_get_str(o, "id", &id, NULL);
    iothread_opts_default(&t);
    if (!type || strcmp(type, "iothread")) {
        err_set(err, "--object: type '%s' is not supported (only iothread)", type ? type : "");
        goto out;
    }
    if (!id || !*id) {
        err_set(err, "--object iothread: property 'id' is required");
        goto out;
    }
    static const char *const known[] = { "qom-type", "id", "poll-max-ns", "poll-grow",
                                          "poll-shrink", NULL };
    if (opts_check_keys(o, known, "--object iothread", err) < 0 ||
        opts_get_int(o, "poll-max-ns", &t.poll_max_ns, err) == -EINVAL ||
        opts_get_int(o, "poll-grow", &t.poll_grow, err) == -EINVAL ||
        opts_get_int(o, "poll-shrink", &t.poll_shrink, err) == -EINVAL) {
        err_prepend(err, "--object iothread: ");
        goto out;
    }
    if (t.poll_max_ns < -1 || t.poll_grow < 0 || t.poll_shrink < 0) {
        err_set(err, "--object iothread: poll parameters must not be negative");
        goto out;
    }
    if (!iothread_create(id, &t, err)) {
        err_prepend(err, "--object: ");
        goto out;
    }
    ret = 0;
out:
    json_decref(o);
    return ret;
}

static int apply_blockdev(const char *arg, struct err *err)
{
    json_t *o = opts_parse(arg, NULL, err);
    if (!o) {
        err_prepend(err, "--blockdev: ");
        return -EINVAL;
    }
    struct block_node *bs = blockdev_add(o, err);
    json_decref(o);
    if (!bs) {
        err_prepend(err, "--blockdev: ");
        return -EINVAL;
    }
    return 0;
}

static int apply_monitor(struct sd_config *c, const char *arg, struct err *err)
{
    struct mon_monitor_opts m;
    struct mon_chardev *cd = NULL;

    if (mon_monitor_parse(arg, &m, err) < 0) {
        return -EINVAL;
    }
    for (size_t i = 0; i < c->nr_chardevs; i++) {
        if (!strcmp(c->chardevs[i].id, m.chardev)) {
            cd = &c->chardevs[i];
        }
    }
    if (!cd) {
        err_set(err, "--monitor: chardev '%s' not found (give --chardev socket,id=%s,...)",
                m.chardev, m.chardev);
        mon_monitor_opts_free(&m);
        return -ENOENT;
    }
    if (!cd->path) {
        err_set(err, "--monitor: chardev '%s' is already in use", m.chardev);
        mon_monitor_opts_free(&m);
        return -EBUSY;
    }
    struct mon_server_opts so = { .pretty = m.pretty };
    struct mon_server *s = mon_server_listen(cd->path, &so, err);
    mon_monitor_opts_free(&m);
    if (!s) {
        err_prepend(err, "--chardev %s: ", cd->id);
        return -EINVAL;
    }
    free(cd->path);        /* one monitor per chardev */
    cd->path = NULL;
    return 0;
}

int sd_apply(struct sd_config *c, const struct sd_opt *o, struct err *err)
{
    switch (o->kind) {
    case SD_OPT_OBJECT:
        return apply_object(o->arg, err);
    case SD_OPT_BLOCKDEV:
        return apply_blockdev(o->arg, err);
    case SD_OPT_MONITOR:
        return apply_monitor(c, o->arg, err);
    case SD_OPT_CHARDEV:
        break;
    }
    return 0;
}
