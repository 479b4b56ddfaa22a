/* prepare.c — the `whale data prepare` run (prepare.h): the input list, the per-document
 * pipeline, checkpoints (state.json) and manifest.json.
 *
 * Files in DIR while a run is under way: train-NNNNNN.bin, val-NNNNNN.bin (the shards),
 * dedup-exact.log and dedup-minhash.log (the dedup sets' logs, dedup.h), state.json (the last
 * checkpoint: the manifest so far plus where to go on). When the run ends, manifest.json is
 * written and the logs and state.json are removed; a later run with the same settings finds the
 * manifest and does nothing. */
#include "data/prepare.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/listdir.h"
#include "base/strbuf.h"
#include "base/threadpool.h"
#include "base/utf8.h"
#include "data/dedup.h"
#include "data/docs.h"
#include "data/shards.h"
#include "formats/json_file.h"
#include "tokenizer/tokenizer.h"

#define PREP_STATE_MAX (256u << 20) /* state.json holds counts and shard lengths: far below this   \
                                     */
#define PREP_DIR_DEPTH     64       /* nested input directories followed (a link loop must end) */
#define PREP_PROGRESS_STEP (256 << 10)
#define PREP_BATCH_BYTES   (4u << 20) /* text per batch: enough work to share among threads */
#define PREP_BATCH_DOCS    1024

static const char *const reason_names[PREP_N] = {
    "kept",  "malformed_jsonl", "too_large",      "invalid_utf8",
    "empty", "exact_duplicate", "near_duplicate",
    /* quality rules follow, named by quality_rule_name */
};

const char *prep_reason_name(int r) {
    if (r >= PREP_QUALITY && r < PREP_N) return quality_rule_name(r - PREP_QUALITY + 1);
    return r >= 0 && r < PREP_QUALITY ? reason_names[r] : "?";
}

void prepare_opts_default(prepare_opts *o) {
    memset(o, 0, sizeof *o);
    o->val_fraction = 0.005;
    o->filter = 1;
    o->near_threshold = 0.8;
    o->shard_tokens = 50000000;
    o->checkpoint_bytes = 64 << 20;
    quality_rules_default(&o->rules);
}

typedef struct in_file {
    char *path;
    int jsonl;
    int64_t bytes, documents, kept;
} in_file;

typedef struct prep {
    const prepare_opts *o;
    prepare_report *rep;
    in_file *files;
    int64_t n_files, cap_files;
    char *out_real;             /* DIR's real path: never read as input */
    int64_t file, offset, line; /* where reading stands (the resume point) */
    int64_t bytes_before;       /* bytes of the files before `file` */
    shard_set train, val;
    exact_set *exact;
    lsh_index *near;
    int32_t eot;
    int64_t notes[PREP_N];
    char *fingerprint;
} prep;

static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", a, n > 2 && a[strlen(a) - 1] == '/' ? "" : "/", b);
    return p;
}

static void note(prep *p, int reason, const char *fmt, ...) WHALE_PRINTF(3, 4);
static void note(prep *p, int reason, const char *fmt, ...) {
    if (reason >= 0 && p->notes[reason]++ >= PREP_NOTES_PER_REASON) return;
    if (!p->o->note) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->o->note(p->o->user, msg);
}

/* ---- the input list ------------------------------------------------------------------------ */

static int is_jsonl(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot && (!strcmp(dot, ".jsonl") || !strcmp(dot, ".ndjson") || !strcmp(dot, ".json"));
}

static int add_file(prep *p, const char *path, int64_t bytes) {
    if (p->n_files == p->cap_files) {
        int64_t cap = p->cap_files ? 2 * p->cap_files : 16;
        in_file *f = realloc(p->files, (size_t)cap * sizeof *f);
        if (!f) return WHALE_E_NOMEM;
        p->files = f;
        p->cap_files = cap;
    }
    in_file *f = &p->files[p->n_files];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path))) return WHALE_E_NOMEM;
    f->jsonl = is_jsonl(path);
    f->bytes = bytes;
    p->n_files++;
    return 0;
}

