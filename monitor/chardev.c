/* --chardev and --monitor; see chardev.h. */
#include "monitor/chardev.h"

#include "util/opts.h"

char *mon_legacy_flags(const char *arg)
{
    size_t len = strlen(arg);
    char *out = xmalloc(len * 2 + 16);
    size_t n = 0;
    size_t start = 0;
    bool first = true;

    /* Elements end at a single comma; ",," is a comma inside a value. */
    for (size_t i = 0; i <= len; i++) {
        if (i < len && arg[i] == ',' && arg[i + 1] == ',') {
            i++;
            continue;
        }
        if (i < len && arg[i] != ',') {
            continue;
        }
        size_t elen = i - start;
        const char *e = arg + start;
        const char *rewrite = NULL;
        if (!first && !memchr(e, '=', elen)) {
            static const struct { const char *flag, *kv; } flags[] = {
                { "server", "server=on" }, { "nowait", "wait=off" }, { "wait", "wait=on" },
                { "nodelay", "nodelay=on" },
            };
            for (size_t f = 0; f < ARRAY_SIZE(flags); f++) {
                if (strlen(flags[f].flag) == elen && !memcmp(e, flags[f].flag, elen)) {
                    rewrite = flags[f].kv;
                }
            }
        }
        if (!first) {
            out[n++] = ',';
        }
        if (rewrite) {
            memcpy(out + n, rewrite, strlen(rewrite));
            n += strlen(rewrite);
        } else {
            memcpy(out + n, e, elen);
            n += elen;
        }
        first = false;
        start = i + 1;
    }
    out[n] = '\0';
    return out;
}

static int get_bool(json_t *o, const char *key, bool *out, const char *what, struct err *err)
{
    int ret = opts_get_bool(o, key, out, NULL);
    if (ret == -EINVAL) {
        err_set(err, "%s: '%s' must be on or off", what, key);
    }
    return ret == -ENOENT ? 0 : ret;
}

int mon_chardev_parse(const char *arg, struct mon_chardev *out, struct err *err)
{
    char *spelled = mon_legacy_flags(arg);
    json_t *o = opts_parse(spelled, "backend", err);
    const char *backend = NULL, *id = NULL, *path = NULL;
    bool server = false, wait = true;
    int ret = -EINVAL;

    free(spelled);
    memset(out, 0, sizeof(*out));
    if (!o) {
        err_prepend(err, "--chardev: ");
        return -EINVAL;
    }
    opts_get_str(o, "backend", &backend, NULL);
    opts_get_str(o, "id", &id, NULL);
    opts_get_str(o, "path", &path, NULL);
    if (!backend || strcmp(backend, "socket")) {
        err_set(err, "--chardev: backend '%s' is not supported (only socket)",
                backend ? backend : "");
        goto out;
    }
    if (!id || !*id) {
        err_set(err, "--chardev: property 'id' is required");
        goto out;
    }
    if (!path || !*path) {
        err_set(err, "--chardev %s: only UNIX sockets are supported: give path=PATH", id);
        goto out;
    }
    if (get_bool(o, "server", &server, "--chardev", err) < 0 ||
        get_bool(o, "wait", &wait, "--chardev", err) < 0) {
        goto out;
    }
    static const char *const known[] = { "backend", "id", "path", "server", "wait", "nodelay",
                                          NULL };
    if (opts_check_keys(o, known, "--chardev", err) < 0) {
        goto out;
    }
    if (!server) {
        err_set(err, "--chardev %s: only server sockets are supported: add server=on", id);
        goto out;
    }
    if (wait) {
        err_set(err, "--chardev %s: waiting for a client is not supported: add wait=off", id);
        goto out;
    }
    out->id = xstrdup(id);
    out->path = xstrdup(path);
    ret = 0;
out:
    json_decref(o);
    return ret;
}

void mon_chardev_free(struct mon_chardev *c)
{
    free(c->id);
    free(c->path);
    memset(c, 0, sizeof(*c));
}

int mon_monitor_parse(const char *arg, struct mon_monitor_opts *out, struct err *err)
{
    json_t *o = opts_parse(arg, "chardev", err);
    const char *chardev = NULL, *mode = NULL;
    int ret = -EINVAL;

    memset(out, 0, sizeof(*out));
    if (!o) {
        err_prepend(err, "--monitor: ");
        return -EINVAL;
    }
    opts_get_str(o, "chardev", &chardev, NULL);
    opts_get_str(o, "mode", &mode, NULL);
    if (!chardev || !*chardev) {
        err_set(err, "--monitor: property 'chardev' is required");
        goto out;
    }
    if (mode && strcmp(mode, "control")) {
        err_set(err, "--monitor: mode=%s is not supported (only control: QMP)", mode);
        goto out;
    }
    if (get_bool(o, "pretty", &out->pretty, "--monitor", err) < 0) {
        goto out;
    }
    static const char *const known[] = { "chardev", "mode", "pretty", "id", NULL };
    if (opts_check_keys(o, known, "--monitor", err) < 0) {
        goto out;
    }
    out->chardev = xstrdup(chardev);
    ret = 0;
out:
    json_decref(o);
    return ret;
}

void mon_monitor_opts_free(struct mon_monitor_opts *m)
{
    free(m->chardev);
    memset(m, 0, sizeof(*m));
}
