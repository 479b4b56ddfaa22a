/* whale_model.c — libwhale: opening a model, its tokens and text, chat formats, paths. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/utf8.h"
#include "formats/gguf.h"
#include "engine/prefix_cache.h"
#include "hub/hub.h"
#include "engine/reasoning.h"
#include "kernels/attn.h"
#include "lib/whale_impl.h"

const char *whale_version(void) { return WHALE_VERSION; }

const char *whale_home_path(const char *sub, char *buf, size_t cap) { return hub_home_path(sub, buf, cap); }

int whale_model_resolve(const char *name, char *buf, size_t cap, whale_err *err) {
    return hub_resolve(name, buf, cap, err);
}

/* Identity of the model's weights for the context cache: a file's size, modification time,
 * inode and device, and its first and last MiB (header, tensor table, some weights); a
 * checkpoint directory's files' names, sizes and modification times. A changed model gets a
 * new identity, so stale cache blocks are never used. */
static uint64_t identity(const char *path) {
    struct stat sb;
    if (stat(path, &sb)) return 0;
    int64_t id[4] = {(int64_t)sb.st_size, (int64_t)sb.st_mtime, (int64_t)sb.st_ino, (int64_t)sb.st_dev};
    uint64_t h = pcache_hash(0, id, sizeof id);
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        char p[4096];
        uint64_t sum = 0;
        while (d && (de = readdir(d))) { /* summed: the order of the entries does not matter */
            struct stat e;
            if (de->d_name[0] == '.' || snprintf(p, sizeof p, "%s/%s", path, de->d_name) >= (int)sizeof p || stat(p, &e))
                continue;
            int64_t x[2] = {(int64_t)e.st_size, (int64_t)e.st_mtime};
            sum += pcache_hash(pcache_hash(0, de->d_name, strlen(de->d_name)), x, sizeof x);
        }
        if (d) closedir(d);
        return pcache_hash(h, &sum, sizeof sum);
    }
    FILE *f = fopen(path, "rb");
    if (!f) return h;
    enum { SPAN = 1 << 20 };
    char *buf = malloc(SPAN);
    for (int end = 0; buf && end < 2; end++) {
        if (end && fseeko(f, sb.st_size > SPAN ? sb.st_size - SPAN : 0, SEEK_SET)) break;
        size_t n = fread(buf, 1, SPAN, f);
        h = pcache_hash(h, buf, n);
    }
    free(buf);
    fclose(f);
    return h;
}

/* The vocabulary alone: a tokenizer.json (or a directory holding one), or a GGUF's metadata
 * (tokenizer and chat template; no weights are read). */
static int open_vocab(whale_model *w, whale_err *err) {
    struct stat st;
    char buf[4200];
    const char *path = w->path;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(buf, sizeof buf, "%s/tokenizer.json", path);
        path = buf;
    }
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) return tokenizer_load_json(&w->own_tok, path, err);
    gguf_file f;
    int rc = gguf_open(&f, path, GGUF_OPEN_METADATA_ONLY, err);
    if (rc) return rc;
    if ((rc = tokenizer_load_gguf(&w->own_tok, &f, err))) err_prefix(err, "%s", path);
    gguf_str tmpl;
    if (!rc && !gguf_get_str(&f, "tokenizer.chat_template", &tmpl, NULL) && (w->own_template = malloc((size_t)tmpl.n + 1))) {
        memcpy(w->own_template, tmpl.s, (size_t)tmpl.n);
        w->own_template[tmpl.n] = 0;
    }
    gguf_close(&f);
    return rc;
}

int whale_model_open(whale_model **out, const char *path, const whale_model_params *p, whale_err *err) {
    *out = NULL;
    whale_model *w = calloc(1, sizeof *w);
    if (!w) return err_set(err, WHALE_E_NOMEM, "out of memory");
    int rc = hub_resolve(path, w->path, sizeof w->path, err);
    if (rc) {
        free(w);
        return rc;
    }
    model_opts mo = {0};
    _Static_assert((int)WHALE_KV_F32 == (int)OP_KV_F32 && (int)WHALE_KV_F16 == (int)OP_KV_F16 &&
                       (int)WHALE_KV_BF16 == (int)OP_KV_BF16 && (int)WHALE_KV_Q8 == (int)OP_KV_Q8,
                   "whale.h's KV types are the kernels'");
    if (p) mo.n_threads = p->n_threads, mo.kv_type = p->kv_type, mo.progress = p->progress;
    w->n_threads = mo.n_threads;
    rc = p && p->vocab_only ? open_vocab(w, err) : model_load(&w->m, w->path, &mo, err);
    if (rc) {
        tokenizer_free(w->own_tok);
        free(w->own_template);
        free(w);
        return rc;
    }
    const char *tmpl = w->own_template;
    if (w->m) {
        const model_hparams *hp = model_hparams_get(w->m);
        snprintf(w->arch, sizeof w->arch, "%s", model_arch_name(hp->arch));
        w->identity = identity(w->path);
        w->tok = model_tokenizer(w->m);
        tmpl = model_chat_template(w->m);
    } else {
        w->tok = w->own_tok;
    }
    const tokenizer *t = w->tok;
    w->fmt = t ? chat_format_detect(tmpl, t, NULL) : CHAT_FORMAT_NONE;
    w->think_end = t ? tokenizer_find_added(t, "</think>", 8) : -1;
    tok_ids ids = {0};
    whale_err e = {0};
    static const char close[] = "\n</think>\n\n"; /* its length, not its size: no NUL token forced */
    if (w->think_end >= 0 && !tokenizer_encode(t, close, sizeof close - 1, TOK_PARSE_SPECIAL, &ids, &e) && ids.n < 8) {
        memcpy(w->close, ids.v, ids.n * sizeof *ids.v);
        w->n_close = ids.n;
    }
    tok_ids_free(&ids);
    *out = w;
    return 0;
}