/* Add path: a file, or every regular file under a directory in byte order of names. */
static int add_input(prep *p, const char *path, int depth, whale_err *err) {
    struct stat st;
    if (stat(path, &st)) return err_set(err, WHALE_E_IO, "%s: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        if (add_file(p, path, (int64_t)st.st_size))
            return err_set(err, WHALE_E_NOMEM, "out of memory");
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) return err_set(err, WHALE_E_ARG, "%s: not a file or directory", path);
    if (depth >= PREP_DIR_DEPTH)
        return err_set(err, WHALE_E_ARG, "%s: directories nested too deep (a link loop?)", path);
    char real[PATH_MAX];
    if (p->out_real && realpath(path, real) && !strcmp(real, p->out_real))
        return 0; /* our own output */
    char **names;
    size_t n;
    int rc = list_dir(path, &names, &n, err);
    for (size_t i = 0; i < n && !rc; i++) {
        char *sub = path_join(path, names[i]);
        rc = sub ? add_input(p, sub, depth + 1, err) : err_set(err, WHALE_E_NOMEM, "out of memory");
        free(sub);
    }
    list_dir_free(names, n);
    return rc;
}

/* ---- manifest and state -------------------------------------------------------------------- */

static void add_num(cJSON *o, const char *k, double v) {
    cJSON_AddItemToObject(o, k, cJSON_CreateNumber(v));
}

static cJSON *settings_json(const prep *p) {
    const prepare_opts *o = p->o;
    cJSON *s = cJSON_CreateObject();
    cJSON *t = cJSON_AddObjectToObject(s, "tokenizer");
    cJSON_AddStringToObject(t, "path", o->tokenizer_path ? o->tokenizer_path : "");
    add_num(t, "vocab_size", (double)tokenizer_n_vocab(o->tok));
    add_num(t, "eot_id", p->eot);
    char eot[256];
    int n = tokenizer_token_bytes(o->tok, p->eot, eot, sizeof eot - 1);
    eot[n > 0 && n < (int)sizeof eot ? n : 0] = 0;
    cJSON_AddStringToObject(t, "eot", eot);
    add_num(s, "val_fraction", o->val_fraction);
    add_num(s, "shard_tokens", (double)o->shard_tokens);
    cJSON_AddBoolToObject(s, "filter", o->filter != 0);
    cJSON *th = cJSON_AddObjectToObject(s, "thresholds");
    int bands, rows;
    lsh_choose(o->near_threshold, MINHASH_PERM, &bands, &rows);
    add_num(th, "near_duplicate_jaccard", o->near_threshold);
    add_num(th, "minhash_permutations", MINHASH_PERM);
    add_num(th, "lsh_bands", bands);
    add_num(th, "lsh_rows", rows);
    add_num(th, "shingle_words", MINHASH_SHINGLE);
    add_num(th, "shingle_chars", MINHASH_SHINGLE);
    add_num(th, "unspaced_share", DATA_UNSPACED_SHARE);
    add_num(th, "max_document_bytes", DOC_MAX_BYTES);
    const quality_rules *q = &o->rules;
    add_num(th, "min_words", (double)q->min_words);
    add_num(th, "max_nonprintable_ratio", q->max_nonprintable_ratio);
    add_num(th, "max_symbol_ratio", q->max_symbol_ratio);
    add_num(th, "max_digit_ratio", q->max_digit_ratio);
    add_num(th, "mean_word_length_min", q->mean_word_length_min);
    add_num(th, "mean_word_length_max", q->mean_word_length_max);
    add_num(th, "max_duplicate_line_fraction", q->max_duplicate_line_fraction);
    return s;
}

/* What makes two runs the same run: the settings and each input's path and size. */
static char *fingerprint(const cJSON *doc) {
    cJSON *f = cJSON_CreateObject(), *in = cJSON_AddArrayToObject(f, "inputs");
    cJSON_AddItemToObject(f, "settings",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(doc, "settings"), 1));
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, "inputs")) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddItemToObject(x, "path",
                              cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(e, "path"), 1));
        cJSON_AddItemToObject(x, "bytes",
                              cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(e, "bytes"), 1));
        cJSON_AddItemToArray(in, x);
    }
    char *s = cJSON_PrintUnformatted(f);
    cJSON_Delete(f);
    return s;
}

