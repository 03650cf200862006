/*
 * The server over real UNIX sockets, driven from this thread's main loop:
 * the greeting and a socket only its owner may use, requests split and
 * concatenated, several clients with their own state, events only after
 * negotiation, a client that leaves while its command runs, a client that
 * sends too much, a full request queue, and stale or foreign files at the
 * socket path.
 */
#include "tests/unit/harness.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "monitor/command.h"
#include "monitor/event.h"
#include "monitor/qmp-control.h"
#include "monitor/server.h"
#include "util/aio.h"

static char *path;
static struct mon_server *server;
static int slow_client_fd = -1;
static bool slow_saw_client_go;

static void client_close_fd(int fd);
static void pump(int rounds);

/*
 * The client closes its socket while this runs (the test hands over its
 * end); the command runs the main loop until the server has noticed.
 */
static json_t *cmd_slow(struct mon_session *s, json_t *args, struct mon_err *err)
{
    int64_t deadline = clock_ns() + 3000000000LL;
    if (slow_client_fd >= 0) {
        client_close_fd(slow_client_fd);
        slow_client_fd = -1;
    }
    while (mon_server_nr_clients() > 0 && clock_ns() < deadline) {
        aio_poll(aio_main_context(), false);
        usleep(1000);
    }
    slow_saw_client_go = mon_server_nr_clients() == 0;
    return json_object();
}

static json_t *cmd_emit(struct mon_session *s, json_t *args, struct mon_err *err)
{
    mon_event_emit("X_TEST", json_pack("{s:i}", "n", 1));
    return json_object();
}

static const struct mon_cmd test_cmds[] = {
    { "x-slow", cmd_slow, NULL, 0 },
    { "x-emit", cmd_emit, NULL, 0 },
};

static int setup(void)
{
    struct err err = { 0 };
    qmp_control_register();
    mon_cmd_register(test_cmds, ARRAY_SIZE(test_cmds));
    mon_event_init();
    mon_event_set_sink(mon_server_broadcast, NULL);
    path = test_tmpfile("qmp.sock");
    server = mon_server_listen(path, NULL, &err);
    if (!server) {
        printf("# %s\n", err.msg);
        return 1;
    }
    return 0;
}

static int teardown(void)
{
    mon_server_close_all();
    mon_event_cleanup();
    mon_cmd_unregister_all();
    free(path);
    /* Deleted fd handlers are freed when their cancelled polls complete. */
    pump(20);
    return 0;
}

/* Run the loop a little. */
static void pump(int rounds)
{
    for (int i = 0; i < rounds; i++) {
        aio_poll(aio_main_context(), false);
        usleep(200);
    }
}

static int client_connect(void)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    pstrcpy(a.sun_path, sizeof(a.sun_path), path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    return fd;
}

static void send_text(int fd, const char *text)
{
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = send(fd, text + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else {
            pump(1);
        }
    }
}

/*
 * The next line from the server (without CRLF) into buf, running the loop
 * while waiting; false at EOF or after 3 s.  Bytes after the line stay in
 * a per-fd carry buffer.
 */
static char carry[8][65536];
static size_t carry_len[8];

static bool read_line(int fd, char *buf, size_t size)
{
    int slot = fd % 8;
    int64_t deadline = clock_ns() + 3000000000LL;
    for (;;) {
        char *nl = memmem(carry[slot], carry_len[slot], "\r\n", 2);
        if (nl) {
            size_t n = (size_t)(nl - carry[slot]);
            snprintf(buf, size, "%.*s", (int)n, carry[slot]);
            memmove(carry[slot], nl + 2, carry_len[slot] - n - 2);
            carry_len[slot] -= n + 2;
            return true;
        }
        if (clock_ns() > deadline) {
            return false;
        }
        ssize_t r = recv(fd, carry[slot] + carry_len[slot], sizeof(carry[slot]) - carry_len[slot],
                         MSG_DONTWAIT);
        if (r == 0) {
            return false;
        }
        if (r > 0) {
            carry_len[slot] += (size_t)r;
        } else {
            pump(1);
        }
    }
}

