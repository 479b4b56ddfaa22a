/* safetensors.c — reading safetensors checkpoints (single files and sharded directories).
 *
 * A safetensors file is: 8 bytes of little-endian header length N, N bytes of JSON
 * ({"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"k": "v"}}), then the data region, to which the offsets are relative.
 * Everything read here is untrusted: the length is checked against a cap and the file size
 * before anything is allocated, and each tensor's shape, dtype and offsets are checked against
 * its shard's data region before a view is published. Tensor data is never copied. */
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cursor.h"
#include "base/err.h"

/* Tensor names come from the file and may be huge; messages show at most this much of one. */
#define NAME_SHOWN 200
/* JSON numbers are doubles: integers above 2^53 cannot be represented exactly, and no offset
 * or dimension of a real checkpoint comes near it (2^53 bytes is 8 PiB). */
#define JSON_MAX_EXACT_INT 9007199254740992.0

/* ---------------------------------------------------------------------------------------------
 * dtypes: safetensors names <-> whale_dtype
 * ------------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    whale_dtype type;
} st_dtypes[] = {
    {"F64", WHALE_DTYPE_F64},         {"F32", WHALE_DTYPE_F32},
    {"F16", WHALE_DTYPE_F16},         {"BF16", WHALE_DTYPE_BF16},
    {"F8_E4M3", WHALE_DTYPE_F8_E4M3}, {"F8_E5M2", WHALE_DTYPE_F8_E5M2},
    {"I64", WHALE_DTYPE_I64},         {"I32", WHALE_DTYPE_I32},
    {"I16", WHALE_DTYPE_I16},         {"I8", WHALE_DTYPE_I8},
    {"U8", WHALE_DTYPE_U8},           {"BOOL", WHALE_DTYPE_U8}, /* one byte, 0 or 1 */
};
#define N_ST_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

int st_dtype_parse(const char *name, whale_dtype *out) {
    for (size_t i = 0; i < N_ST_DTYPES; i++)
        if (!strcmp(name, st_dtypes[i].name)) {
            *out = st_dtypes[i].type;
            return 0;
        }
    return -1;
}

const char *st_dtype_name(whale_dtype t) {
    for (size_t i = 0; i < N_ST_DTYPES; i++)
        if (st_dtypes[i].type == t) return st_dtypes[i].name;
    return "?";
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

/* An exact non-negative integer JSON number. Returns 0 and sets *out, or -1. */
static int json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > JSON_MAX_EXACT_INT) return -1; /* also rejects NaN */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return -1; /* fractional */
    *out = u;
    return 0;
}

/* Parse len bytes of JSON that need not be NUL-terminated; only whitespace may follow the
 * value (safetensors pads its header with spaces). Returns the tree or NULL with err set
 * ("<what> is not valid JSON ..."), prefixed by path. */
static cJSON *json_parse_bytes(const char *path, const char *what, const unsigned char *bytes,
                               size_t len, whale_err *err) {
    char *buf = malloc(len + 1);
    if (!buf) {
        err_set(err, WHALE_E_NOMEM, "%s: out of memory for a %zu-byte %s", path, len, what);
        return NULL;
    }
    if (len) memcpy(buf, bytes, len);
    buf[len] = 0; /* cJSON reads C strings in places; never hand it an unterminated one */
    const char *end = NULL;
    cJSON *root = len ? cJSON_ParseWithLengthOpts(buf, len, &end, 0) : NULL;
    if (!root) {
        size_t at = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
        err_set(err, WHALE_E_FORMAT, "%s: %s is not valid JSON (error near byte %zu)", path,
                what, at);
        free(buf);
        return NULL;
    }
    for (const char *p = end; p && p < buf + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            err_set(err, WHALE_E_FORMAT, "%s: %s has trailing bytes after the JSON value (at byte %zu)",
                    path, what, (size_t)(p - buf));
            cJSON_Delete(root);
            free(buf);
            return NULL;
        }
    }
    free(buf);
    return root;
}

