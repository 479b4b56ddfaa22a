/* dedup.c — exact and near-duplicate sets (dedup.h).
 *
 * MinHash: each shingle is hashed once to 64 bits (h); hash function i is the multiply-shift
 * family (a_i * h + b_i) >> 32 with odd a_i and any b_i drawn from splitmix64 under a fixed seed,
 * so signatures are the same in every run. LSH: the signature is cut into `bands` bands of `rows`
 * values; each band's values hash to one key in one table holding (key, document) pairs for all
 * bands, and a document sharing any band key with an earlier one is a candidate. */
#include "data/dedup.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

#include "base/err.h"
#include "base/rng.h"
#include "base/siphash.h"
#include "base/utf8.h"

static const uint8_t doc_key[SIPHASH_KEY_BYTES] = "whale data doc!";

doc_hash doc_hash_text(const char *text, size_t n) {
    siphash h;
    uint8_t out[16];
    siphash_init(&h, doc_key, 16);
    siphash_update(&h, text, n);
    siphash_final(&h, out);
    doc_hash d = {0, 0};
    for (int i = 7; i >= 0; i--) {
        d.lo = d.lo << 8 | out[i];
        d.hi = d.hi << 8 | out[8 + i];
    }
    return d;
}

/* splitmix64's finalizer: a bijection that spreads every input bit over the output. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- logs: fixed-size records appended with write(), read back with pread() ---------------- */

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_at(int fd, void *p, size_t n, off_t off) {
    char *c = p;
    while (n) {
        ssize_t r = pread(fd, c, n, off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

/* Open path for appending records of rec bytes: a new empty file (n_resume = 0), or the first
 * n_resume records of an existing one with the rest cut off. Returns an fd, or a negative status.
 */
static int log_open(const char *path, size_t rec, int64_t n_resume, whale_err *err) {
    int fd = open(path, O_RDWR | O_CREAT | (n_resume ? 0 : O_TRUNC) | O_CLOEXEC, 0644);
    if (fd < 0) return err_set(err, WHALE_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    off_t want = (off_t)((uint64_t)n_resume * rec);
    if (fstat(fd, &st) || st.st_size < want) {
        close(fd);
        return err_set(err, WHALE_E_FORMAT,
                       "%s: shorter than the checkpoint says (%lld of %lld bytes): cannot resume",
                       path, (long long)st.st_size, (long long)want);
    }
    if (ftruncate(fd, want) || lseek(fd, want, SEEK_SET) != want) {
        close(fd);
        return err_set(err, WHALE_E_IO, "%s: %s", path, strerror(errno));
    }
    return fd;
}

/* ---- the exact set ------------------------------------------------------------------------- */

struct exact_set {
    doc_hash *v; /* open addressing; {0,0} marks a free slot (a real {0,0} is stored as {1,0}) */
    size_t cap;
    int64_t n;
    int fd;
    char *path;
};

static int exact_insert(exact_set *s, doc_hash h) {
    if (!h.lo && !h.hi) h.lo = 1;
    if (2 * ((size_t)s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        doc_hash *v = calloc(cap, sizeof *v);
        if (!v) return WHALE_E_NOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->v[i].lo && !s->v[i].hi) continue;
            size_t j = s->v[i].lo & (cap - 1);
            while (v[j].lo || v[j].hi) j = (j + 1) & (cap - 1);
            v[j] = s->v[i];
        }
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    size_t j = h.lo & (s->cap - 1);
    while (s->v[j].lo || s->v[j].hi) {
        if (s->v[j].lo == h.lo && s->v[j].hi == h.hi) return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->v[j] = h;
    s->n++;
    return 1;
}

int exact_set_open(exact_set **out, const char *log_path, int64_t n_resume, whale_err *err) {
    *out = NULL;
    exact_set *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(log_path))) {
        free(s);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    s->fd = log_open(log_path, 16, n_resume, err);
    if (s->fd < 0) {
        int rc = s->fd;
        free(s->path);
        free(s);
        return rc;
    }
    for (int64_t i = 0; i < n_resume; i++) {
        uint8_t b[16];
        if (read_at(s->fd, b, 16, (off_t)(i * 16))) {
            exact_set_close(s);
            return err_set(err, WHALE_E_IO, "%s: read failed", log_path);
        }
        doc_hash h = {0, 0};
        for (int k = 7; k >= 0; k--) h.lo = h.lo << 8 | b[k], h.hi = h.hi << 8 | b[8 + k];
        if (exact_insert(s, h) < 0) {
            exact_set_close(s);
            return err_set(err, WHALE_E_NOMEM, "out of memory");
        }
    }
    s->n = n_resume; /* a log with a repeated hash (not ours) still counts its records */
    *out = s;
    return 0;
}

int exact_set_add(exact_set *s, doc_hash h, whale_err *err) {
    int rc = exact_insert(s, h);
    if (rc < 0) return err_set(err, WHALE_E_NOMEM, "out of memory (exact-duplicate set)");
    if (rc == 0) return 0;
    uint8_t b[16];
    for (int k = 0; k < 8; k++)
        b[k] = (uint8_t)(h.lo >> (8 * k)), b[8 + k] = (uint8_t)(h.hi >> (8 * k));
    if (write_all(s->fd, b, 16))
        return err_set(err, WHALE_E_IO, "%s: %s", s->path, strerror(errno));
    return 1;
}

int64_t exact_set_count(const exact_set *s) {
    return s->n;
}

int exact_set_sync(exact_set *s, whale_err *err) {
    if (fsync(s->fd)) return err_set(err, WHALE_E_IO, "%s: %s", s->path, strerror(errno));
    return 0;
}

void exact_set_close(exact_set *s) {
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    free(s->v);
    free(s->path);
    free(s);
}

/* ---- MinHash -------------------------------------------------------------------------------- */

typedef struct minhash_family {
    uint64_t a[MINHASH_PERM], b[MINHASH_PERM];
} minhash_family;

static void family_init(minhash_family *f) {
    uint64_t seed = 0x5eed0fda7a5e7ull; /* fixed: signatures must agree across runs and resumes */
    for (int i = 0; i < MINHASH_PERM; i++) {
        f->a[i] = rng_splitmix64(&seed) | 1;
        f->b[i] = rng_splitmix64(&seed);
    }
}

static void sig_update(minhash_sig *s, const minhash_family *f, uint64_t h) {
    for (int i = 0; i < MINHASH_PERM; i++) {
        uint32_t v = (uint32_t)((f->a[i] * h + f->b[i]) >> 32);
        if (v < s->v[i]) s->v[i] = v;
    }
}

/* Combine the window's item hashes (oldest first) into one shingle hash. */
static uint64_t shingle_hash(const uint64_t *ring, int head, int n) {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int k = 0; k < n; k++) h = mix64(h ^ ring[(head + k) % MINHASH_SHINGLE]) + (uint64_t)k;
    return h;
}

void minhash_compute(minhash_sig *out, const char *text, size_t n, int by_chars) {
    minhash_family fam; /* 256 splitmix steps: cheap beside the shingles, and no global state */
    family_init(&fam);
    for (int i = 0; i < MINHASH_PERM; i++) out->v[i] = UINT32_MAX;
    const unsigned char *p = (const unsigned char *)text;
    uint64_t ring[MINHASH_SHINGLE];
    int head = 0, have = 0, shingles = 0;
    uint64_t word = 0;
    int in_word = 0;
    for (size_t i = 0;;) {
        uint32_t c = ' ';
        int len = 1;
        if (i < n) {
            len = utf8_seq_len(p + i, n - i);
            if (len <= 0)
                len = 1, c = 0xFFFD;
            else
                c = utf8_decode(p + i, len);
        }
        int item = 0; /* an item (word or character) completed: its hash in `word` */
        uint64_t item_h = 0;
        if (by_chars) {
            int cat = utf8proc_category((utf8proc_int32_t)c);
            int space = c == ' ' || (c >= 9 && c <= 13) || cat == UTF8PROC_CATEGORY_ZS ||
                        cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
            if (i < n && !space)
                item = 1, item_h = mix64((uint64_t)utf8proc_tolower((utf8proc_int32_t)c) + 0x51ed);
        } else {
            int cat = utf8proc_category((utf8proc_int32_t)c);
            int alnum = i < n && cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_NO;
            if (alnum) {
                word = mix64(word ^ (uint64_t)utf8proc_tolower((utf8proc_int32_t)c)) +
                       (uint64_t)in_word;
                in_word = 1;
            } else if (in_word) {
                item = 1, item_h = word;
                word = 0, in_word = 0;
            }
        }
        if (item) {
            if (have == MINHASH_SHINGLE)
                head = (head + 1) % MINHASH_SHINGLE;
            else
                have++;
            ring[(head + have - 1) % MINHASH_SHINGLE] = item_h;
            if (have == MINHASH_SHINGLE) {
                sig_update(out, &fam, shingle_hash(ring, head, have));
                shingles++;
            }
        }
        if (i >= n) break;
        i += (size_t)len;
    }
    if (!shingles && have) sig_update(out, &fam, shingle_hash(ring, head, have));
}

double minhash_similarity(const minhash_sig *a, const minhash_sig *b) {
    int eq = 0;
    for (int i = 0; i < MINHASH_PERM; i++) eq += a->v[i] == b->v[i];
    return (double)eq / MINHASH_PERM;
}

double lsh_candidate_probability(double s, int bands, int rows) {
    return 1 - pow(1 - pow(s, rows), bands);
}

void lsh_choose(double threshold, int n_perm, int *bands, int *rows) {
    double best_fp = INFINITY, best_p = -1;
    *bands = 1, *rows = n_perm;
    const int steps = 400; /* midpoint rule: areas to ~1e-5, plenty to rank the shapes */
    for (int b = 1; b <= n_perm; b++)
        for (int r = 1; b * r <= n_perm; r++) {
            double p_t = lsh_candidate_probability(threshold, b, r), fp = 0;
            for (int k = 0; k < steps && (k + 0.5) / steps < threshold; k++)
                fp += lsh_candidate_probability((k + 0.5) / steps, b, r) / steps;
            if (p_t >= LSH_RECALL_AT_THRESHOLD ? (best_p < LSH_RECALL_AT_THRESHOLD || fp < best_fp)
                                               : p_t > best_p && best_p < LSH_RECALL_AT_THRESHOLD)
                best_fp = fp, best_p = p_t, *bands = b, *rows = r;
        }
}

/* ---- the LSH index -------------------------------------------------------------------------- */

typedef struct lsh_entry {
    uint64_t key; /* 0: free */
    int64_t doc;
} lsh_entry;

struct lsh_index {
    double threshold;
    int bands, rows;
    lsh_entry *v;
    size_t cap, used;
    int64_t n;
    int fd;
    char *path;
};

static uint64_t band_key(const minhash_sig *s, int band, int rows) {
    uint64_t h = mix64((uint64_t)band + 0x1234567ull);
    for (int r = 0; r < rows; r++) h = mix64(h ^ s->v[band * rows + r]);
    return h ? h : 1;
}

static int lsh_insert(lsh_index *x, uint64_t key, int64_t doc) {
    if (2 * (x->used + 1) > x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 4096;
        lsh_entry *v = calloc(cap, sizeof *v);
        if (!v) return WHALE_E_NOMEM;
        for (size_t i = 0; i < x->cap; i++) { /* in slot order: equal keys keep their order */
            if (!x->v[i].key) continue;
            size_t j = x->v[i].key & (cap - 1);
            while (v[j].key) j = (j + 1) & (cap - 1);
            v[j] = x->v[i];
        }
        free(x->v);
        x->v = v;
        x->cap = cap;
    }
    size_t j = key & (x->cap - 1);
    while (x->v[j].key) j = (j + 1) & (x->cap - 1);
    x->v[j].key = key;
    x->v[j].doc = doc;
    x->used++;
    return 0;
}

static int lsh_insert_sig(lsh_index *x, const minhash_sig *s, int64_t doc) {
    for (int b = 0; b < x->bands; b++)
        if (lsh_insert(x, band_key(s, b, x->rows), doc)) return WHALE_E_NOMEM;
    return 0;
}

static int sig_read(lsh_index *x, int64_t doc, minhash_sig *s) {
    uint8_t b[4 * MINHASH_PERM];
    if (read_at(x->fd, b, sizeof b, (off_t)(doc * (int64_t)sizeof b))) return -1;
    for (int i = 0; i < MINHASH_PERM; i++)
        s->v[i] = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
                  (uint32_t)b[4 * i + 3] << 24;
    return 0;
}

int lsh_index_open(lsh_index **out, const char *log_path, double threshold, int64_t n_resume,
                   whale_err *err) {
    *out = NULL;
    if (!(threshold > 0 && threshold <= 1))
        return err_set(err, WHALE_E_ARG, "near-duplicate threshold %g is not in (0, 1]", threshold);
    lsh_index *x = calloc(1, sizeof *x);
    if (!x || !(x->path = strdup(log_path))) {
        free(x);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    x->threshold = threshold;
    lsh_choose(threshold, MINHASH_PERM, &x->bands, &x->rows);
    x->fd = log_open(log_path, 4 * MINHASH_PERM, n_resume, err);
    if (x->fd < 0) {
        int rc = x->fd;
        free(x->path);
        free(x);
        return rc;
    }
    for (int64_t i = 0; i < n_resume; i++) {
        minhash_sig s;
        if (sig_read(x, i, &s)) {
            lsh_index_close(x);
            return err_set(err, WHALE_E_IO, "%s: read failed", log_path);
        }
        if (lsh_insert_sig(x, &s, i)) {
            lsh_index_close(x);
            return err_set(err, WHALE_E_NOMEM, "out of memory");
        }
    }
    x->n = n_resume;
    *out = x;
    return 0;
}

int lsh_index_add(lsh_index *x, const minhash_sig *sig, int64_t *match, whale_err *err) {
    int64_t last = -1;
    for (int b = 0; b < x->bands; b++) {
        uint64_t key = band_key(sig, b, x->rows);
        for (size_t j = key & (x->cap - 1); x->cap && x->v[j].key; j = (j + 1) & (x->cap - 1)) {
            if (x->v[j].key != key || x->v[j].doc == last) continue;
            minhash_sig other;
            last = x->v[j].doc;
            if (sig_read(x, last, &other))
                return err_set(err, WHALE_E_IO, "%s: read failed", x->path);
            if (minhash_similarity(sig, &other) >= x->threshold) {
                if (match) *match = last;
                return 1;
            }
        }
    }
    uint8_t b[4 * MINHASH_PERM];
    for (int i = 0; i < MINHASH_PERM; i++)
        for (int k = 0; k < 4; k++) b[4 * i + k] = (uint8_t)(sig->v[i] >> (8 * k));
    if (write_all(x->fd, b, sizeof b))
        return err_set(err, WHALE_E_IO, "%s: %s", x->path, strerror(errno));
    if (lsh_insert_sig(x, sig, x->n))
        return err_set(err, WHALE_E_NOMEM, "out of memory (near-duplicate index)");
    x->n++;
    return 0;
}

int64_t lsh_index_count(const lsh_index *x) {
    return x->n;
}

void lsh_index_shape(const lsh_index *x, int *bands, int *rows) {
    *bands = x->bands;
    *rows = x->rows;
}

int lsh_index_sync(lsh_index *x, whale_err *err) {
    if (fsync(x->fd)) return err_set(err, WHALE_E_IO, "%s: %s", x->path, strerror(errno));
    return 0;
}

void lsh_index_close(lsh_index *x) {
    if (!x) return;
    if (x->fd >= 0) close(x->fd);
    free(x->v);
    free(x->path);
    free(x);
}
