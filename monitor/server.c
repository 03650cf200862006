/* The QMP server: sockets, clients, and the order requests run in; see server.h. */
#include "monitor/server.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "monitor/command.h"
#include "monitor/json-stream.h"
#include "monitor/qmp-control.h"
#include "util/aio.h"
#include "util/list.h"
#include "util/log.h"

#define READ_CHUNK        65536
#define CLOSE_FLUSH_MS    500

struct mon_server {
    struct list_node link;
    char *path;
    int fd;
    struct aio_fd_handler *handler;
    struct mon_server_opts opts;
    unsigned nr_clients;
};

/* A request waiting to run, or a reply ready to go in its place (bad JSON). */
struct mon_request {
    struct list_node link;
    json_t *request;
    json_t *reply;
};

struct mon_client {
    struct list_node link;            /* in clients */
    struct mon_server *server;        /* NULL once the server closed */
    int fd;
    struct aio_fd_handler *handler;
    bool reading, writing;            /* what handler watches */
    bool pretty;
    bool dead;                        /* disconnected: nothing more is read or sent */
    unsigned holds;                   /* callers using it: it is freed when the last lets go */
    struct mon_session session;
    struct mon_json_stream in;
    struct list_node queue;           /* struct mon_request */
    unsigned nr_queued;
    char *out;                        /* unsent bytes: out[out_off..out_len) */
    size_t out_off, out_len, out_cap;
};

static struct list_node servers = LIST_HEAD_INIT(servers);
static struct list_node clients = LIST_HEAD_INIT(clients);
static struct aio_bh *dispatch_bh;
static bool dispatching;

static void client_update_handler(struct mon_client *c);
static void client_close(struct mon_client *c);
static void client_free(struct mon_client *c);

/*
 * A client may be disconnected (client_close) by anything that sends to it
 * or reads from it; whoever still uses the struct afterwards holds it.
 */
static void client_hold(struct mon_client *c)
{
    c->holds++;
}

static void client_release(struct mon_client *c)
{
    if (--c->holds == 0 && c->dead) {
        client_free(c);
    }
}

unsigned mon_server_nr_clients(void)
{
    unsigned n = 0;
    struct mon_client *c;
    list_for_each(c, &clients, link) {
        n += !c->dead;
    }
    return n;
}

/* ---- Output ------------------------------------------------------------ */

/* Send what we can without blocking; false if the client had to go. */
static bool client_flush(struct mon_client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            client_close(c);
            return false;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    }
    return true;
}

char *mon_message_text(json_t *msg, bool pretty, size_t *len)
{
    size_t flags = JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER | (pretty ? JSON_INDENT(4) : 0);
    char *text = json_dumps(msg, flags);
    if (!text) {
        return NULL;
    }
    size_t n = strlen(text);
    text = xrealloc(text, n + 3);
    memcpy(text + n, "\r\n", 3);
    *len = n + 2;
    return text;
}

/* Queue one message (a JSON object and CRLF) and send what the socket takes. */
static void client_send(struct mon_client *c, json_t *msg)
{
    if (c->dead) {
        return;
    }
    size_t len;
    char *text = mon_message_text(msg, c->pretty, &len);
    if (!text) {
        log_error("QMP: cannot serialise a reply");
        return;
    }
    if (c->out_len - c->out_off + len > MON_MAX_OUTPUT) {
        log_warn("QMP: a client left %zu bytes unread; disconnecting it",
                 c->out_len - c->out_off);
        free(text);
        client_close(c);
        return;
    }
    if (c->out_off > 0 && c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    }
    if (c->out_len + len > c->out_cap) {
        /* Move what is unsent to the front before growing. */
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len) {
            cap *= 2;
        }
        c->out = xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, text, len);
    c->out_len += len;
    free(text);
    if (client_flush(c)) {
        client_update_handler(c);
    }
}

void mon_server_broadcast(json_t *event, void *opaque)
{
    struct mon_client *c, *tmp;
    list_for_each_safe(c, tmp, &clients, link) {
        if (!c->dead && c->session.negotiated) {
            client_send(c, event);
        }
    }
}

/* ---- Requests ---------------------------------------------------------- */

static void queue_push(struct mon_client *c, json_t *request, json_t *reply)
{
    struct mon_request *r = xzalloc(sizeof(*r));
    r->request = request;
    r->reply = reply;
    list_add_tail(&c->queue, &r->link);
    c->nr_queued++;
}