static void shape_str(char *buf, size_t n, const int64_t *shape, int n_dims) {
    size_t used = 0;
    buf[0] = 0;
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---------------------------------------------------------------------------------------------
 * Building the model: growing tables
 * ------------------------------------------------------------------------------------------- */

typedef struct st_build {
    size_t cap_tensors, cap_metadata;
} st_build;

static int push_tensor(st_model *m, st_build *b, const st_tensor *t) {
    if (m->n_tensors == b->cap_tensors) {
        size_t cap = b->cap_tensors ? b->cap_tensors * 2 : 64;
        st_tensor *n = realloc(m->tensors, cap * sizeof *n);
        if (!n) return -1;
        m->tensors = n;
        b->cap_tensors = cap;
    }
    m->tensors[m->n_tensors++] = *t;
    return 0;
}

static int push_metadata(st_model *m, st_build *b, const char *key, const char *value) {
    if (m->n_metadata == b->cap_metadata) {
        size_t cap = b->cap_metadata ? b->cap_metadata * 2 : 8;
        st_kv *n = realloc(m->metadata, cap * sizeof *n);
        if (!n) return -1;
        m->metadata = n;
        b->cap_metadata = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    m->metadata[m->n_metadata].key = k;
    m->metadata[m->n_metadata].value = v;
    m->n_metadata++;
    return 0;
}

/* Sort metadata by key and keep the first occurrence of each key (shards repeat
 * {"format": "pt"}). A sort rather than a scan per insert: a hostile header may hold millions
 * of keys. */
typedef struct kv_order {
    st_kv kv;
    size_t seq;
} kv_order;

static int cmp_kv_order(const void *a, const void *b) {
    const kv_order *x = a, *y = b;
    int c = strcmp(x->kv.key, y->kv.key);
    if (c) return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int metadata_finish(st_model *m) {
    if (m->n_metadata < 2) return 0;
    kv_order *o = malloc(m->n_metadata * sizeof *o);
    if (!o) return -1;
    for (size_t i = 0; i < m->n_metadata; i++) {
        o[i].kv = m->metadata[i];
        o[i].seq = i;
    }
    qsort(o, m->n_metadata, sizeof *o, cmp_kv_order);
    size_t n = 0;
    for (size_t i = 0; i < m->n_metadata; i++) {
        if (n && !strcmp(m->metadata[n - 1].key, o[i].kv.key)) {
            free(o[i].kv.key);
            free(o[i].kv.value);
            continue;
        }
        m->metadata[n++] = o[i].kv;
    }
    m->n_metadata = n;
    free(o);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * One shard: header and tensor entries
 * ------------------------------------------------------------------------------------------- */

/* Validate one header entry `item` (named item->string) of shard `si` whose data region is
 * data[0..data_len). Returns 0 and appends the tensor, or a status with err set. */
static int parse_tensor(st_model *m, st_build *b, int si, const cJSON *item,
                        const unsigned char *data, size_t data_len, whale_err *err) {
    const char *path = m->shards[si].path;
    const char *name = item->string;
    st_tensor t;
    memset(&t, 0, sizeof t);
    t.shard = si;

    if (!cJSON_IsObject(item))
        return err_set(err, WHALE_E_FORMAT,
                       "%s: tensor '%.*s': entry is not a JSON object (corrupt header)", path,
                       NAME_SHOWN, name);

    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(jd) || !jd->valuestring)
        return err_set(err, WHALE_E_FORMAT, "%s: tensor '%.*s': missing or non-string \"dtype\"",
                       path, NAME_SHOWN, name);
    if (st_dtype_parse(jd->valuestring, &t.dtype) != 0)
        return err_set(err, WHALE_E_UNSUPPORTED,
                       "%s: tensor '%.*s': unsupported dtype '%.32s' (Whale reads F64 F32 F16 BF16 "
                       "F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL)",
                       path, NAME_SHOWN, name, jd->valuestring);

    const cJSON *js = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!cJSON_IsArray(js))
        return err_set(err, WHALE_E_FORMAT, "%s: tensor '%.*s': missing or non-array \"shape\"",
                       path, NAME_SHOWN, name);
    int nd = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, js) {
        if (nd == ST_MAX_DIMS)
            return err_set(err, WHALE_E_FORMAT,
                           "%s: tensor '%.*s': more than %d dimensions (corrupt header?)", path,
                           NAME_SHOWN, name, ST_MAX_DIMS);
        uint64_t v;
        if (json_u64(dim, &v) != 0) {
            if (cJSON_IsNumber(dim) && dim->valuedouble < 0)
                return err_set(err, WHALE_E_FORMAT,
                               "%s: tensor '%.*s': dimension %d is negative (%.0f)", path,
                               NAME_SHOWN, name, nd, dim->valuedouble);
            return err_set(err, WHALE_E_FORMAT,
                           "%s: tensor '%.*s': dimension %d is not an integer in [0, 2^53]",
                           path, NAME_SHOWN, name, nd);
        }
        t.shape[nd++] = (int64_t)v;
    }
    t.n_dims = nd;

    char shp[160];
    shape_str(shp, sizeof shp, t.shape, nd);
    int64_t n = 1;
    int has_zero = 0;
    for (int i = 0; i < nd; i++) has_zero |= t.shape[i] == 0;
    if (has_zero) {
        n = 0;
    } else {
        for (int i = 0; i < nd; i++) {
            if (n > INT64_MAX / t.shape[i])
                return err_set(err, WHALE_E_FORMAT,
                               "%s: tensor '%.*s': shape %s has more than 2^63 elements "
                               "(corrupt header)",
                               path, NAME_SHOWN, name, shp);
            n *= t.shape[i];
        }
    }
    t.n_elems = n;
    if (dtype_bytes(t.dtype, n, &t.nbytes) != 0)
        return err_set(err, WHALE_E_FORMAT,
                       "%s: tensor '%.*s': shape %s of %s does not fit in memory (corrupt header)",
                       path, NAME_SHOWN, name, shp, jd->valuestring);

    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 ||
        json_u64(cJSON_GetArrayItem(jo, 0), &begin) != 0 ||
        json_u64(cJSON_GetArrayItem(jo, 1), &end) != 0)
        return err_set(err, WHALE_E_FORMAT,
                       "%s: tensor '%.*s': \"data_offsets\" must be two non-negative integers",
                       path, NAME_SHOWN, name);
    if (begin > end)
        return err_set(err, WHALE_E_FORMAT,
                       "%s: tensor '%.*s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] end before they begin (corrupt header)",
                       path, NAME_SHOWN, name, begin, end);
    if (end > data_len)
        return err_set(err, WHALE_E_FORMAT,
                       "%s: tensor '%.*s': data_offsets end %" PRIu64
                       " is past the %zu bytes of data (truncated download?)",
                       path, NAME_SHOWN, name, end, data_len);
    if (end - begin != t.nbytes)
        return err_set(err, WHALE_E_FORMAT,
                       "%s: tensor '%.*s': data_offsets span %" PRIu64
                       " bytes but shape %s of %s needs %zu (corrupt header)",
                       path, NAME_SHOWN, name, end - begin, shp, jd->valuestring, t.nbytes);
    t.data = data + begin;

    t.name = strdup(name);
    if (!t.name || push_tensor(m, b, &t) != 0) {
        free(t.name);
        return err_set(err, WHALE_E_NOMEM, "%s: out of memory", path);
    }
    return 0;
}