static cJSON *split_json(const shard_set *s, int64_t docs) {
    cJSON *o = cJSON_CreateObject();
    add_num(o, "documents", (double)docs);
    add_num(o, "tokens", (double)shard_set_total(s));
    cJSON *a = cJSON_AddArrayToObject(o, "shards");
    for (int64_t i = 0; i < s->n_shards; i++) {
        cJSON *x = cJSON_CreateObject();
        char name[64];
        snprintf(name, sizeof name, "%s-%06lld.bin", s->prefix, (long long)i);
        cJSON_AddStringToObject(x, "file", name);
        add_num(x, "tokens", (double)s->tokens[i]);
        cJSON_AddItemToArray(a, x);
    }
    return o;
}

/* The manifest as it stands (with_resume: plus where reading stands, for state.json). */
static cJSON *manifest_json(const prep *p, int with_resume) {
    const prepare_report *r = p->rep;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "tool", "whale " WHALE_VERSION);
    cJSON_AddStringToObject(
        m, "format",
        "uint32 little-endian token ids; every document is followed by the end-of-text id");
    cJSON_AddItemToObject(m, "settings", settings_json(p));
    cJSON *in = cJSON_AddArrayToObject(m, "inputs");
    for (int64_t i = 0; i < p->n_files; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "path", p->files[i].path);
        add_num(x, "bytes", (double)p->files[i].bytes);
        add_num(x, "documents", (double)p->files[i].documents);
        add_num(x, "kept", (double)p->files[i].kept);
        cJSON_AddItemToArray(in, x);
    }
    cJSON *c = cJSON_AddObjectToObject(m, "counts");
    add_num(c, "documents", (double)r->documents);
    for (int k = 0; k < PREP_N; k++) add_num(c, prep_reason_name(k), (double)r->counts[k]);
    cJSON_AddItemToObject(m, "train", split_json(&p->train, r->train_docs));
    cJSON_AddItemToObject(m, "val", split_json(&p->val, r->val_docs));
    if (with_resume) {
        cJSON *s = cJSON_AddObjectToObject(m, "resume");
        add_num(s, "file", (double)p->file);
        add_num(s, "offset", (double)p->offset);
        add_num(s, "line", (double)p->line);
        add_num(s, "exact_hashes", (double)exact_set_count(p->exact));
        add_num(s, "signatures", (double)lsh_index_count(p->near));
    }
    return m;
}

/* Write text to DIR/name through a temporary file, fsynced and renamed into place. */
static int write_file_atomic(const char *dir, const char *name, const char *text, whale_err *err) {
    char *path = path_join(dir, name), *tmp = path ? malloc(strlen(path) + 5) : NULL;
    if (!tmp) {
        free(path);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    sprintf(tmp, "%s.tmp", path);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t n = strlen(text), off = 0;
    if (fd < 0) rc = WHALE_E_IO;
    while (!rc && off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            rc = WHALE_E_IO;
        else
            off += (size_t)w;
    }
    if (!rc && (write(fd, "\n", 1) != 1 || fsync(fd))) rc = WHALE_E_IO;
    if (fd >= 0 && close(fd)) rc = WHALE_E_IO;
    if (!rc && rename(tmp, path)) rc = WHALE_E_IO;
    if (rc) err_set(err, rc, "%s: %s", path, strerror(errno));
    free(tmp);
    free(path);
    return rc;
}

static int write_json(const prep *p, const char *name, cJSON *m, whale_err *err) {
    char *s = cJSON_Print(m);
    cJSON_Delete(m);
    if (!s) return err_set(err, WHALE_E_NOMEM, "out of memory");
    int rc = write_file_atomic(p->o->out_dir, name, s, err);
    free(s);
    return rc;
}

/* Make everything written so far durable, then record it in state.json (the order matters: the
 * state never names bytes that a crash could lose). */
static int checkpoint(prep *p, whale_err *err) {
    int rc;
    if ((rc = shard_set_sync(&p->train, err)) || (rc = shard_set_sync(&p->val, err)) ||
        (rc = exact_set_sync(p->exact, err)) || (rc = lsh_index_sync(p->near, err)))
        return rc;
    return write_json(p, "state.json", manifest_json(p, 1), err);
}

static cJSON *read_json(const char *dir, const char *name, whale_err *err) {
    char *path = path_join(dir, name);
    if (!path) return err_set(err, WHALE_E_NOMEM, "out of memory"), NULL;
    cJSON *j = json_read_file(path, PREP_STATE_MAX, err);
    if (!j && err && err->code == WHALE_E_FORMAT)
        err_set(err, WHALE_E_FORMAT, "%s: not a JSON file this tool wrote (remove it to start over)", path);
    free(path);
    return j;
}

static int64_t get_i64(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* Shard lengths of a split ("train"/"val") in a state; *n gets how many. NULL on bad input. */
static int64_t *split_tokens(const cJSON *st, const char *split, int64_t *n, int64_t *docs) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(st, split);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(s, "shards");
    int k = cJSON_GetArraySize(a);
    *docs = get_i64(s, "documents");
    if (!cJSON_IsArray(a) || k < 1 || *docs < 0) return NULL;
    int64_t *t = calloc((size_t)k, sizeof *t);
    if (!t) return NULL;
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, a) {
        t[i] = get_i64(e, "tokens");
        if (t[i++] < 0) {
            free(t);
            return NULL;
        }
    }
    *n = k;
    return t;
}

