/* tokenizer.c — vocabulary tables and loading, from GGUF metadata or tokenizer.json.
 * Encoding and decoding are in bpe.c; pre-tokenization in pretokenize.c. */
#include "tokenizer/tokenizer_impl.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/mapfile.h"
#include "base/utf8.h"

/* A tokenizer.json is a few MB; 256 MiB is far beyond any real one and stops a hostile file
 * from making us hold an arbitrary amount of JSON. */
#define TOK_JSON_MAX_BYTES (256u << 20)
/* More tokens than this is no vocabulary we know of (the largest are ~260k). */
#define TOK_MAX_VOCAB (1 << 22)

/* ---- hashing -------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

int32_t tokenizer_find(const tokenizer *t, const char *text, size_t len) {
    if (!t->map_cap) return -1;
    size_t mask = t->map_cap - 1;
    for (size_t i = hash_bytes(text, len) & mask;; i = (i + 1) & mask) {
        int32_t id = t->map[i];
        if (id < 0) return -1;
        if (t->len[id] == len && !memcmp(t->text + t->off[id], text, len)) return id;
    }
}

int32_t tokenizer_find_added(const tokenizer *t, const char *text, size_t len) {
    for (size_t i = 0; i < t->n_added; i++) {
        int32_t id = t->added[i];
        if (t->len[id] == len && !memcmp(t->text + t->off[id], text, len)) return id;
    }
    return -1;
}

int tok_merge_find(const tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *result) {
    if (!t->merge_cap) return 0;
    size_t mask = t->merge_cap - 1;
    for (size_t i = hash_id_pair(a, b) & mask;; i = (i + 1) & mask) {
        const tok_merge *m = &t->merges[i];
        if (m->rank < 0) return 0;
        if (m->a == a && m->b == b) {
            *rank = m->rank;
            *result = m->result;
            return 1;
        }
    }
}

/* ---- building ------------------------------------------------------------------------- */

static tokenizer *tok_alloc(int64_t n) {
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n_vocab = n;
    t->off = calloc((size_t)n, sizeof *t->off);
    t->len = calloc((size_t)n, sizeof *t->len);
    t->attr = calloc((size_t)n, sizeof *t->attr);
    t->bos = t->eos = -1;
    if (!t->off || !t->len || !t->attr) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->off);
    free(t->len);
    free(t->attr);
    free(t->map);
    free(t->merges);
    free(t->added);
    free(t->in_model_vocab);
    pretok_free(t->pre);
    free(t);
}

/* Append token text for id (ids may arrive in any order). */
static int tok_set_text(tokenizer *t, int32_t id, const char *s, size_t n) {
    if (t->text_n + n + 1 > t->text_cap) {
        size_t cap = t->text_cap ? t->text_cap : 1 << 20;
        while (cap < t->text_n + n + 1) cap *= 2;
        char *p = realloc(t->text, cap);
        if (!p) return -1;
        t->text = p;
        t->text_cap = cap;
    }
    memcpy(t->text + t->text_n, s, n);
    t->text[t->text_n + n] = 0;
    t->off[id] = t->text_n;
    t->len[id] = (uint32_t)n;
    t->text_n += n + 1;
    return 0;
}

/* Index every token that BPE may produce (the model vocabulary: not added tokens, which are
 * matched separately and only when special parsing is on). */