/* Parse the header of the already mapped shard si and append its tensors and metadata. */
static int parse_shard(st_model *m, st_build *b, int si, whale_err *err) {
    const mapfile *f = &m->shards[si];
    cursor c = cursor_make(f->data, f->size);
    uint64_t hlen = cursor_u64(&c);
    if (c.bad)
        return err_set(err, WHALE_E_FORMAT,
                       "%s: file is %zu bytes, too short for a safetensors header (truncated "
                       "download?)",
                       f->path, f->size);
    if (hlen > ST_MAX_HEADER_BYTES)
        return err_set(err, WHALE_E_FORMAT,
                       "%s: header length %" PRIu64 " exceeds the %u MiB limit (not a safetensors "
                       "file?)",
                       f->path, hlen, ST_MAX_HEADER_BYTES >> 20);
    const unsigned char *hdr = cursor_take(&c, (size_t)hlen);
    if (!hdr)
        return err_set(err, WHALE_E_FORMAT,
                       "%s: header of %" PRIu64 " bytes runs past the end of the %zu-byte file "
                       "(truncated download?)",
                       f->path, hlen, f->size);
    const unsigned char *data = hdr + hlen;
    size_t data_len = cursor_left(&c);

    cJSON *root = json_parse_bytes(f->path, "header", hdr, (size_t)hlen, err);
    if (!root) return err ? err->code : WHALE_E_FORMAT;
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = err_set(err, WHALE_E_FORMAT, "%s: header is not a JSON object (not a safetensors file?)",
                     f->path);
        goto done;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (!item->string) continue; /* cJSON always names object members; be safe */
        if (!strcmp(item->string, "__metadata__")) {
            if (!cJSON_IsObject(item)) {
                rc = err_set(err, WHALE_E_FORMAT, "%s: \"__metadata__\" is not a JSON object",
                             f->path);
                goto done;
            }
            const cJSON *kv;
            cJSON_ArrayForEach(kv, item) {
                if (!cJSON_IsString(kv) || !kv->valuestring || !kv->string) {
                    rc = err_set(err, WHALE_E_FORMAT,
                                 "%s: __metadata__ '%.*s': value is not a string", f->path,
                                 NAME_SHOWN, kv->string ? kv->string : "");
                    goto done;
                }
                if (push_metadata(m, b, kv->string, kv->valuestring) != 0) {
                    rc = err_set(err, WHALE_E_NOMEM, "%s: out of memory", f->path);
                    goto done;
                }
            }
            continue;
        }
        rc = parse_tensor(m, b, si, item, data, data_len, err);
        if (rc) goto done;
    }