/* Take the counts and reading position from a checkpoint (state.json) whose fingerprint matched. */
static int restore_counts(prep *p, const cJSON *st) {
    prepare_report *r = p->rep;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(st, "counts");
    if ((r->documents = get_i64(c, "documents")) < 0) return -1;
    for (int k = 0; k < PREP_N; k++)
        if ((r->counts[k] = get_i64(c, prep_reason_name(k))) < 0) return -1;
    const cJSON *e;
    int64_t i = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(st, "inputs")) {
        if (i >= p->n_files) return -1;
        if ((p->files[i].documents = get_i64(e, "documents")) < 0 ||
            (p->files[i].kept = get_i64(e, "kept")) < 0)
            return -1;
        i++;
    }
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(st, "resume");
    p->file = get_i64(res, "file");
    p->offset = get_i64(res, "offset");
    p->line = get_i64(res, "line");
    if (p->file < 0 || p->file > p->n_files || p->offset < 0 || p->line < 0) return -1;
    return 0;
}

static void remove_in(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    if (p) unlink(p);
    free(p);
}

/* ---- one document --------------------------------------------------------------------------- */

static int blank_text(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n\v\f", s[i])) return 0;
    return 1;
}

/* The first invalid byte's offset in s[0..n). */
static size_t utf8_bad_at(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int l = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (l <= 0) return i;
        i += (size_t)l;
    }
    return n;
}

static void count(prep *p, in_file *f, int reason) {
    p->rep->counts[reason]++;
    if (reason == PREP_KEPT) f->kept++;
}

/* A batch of documents read in order: the costly per-document work (measuring, MinHash,
 * tokenizing) runs on every thread, each decision that depends on earlier documents (dedup,
 * the split, the shards) runs in order on the caller's thread. The output is the same whatever
 * the batch size and thread count. */
typedef struct batch_doc {
    size_t off, n; /* the text in batch.text */
    int status;    /* doc_status */
    const char *why;
    int64_t line;
    int64_t resume_offset, resume_line; /* where reading goes on after this document */
    int reason;    /* after phase 1: a reason found alone (utf8, empty, quality) or -1 */
    size_t bad_at; /* invalid UTF-8: first bad byte */
    int quality;   /* quality_check's rule */
    doc_hash h;
    minhash_sig sig;
    int keep;    /* after phase 2: to be tokenized and written */
    tok_ids ids; /* after phase 3 */
    int rc;
    whale_err err;
} batch_doc;

typedef struct batch {
    prep *p;
    batch_doc *d;
    int64_t n, cap;
    strbuf text;
} batch;