int whale_model_lora(whale_model *w, const char *path, whale_err *err) {
    if (!w->m) return err_set(err, WHALE_E_ARG, "%s: a model opened for its vocabulary only takes no adapter", path);
    int rc = model_lora_load(w->m, path, err);
    if (rc) return rc;
    /* cache blocks of the adapted model are not the base's: the adapter's files join the identity */
    uint64_t a = identity(path);
    w->identity = pcache_hash(w->identity, &a, sizeof a);
    return 0;
}

const char *whale_model_lora_path(const whale_model *w) { return w->m ? model_lora_path(w->m) : NULL; }

void whale_model_close(whale_model *w) {
    if (!w) return;
    model_free(w->m);
    tokenizer_free(w->own_tok);
    free(w->own_template);
    free(w);
}

void whale_model_info_get(const whale_model *w, whale_model_info *o) {
    memset(o, 0, sizeof *o);
    o->path = w->path;
    o->name = "";
    o->arch = w->arch;
    o->chat_format = w->fmt == CHAT_FORMAT_NONE ? NULL : chat_format_name(w->fmt);
    o->has_tokenizer = w->tok != NULL;
    o->reasoning = w->fmt == CHAT_FORMAT_DEEPSEEK_R1;
    o->n_vocab = w->tok ? tokenizer_n_vocab(w->tok) : 0;
    if (!w->m) return;
    const model_hparams *hp = model_hparams_get(w->m);
    o->name = hp->name;
    o->n_vocab = model_n_vocab(w->m);
    o->n_embd = hp->n_embd;
    o->n_layer = hp->n_layer;
    o->n_ctx_train = hp->n_ctx_train;
    o->has_mtp = model_has_mtp(w->m);
}

/* ---- tokens ---------------------------------------------------------------------------------- */

void whale_ids_free(whale_ids *ids) { tok_ids_free(ids); }
int whale_ids_push(whale_ids *ids, int32_t id) { return tok_ids_push(ids, id); }

static const tokenizer *tok_of(const whale_model *w, whale_err *err) {
    const tokenizer *t = w->tok;
    if (!t) err_set(err, WHALE_E_UNSUPPORTED, "%s has no tokenizer: give token ids", w->path);
    return t;
}

int whale_tokenize(const whale_model *w, const char *text, size_t len, int flags, whale_ids *out, whale_err *err) {
    const tokenizer *t = tok_of(w, err);
    if (!t) return WHALE_E_UNSUPPORTED;
    int f = (flags & WHALE_TOK_SPECIAL ? TOK_PARSE_SPECIAL : 0) | (flags & WHALE_TOK_ADD_BOS ? TOK_ADD_BOS : 0);
    return tokenizer_encode(t, text, len, f, out, err);
}

char *whale_detokenize(const whale_model *w, const int32_t *ids, size_t n, size_t *len) {
    const tokenizer *t = w->tok;
    size_t l;
    return t ? tokenizer_decode(t, ids, n, len ? len : &l) : NULL;
}

int whale_token_bytes(const whale_model *w, int32_t id, char *buf, size_t cap) {
    const tokenizer *t = w->tok;
    return t ? tokenizer_token_bytes(t, id, buf, cap) : -1;
}

int whale_token_is_end(const whale_model *w, int32_t id) {
    return tokenizer_is_end(w->tok, id);
}

int32_t whale_token_find(const whale_model *w, const char *text) {
    const tokenizer *t = w->tok;
    return t && text ? tokenizer_find_added(t, text, strlen(text)) : -1;
}

/* ---- streaming text --------------------------------------------------------------------------- */

struct whale_text {
    const whale_model *w;
    tok_stream ts;
    reasoning rs;
    whale_text_sink sink;
    void *ctx;
    int plain; /* WHALE_TEXT_PLAIN: no reasoning split */
};