static int build_map(tokenizer *t, whale_err *err) {
    t->map_cap = pow2_at_least((size_t)t->n_vocab * 2);
    t->map = malloc(t->map_cap * sizeof *t->map);
    if (!t->map) return err_set(err, WHALE_E_NOMEM, "out of memory for the vocabulary index");
    memset(t->map, 0xff, t->map_cap * sizeof *t->map);
    size_t mask = t->map_cap - 1;
    size_t n_added = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->attr[id] == TOK_CONTROL || t->attr[id] == TOK_USER) {
            n_added++;
            if (!t->in_model_vocab || !t->in_model_vocab[id]) continue;
        }
        const char *s = t->text + t->off[id];
        size_t i = hash_bytes(s, t->len[id]) & mask;
        for (;; i = (i + 1) & mask) {
            int32_t o = t->map[i];
            if (o < 0) break;
            if (t->len[o] == t->len[id] && !memcmp(t->text + t->off[o], s, t->len[id])) break; /* duplicate text: first id wins */
        }
        if (t->map[i] < 0) t->map[i] = id;
    }
    /* Added tokens, longest first, for special parsing. */
    t->added = malloc((n_added ? n_added : 1) * sizeof *t->added);
    if (!t->added) return err_set(err, WHALE_E_NOMEM, "out of memory");
    t->n_added = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->attr[id] == TOK_CONTROL || t->attr[id] == TOK_USER) && t->len[id] > 0) t->added[t->n_added++] = id;
    for (size_t i = 1; i < t->n_added; i++) { /* insertion sort by length, descending */
        int32_t x = t->added[i];
        size_t j = i;
        while (j > 0 && t->len[t->added[j - 1]] < t->len[x]) {
            t->added[j] = t->added[j - 1];
            j--;
        }
        t->added[j] = x;
    }
    return 0;
}

static int add_merge(tokenizer *t, const char *a, size_t na, const char *b, size_t nb, int32_t rank) {
    int32_t ia = tokenizer_find(t, a, na), ib = tokenizer_find(t, b, nb);
    if (ia < 0 || ib < 0 || na + nb > 4096) return -1;
    char buf[4096];
    memcpy(buf, a, na);
    memcpy(buf + na, b, nb);
    int32_t r = tokenizer_find(t, buf, na + nb);
    if (r < 0) return -1;
    size_t mask = t->merge_cap - 1;
    for (size_t i = hash_id_pair(ia, ib) & mask;; i = (i + 1) & mask) {
        tok_merge *m = &t->merges[i];
        if (m->rank >= 0 && m->a == ia && m->b == ib) return 0; /* duplicate: keep the lower rank */
        if (m->rank < 0) {
            m->a = ia;
            m->b = ib;
            m->rank = rank;
            m->result = r;
            t->n_merges++;
            return 0;
        }
    }
}

static int merges_alloc(tokenizer *t, size_t n, whale_err *err) {
    t->merge_cap = pow2_at_least(n * 2);
    t->merges = malloc(t->merge_cap * sizeof *t->merges);
    if (!t->merges) return err_set(err, WHALE_E_NOMEM, "out of memory for %zu merges", n);
    for (size_t i = 0; i < t->merge_cap; i++) t->merges[i].rank = -1;
    return 0;
}

/* Fill byte -> token id of its byte-level character (GPT-2's byte to unicode map). */
static void build_byte_table(tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char s[4];
        int n = utf8_encode(tok_byte_to_cp((unsigned char)b), s);
        t->byte_tok[b] = tokenizer_find(t, s, (size_t)n);
    }
}


/* ---- GGUF ----------------------------------------------------------------------------- */

