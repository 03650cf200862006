/*
 * The QMP server: UNIX sockets, their clients, and the order in which the
 * clients' requests run.  Everything runs on the main thread's event loop
 * (fd handlers on non-blocking sockets); nothing here blocks except the
 * short flush when a server closes.
 *
 * Each client has its own input stream (monitor/json-stream.h), protocol
 * state (struct mon_session), queue of requests and output buffer.  On
 * connect it gets the greeting; it then talks QMP (command.h).  Requests
 * of all clients run one at a time, in turn (a bottom half takes one
 * request per run), so a handler that runs the main loop never sees another
 * command start.  Limits keep one client from hurting the rest:
 *   - a JSON value larger than MON_MAX_REQUEST bytes: the client is sent an
 *     error and disconnected;
 *   - at most MON_MAX_QUEUED requests wait per client; beyond that its
 *     socket is not read until they have run;
 *   - a client that leaves more than MON_MAX_OUTPUT bytes unread is
 *     disconnected;
 *   - at most MON_MAX_CLIENTS clients per server; more are refused.
 * A client that disconnects while its command runs loses the reply and
 * nothing else.
 */
#ifndef SPINDLE_MONITOR_SERVER_H
#define SPINDLE_MONITOR_SERVER_H

#include <jansson.h>

#include "util/error.h"

#define MON_MAX_REQUEST   (1 << 20)
#define MON_MAX_QUEUED    8
#define MON_MAX_OUTPUT    (16 << 20)
#define MON_MAX_CLIENTS   64

struct mon_server;

struct mon_server_opts {
    bool pretty;               /* replies and events indented (--monitor ...,pretty=on) */
};

/*
 * Listen for QMP clients on a UNIX socket at path, created with mode 0600.
 * A stale socket at path is replaced; any other file there is an error.
 * o may be NULL.  Main thread.
 */
struct mon_server *mon_server_listen(const char *path, const struct mon_server_opts *o,
                                     struct err *err);

/*
 * Stop listening and remove the socket; send what the clients still have
 * queued (waiting up to about half a second in all), then disconnect them.
 */
void mon_server_close(struct mon_server *s);
void mon_server_close_all(void);

/* How many clients are connected (all servers), for tests. */
unsigned mon_server_nr_clients(void);

/*
 * A message as it goes on the wire: ASCII JSON (", " and ": " between
 * items, as QEMU writes them; indented by 4 when pretty) and CRLF.  The
 * caller frees it; *len is its length.
 */
char *mon_message_text(json_t *msg, bool pretty, size_t *len);

/* Send an event to every negotiated client (the event sink). */
void mon_server_broadcast(json_t *event, void *opaque);

#endif
