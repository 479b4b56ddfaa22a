/* fuzz_http.c — arbitrary bytes sent as an HTTP request to `whale serve` running in this
 * process on the fuzz model (fuzz_model.h's file): the first byte picks the local-mode server or the
 * --accounts one (a fresh SQLite database), the rest goes over a loopback connection, which is
 * then half-closed. Whatever the bytes, the server must answer or close the connection without
 * crashing, leaking or hanging (libFuzzer's -timeout), and keep serving. Both servers stop when
 * the run ends, so that leaks are checked against a clean shutdown. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fuzz_model.h"
#include "service/server.h"
#include "service/store.h"

typedef struct srv {
    server_opts o;
    pthread_t th;
} srv;

static srv S[2];
static store *st;
static char db_path[64] = "/tmp/whale-fuzz-XXXXXX";
static volatile sig_atomic_t stop;

static void *serve(void *arg) {
    srv *s = arg;
    whale_err err = {0};
    if (server_run(&s->o, &stop, &err)) {
        fprintf(stderr, "fuzz_http: %s\n", err.msg);
        abort();
    }
    return NULL;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &n)) abort();
    close(fd);
    return ntohs(a.sin_port);
}

/* Send data to server i, half-close, read until the server closes (or 10 s pass). */
static void exchange(int i, const unsigned char *data, size_t size) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S[i].o.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    for (int tries = 0; connect(fd, (struct sockaddr *)&a, sizeof a); tries++) {
        if (tries == 6000) abort(); /* a minute: the server is not up (or stopped accepting) */
        usleep(10000);
    }
    for (size_t off = 0; off < size;) {
        ssize_t k = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (k <= 0) break; /* it answered early and closed: fine */
        off += (size_t)k;
    }
    shutdown(fd, SHUT_WR);
    char buf[65536];
    while (recv(fd, buf, sizeof buf, 0) > 0) {
    }
    close(fd);
}

static void finish(void) {
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(S[i].th, NULL);
    store_close(st);
    unlink(db_path);
    char wal[80];
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", db_path);
    unlink(wal);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    int fd = mkstemp(db_path);
    whale_err err = {0};
    if (fd < 0 || (close(fd), store_open(&st, db_path, &err))) {
        fprintf(stderr, "fuzz_http: %s\n", err.msg);
        abort();
    }
    const char *path = fuzz_model_path("fuzz_http");
    for (int i = 0; i < 2; i++) { /* each server loads its own: a model runs one forward at a time */
        S[i].o = (server_opts){.port = free_port(), .n_parallel = 2, .n_ctx = 64, .max_queue = 4, .n_models = 1,
                               .mp = {.n_threads = 1}, .drain_s = -1, .max_conns_per_ip = -1, .accounts = i ? st : NULL};
        S[i].o.models[0] = (models_spec){.path = path, .name = "fuzz"};
        if (pthread_create(&S[i].th, NULL, serve, &S[i])) abort();
    }
    atexit(finish);
    static const unsigned char health[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    exchange(0, health, sizeof health - 1); /* both up before the first input */
    exchange(1, health, sizeof health - 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (!size) return 0;
    exchange(data[0] & 1, data + 1, size - 1);
    return 0;
}