int tokenizer_load_gguf(tokenizer **out, const gguf_file *f, whale_err *err) {
    *out = NULL;
    gguf_str model;
    int rc = gguf_get_str(f, "tokenizer.ggml.model", &model, err);
    if (rc == WHALE_E_NOTFOUND) return err_set(err, WHALE_E_NOTFOUND, "no tokenizer in this file (tokenizer.ggml.model missing)");
    if (rc) return rc;
    if (model.n != 4 || memcmp(model.s, "gpt2", 4))
        return err_set(err, WHALE_E_UNSUPPORTED, "tokenizer model '%.*s' is not supported (Whale reads byte-level BPE, 'gpt2')",
                       (int)model.n, model.s);
    const gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GGUF_TYPE_ARRAY || tokens->arr_type != GGUF_TYPE_STRING)
        return err_set(err, WHALE_E_FORMAT, "tokenizer.ggml.tokens is missing or not a string array");
    if (tokens->arr_n == 0 || tokens->arr_n > TOK_MAX_VOCAB)
        return err_set(err, WHALE_E_FORMAT, "tokenizer.ggml.tokens has %llu entries", (unsigned long long)tokens->arr_n);
    const gguf_kv *types = gguf_find(f, "tokenizer.ggml.token_type");
    if (types && (types->type != GGUF_TYPE_ARRAY || types->arr_n != tokens->arr_n ||
                  gguf_type_size(types->arr_type) == 0))
        return err_set(err, WHALE_E_FORMAT, "tokenizer.ggml.token_type does not match the token list");
    const gguf_kv *merges = gguf_find(f, "tokenizer.ggml.merges");
    if (!merges || merges->type != GGUF_TYPE_ARRAY || merges->arr_type != GGUF_TYPE_STRING)
        return err_set(err, WHALE_E_FORMAT, "tokenizer.ggml.merges is missing or not a string array");

    tokenizer *t = tok_alloc((int64_t)tokens->arr_n);
    if (!t) return err_set(err, WHALE_E_NOMEM, "out of memory for the vocabulary");
    for (uint64_t i = 0; i < tokens->arr_n; i++) {
        gguf_str s = gguf_arr_str(tokens, i);
        if (s.n > UINT32_MAX || tok_set_text(t, (int32_t)i, s.s, (size_t)s.n)) {
            tokenizer_free(t);
            return err_set(err, WHALE_E_NOMEM, "out of memory for the vocabulary");
        }
        int64_t ty = types ? gguf_arr_i64(types, i) : TOK_NORMAL;
        t->attr[i] = (uint8_t)(ty >= 1 && ty <= 6 ? ty : TOK_NORMAL);
    }
    gguf_str pre = {"default", 7};
    rc = gguf_get_str(f, "tokenizer.ggml.pre", &pre, err);
    if (rc && rc != WHALE_E_NOTFOUND) goto fail;
    snprintf(t->pre_name, sizeof t->pre_name, "%.*s", (int)(pre.n < 63 ? pre.n : 63), pre.s);
    rc = pretok_builtin(&t->pre, t->pre_name, &t->nfc, &t->ignore_merges, err);
    if (rc) {
        err_prefix(err, "tokenizer.ggml.pre");
        goto fail;
    }
    rc = build_map(t, err);
    if (rc) goto fail;
    rc = merges_alloc(t, (size_t)merges->arr_n, err);
    if (rc) goto fail;
    for (uint64_t i = 0; i < merges->arr_n; i++) {
        gguf_str m = gguf_arr_str(merges, i);
        const char *sp = memchr(m.s, ' ', (size_t)m.n);
        if (!sp || add_merge(t, m.s, (size_t)(sp - m.s), sp + 1, (size_t)(m.s + m.n - sp - 1), (int32_t)i))
            t->n_bad_merges++;
    }
    int64_t v;
    if (!gguf_get_i64(f, "tokenizer.ggml.bos_token_id", &v, NULL) && v >= 0 && v < t->n_vocab) t->bos = (int32_t)v;
    if (!gguf_get_i64(f, "tokenizer.ggml.eos_token_id", &v, NULL) && v >= 0 && v < t->n_vocab) t->eos = (int32_t)v;
    int ab = 0;
    if (!gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &ab, NULL)) t->add_bos = ab;
    build_byte_table(t);
    *out = t;
    return 0;
fail:
    tokenizer_free(t);
    return rc;
}

/* ---- tokenizer.json ------------------------------------------------------------------- */

static char *read_small_file(const char *path, size_t max, size_t *len, whale_err *err) {
    mapfile m;
    if (mapfile_open(&m, path, err)) return NULL;
    if (m.size > max) {
        err_set(err, WHALE_E_FORMAT, "%s: %zu bytes, larger than the %zu-byte limit", path, m.size, max);
        mapfile_close(&m);
        return NULL;
    }
    char *s = malloc(m.size + 1);
    if (!s) {
        err_set(err, WHALE_E_NOMEM, "%s: out of memory", path);
        mapfile_close(&m);
        return NULL;
    }
    if (m.size) memcpy(s, m.data, m.size);
    s[m.size] = 0;
    *len = m.size;
    mapfile_close(&m);
    return s;
}

/* Build the pre-tokenizer from tokenizer.json's "pre_tokenizer" (Sequence of Split/Digits/
 * ByteLevel, or a single one). */
