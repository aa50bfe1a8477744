/* flatroute-cni client: hands a CNI request to the resident `flatroute cni serve` over a unix
 * socket and relays its answer; with no service listening, execs the Python plugin instead.
 *
 * Framing (docs/cni.md, cni/wire.py), every integer a u32 big-endian:
 *   request  = "FRC1" count { len "NAME=value" } * count  len stdin-bytes
 *   response = "FRC1" exit-code len stdout-bytes
 * The socket is FLATROUTE_CNI_SOCKET, else the compiled-in default. It connects before it
 * reads stdin, so on any socket()/connect() failure stdin is untouched and the fallback,
 * FLATROUTE_CNI_FALLBACK or flatroute-cni-py next to this binary, gets it as it came.
 * Once connected it never falls back (the service may have acted): errors become CNI code 11
 * (try again); no fallback either is code 50. Built by `flatroute cni install`.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef FLATROUTE_CNI_SOCKET
#define FLATROUTE_CNI_SOCKET "/run/flatroute/cni.sock"
#endif
#define FALLBACK_NAME "flatroute-cni-py"
#define MAX_BODY (16u << 20)   /* stdin and stdout limit, as in cni/wire.py */
#define CONNECT_TIMEOUT 5      /* seconds: a wedged service costs this, then fallback */
#define IO_TIMEOUT 300         /* seconds per send/recv: the verb may wait for the IPAM lock */

static const char MARKER[] = "flatroute-cni client";  /* uninstall looks for it */
static const char *const VARS[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS",
                                   "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"};

struct buf { unsigned char *p; size_t len, cap; };

/* The spec's error object on stdout; strerror() text holds no quote or backslash. */
static int fail(int code, const char *msg, int err)
{
    printf("{\"cniVersion\":\"1.1.0\",\"code\":%d,\"msg\":\"%s: %s\",\"details\":\"%s\"}\n",
           code, MARKER, msg, err ? strerror(err) : "");
    fflush(stdout);
    return 1;
}

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

static int set_timeout(int fd, int opt, int seconds)
{ struct timeval tv = {seconds, 0}; return setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv); }

/* No service: become the Python plugin, same argv, environment and (untouched) stdin. */
static void fallback(char **argv, int fd)
{
    static char self[4096];
    const char *path = getenv("FLATROUTE_CNI_FALLBACK");
    if (fd >= 0) close(fd);
    if (!path || !*path) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - sizeof FALLBACK_NAME - 1);
        char *slash;
        path = NULL;
        if (n > 0 && (size_t)n < sizeof self - sizeof FALLBACK_NAME - 1) {
            self[n] = '\0';
            if ((slash = strrchr(self, '/')) != NULL) {
                memcpy(slash + 1, FALLBACK_NAME, sizeof FALLBACK_NAME);
                path = self;
            }
        }
    }
    if (path) {
        argv[0] = (char *)path;
        execv(path, argv);
    }
    exit(fail(50, "neither the flatroute cni service nor the Python plugin is available",
              path ? errno : ENOENT));
}

int main(int argc, char **argv)
{
    struct sockaddr_un sa;
    struct buf req = {NULL, 0, 0}, in = {NULL, 0, 0};
    unsigned char head[12];
    const char *path = getenv("FLATROUTE_CNI_SOCKET");
    size_t i, count = 0, plen;
    int fd;

    if (argc < 1 || !argv[0]) return fail(4, "no argv[0]", EINVAL);
    if (!path || !*path) path = FLATROUTE_CNI_SOCKET;
    plen = strlen(path);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (plen >= sizeof sa.sun_path) fallback(argv, -1);
    memcpy(sa.sun_path, path, plen + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fallback(argv, -1);
    /* On AF_UNIX the send timeout bounds connect() too (a full backlog blocks it). */
    if (set_timeout(fd, SO_SNDTIMEO, CONNECT_TIMEOUT) < 0
        || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        fallback(argv, fd);

    if (set_timeout(fd, SO_SNDTIMEO, IO_TIMEOUT) < 0
        || set_timeout(fd, SO_RCVTIMEO, IO_TIMEOUT) < 0)
        return fail(11, "cannot set the socket timeouts", errno);
    for (i = 0; i < sizeof VARS / sizeof VARS[0]; i++)
        if (getenv(VARS[i])) count++;
    if (read_stdin(&in) < 0) return fail(11, "cannot read stdin", errno);
    if (put(&req, "FRC1", 4) < 0 || put_u32(&req, count) < 0)
        return fail(11, "cannot build the request", errno);
    for (i = 0; i < sizeof VARS / sizeof VARS[0]; i++) {
        const char *value = getenv(VARS[i]);
        size_t nlen = strlen(VARS[i]), vlen;
        if (!value) continue;
        vlen = strlen(value);
        if (put_u32(&req, nlen + 1 + vlen) < 0 || put(&req, VARS[i], nlen) < 0
            || put(&req, "=", 1) < 0 || put(&req, value, vlen) < 0)
            return fail(11, "cannot build the request", errno);
    }
    if (put_u32(&req, in.len) < 0 || put(&req, in.p, in.len) < 0)
        return fail(11, "cannot build the request", errno);
    if (write_all(fd, req.p, req.len, 1) < 0)
        return fail(11, "cannot send the request to the flatroute cni service", errno);

    if (read_full(fd, head, sizeof head) < 0)
        return fail(11, "no answer from the flatroute cni service", errno);
    if (memcmp(head, "FRC1", 4) != 0 || get_u32(head + 4) > 255 || get_u32(head + 8) > MAX_BODY)
        return fail(11, "malformed answer from the flatroute cni service", EPROTO);
    free(in.p);
    in.len = get_u32(head + 8);
    if (!(in.p = malloc(in.len ? in.len : 1))) return fail(11, "out of memory", ENOMEM);
    if (read_full(fd, in.p, in.len) < 0)
        return fail(11, "truncated answer from the flatroute cni service", errno);
    close(fd);
    if (write_all(1, in.p, in.len, 0) < 0) return 1;
    return (int)get_u32(head + 4);
}