static void phase_measure(void *ctx, int64_t i, int thread) {
    (void)thread;
    batch *b = ctx;
    batch_doc *d = &b->d[i];
    const char *text = b->text.s + d->off;
    d->reason = -1;
    d->keep = 0;
    d->rc = 0;
    if (d->status != DOC_OK) return;
    if (!utf8_valid(text, d->n)) {
        d->reason = PREP_INVALID_UTF8;
        d->bad_at = utf8_bad_at(text, d->n);
        return;
    }
    if (blank_text(text, d->n)) {
        d->reason = PREP_EMPTY;
        return;
    }
    d->h = doc_hash_text(text, d->n);
    text_stats st;
    if ((d->rc = text_stats_compute(&st, text, d->n, &d->err))) return;
    d->quality = quality_check(&b->p->o->rules, &st);
    minhash_compute(&d->sig, text, d->n, text_stats_unspaced(&st));
}

static void phase_tokenize(void *ctx, int64_t i, int thread) {
    (void)thread;
    batch *b = ctx;
    batch_doc *d = &b->d[i];
    if (!d->keep) return;
    d->ids.n = 0;
    d->rc = tokenizer_encode(b->p->o->tok, b->text.s + d->off, d->n, 0, &d->ids, &d->err);
}

/* Phase 2, in order: count what was found alone, then dedup; mark the survivors. */
static int decide(prep *p, in_file *f, batch *b, whale_err *err) {
    for (int64_t i = 0; i < b->n; i++) {
        batch_doc *d = &b->d[i];
        p->rep->documents++;
        f->documents++;
        if (d->status == DOC_MALFORMED) {
            note(p, PREP_MALFORMED_JSONL, "%s:%lld: malformed JSONL line (%s); skipped", f->path,
                 (long long)d->line, d->why);
            count(p, f, PREP_MALFORMED_JSONL);
            continue;
        }
        if (d->status == DOC_TOO_LARGE) {
            note(p, PREP_TOO_LARGE, "%s:%lld: document over %u MiB; skipped", f->path,
                 (long long)d->line, DOC_MAX_BYTES >> 20);
            count(p, f, PREP_TOO_LARGE);
            continue;
        }
        if (d->rc) {
            *err = d->err;
            return d->rc;
        }
        if (d->reason == PREP_INVALID_UTF8)
            note(p, PREP_INVALID_UTF8, "%s:%lld: invalid UTF-8 (byte %zu of the document); skipped",
                 f->path, (long long)d->line, d->bad_at);
        if (d->reason >= 0) {
            count(p, f, d->reason);
            continue;
        }
        int rc = exact_set_add(p->exact, d->h, err);
        if (rc < 0) return rc;
        if (rc == 0) {
            count(p, f, PREP_EXACT_DUPLICATE);
            continue;
        }
        if (p->o->filter && d->quality != QUALITY_OK) {
            count(p, f, PREP_QUALITY + d->quality - 1);
            continue;
        }
        if ((rc = lsh_index_add(p->near, &d->sig, NULL, err)) < 0) return rc;
        if (rc == 1) {
            count(p, f, PREP_NEAR_DUPLICATE);
            continue;
        }
        d->keep = 1;
    }
    return 0;
}

/* Phase 4, in order: the split and the shards. */
static int write_kept(prep *p, in_file *f, batch *b, whale_err *err) {
    prepare_report *rep = p->rep;
    for (int64_t i = 0; i < b->n; i++) {
        batch_doc *d = &b->d[i];
        if (!d->keep) continue;
        if (d->rc) {
            *err = d->err;
            return err_prefix(err, "%s:%lld", f->path, (long long)d->line);
        }
        /* the split: the text's hash (so equal texts agree), and the first kept document */
        double u = (double)(d->h.hi >> 11) * 0x1p-53;
        int to_val = p->o->val_fraction > 0 &&
                     (u < p->o->val_fraction || rep->train_docs + rep->val_docs == 0);
        int rc =
            shard_set_add(to_val ? &p->val : &p->train, d->ids.v, d->ids.n, (uint32_t)p->eot, err);
        if (rc) return rc;
        if (to_val)
            rep->val_docs++;
        else
            rep->train_docs++;
        count(p, f, PREP_KEPT);
    }
    return 0;
}