static int json_pretok(tokenizer *t, const cJSON *pt, whale_err *err) {
    t->pre = pretok_new();
    if (!t->pre) return err_set(err, WHALE_E_NOMEM, "out of memory");
    snprintf(t->pre_name, sizeof t->pre_name, "tokenizer.json");
    if (!pt || cJSON_IsNull(pt)) return 0;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pt, "type");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    const cJSON *one = pt;
    int seq = cJSON_IsString(type) && !strcmp(type->valuestring, "Sequence");
    if (seq && !cJSON_IsArray(list)) return err_set(err, WHALE_E_FORMAT, "pre_tokenizer Sequence without a list");
    const cJSON *it = seq ? list->child : one;
    for (; it; it = seq ? it->next : NULL) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(it, "type");
        if (!cJSON_IsString(ty)) return err_set(err, WHALE_E_FORMAT, "pre_tokenizer step without a type");
        const char *s = ty->valuestring;
        int rc = 0;
        if (!strcmp(s, "Split")) {
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(it, "pattern");
            const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
            const cJSON *beh = cJSON_GetObjectItemCaseSensitive(it, "behavior");
            const cJSON *inv = cJSON_GetObjectItemCaseSensitive(it, "invert");
            if (!cJSON_IsString(re) || !cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") || cJSON_IsTrue(inv))
                return err_set(err, WHALE_E_UNSUPPORTED, "pre_tokenizer Split: only Regex patterns with behavior Isolated are supported");
            rc = pretok_add_split(t->pre, re->valuestring, strlen(re->valuestring), err);
        } else if (!strcmp(s, "Digits")) {
            if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "individual_digits")))
                return err_set(err, WHALE_E_UNSUPPORTED, "pre_tokenizer Digits without individual_digits");
            rc = pretok_add_digits(t->pre, err);
        } else if (!strcmp(s, "ByteLevel")) {
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "add_prefix_space")))
                return err_set(err, WHALE_E_UNSUPPORTED, "pre_tokenizer ByteLevel with add_prefix_space");
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "use_regex")))
                rc = pretok_add_split(t->pre, pretok_gpt2_pattern, strlen(pretok_gpt2_pattern), err);
        } else {
            return err_set(err, WHALE_E_UNSUPPORTED, "pre_tokenizer type '%s' is not supported", s);
        }
        if (rc) return rc;
    }
    return 0;
}

static int json_normalizer(tokenizer *t, const cJSON *n, whale_err *err) {
    if (!n || cJSON_IsNull(n)) return 0;
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(n, "type");
    if (!cJSON_IsString(ty)) return err_set(err, WHALE_E_FORMAT, "normalizer without a type");
    if (!strcmp(ty->valuestring, "NFC")) {
        t->nfc = 1;
        return 0;
    }
    if (!strcmp(ty->valuestring, "Sequence")) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        for (const cJSON *it = l ? l->child : NULL; it; it = it->next) {
            int rc = json_normalizer(t, it, err);
            if (rc) return rc;
        }
        return 0;
    }
    return err_set(err, WHALE_E_UNSUPPORTED, "normalizer '%s' is not supported", ty->valuestring);
}

/* tokenizer_config.json's "bos_token"/"eos_token": a string or {"content": ...}. */
static int32_t config_token(const tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v)) return -1;
    size_t n = strlen(v->valuestring);
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->len[id] == n && !memcmp(t->text + t->off[id], v->valuestring, n)) return id;
    return -1;
}

static void load_config(tokenizer *t, const char *json_path) {
    const char *slash = strrchr(json_path, '/');
    char path[4096];
    snprintf(path, sizeof path, "%.*stokenizer_config.json", slash ? (int)(slash - json_path + 1) : 0, json_path);
    size_t len;
    char *s = read_small_file(path, 64u << 20, &len, NULL);
    if (!s) return;
    cJSON *cfg = cJSON_ParseWithLength(s, len);
    free(s);
    if (!cfg) return;
    t->bos = config_token(t, cfg, "bos_token");
    t->eos = config_token(t, cfg, "eos_token");
    t->add_bos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token")) ? 1 : 0;
    cJSON_Delete(cfg);
}

