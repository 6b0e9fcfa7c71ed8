/* w4-floor: the C floor of W4 (many quiet streams). One epoll loop; per
 * connection: one read of the request head, the command from `command=`
 * (percent-decoded, split on spaces) posix_spawn'ed with stdout on a pipe,
 * a close-delimited SSE head; per pipe readiness one read(2) and one
 * write(2) of `data: LINE\n` lines + `\n`; at EOF an `exit` event, close.
 * Children are auto-reaped (SIGCHLD ignored). No HTTP parsing beyond that,
 * no timers, no containment: the least a server can do per line.
 *   w4-floor PORT        Build: gcc -O2 -o w4-floor contrib/w4-floor.c
 * Measure it beside the servers with contrib/w4-syscalls.sh. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;
#define MAXFD 65536
static int peer[MAXFD];      /* pipe fd -> socket fd; socket fd -> -1 */
static char buf[65536], out[65536 * 8];

static int hexv(char c) { return c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0'; }

static void on_conn(int ep, int s) {
    char req[4096];
    ssize_t n = read(s, req, sizeof req - 1);
    if (n <= 0) { close(s); return; }
    req[n] = 0;
    char *c = strstr(req, "command="), cmd[2048]; size_t k = 0;
    if (!c) { close(s); return; }
    for (c += 8; *c && *c != ' ' && *c != '&' && k < sizeof cmd - 1; c++) {
        if (*c == '%' && c[1] && c[2]) { cmd[k++] = (char)(hexv(c[1]) * 16 + hexv(c[2])); c += 2; }
        else cmd[k++] = *c == '+' ? ' ' : *c;
    }
    cmd[k] = 0;
    char *argv[64]; int a = 0;
    for (char *t = strtok(cmd, " "); t && a < 63; t = strtok(NULL, " ")) argv[a++] = t;
    argv[a] = NULL;
    int p[2];
    if (a == 0 || pipe2(p, O_CLOEXEC) != 0) { close(s); return; }
    posix_spawn_file_actions_t fa; posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0 || p[0] >= MAXFD) { close(p[0]); close(s); return; }
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    if (write(s, head, sizeof head - 1) < 0) { close(p[0]); close(s); return; }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    peer[p[0]] = s;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = p[0]};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
}

static void on_pipe(int fd) {
    int s = peer[fd];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
        static const char ex[] = "event: exit\ndata: {\"type\":\"exit\",\"code\":0}\n\n";
        (void)!write(s, ex, sizeof ex - 1);
        close(fd); close(s); return;   /* close removes fd from epoll */
    }
    size_t o = 0, i = 0;
    while (i < (size_t)n) {
        char *nl = memchr(buf + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - buf) : (size_t)n;
        memcpy(out + o, "data: ", 6); o += 6;
        memcpy(out + o, buf + i, end - i); o += end - i;
        out[o++] = '\n';
        i = end + 1;
    }
    out[o++] = '\n';
    (void)!write(s, out, o);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: w4-floor PORT\n"); return 2; }
    signal(SIGCHLD, SIG_IGN); signal(SIGPIPE, SIG_IGN);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 4096)) { perror("listen"); return 1; }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l}, evs[1024];
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 1024, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == l) {
                for (int s; (s = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0;) {
                    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    on_conn(ep, s);   /* blocking socket: one read of the head, as relay.c */
                }
            } else on_pipe(fd);
        }
    }
}