static void request_free(struct mon_request *r)
{
    json_decref(r->request);
    json_decref(r->reply);
    free(r);
}

/* A value (or an error) from the client's input stream. */
static void got_value(void *opaque, json_t *value, const char *error)
{
    struct mon_client *c = opaque;
    if (value) {
        queue_push(c, value, NULL);
    } else {
        queue_push(c, NULL, mon_error_reply(MON_ERR_GENERIC, error, NULL));
    }
}

static struct mon_client *next_client_with_work(void)
{
    struct mon_client *c;
    list_for_each(c, &clients, link) {
        if (!c->dead && c->nr_queued) {
            return c;
        }
    }
    return NULL;
}

static void client_free(struct mon_client *c)
{
    list_del(&c->link);
    while (!list_empty(&c->queue)) {
        struct mon_request *r = list_first(&c->queue, struct mon_request, link);
        list_del(&r->link);
        request_free(r);
    }
    mon_json_stream_destroy(&c->in);
    free(c->out);
    free(c);
}

/*
 * Run one queued request, then let the loop breathe before the next: a
 * client sending requests as fast as it can must not starve the rest of
 * the main loop.
 */
static void dispatch_one(void *opaque)
{
    if (dispatching) {
        return;           /* inside a handler that runs the main loop: later */
    }
    struct mon_client *c = next_client_with_work();
    if (!c) {
        return;
    }
    struct mon_request *r = list_first(&c->queue, struct mon_request, link);
    list_del(&r->link);
    c->nr_queued--;
    /* Round robin: this client goes to the back of the line. */
    list_del(&c->link);
    list_add_tail(&clients, &c->link);

    json_t *reply = r->reply;
    r->reply = NULL;
    client_hold(c);
    if (!reply) {
        dispatching = true;
        reply = mon_dispatch(&c->session, r->request);
        dispatching = false;
    }
    request_free(r);
    client_send(c, reply);         /* nothing, if the client left meanwhile */
    json_decref(reply);
    if (!c->dead) {
        client_update_handler(c);
    }
    client_release(c);
    if (next_client_with_work()) {
        aio_bh_schedule(dispatch_bh);
    }
}

/* ---- Input ------------------------------------------------------------- */

static void client_readable(void *opaque)
{
    struct mon_client *c = opaque;
    char buf[READ_CHUNK];

    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        client_close(c);
        return;
    }
    client_hold(c);
    if (mon_json_stream_feed(&c->in, buf, (size_t)n, got_value, c) == -EMSGSIZE) {
        json_t *reply = mon_error_reply(MON_ERR_GENERIC, "JSON parse error, message too large "
                                        "(the limit is 1 MiB); disconnecting", NULL);
        client_send(c, reply);
        json_decref(reply);
        client_close(c);
    } else {
        if (c->nr_queued) {
            aio_bh_schedule(dispatch_bh);
        }
        client_update_handler(c);
    }
    client_release(c);
}

static void client_writable(void *opaque)
{
    struct mon_client *c = opaque;
    if (client_flush(c)) {
        client_update_handler(c);
    }
}

/* Watch for input while the queue has room, for output while some is unsent. */
static void client_update_handler(struct mon_client *c)
{
    bool want_read = !c->dead && c->nr_queued < MON_MAX_QUEUED;
    bool want_write = !c->dead && c->out_len > c->out_off;

    if (c->handler && want_read == c->reading && want_write == c->writing) {
        return;
    }
    aio_del_fd_handler(c->handler);
    c->handler = NULL;
    c->reading = want_read;
    c->writing = want_write;
    if (want_read || want_write) {
        c->handler = aio_set_fd_handler(aio_main_context(), c->fd,
                                        want_read ? client_readable : NULL,
                                        want_write ? client_writable : NULL, c);
    }
}

/* Disconnect: the struct lives on while someone holds it (its request runs). */
static void client_close(struct mon_client *c)
{
    if (c->dead) {
        return;
    }
    c->dead = true;
    aio_del_fd_handler(c->handler);
    c->handler = NULL;
    close(c->fd);
    c->fd = -1;
    if (c->server) {
        c->server->nr_clients--;
        c->server = NULL;
    }
    trace("qmp_client", "disconnected");
    if (c->holds == 0) {
        client_free(c);
    }
}

/* ---- Accepting --------------------------------------------------------- */