static void pass(void *ctx, reasoning_kind kind, const char *text, size_t n) {
    whale_text *t = ctx;
    t->sink(t->ctx, kind == REASONING_THINK ? WHALE_TEXT_THINK : WHALE_TEXT_ANSWER, text, n);
}

/* Text out is valid UTF-8 without NUL bytes, whatever a confused model emits: an invalid byte,
 * or a NUL (a byte token of its own, which would cut a C string short), becomes U+FFFD. */
static void emit(whale_text *t, const char *s, size_t n) {
    if (t->plain) t->sink(t->ctx, WHALE_TEXT_ANSWER, s, n);
    else reasoning_feed(&t->rs, s, n);
}

static void feed(whale_text *t, const char *s, size_t n) {
    size_t run = 0; /* start of the valid bytes not yet passed on */
    for (size_t i = 0; i < n;) {
        int l = s[i] ? utf8_seq_len((const unsigned char *)s + i, n - i) : 0;
        if (l > 0) {
            i += (size_t)l;
            continue;
        }
        if (i > run) emit(t, s + run, i - run);
        emit(t, "\xef\xbf\xbd", 3);
        run = ++i;
    }
    if (n > run) emit(t, s + run, n - run);
}

whale_text *whale_text_new(const whale_model *w, int flags, whale_text_sink sink, void *ctx) {
    whale_text *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->w = w;
    t->sink = sink;
    t->ctx = ctx;
    t->plain = (flags & WHALE_TEXT_PLAIN) != 0;
    reasoning_init(&t->rs, !t->plain && (flags & WHALE_TEXT_START_IN_THINK), pass, t);
    return t;
}

void whale_text_feed(whale_text *t, const int32_t *ids, size_t n) {
    const tokenizer *tk = t->w->tok;
    if (!tk) return;
    char buf[2048];
    for (size_t i = 0; i < n; i++) {
        if (whale_token_is_end(t->w, ids[i])) continue;
        int k = tokenizer_stream(tk, &t->ts, ids[i], buf, sizeof buf);
        if (k > 0) feed(t, buf, (size_t)k);
    }
}

int whale_text_in_think(const whale_text *t) { return t->rs.in_think; }

void whale_text_end(whale_text *t) {
    const tokenizer *tk = t->w->tok;
    char buf[64];
    int k = tk ? tokenizer_stream(tk, &t->ts, -1, buf, sizeof buf) : 0;
    if (k > 0) feed(t, buf, (size_t)k);
    if (!t->plain) reasoning_flush(&t->rs);
}

void whale_text_free(whale_text *t) { free(t); }

/* ---- chat ------------------------------------------------------------------------------------- */

static chat_format_kind format_of(const whale_model *w, const char *format) {
    if (!format) return w->fmt;
    return w->tok ? chat_format_detect(NULL, w->tok, format) : CHAT_FORMAT_NONE;
}

const char *whale_chat_format(const whale_model *w, const char *format) {
    chat_format_kind k = format_of(w, format);
    return k == CHAT_FORMAT_NONE ? NULL : chat_format_name(k);
}

int whale_chat_format_thinks(const char *format) {
    return format && chat_format_thinks(chat_format_detect(NULL, NULL, format));
}

const char *whale_chat_template(const char *format) {
    return format && chat_format_detect(NULL, NULL, format) == CHAT_FORMAT_CHATML_THINK
               ? chat_template_chatml_think
               : NULL;
}

int whale_chat_apply(const whale_model *w, const char *format, const whale_msg *msgs, size_t n,
                     const char *const *tools, size_t n_tools, int flags, whale_ids *out, whale_err *err) {
    const tokenizer *t = tok_of(w, err);
    if (!t) return WHALE_E_UNSUPPORTED;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].role < WHALE_ROLE_SYSTEM || msgs[i].role > WHALE_ROLE_TOOL || !msgs[i].content)
            return err_set(err, WHALE_E_ARG, "message %zu: %s", i, msgs[i].content ? "unknown role" : "no content (use \"\")");
    chat_format_kind k = format_of(w, format);
    if (k == CHAT_FORMAT_NONE)
        return err_set(err, WHALE_E_UNSUPPORTED, "no chat format %s (deepseek-r1, chatml and chatml-think are known)",
                       format ? "by that name" : "known for this model");
    int f = (flags & WHALE_CHAT_GENERATION_PROMPT ? CHAT_GENERATION_PROMPT : 0) |
            (flags & WHALE_CHAT_NO_FORCED_THINK ? CHAT_NO_FORCED_THINK : 0);
    chat_tools tl = {tools, n_tools};
    return chat_format_encode_tools(t, k, msgs, n, n_tools ? &tl : NULL, f, out, err);
}