done:
    cJSON_Delete(root);
    return rc;
}

/* Sort the tensor table, reject duplicate names, and settle metadata. */
static int finish(st_model *m, whale_err *err) {
    if (m->n_tensors > 1) qsort(m->tensors, m->n_tensors, sizeof *m->tensors, cmp_tensor);
    for (size_t i = 1; i < m->n_tensors; i++) {
        const st_tensor *a = &m->tensors[i - 1], *t = &m->tensors[i];
        if (!strcmp(a->name, t->name))
            return err_set(err, WHALE_E_FORMAT,
                           "%s: tensor '%.*s': appears twice (in %s and %s)", m->path,
                           NAME_SHOWN, t->name, m->shards[a->shard].path,
                           m->shards[t->shard].path);
    }
    if (metadata_finish(m) != 0) return err_set(err, WHALE_E_NOMEM, "%s: out of memory", m->path);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Opening: files, indexes, directories
 * ------------------------------------------------------------------------------------------- */

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), n = strlen(name);
    while (a > 1 && dir[a - 1] == '/') a--; /* "dir/" + name without a double slash */
    char *p = malloc(a + n + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, n + 1);
    return p;
}

static char *path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Append " (hint)" to the message already in err. */
static void err_hint(whale_err *err, const char *hint) {
    if (!err) return;
    size_t used = strlen(err->msg);
    if (used < sizeof err->msg) snprintf(err->msg + used, sizeof err->msg - used, " (%s)", hint);
}

/* Map and parse the shards names[0..n) (file names inside m->dir), in that order. */
static int open_shards(st_model *m, st_build *b, const char *const *names, int n, whale_err *err) {
    m->shards = calloc((size_t)n, sizeof *m->shards);
    if (!m->shards) return err_set(err, WHALE_E_NOMEM, "%s: out of memory", m->path);
    for (int i = 0; i < n; i++) {
        char *p = path_join(m->dir, names[i]);
        if (!p) return err_set(err, WHALE_E_NOMEM, "%s: out of memory", m->path);
        int rc = mapfile_open(&m->shards[i], p, err);
        free(p);
        if (rc) {
            if (n > 1 || ends_with(m->path, ".json"))
                err_hint(err, "a shard of this checkpoint is missing: incomplete download?");
            return rc;
        }
        m->n_shards = i + 1;
        rc = parse_shard(m, b, i, err);
        if (rc) return rc;
    }
    return 0;
}

/* A shard name from an index must be a plain file name beside the index: no directories, so
 * a hostile index cannot point us at arbitrary files. */
static int shard_name_ok(const char *s) {
    return s[0] && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/') && !strchr(s, '\\');
}

