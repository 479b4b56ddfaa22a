/* shards.c — the shard writer (shards.h). Ids are buffered and written in blocks; a checkpoint
 * (shard_set_sync) writes and fsyncs, and a resumed run cuts each shard back to the length its
 * checkpoint recorded, dropping whatever a killed run wrote after it. */
#include "data/shards.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"

char *shard_set_path(const shard_set *s, int64_t i) {
    size_t n = strlen(s->dir) + strlen(s->prefix) + 32;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s-%06lld.bin", s->dir, s->prefix, (long long)i);
    return p;
}

static int flush_buf(shard_set *s, whale_err *err) {
    size_t off = 0;
    while (off < s->n_buf) {
        ssize_t w = write(s->fd, s->buf + off, s->n_buf - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            char *p = shard_set_path(s, s->n_shards - 1);
            err_set(err, WHALE_E_IO, "%s: %s", p ? p : s->prefix, strerror(errno));
            free(p);
            return WHALE_E_IO;
        }
        off += (size_t)w;
    }
    s->n_buf = 0;
    return 0;
}

static int push_shard(shard_set *s, int64_t tokens) {
    if (s->n_shards == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 16;
        int64_t *t = realloc(s->tokens, (size_t)cap * sizeof *t);
        if (!t) return WHALE_E_NOMEM;
        s->tokens = t;
        s->cap = cap;
    }
    s->tokens[s->n_shards++] = tokens;
    return 0;
}

/* Open shard i for writing at `tokens` ids: created empty (fresh) or cut back (resume). */
static int open_shard(shard_set *s, int64_t i, int64_t tokens, int fresh, whale_err *err) {
    char *p = shard_set_path(s, i);
    if (!p) return err_set(err, WHALE_E_NOMEM, "out of memory");
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : 0), 0644);
    struct stat st;
    int rc = 0;
    if (fd < 0) {
        rc = err_set(err, WHALE_E_IO, "%s: %s", p, strerror(errno));
    } else if (fstat(fd, &st) || st.st_size < (off_t)tokens * 4) {
        rc = err_set(err, WHALE_E_FORMAT,
                     "%s: shorter than the checkpoint says (%lld of %lld tokens): cannot resume", p,
                     (long long)(st.st_size / 4), (long long)tokens);
    } else if (ftruncate(fd, (off_t)tokens * 4) || lseek(fd, (off_t)tokens * 4, SEEK_SET) < 0) {
        rc = err_set(err, WHALE_E_IO, "%s: %s", p, strerror(errno));
    }
    free(p);
    if (rc) {
        if (fd >= 0) close(fd);
        return rc;
    }
    if (s->fd >= 0) close(s->fd);
    s->fd = fd;
    return 0;
}

/* Remove <prefix>-NNNNNN.bin from index `from` on, as long as they exist. */
static void remove_after(shard_set *s, int64_t from) {
    for (int64_t i = from;; i++) {
        char *p = shard_set_path(s, i);
        int gone = !p || unlink(p) != 0;
        free(p);
        if (gone) break;
    }
}

int shard_set_open(shard_set *s, const char *dir, const char *prefix, int64_t shard_tokens,
                   const int64_t *resume_tokens, int64_t n_resume, whale_err *err) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->shard_tokens = shard_tokens > 0 ? shard_tokens : 1;
    s->dir = strdup(dir);
    s->prefix = strdup(prefix);
    s->buf = malloc((size_t)SHARD_BUF_TOKENS * 4);
    if (!s->dir || !s->prefix || !s->buf) {
        shard_set_close(s);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    int rc = 0;
    if (n_resume == 0) {
        rc = push_shard(s, 0);
        if (!rc) rc = open_shard(s, 0, 0, 1, err);
    } else {
        for (int64_t i = 0; i < n_resume && !rc; i++) rc = push_shard(s, resume_tokens[i]);
        /* every earlier shard is complete; check it and cut off anything written after */
        for (int64_t i = 0; i < n_resume && !rc; i++)
            rc = open_shard(s, i, resume_tokens[i], 0, err);
    }
    if (rc == WHALE_E_NOMEM) err_set(err, rc, "out of memory");
    if (rc) {
        shard_set_close(s);
        return rc;
    }
    remove_after(s, s->n_shards);
    return 0;
}

int shard_set_add(shard_set *s, const int32_t *ids, size_t n, uint32_t eot, whale_err *err) {
    int64_t cur = s->tokens[s->n_shards - 1];
    if (cur > 0 && cur + (int64_t)n + 1 > s->shard_tokens) { /* the document goes to a new shard */
        if (flush_buf(s, err)) return WHALE_E_IO;
        if (push_shard(s, 0)) return err_set(err, WHALE_E_NOMEM, "out of memory");
        int rc = open_shard(s, s->n_shards - 1, 0, 1, err);
        if (rc) return rc;
    }
    for (size_t i = 0; i <= n; i++) {
        uint32_t v = i < n ? (uint32_t)ids[i] : eot;
        if (s->n_buf == (size_t)SHARD_BUF_TOKENS * 4 && flush_buf(s, err)) return WHALE_E_IO;
        uint8_t *b = s->buf + s->n_buf;
        b[0] = (uint8_t)v, b[1] = (uint8_t)(v >> 8), b[2] = (uint8_t)(v >> 16),
        b[3] = (uint8_t)(v >> 24);
        s->n_buf += 4;
    }
    s->tokens[s->n_shards - 1] += (int64_t)n + 1;
    return 0;
}

int shard_set_sync(shard_set *s, whale_err *err) {
    if (flush_buf(s, err)) return WHALE_E_IO;
    if (fsync(s->fd)) {
        char *p = shard_set_path(s, s->n_shards - 1);
        err_set(err, WHALE_E_IO, "%s: %s", p ? p : s->prefix, strerror(errno));
        free(p);
        return WHALE_E_IO;
    }
    return 0;
}

int64_t shard_set_total(const shard_set *s) {
    int64_t t = 0;
    for (int64_t i = 0; i < s->n_shards; i++) t += s->tokens[i];
    return t;
}

void shard_set_close(shard_set *s) {
    if (s->dir && s->fd >= 0) { /* a zeroed set has fd 0 but no dir */
        if (s->buf && s->n_buf) flush_buf(s, NULL);
        close(s->fd);
    }
    free(s->dir);
    free(s->prefix);
    free(s->buf);
    free(s->tokens);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}