int tokenizer_load_json(tokenizer **out, const char *path, whale_err *err) {
    *out = NULL;
    size_t len;
    char *s = read_small_file(path, TOK_JSON_MAX_BYTES, &len, err);
    if (!s) return err ? err->code : WHALE_E_IO;
    cJSON *root = cJSON_ParseWithLength(s, len);
    free(s);
    if (!root) return err_set(err, WHALE_E_FORMAT, "%s: not valid JSON", path);
    tokenizer *t = NULL;
    int rc = 0;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsString(mtype) || strcmp(mtype->valuestring, "BPE")) {
        rc = err_set(err, WHALE_E_UNSUPPORTED, "model type is not BPE");
        goto done;
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        rc = err_set(err, WHALE_E_FORMAT, "model.vocab or model.merges missing");
        goto done;
    }
    /* The id space covers the model vocabulary and the added tokens. */
    int64_t n = 0;
    for (const cJSON *it = vocab->child; it; it = it->next) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= TOK_MAX_VOCAB) {
            rc = err_set(err, WHALE_E_FORMAT, "model.vocab: bad id for '%s'", it->string ? it->string : "?");
            goto done;
        }
        if ((int64_t)it->valuedouble + 1 > n) n = (int64_t)it->valuedouble + 1;
    }
    for (const cJSON *it = added ? added->child : NULL; it; it = it->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= TOK_MAX_VOCAB) {
            rc = err_set(err, WHALE_E_FORMAT, "added_tokens: bad id");
            goto done;
        }
        if ((int64_t)id->valuedouble + 1 > n) n = (int64_t)id->valuedouble + 1;
    }
    t = tok_alloc(n);
    if (!t) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto done;
    }
    t->in_model_vocab = calloc((size_t)n, 1);
    if (!t->in_model_vocab) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto done;
    }
    for (const cJSON *it = vocab->child; it; it = it->next) {
        int32_t id = (int32_t)it->valuedouble;
        if (tok_set_text(t, id, it->string, strlen(it->string))) {
            rc = err_set(err, WHALE_E_NOMEM, "out of memory");
            goto done;
        }
        t->attr[id] = TOK_NORMAL;
        t->in_model_vocab[id] = 1;
    }
    for (const cJSON *it = added ? added->child : NULL; it; it = it->next) {
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsString(content)) {
            rc = err_set(err, WHALE_E_FORMAT, "added token %d has no content", id);
            goto done;
        }
        if (!t->in_model_vocab[id] && tok_set_text(t, id, content->valuestring, strlen(content->valuestring))) {
            rc = err_set(err, WHALE_E_NOMEM, "out of memory");
            goto done;
        }
        t->attr[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special")) ? TOK_CONTROL : TOK_USER;
    }
    for (int64_t id = 0; id < n; id++)
        if (!t->attr[id]) t->attr[id] = TOK_UNUSED; /* holes in the id space */
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(model, "ignore_merges");
    t->ignore_merges = cJSON_IsTrue(im);
    if ((rc = json_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err))) goto done;
    if ((rc = json_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err))) goto done;
    if ((rc = build_map(t, err))) goto done;
    if ((rc = merges_alloc(t, (size_t)cJSON_GetArraySize(merges), err))) goto done;
    int32_t rank = 0;
    for (const cJSON *it = merges->child; it; it = it->next, rank++) {
        int bad = 1;
        if (cJSON_IsString(it)) {
            const char *m = it->valuestring, *sp = strchr(m, ' ');
            if (sp) bad = add_merge(t, m, (size_t)(sp - m), sp + 1, strlen(sp + 1), rank) != 0;
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) {
            const char *a = it->child->valuestring, *b = it->child->next->valuestring;
            bad = add_merge(t, a, strlen(a), b, strlen(b), rank) != 0;
        }
        t->n_bad_merges += (size_t)bad;
    }
    load_config(t, path);
    build_byte_table(t);
done:
    cJSON_Delete(root);
    if (rc) {
        tokenizer_free(t);
        return err_prefix(err, "%s", path);
    }
    free(t->in_model_vocab);
    t->in_model_vocab = NULL;
    *out = t;
    return 0;
}