/* Open a model.safetensors.index.json at m->path: map the shards its weight_map names (each
 * once, in name order), then check every weight_map entry is in the shard it names. */
static int open_index(st_model *m, st_build *b, whale_err *err) {
    mapfile f;
    int rc = mapfile_open(&f, m->path, err);
    if (rc) return rc;
    if (f.size > ST_MAX_INDEX_BYTES) {
        rc = err_set(err, WHALE_E_FORMAT, "%s: index is %zu bytes, over the %u MiB limit", m->path,
                     f.size, ST_MAX_INDEX_BYTES >> 20);
        mapfile_close(&f);
        return rc;
    }
    cJSON *root = json_parse_bytes(m->path, "index", f.data, f.size, err);
    mapfile_close(&f);
    if (!root) return err ? err->code : WHALE_E_FORMAT;

    const char **names = NULL;
    const cJSON *wm = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map")
                                           : NULL;
    if (!cJSON_IsObject(wm)) {
        rc = err_set(err, WHALE_E_FORMAT,
                     "%s: index has no \"weight_map\" object (not a safetensors index?)", m->path);
        goto done;
    }
    size_t n_entries = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !e->valuestring || !shard_name_ok(e->valuestring)) {
            rc = err_set(err, WHALE_E_FORMAT,
                         "%s: tensor '%.*s': weight_map value is not a shard file name beside the "
                         "index",
                         m->path, NAME_SHOWN, e->string ? e->string : "");
            goto done;
        }
        n_entries++;
    }
    if (!n_entries) {
        rc = err_set(err, WHALE_E_FORMAT, "%s: weight_map is empty", m->path);
        goto done;
    }
    names = malloc(n_entries * sizeof *names);
    if (!names) {
        rc = err_set(err, WHALE_E_NOMEM, "%s: out of memory", m->path);
        goto done;
    }
    size_t k = 0;
    cJSON_ArrayForEach(e, wm) names[k++] = e->valuestring;
    qsort(names, n_entries, sizeof *names, cmp_cstr);
    size_t n_unique = 0;
    for (size_t i = 0; i < n_entries; i++)
        if (!n_unique || strcmp(names[n_unique - 1], names[i])) names[n_unique++] = names[i];
    if (n_unique > ST_MAX_SHARDS) {
        rc = err_set(err, WHALE_E_FORMAT, "%s: weight_map names %zu shards, over the limit of %d",
                     m->path, n_unique, ST_MAX_SHARDS);
        goto done;
    }
    rc = open_shards(m, b, names, (int)n_unique, err);
    if (rc) goto done;
    rc = finish(m, err);
    if (rc) goto done;

    cJSON_ArrayForEach(e, wm) {
        const st_tensor *t = st_find(m, e->string);
        const char **sh = bsearch(&e->valuestring, names, n_unique, sizeof *names, cmp_cstr);
        if (!t || !sh || t->shard != (int)(sh - names)) {
            rc = err_set(err, WHALE_E_FORMAT,
                         "%s: tensor '%.*s': weight_map puts it in %s, which does not hold it "
                         "(incomplete download?)",
                         m->path, NAME_SHOWN, e->string, e->valuestring);
            goto done;
        }
    }
done:
    free(names);
    cJSON_Delete(root);
    return rc;
}

/* A directory without an index: every *.safetensors in it, in name order. */
static int open_dir_scan(st_model *m, st_build *b, whale_err *err) {
    DIR *d = opendir(m->dir);
    if (!d) return err_set(err, WHALE_E_IO, "%s: cannot open directory: %s", m->dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || !ends_with(de->d_name, ".safetensors")) continue;
        if (n == ST_MAX_SHARDS) {
            rc = err_set(err, WHALE_E_FORMAT, "%s: more than %d .safetensors files", m->dir,
                         ST_MAX_SHARDS);
            goto done;
        }
        if (n == cap) {
            size_t c2 = cap ? cap * 2 : 16;
            char **nn = realloc(names, c2 * sizeof *nn);
            if (!nn) {
                rc = err_set(err, WHALE_E_NOMEM, "%s: out of memory", m->dir);
                goto done;
            }
            names = nn;
            cap = c2;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = err_set(err, WHALE_E_NOMEM, "%s: out of memory", m->dir);
            goto done;
        }
        n++;
    }
    if (!n) {
        rc = err_set(err, WHALE_E_NOTFOUND,
                     "%s: no model.safetensors.index.json or *.safetensors files in this directory",
                     m->dir);
        goto done;
    }
    qsort(names, n, sizeof *names, cmp_cstr);
    rc = open_shards(m, b, (const char *const *)names, (int)n, err);
    if (!rc) rc = finish(m, err);
