/* corpus.c — streaming training text from files, directories and JSON lines (corpus.h). */
#include "data/corpus.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/listdir.h"
#include "base/utf8.h"

/* ---- the file list -------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int push_file(corpus *c, const char *path, uint64_t size, whale_err *err) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        corpus_file *f = realloc(c->files, cap * sizeof *f);
        if (!f) return err_set(err, WHALE_E_NOMEM, "out of memory listing input files");
        c->files = f;
        c->cap = cap;
    }
    char *p = strdup(path);
    if (!p) return err_set(err, WHALE_E_NOMEM, "out of memory listing input files");
    c->files[c->n++] = (corpus_file){p, size, ends_with(path, ".jsonl") || ends_with(path, ".ndjson")};
    c->total_bytes += size;
    return 0;
}

/* Nesting deeper than this is a symlink loop, not a corpus. */
#define CORPUS_MAX_DEPTH 64

static int add_at(corpus *c, const char *path, int depth, whale_err *err) {
    struct stat st;
    if (stat(path, &st)) return err_set(err, WHALE_E_IO, "%s: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) return push_file(c, path, (uint64_t)st.st_size, err);
    if (!S_ISDIR(st.st_mode)) return err_set(err, WHALE_E_IO, "%s: not a file or directory", path);
    if (depth >= CORPUS_MAX_DEPTH) return err_set(err, WHALE_E_IO, "%s: directories nested too deep", path);
    char **names;
    size_t n;
    int rc = list_dir(path, &names, &n, err); /* name order: the same corpus, the same vocabulary */
    if (rc) return rc;
    for (size_t i = 0; i < n && !rc; i++) {
        size_t len = strlen(path) + strlen(names[i]) + 2;
        char *sub = malloc(len);
        if (!sub) {
            rc = err_set(err, WHALE_E_NOMEM, "out of memory");
            break;
        }
        snprintf(sub, len, "%s%s%s", path, ends_with(path, "/") ? "" : "/", names[i]);
        rc = add_at(c, sub, depth + 1, err);
        free(sub);
    }
    list_dir_free(names, n);
    return rc;
}

int corpus_add(corpus *c, const char *path, whale_err *err) {
    return add_at(c, path, 0, err);
}

void corpus_free(corpus *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) free(c->files[i].path);
    free(c->files);
    memset(c, 0, sizeof *c);
}

/* ---- cut points ----------------------------------------------------------------------- */

/* Unicode White_Space (what \s matches under PCRE2_UCP). */
static int is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

size_t corpus_cut_point(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t j = n; j-- > 0;) {
        if (p[j] != '\n' || j + 1 >= n) continue;
        int l = utf8_seq_len(p + j + 1, n - j - 1);
        if (l && !is_space(utf8_decode(p + j + 1, l))) return j + 1;
    }
    return 0;
}

/* Fallback cut when a span grew to CORPUS_MAX_SPAN without a cut point: before any incomplete
 * UTF-8 sequence at the end, so characters stay whole. */
static size_t forced_cut(const char *s, size_t n) {
    size_t k = n - (size_t)utf8_incomplete_tail((const unsigned char *)s, n);
    return k ? k : n;
}

/* ---- reading -------------------------------------------------------------------------- */

static int read_text(const corpus_file *f, uint64_t *done, corpus_text_fn fn, corpus_progress_fn progress, void *ctx,
                     whale_err *err) {
    FILE *fp = fopen(f->path, "rb");
    if (!fp) return err_set(err, WHALE_E_IO, "%s: %s", f->path, strerror(errno));
    size_t cap = 2 * (size_t)CORPUS_BLOCK, n = 0;
    char *buf = malloc(cap);
    int rc = 0;
    if (!buf) rc = err_set(err, WHALE_E_NOMEM, "out of memory reading %s", f->path);
    while (!rc) {
        if (cap - n < CORPUS_BLOCK) {
            char *b = realloc(buf, cap * 2);
            if (!b) {
                rc = err_set(err, WHALE_E_NOMEM, "out of memory reading %s", f->path);
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, CORPUS_BLOCK, fp);
        if (got == 0) {
            if (ferror(fp)) rc = err_set(err, WHALE_E_IO, "%s: read error", f->path);
            else if (n) rc = fn(ctx, buf, n, err); /* the rest of the file */
            break;
        }
        n += got;
        *done += got;
        if (progress) progress(ctx, *done);
        size_t cut = corpus_cut_point(buf, n);
        if (!cut && n >= CORPUS_MAX_SPAN) cut = forced_cut(buf, n);
        if (!cut) continue;
        rc = fn(ctx, buf, cut, err);
        memmove(buf, buf + cut, n - cut);
        n -= cut;
    }
    free(buf);
    fclose(fp);
    return rc;
}

static int read_jsonl(const corpus_file *f, uint64_t *done, corpus_text_fn fn, corpus_progress_fn progress, void *ctx,
                      whale_err *err) {
    FILE *fp = fopen(f->path, "rb");
    if (!fp) return err_set(err, WHALE_E_IO, "%s: %s", f->path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    uint64_t lineno = 0, since = 0;
    for (ssize_t len; !rc && (len = getline(&line, &cap, fp)) >= 0;) {
        lineno++;
        *done += (uint64_t)len;
        if ((since += (uint64_t)len) >= CORPUS_BLOCK && progress) {
            progress(ctx, *done);
            since = 0;
        }
        if ((size_t)len > CORPUS_MAX_LINE) {
            rc = err_set(err, WHALE_E_FORMAT, "%s:%llu: line longer than %u bytes", f->path,
                         (unsigned long long)lineno, CORPUS_MAX_LINE);
            break;
        }
        size_t k = (size_t)len;
        while (k && (line[k - 1] == '\n' || line[k - 1] == '\r' || line[k - 1] == ' ' || line[k - 1] == '\t')) k--;
        if (!k) continue; /* blank line */
        cJSON *o = cJSON_ParseWithLength(line, k);
        const cJSON *t = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "text") : NULL;
        if (!cJSON_IsString(t))
            rc = err_set(err, WHALE_E_FORMAT, "%s:%llu: %s", f->path, (unsigned long long)lineno,
                         !o ? "not valid JSON (each line of a .jsonl file is one object)"
                            : "no \"text\" string in this object");
        else
            rc = fn(ctx, t->valuestring, strlen(t->valuestring), err);
        cJSON_Delete(o);
    }
    if (!rc && ferror(fp)) rc = err_set(err, WHALE_E_IO, "%s: read error", f->path);
    free(line);
    fclose(fp);
    return rc;
}

int corpus_read(const corpus *c, corpus_text_fn fn, corpus_progress_fn progress, void *ctx, whale_err *err) {
    uint64_t done = 0;
    for (size_t i = 0; i < c->n; i++) {
        const corpus_file *f = &c->files[i];
        int rc = f->jsonl ? read_jsonl(f, &done, fn, progress, ctx, err) : read_text(f, &done, fn, progress, ctx, err);
        if (rc) return rc;
    }
    if (progress) progress(ctx, done);
    return 0;
}