static void client_close_fd(int fd)
{
    carry_len[fd % 8] = 0;
    close(fd);
}

/* Whether the next line starts with want. */
static bool next_is(int fd, const char *want)
{
    char line[4096];
    if (!read_line(fd, line, sizeof(line))) {
        printf("# no line (wanted %s)\n", want);
        return false;
    }
    if (strncmp(line, want, strlen(want))) {
        printf("# got  %s\n# want %s\n", line, want);
        return false;
    }
    return true;
}

static int negotiated_client(void)
{
    int fd = client_connect();
    CU_ASSERT(next_is(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7"));
    send_text(fd, "{\"execute\": \"qmp_capabilities\"}\n");
    CU_ASSERT(next_is(fd, "{\"return\": {}}"));
    return fd;
}

static void test_greeting_and_mode(void)
{
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
    CU_ASSERT_TRUE(S_ISSOCK(st.st_mode));
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    int fd = client_connect();
    CU_ASSERT(next_is(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7, \"minor\": 2, "
                          "\"micro\": 0}, \"package\": \"" MON_PACKAGE "\"}, "
                          "\"capabilities\": []}}"));
    client_close_fd(fd);
}

static void test_framing(void)
{
    int fd = negotiated_client();
    /* One request in three pieces, then two in one piece, then one without a newline. */
    send_text(fd, "{\"exec");
    pump(5);
    send_text(fd, "ute\": \"query-");
    pump(5);
    send_text(fd, "version\", \"id\": 1}\r\n");
    CU_ASSERT(next_is(fd, "{\"return\": {\"qemu\""));
    send_text(fd, "{\"execute\":\"query-version\",\"id\":2}{\"execute\":\"nope\",\"id\":3}");
    CU_ASSERT(next_is(fd, "{\"return\": {\"qemu\""));
    CU_ASSERT(next_is(fd, "{\"error\": {\"class\": \"CommandNotFound\""));
    /* Bad JSON gets its error in order, and the connection goes on. */
    send_text(fd, "{\"execute\": }\n{\"execute\":\"query-version\",\"id\":4}\n");
    CU_ASSERT(next_is(fd, "{\"error\": {\"class\": \"GenericError\", "
                          "\"desc\": \"JSON parse error"));
    CU_ASSERT(next_is(fd, "{\"return\": {\"qemu\""));
    client_close_fd(fd);
}

static void test_clients_apart(void)
{
    int a = negotiated_client();
    int b = client_connect();
    CU_ASSERT(next_is(b, "{\"QMP\""));
    /* b has not negotiated: its commands are refused and it hears no events. */
    send_text(b, "{\"execute\": \"query-version\"}\n");
    CU_ASSERT(next_is(b, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting"));
    send_text(a, "{\"execute\": \"x-emit\"}\n");
    CU_ASSERT(next_is(a, "{\"timestamp\": {\"seconds\": "));
    CU_ASSERT(next_is(a, "{\"return\": {}}"));
    send_text(b, "{\"execute\": \"qmp_capabilities\"}\n");
    CU_ASSERT(next_is(b, "{\"return\": {}}"));
    send_text(b, "{\"execute\": \"x-emit\"}\n");
    CU_ASSERT(next_is(b, "{\"timestamp\""));
    CU_ASSERT(next_is(b, "{\"return\": {}}"));
    CU_ASSERT(next_is(a, "{\"timestamp\""));
    CU_ASSERT_EQUAL(mon_server_nr_clients(), 2);
    client_close_fd(a);
    client_close_fd(b);
    pump(20);
    CU_ASSERT_EQUAL(mon_server_nr_clients(), 0);
}

static void test_leave_mid_command(void)
{
    int fd = negotiated_client();
    slow_client_fd = fd;
    send_text(fd, "{\"execute\": \"x-slow\"}\n");
    for (int i = 0; i < 1000 && slow_client_fd >= 0; i++) {
        pump(1);
    }
    /* The reply had nowhere to go; the server dropped it and the client. */
    CU_ASSERT_EQUAL(slow_client_fd, -1);
    CU_ASSERT_TRUE(slow_saw_client_go);
    pump(10);
    CU_ASSERT_EQUAL(mon_server_nr_clients(), 0);
    int again = negotiated_client();
    send_text(again, "{\"execute\": \"query-version\"}\n");
    CU_ASSERT(next_is(again, "{\"return\""));
    client_close_fd(again);
    pump(10);
}

static void test_too_much_input(void)
{
    int fd = negotiated_client();
    char *junk = xmalloc(64 * 1024 + 1);
    memset(junk, ' ', 64 * 1024);
    junk[0] = '[';
    junk[64 * 1024] = '\0';
    for (int i = 0; i < 24 && mon_server_nr_clients() > 0; i++) {
        send_text(fd, junk);      /* an array that never ends */
        pump(2);
    }
    free(junk);
    CU_ASSERT(next_is(fd, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, "
                          "message too large"));
    char line[256];
    CU_ASSERT_FALSE(read_line(fd, line, sizeof(line)));     /* then EOF */
    CU_ASSERT_EQUAL(mon_server_nr_clients(), 0);
    client_close_fd(fd);
}

static void test_full_queue(void)
{
    int fd = negotiated_client();
    char req[64 * 40] = "";
    for (int i = 0; i < 40; i++) {
        char one[64];
        snprintf(one, sizeof(one), "{\"execute\":\"query-commands\",\"id\":%d}", i);
        strcat(req, one);
    }
    send_text(fd, req);
    /* Every reply, in order, although at most MON_MAX_QUEUED wait at a time. */
    for (int i = 0; i < 40; i++) {
        char line[4096], want[32];
        CU_ASSERT_FATAL(read_line(fd, line, sizeof(line)));
        snprintf(want, sizeof(want), "\"id\": %d}", i);
        CU_ASSERT_PTR_NOT_NULL(strstr(line, want));
    }
    client_close_fd(fd);
    pump(10);
}

static void test_socket_path(void)
{
    struct err err = { 0 };
    char *stale = test_tmpfile("stale.sock");
    char *plain = test_tmpfile("plain");
    /* A socket nobody listens on any more is replaced. */
    struct mon_server *s = mon_server_listen(stale, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    int fd = open(stale, O_RDONLY);      /* sockets cannot be opened: just check it exists */
    CU_ASSERT(fd < 0 && errno == ENXIO);
    int copy = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    pstrcpy(a.sun_path, sizeof(a.sun_path), stale);
    mon_server_close(s);
    CU_ASSERT_NOT_EQUAL(access(stale, F_OK), 0);           /* removed on close */
    CU_ASSERT_EQUAL(bind(copy, (struct sockaddr *)&a, sizeof(a)), 0);   /* stale now */
    close(copy);
    s = mon_server_listen(stale, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL(s);
    mon_server_close(s);
    /* Any other file is left alone. */
    FILE *f = fopen(plain, "w");
    fclose(f);
    CU_ASSERT_PTR_NULL(mon_server_listen(plain, NULL, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "exists and is not a socket"));
    CU_ASSERT_EQUAL(access(plain, F_OK), 0);
    free(stale);
    free(plain);
}

void test_register(void)
{
    CU_pSuite s = CU_add_suite("monitor_server", setup, teardown);
    CU_add_test(s, "greeting_and_mode", test_greeting_and_mode);
    CU_add_test(s, "framing", test_framing);
    CU_add_test(s, "clients_apart", test_clients_apart);
    CU_add_test(s, "leave_mid_command", test_leave_mid_command);
    CU_add_test(s, "too_much_input", test_too_much_input);
    CU_add_test(s, "full_queue", test_full_queue);
    CU_add_test(s, "socket_path", test_socket_path);
}