done:
    closedir(d);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int st_open(st_model *m, const char *path, whale_err *err) {
    memset(m, 0, sizeof *m);
    st_build b = {0, 0};
    int rc;
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set(err, WHALE_E_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        m->dir = strdup(path);
        char *idx = m->dir ? path_join(path, "model.safetensors.index.json") : NULL;
        if (!idx) {
            st_close(m);
            return err_set(err, WHALE_E_NOMEM, "%s: out of memory", path);
        }
        if (is_file(idx)) {
            m->path = idx;
            rc = open_index(m, &b, err);
        } else {
            free(idx);
            m->path = strdup(path);
            if (!m->path) {
                rc = err_set(err, WHALE_E_NOMEM, "%s: out of memory", path);
            } else {
                char *single = path_join(path, "model.safetensors");
                if (!single) {
                    rc = err_set(err, WHALE_E_NOMEM, "%s: out of memory", path);
                } else if (is_file(single)) {
                    free(single);
                    const char *one = "model.safetensors";
                    rc = open_shards(m, &b, &one, 1, err);
                    if (!rc) rc = finish(m, err);
                } else {
                    free(single);
                    rc = open_dir_scan(m, &b, err);
                }
            }
        }
    } else {
        m->path = strdup(path);
        m->dir = path_dirname(path);
        if (!m->path || !m->dir) {
            rc = err_set(err, WHALE_E_NOMEM, "%s: out of memory", path);
        } else if (ends_with(path, ".json")) {
            rc = open_index(m, &b, err);
        } else {
            const char *base = strrchr(path, '/');
            base = base ? base + 1 : path;
            rc = open_shards(m, &b, &base, 1, err);
            if (!rc) rc = finish(m, err);
        }
    }
    if (rc) st_close(m);
    return rc;
}

int st_open_memory(st_model *m, const void *data, size_t size, whale_err *err) {
    memset(m, 0, sizeof *m);
    st_build b = {0, 0};
    int rc;
    m->path = strdup("<memory>");
    m->dir = strdup(".");
    m->shards = calloc(1, sizeof *m->shards);
    if (!m->path || !m->dir || !m->shards) {
        st_close(m);
        return err_set(err, WHALE_E_NOMEM, "<memory>: out of memory");
    }
    rc = mapfile_from_memory(&m->shards[0], data, size, "<memory>", err);
    if (!rc) {
        m->n_shards = 1;
        rc = parse_shard(m, &b, 0, err);
    }
    if (!rc) rc = finish(m, err);
    if (rc) st_close(m);
    return rc;
}

void st_close(st_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_tensors; i++) free(m->tensors[i].name);
    free(m->tensors);
    for (size_t i = 0; i < m->n_metadata; i++) {
        free(m->metadata[i].key);
        free(m->metadata[i].value);
    }
    free(m->metadata);
    for (int i = 0; i < m->n_shards; i++) mapfile_close(&m->shards[i]);
    free(m->shards);
    free(m->path);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

const st_tensor *st_find(const st_model *m, const char *name) {
    if (!m->n_tensors || !name) return NULL;
    st_tensor key;
    memset(&key, 0, sizeof key);
    key.name = (char *)name; /* only read by cmp_tensor */
    return bsearch(&key, m->tensors, m->n_tensors, sizeof *m->tensors, cmp_tensor);
}

static int cmp_kv_key(const void *k, const void *e) {
    return strcmp((const char *)k, ((const st_kv *)e)->key);
}

const char *st_metadata(const st_model *m, const char *key) {
    if (!m->n_metadata || !key) return NULL;
    const st_kv *kv = bsearch(key, m->metadata, m->n_metadata, sizeof *m->metadata, cmp_kv_key);
    return kv ? kv->value : NULL;
}
