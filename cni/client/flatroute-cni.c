/* flatroute-cni client: hands a CNI request to the resident `flatroute cni serve` over a unix
 * socket and relays its answer. Statically linked by `flatroute cni install`: it needs nothing
 * from the host's userland (no Python, no shared libraries).
 *
 * Framing (docs/cni.md, cni/wire.py), every integer a u32 big-endian:
 *   request  = "FRC1" count { len "NAME=value" } * count  len stdin-bytes
 *   response = "FRC1" exit-code len stdout-bytes
 * The socket is FLATROUTE_CNI_SOCKET, else the compiled-in default.
 * With no service listening (socket()/connect() fails):
 *   ADD, CHECK, GC and anything else: CNI error 11, try again later;
 *   STATUS: error 50, not available;
 *   DEL: the request frame is written to the deletion queue (FLATROUTE_CNI_DELETE_QUEUE, else
 *        the compiled-in directory) and DEL succeeds; the service runs it when it is back;
 *   VERSION: answered here, from the compiled-in list (the plugin's SUPPORTED_VERSIONS).
 * Once connected it never gives up silently (the service may have acted): a failure is 11.
 */
#define _GNU_SOURCE  /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef FLATROUTE_CNI_SOCKET
#define FLATROUTE_CNI_SOCKET "/run/flatroute/cni.sock"
#endif
#ifndef FLATROUTE_CNI_DELETE_QUEUE
#define FLATROUTE_CNI_DELETE_QUEUE "/var/lib/cni/flatroute-delete-queue"
#endif
#ifndef FLATROUTE_CNI_VERSIONS   /* install passes cni.config.SUPPORTED_VERSIONS */
#define FLATROUTE_CNI_VERSIONS "\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\""
#endif
#define MAX_BODY (16u << 20)   /* stdin and stdout limit, as in cni/wire.py */
#define CONNECT_TIMEOUT 5      /* seconds: a wedged service costs this, then "not running" */
#define IO_TIMEOUT 300         /* seconds per send/recv: the verb may wait for the IPAM lock */

static const char MARKER[] = "flatroute-cni client";  /* uninstall looks for it */
static const char *const VARS[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS",
                                   "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"};

struct buf { unsigned char *p; size_t len, cap; };

/* A JSON string body: quote, backslash and control characters escaped. */
static void json_text(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
}

/* The spec's error object on stdout, exit status 1. */
static int fail_at(int code, const char *msg, const char *where, int err)
{
    printf("{\"cniVersion\":\"1.1.0\",\"code\":%d,\"msg\":\"%s: ", code, MARKER);
    json_text(msg);
    if (where) { printf(" ("); json_text(where); printf(")"); }
    printf("\",\"details\":\"");
    json_text(err ? strerror(err) : "");
    printf("\"}\n");
    fflush(stdout);
    return 1;
}

static int fail(int code, const char *msg, int err) { return fail_at(code, msg, NULL, err); }

static int put(struct buf *b, const void *data, size_t n)
{
    if (n > 2 * MAX_BODY || b->len > 2 * MAX_BODY) { errno = E2BIG; return -1; }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) { errno = ENOMEM; return -1; }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int put_u32(struct buf *b, size_t v)
{
    unsigned char be[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v};
    if (v > UINT32_MAX) { errno = E2BIG; return -1; }
    return put(b, be, 4);
}

static uint32_t get_u32(const unsigned char *p)
{ return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3]; }