/* Read documents into b until it holds max_bytes of text or PREP_BATCH_DOCS documents.
 * Returns 1 when the file ended, 0 when the batch is full, or a negative status. */
static int fill_batch(batch *b, doc_reader *r, size_t max_bytes, whale_err *err) {
    b->n = 0;
    b->text.n = 0;
    for (;;) {
        if (b->n >= PREP_BATCH_DOCS || (b->n && b->text.n >= max_bytes)) return 0;
        int rc = doc_reader_next(r, err);
        if (rc <= 0) return rc < 0 ? rc : 1;
        if (b->n == b->cap) {
            int64_t cap = b->cap ? 2 * b->cap : 64;
            batch_doc *d = realloc(b->d, (size_t)cap * sizeof *d);
            if (!d) return err_set(err, WHALE_E_NOMEM, "out of memory");
            memset(d + b->cap, 0, (size_t)(cap - b->cap) * sizeof *d);
            b->d = d;
            b->cap = cap;
        }
        batch_doc *d = &b->d[b->n++];
        d->off = b->text.n;
        d->n = r->doc.n;
        d->status = r->status;
        d->why = r->why;
        d->line = r->doc_line;
        d->resume_offset = r->resume_offset;
        d->resume_line = r->resume_line;
        if (strbuf_add(&b->text, r->doc.s ? r->doc.s : "", r->doc.n))
            return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
}

static void batch_free(batch *b) {
    for (int64_t i = 0; i < b->cap; i++) tok_ids_free(&b->d[i].ids);
    free(b->d);
    strbuf_free(&b->text);
}

/* ---- the run -------------------------------------------------------------------------------- */

static void prep_free(prep *p) {
    for (int64_t i = 0; i < p->n_files; i++) free(p->files[i].path);
    free(p->files);
    free(p->out_real);
    shard_set_close(&p->train);
    shard_set_close(&p->val);
    exact_set_close(p->exact);
    lsh_index_close(p->near);
    free(p->fingerprint);
}

static int open_sets(prep *p, const cJSON *st, whale_err *err) {
    const prepare_opts *o = p->o;
    char *ex = path_join(o->out_dir, "dedup-exact.log"),
         *mh = path_join(o->out_dir, "dedup-minhash.log");
    int64_t *tt = NULL, *vt = NULL, nt = 0, nv = 0, n_exact = 0, n_sig = 0;
    int rc = 0;
    if (!ex || !mh) rc = err_set(err, WHALE_E_NOMEM, "out of memory");
    if (!rc && st) {
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(st, "resume");
        n_exact = get_i64(res, "exact_hashes");
        n_sig = get_i64(res, "signatures");
        tt = split_tokens(st, "train", &nt, &p->rep->train_docs);
        vt = split_tokens(st, "val", &nv, &p->rep->val_docs);
        if (!tt || !vt || n_exact < 0 || n_sig < 0)
            rc = err_set(err, WHALE_E_FORMAT,
                         "%s/state.json: damaged (remove the directory's files to start over)",
                         o->out_dir);
    }
    if (!rc) rc = shard_set_open(&p->train, o->out_dir, "train", o->shard_tokens, tt, nt, err);
    if (!rc) rc = shard_set_open(&p->val, o->out_dir, "val", o->shard_tokens, vt, nv, err);
    if (!rc) rc = exact_set_open(&p->exact, ex, n_exact, err);
    if (!rc) rc = lsh_index_open(&p->near, mh, o->near_threshold, n_sig, err);
    free(tt);
    free(vt);
    free(ex);
    free(mh);
    return rc;
}

static void fill_report(prep *p) {
    prepare_report *r = p->rep;
    r->train_tokens = shard_set_total(&p->train);
    r->val_tokens = shard_set_total(&p->val);
    r->train_shards = p->train.n_shards;
    r->val_shards = p->val.n_shards;
}

/* DIR holds a finished run: same settings -> report it, else refuse. */
static int report_finished(prep *p, cJSON *m, whale_err *err) {
    char *fp = fingerprint(m);
    int same = fp && !strcmp(fp, p->fingerprint);
    free(fp);
    if (!same) {
        cJSON_Delete(m);
        return err_set(err, WHALE_E_ARG,
                       "%s holds a finished run with other inputs or settings (manifest.json): use "
                       "another directory",
                       p->o->out_dir);
    }
    prepare_report *r = p->rep;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "counts");
    r->documents = get_i64(c, "documents");
    for (int k = 0; k < PREP_N; k++) r->counts[k] = get_i64(c, prep_reason_name(k));
    const char *sp[2] = {"train", "val"};
    for (int i = 0; i < 2; i++) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(m, sp[i]);
        int64_t docs = get_i64(s, "documents"), tokens = get_i64(s, "tokens"),
                shards = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "shards"));
        if (i == 0)
            r->train_docs = docs, r->train_tokens = tokens, r->train_shards = shards;
        else
            r->val_docs = docs, r->val_tokens = tokens, r->val_shards = shards;
    }
    r->already_complete = 1;
    cJSON_Delete(m);
    return 0;
}