static void greet(struct mon_client *c)
{
    json_t *caps = json_array();   /* no "oob": there is no out-of-band execution */
    json_t *g = json_pack("{s:{s:o, s:o}}", "QMP", "version", qmp_version_info(),
                          "capabilities", caps);
    client_send(c, g);
    json_decref(g);
}

static void server_acceptable(void *opaque)
{
    struct mon_server *s = opaque;

    int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
            log_warn("QMP: accepting on %s failed: %s", s->path, strerror(errno));
        }
        return;
    }
    if (s->nr_clients >= MON_MAX_CLIENTS) {
        log_warn("QMP: %s already has %d clients; refusing another", s->path, MON_MAX_CLIENTS);
        close(fd);
        return;
    }
    struct mon_client *c = xzalloc(sizeof(*c));
    c->server = s;
    c->fd = fd;
    c->pretty = s->opts.pretty;
    list_init(&c->queue);
    mon_json_stream_init(&c->in, MON_MAX_REQUEST);
    list_add_tail(&clients, &c->link);
    s->nr_clients++;
    trace("qmp_client", "connected on %s", s->path);
    client_hold(c);
    greet(c);
    if (!c->dead) {
        client_update_handler(c);
    }
    client_release(c);
}

struct mon_server *mon_server_listen(const char *path, const struct mon_server_opts *o,
                                     struct err *err)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct stat st;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        err_set(err, "UNIX socket path '%s' is too long", path);
        return NULL;
    }
    pstrcpy(addr.sun_path, sizeof(addr.sun_path), path);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            err_set(err, "'%s' exists and is not a socket", path);
            return NULL;
        }
        unlink(path);      /* left behind by an earlier run */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_set_errno(err, -errno, "cannot create a socket for '%s'", path);
        return NULL;
    }
    /* Nobody but the owner may connect: the socket is created 0600. */
    mode_t old_mask = umask(0177);
    int ret = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    int bind_errno = errno;
    umask(old_mask);
    if (ret < 0) {
        err_set_errno(err, -bind_errno, "Failed to bind socket to %s", path);
        close(fd);
        return NULL;
    }
    if (chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
        err_set_errno(err, -errno, "Failed to listen on %s", path);
        close(fd);
        unlink(path);
        return NULL;
    }
    if (!dispatch_bh) {
        dispatch_bh = aio_bh_new(aio_main_context(), dispatch_one, NULL);
    }
    struct mon_server *s = xzalloc(sizeof(*s));
    s->path = xstrdup(path);
    s->fd = fd;
    if (o) {
        s->opts = *o;
    }
    s->handler = aio_set_fd_handler(aio_main_context(), fd, server_acceptable, NULL, s);
    list_add_tail(&servers, &s->link);
    return s;
}

/* Send what the server's clients have queued, for a bounded time. */
static void flush_clients(struct mon_server *s)
{
    int64_t deadline = clock_ns() + CLOSE_FLUSH_MS * 1000000LL;
    struct mon_client *c, *tmp;

    for (;;) {
        struct pollfd pfds[MON_MAX_CLIENTS];
        nfds_t n = 0;
        list_for_each_safe(c, tmp, &clients, link) {
            if (c->server == s && !c->dead && c->out_len > c->out_off && client_flush(c) &&
                c->out_len > c->out_off && n < MON_MAX_CLIENTS) {
                pfds[n++] = (struct pollfd){ .fd = c->fd, .events = POLLOUT };
            }
        }
        int64_t left = deadline - clock_ns();
        if (n == 0 || left <= 0) {
            return;
        }
        poll(pfds, n, (int)(left / 1000000) + 1);
    }
}

void mon_server_close(struct mon_server *s)
{
    struct mon_client *c, *tmp;

    if (!s) {
        return;
    }
    flush_clients(s);
    list_for_each_safe(c, tmp, &clients, link) {
        if (c->server == s) {
            client_close(c);
        }
    }
    aio_del_fd_handler(s->handler);
    close(s->fd);
    unlink(s->path);
    list_del(&s->link);
    free(s->path);
    free(s);
    if (list_empty(&servers) && list_empty(&clients) && dispatch_bh) {
        aio_bh_delete(dispatch_bh);
        dispatch_bh = NULL;
    }
}

void mon_server_close_all(void)
{
    while (!list_empty(&servers)) {
        mon_server_close(list_first(&servers, struct mon_server, link));
    }
}