/* All of it, across partial writes and EINTR; MSG_NOSIGNAL: a closed peer is EPIPE. */
static int write_all(int fd, const unsigned char *p, size_t n, int sock)
{
    while (n > 0) {
        ssize_t w = sock ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { if (w == 0) errno = EIO; return -1; }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Exactly n bytes; an early EOF is ECONNRESET, a timeout EAGAIN. */
static int read_full(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { if (r == 0) errno = ECONNRESET; return -1; }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int read_stdin(struct buf *b)
{
    unsigned char chunk[65536];
    for (;;) {
        ssize_t r = read(0, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return 0;
        if (b->len + (size_t)r > MAX_BODY) { errno = EFBIG; return -1; }
        if (put(b, chunk, (size_t)r) < 0) return -1;
    }
}

/* The request frame: the CNI_* variables that are set, then stdin. */
static int build_request(struct buf *req, const struct buf *in)
{
    size_t i, count = 0;
    for (i = 0; i < sizeof VARS / sizeof VARS[0]; i++)
        if (getenv(VARS[i])) count++;
    if (put(req, "FRC1", 4) < 0 || put_u32(req, count) < 0) return -1;
    for (i = 0; i < sizeof VARS / sizeof VARS[0]; i++) {
        const char *value = getenv(VARS[i]);
        size_t nlen = strlen(VARS[i]), vlen;
        if (!value) continue;
        vlen = strlen(value);
        if (put_u32(req, nlen + 1 + vlen) < 0 || put(req, VARS[i], nlen) < 0
            || put(req, "=", 1) < 0 || put(req, value, vlen) < 0)
            return -1;
    }
    return put_u32(req, in->len) < 0 || put(req, in->p, in->len) < 0 ? -1 : 0;
}

static int set_timeout(int fd, int opt, int seconds)
{ struct timeval tv = {seconds, 0}; return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv); }

/* A connected socket to the service, or -1 with errno set. */
static int connect_service(const char *path)
{
    struct sockaddr_un sa;
    size_t plen = strlen(path);
    int fd, err;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (plen >= sizeof sa.sun_path) { errno = ENAMETOOLONG; return -1; }
    memcpy(sa.sun_path, path, plen + 1);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) return -1;
    /* On AF_UNIX the send timeout bounds connect() too (a full backlog blocks it). */
    if (set_timeout(fd, SO_SNDTIMEO, CONNECT_TIMEOUT) == 0
        && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

/* mkdir -p, mode 0700 for what it creates. */
static int make_dirs(const char *dir)
{
    char path[4096];
    size_t i, n = strlen(dir);
    if (n == 0 || n >= sizeof path) { errno = ENAMETOOLONG; return -1; }
    memcpy(path, dir, n + 1);
    for (i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        path[i] = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST) return -1;
        path[i] = i < n ? '/' : '\0';
    }
    return 0;
}

/* DEL with no service: the request frame, written whole and synced, then renamed to
 * <seconds>.<nanoseconds>-<pid>.del so the service never sees half an entry. */
static int queue_delete(const char *dir, const struct buf *req)
{
    char tmp[4096], final[4096];
    struct timespec ts;
    int fd, n, m;
    clock_gettime(CLOCK_REALTIME, &ts);
    n = snprintf(tmp, sizeof tmp, "%s/.tmp-%ld.%09ld-%ld", dir, (long)ts.tv_sec,
                 ts.tv_nsec, (long)getpid());
    m = snprintf(final, sizeof final, "%s/%012ld.%09ld-%ld.del", dir, (long)ts.tv_sec,
                 ts.tv_nsec, (long)getpid());
    if (n < 0 || m < 0 || (size_t)n >= sizeof tmp || (size_t)m >= sizeof final) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (make_dirs(dir) < 0) return -1;
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) return -1;
    if (write_all(fd, req->p, req->len, 0) < 0 || fsync(fd) < 0) {
        int err = errno;
        close(fd);
        unlink(tmp);
        errno = err;
        return -1;
    }
    if (close(fd) < 0 || rename(tmp, final) < 0) {
        int err = errno;
        unlink(tmp);
        errno = err;
        return -1;
    }
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {  /* the rename, durable */
        fsync(fd);
        close(fd);
    }
    return 0;
}

/* VERSION's reply is in the version asked for, if we support it (as the plugin answers):
 * the value of the first "cniVersion" key, compared with the compiled-in list. */
static const char *asked_version(const struct buf *in)
{
    static char asked[16];
    static const char key[] = "\"cniVersion\"";
    const char *p = in->p ? memmem(in->p, in->len, key, sizeof key - 1) : NULL;
    const char *end = in->p ? (const char *)in->p + in->len : NULL;
    size_t n = 0;
    if (!p) return "1.1.0";
    for (p += sizeof key - 1; p < end && (*p == ' ' || *p == ':' || *p == '\t'); p++) {}
    if (p >= end || *p++ != '"') return "1.1.0";
    while (p + n < end && p[n] != '"' && n < sizeof asked - 3) n++;
    asked[0] = '"';
    memcpy(asked + 1, p, n);
    asked[n + 1] = '"';
    asked[n + 2] = '\0';
    if (p + n >= end || p[n] != '"' || !strstr(FLATROUTE_CNI_VERSIONS, asked)) return "1.1.0";
    asked[n + 1] = '\0';
    return asked + 1;
}

/* No service listening: what each verb does without it (see the top of this file). */
static int service_down(const char *command, const char *path, const struct buf *req,
                        const struct buf *in, int err)
{
    const char *queue = getenv("FLATROUTE_CNI_DELETE_QUEUE");
    if (!queue || !*queue) queue = FLATROUTE_CNI_DELETE_QUEUE;
    if (strcmp(command, "VERSION") == 0) {
        printf("{\"cniVersion\":\"%s\",\"supportedVersions\":[%s]}\n", asked_version(in),
               FLATROUTE_CNI_VERSIONS);
        fflush(stdout);
        return 0;
    }
    if (strcmp(command, "DEL") == 0) {
        if (queue_delete(queue, req) < 0)
            return fail_at(11, "the flatroute cni service is not running and the deletion "
                           "could not be queued: try again later", queue, errno);
        return 0;
    }
    if (strcmp(command, "STATUS") == 0)
        return fail_at(50, "the flatroute cni service is not running", path, err);
    return fail_at(11, "the flatroute cni service is not running: try again later", path, err);
}

int main(int argc, char **argv)
{
    struct buf req = {NULL, 0, 0}, in = {NULL, 0, 0};
    unsigned char head[12];
    const char *path = getenv("FLATROUTE_CNI_SOCKET");
    const char *command = getenv("CNI_COMMAND");
    int fd;

    if (argc < 1 || !argv[0]) return fail(4, "no argv[0]", EINVAL);
    if (!path || !*path) path = FLATROUTE_CNI_SOCKET;
    if (!command) command = "";
    if (read_stdin(&in) < 0) return fail(11, "cannot read stdin", errno);
    if (build_request(&req, &in) < 0) return fail(11, "cannot build the request", errno);
    if ((fd = connect_service(path)) < 0) return service_down(command, path, &req, &in, errno);
    free(in.p);
    in.p = NULL;

    if (set_timeout(fd, SO_SNDTIMEO, IO_TIMEOUT) < 0
        || set_timeout(fd, SO_RCVTIMEO, IO_TIMEOUT) < 0)
        return fail(11, "cannot set the socket timeouts", errno);
    if (write_all(fd, req.p, req.len, 1) < 0)
        return fail(11, "cannot send the request to the flatroute cni service", errno);

    if (read_full(fd, head, sizeof head) < 0)
        return fail(11, "no answer from the flatroute cni service", errno);
    if (memcmp(head, "FRC1", 4) != 0 || get_u32(head + 4) > 255 || get_u32(head + 8) > MAX_BODY)
        return fail(11, "malformed answer from the flatroute cni service", EPROTO);
    in.len = get_u32(head + 8);
    if (!(in.p = malloc(in.len ? in.len : 1))) return fail(11, "out of memory", ENOMEM);
    if (read_full(fd, in.p, in.len) < 0)
        return fail(11, "truncated answer from the flatroute cni service", errno);
    close(fd);
    if (write_all(1, in.p, in.len, 0) < 0) return 1;
    return (int)get_u32(head + 4);
}