int data_prepare(const prepare_opts *o, prepare_report *rep, whale_err *err) {
    memset(rep, 0, sizeof *rep);
    double t0 = clock_now_s();
    if (!o->tok || !o->out_dir || o->n_inputs < 1)
        return err_set(err, WHALE_E_ARG, "inputs, a tokenizer and an output directory are needed");
    if (!(o->val_fraction >= 0 && o->val_fraction <= 1))
        return err_set(err, WHALE_E_ARG, "--val-fraction %g is not in [0, 1]", o->val_fraction);
    if (!(o->near_threshold > 0 && o->near_threshold <= 1))
        return err_set(err, WHALE_E_ARG, "--near-threshold %g is not in (0, 1]", o->near_threshold);
    if (o->shard_tokens < 2) return err_set(err, WHALE_E_ARG, "--shard-tokens must be at least 2");
    prep p = {.o = o, .rep = rep};
    p.train.fd = p.val.fd = -1;
    int rc = 0;
    p.eot = tokenizer_find_added(o->tok, "<|endoftext|>", 13);
    if (p.eot < 0) p.eot = tokenizer_eos(o->tok);
    if (p.eot < 0)
        return err_set(err, WHALE_E_ARG,
                       "%s: the vocabulary has neither <|endoftext|> nor an EOS token",
                       o->tokenizer_path);
    rep->eot = p.eot;
    lsh_choose(o->near_threshold, MINHASH_PERM, &rep->bands, &rep->rows);
    if (mkdir(o->out_dir, 0755) && errno != EEXIST)
        return err_set(err, WHALE_E_IO, "%s: %s", o->out_dir, strerror(errno));
    p.out_real = realpath(o->out_dir, NULL);
    for (int i = 0; i < o->n_inputs && !rc; i++) rc = add_input(&p, o->inputs[i], 0, err);
    if (!rc && !p.n_files) rc = err_set(err, WHALE_E_ARG, "no input files found");
    for (int64_t i = 0; i < p.n_files; i++) rep->bytes_total += p.files[i].bytes;
    cJSON *st = NULL;
    if (!rc) {
        cJSON *m = manifest_json(&p, 0);
        p.fingerprint = fingerprint(m);
        cJSON_Delete(m);
        if (!p.fingerprint) rc = err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    if (!rc) { /* a checkpoint to go on from, or a finished run */
        whale_err e2 = {0};
        st = read_json(o->out_dir, "state.json", &e2);
        if (!st && e2.code != WHALE_E_NOTFOUND) rc = err_set(err, e2.code, "%s", e2.msg);
        if (!st && !rc) {
            cJSON *m = read_json(o->out_dir, "manifest.json", &e2);
            if (m) {
                rc = report_finished(&p, m, err);
                rep->bytes_total = 0;
                for (int64_t i = 0; i < p.n_files; i++) rep->bytes_total += p.files[i].bytes;
                rep->seconds = clock_now_s() - t0;
                prep_free(&p);
                return rc;
            }
        }
        if (st) {
            char *fp = fingerprint(st);
            if (!fp || strcmp(fp, p.fingerprint))
                rc = err_set(
                    err, WHALE_E_ARG,
                    "%s holds an unfinished run with other inputs or settings (state.json): "
                    "run it with those, or use another directory",
                    o->out_dir);
            else if (restore_counts(&p, st))
                rc = err_set(err, WHALE_E_FORMAT,
                             "%s/state.json: damaged (remove the directory's files to start over)",
                             o->out_dir);
            free(fp);
            rep->resumed = !rc;
        }
    }
    if (!rc) rc = open_sets(&p, st, err);
    cJSON_Delete(st);
    for (int64_t i = 0; i < p.file && i < p.n_files; i++) p.bytes_before += p.files[i].bytes;
    int64_t start_bytes = p.bytes_before + p.offset, last_ckpt = start_bytes, last_progress = -1;
    if (!rc && rep->resumed)
        note(&p, -1,
             "resuming from the checkpoint in %s/state.json: input %lld of %lld, %.1f of %.1f MB "
             "read",
             o->out_dir, (long long)(p.file < p.n_files ? p.file + 1 : p.n_files),
             (long long)p.n_files, (double)start_bytes / 1e6, (double)rep->bytes_total / 1e6);
    batch b = {.p = &p};
    threadpool *tp = NULL;
    if (!rc && !(tp = tp_new(o->n_threads)))
        rc = err_set(err, WHALE_E_NOMEM, "cannot start threads");
    /* a batch never holds more than a checkpoint's worth of input, so checkpoints come as often
     * as asked */
    size_t max_bytes =
        o->checkpoint_bytes < PREP_BATCH_BYTES ? (size_t)o->checkpoint_bytes : PREP_BATCH_BYTES;
    for (; !rc && p.file < p.n_files; p.file++, p.offset = p.line = 0) {
        in_file *f = &p.files[p.file];
        doc_reader r;
        if ((rc = doc_reader_open(&r, f->path, f->jsonl, p.offset, p.line, err))) break;
        for (int end = 0; !end;) {
            if ((end = fill_batch(&b, &r, max_bytes, err)) < 0) {
                rc = end;
                break;
            }
            if (!b.n) break;
            tp_run(tp, b.n, phase_measure, &b);
            if ((rc = decide(&p, f, &b, err))) break;
            tp_run(tp, b.n, phase_tokenize, &b);
            if ((rc = write_kept(&p, f, &b, err))) break;
            p.offset = b.d[b.n - 1].resume_offset;
            p.line = b.d[b.n - 1].resume_line;
            int64_t done = p.bytes_before + p.offset;
            if (o->progress && done - last_progress >= PREP_PROGRESS_STEP) {
                o->progress(o->user, (double)done, (double)rep->bytes_total);
                last_progress = done;
            }
            if (done - last_ckpt >= o->checkpoint_bytes) {
                if ((rc = checkpoint(&p, err))) break;
                last_ckpt = done;
            }
        }
        if (rc < 0 && err && !strstr(err->msg, f->path)) err_prefix(err, "%s", f->path);
        doc_reader_close(&r);
        if (rc) break;
        p.bytes_before += f->bytes;
    }
    batch_free(&b);
    tp_free(tp);
    if (!rc) { /* everything read: one last checkpoint, then the manifest, then clean up */
        p.offset = p.line = 0;
        rc = checkpoint(&p, err);
        if (!rc) rc = write_json(&p, "manifest.json", manifest_json(&p, 0), err);
        if (!rc) {
            remove_in(o->out_dir, "state.json");
            remove_in(o->out_dir, "dedup-exact.log");
            remove_in(o->out_dir, "dedup-minhash.log");
        }
        if (o->progress) o->progress(o->user, (double)rep->bytes_total, (double)rep->bytes_total);
    }
    fill_report(&p);
    rep->bytes_run = rep->bytes_total - start_bytes;
    rep->seconds = clock_now_s() - t0;
    prep_free(&p);
    return rc;
}