/* ---- accessors ------------------------------------------------------------------------ */

int64_t tokenizer_n_vocab(const tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_bos(const tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const tokenizer *t) { return t->eos; }
const char *tokenizer_pre_name(const tokenizer *t) { return t->pre_name; }
size_t tokenizer_n_merges(const tokenizer *t) { return t->n_merges; }
int tokenizer_attr(const tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->attr[id] : 0;
}

int tokenizer_is_end(const tokenizer *t, int32_t id) {
    return t && (id == tokenizer_eos(t) || tokenizer_attr(t, id) == TOK_CONTROL);
}
const char *tokenizer_token_text(const tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->len[id];
    return t->text ? t->text + t->off[id] : "";
}

/* ---- export to GGUF ------------------------------------------------------------------- */

static int cmp_rank(const void *a, const void *b) {
    const tok_merge *x = a, *y = b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

int tokenizer_export_gguf(const tokenizer *t, gguf_writer *w, whale_err *err) {
    const char *pre = NULL;
    for (const char *const *n = pretok_builtin_names; *n; n++)
        if (!strcmp(*n, t->pre_name)) pre = *n;
    if (!pre) pre = pretok_builtin_match(t->pre);
    if (!pre)
        return err_set(err, WHALE_E_UNSUPPORTED, "the pre-tokenizer is not one GGUF can name (known: qwen2, llama-bpe, "
                       "deepseek-llm, deepseek-coder, deepseek-v3, gpt2)");
    int nfc, im;
    pretok_program *check;
    if (pretok_builtin(&check, pre, &nfc, &im, err)) return err->code;
    pretok_free(check);
    if (nfc != t->nfc || im != t->ignore_merges)
        return err_set(err, WHALE_E_UNSUPPORTED, "normalizer/merge settings differ from GGUF's '%s' pre-tokenizer", pre);

    int rc = WHALE_E_NOMEM;
    const char **strs = malloc((size_t)t->n_vocab * sizeof *strs);
    size_t *lens = malloc((size_t)t->n_vocab * sizeof *lens);
    int32_t *types = malloc((size_t)t->n_vocab * sizeof *types);
    tok_merge *ms = malloc((t->n_merges ? t->n_merges : 1) * sizeof *ms);
    char **mstr = calloc(t->n_merges ? t->n_merges : 1, sizeof *mstr);
    size_t k = 0;
    if (!strs || !lens || !types || !ms || !mstr) goto done;
    for (int64_t i = 0; i < t->n_vocab; i++) {
        strs[i] = t->text ? t->text + t->off[i] : "";
        lens[i] = t->len[i];
        types[i] = t->attr[i];
    }
    for (size_t i = 0; i < t->merge_cap; i++)
        if (t->merges[i].rank >= 0) ms[k++] = t->merges[i];
    qsort(ms, k, sizeof *ms, cmp_rank);
    for (size_t i = 0; i < k; i++) {
        size_t la = t->len[ms[i].a], lb = t->len[ms[i].b];
        if (!(mstr[i] = malloc(la + lb + 2))) goto done;
        memcpy(mstr[i], t->text + t->off[ms[i].a], la);
        mstr[i][la] = ' ';
        memcpy(mstr[i] + la + 1, t->text + t->off[ms[i].b], lb);
        mstr[i][la + lb + 1] = 0;
    }
    if (gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2") || gguf_writer_add_str(w, "tokenizer.ggml.pre", pre) ||
        gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", strs, lens, (uint64_t)t->n_vocab) ||
        gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)t->n_vocab) ||
        gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)mstr, NULL, k) ||
        (t->bos >= 0 && gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos)) ||
        (t->eos >= 0 && gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos)) ||
        gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos))
        goto done;
    rc = 0;
done:
    if (mstr)
        for (size_t i = 0; i < k; i++) free(mstr[i]);
    free(mstr);
    free(ms);
    free(types);
    free(lens);
    free(strs);
    return rc ? (rc == WHALE_E_NOMEM ? err_set(err, rc, "out of memory exporting the tokenizer") : rc) : 0;
}
