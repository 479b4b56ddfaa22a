/* sft.c — chat examples for supervised fine-tuning (see sft.h). The assistant's share of each
 * conversation is found through the renderer itself: the tokens up to an assistant turn's
 * opening are the conversation so far rendered with the generation prompt, the tokens through
 * the turn are the conversation rendered up to and including it; both must be prefixes of the
 * whole conversation's tokens (they are for ChatML and R1's format, whose turns are rendered
 * independently), and the span between them, up to and including its end-of-turn token, is the
 * assistant's. */
#include "train/sft.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/rng.h"

/* One line may hold a long conversation, but a line longer than this is not one (a file that is
 * not JSONL, read as one line) and must not be held in memory whole. */
#define SFT_MAX_LINE (64u << 20)
/* Messages per conversation: the masking renders each prefix, quadratic in this. */
#define SFT_MAX_MESSAGES 1024

struct tr_sft {
    int32_t *tok;    /* every example's tokens, one after another */
    uint8_t *mask;   /* per token: 1 when it is the assistant's (carries loss as a target) */
    int64_t *start;  /* [n + 1]: example i is tok[start[i] .. start[i+1]) */
    int64_t n, cap_ex, n_tok, cap_tok, cap_mask;
    int64_t *train_ix, *val_ix;
    int64_t n_train, n_val;
    tr_sft_stats st;
};

static int grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return -1;
    *p = q, *cap = c;
    return 0;
}

static int role_of(const char *r) {
    if (!strcmp(r, "system")) return WHALE_ROLE_SYSTEM;
    if (!strcmp(r, "user")) return WHALE_ROLE_USER;
    if (!strcmp(r, "assistant")) return WHALE_ROLE_ASSISTANT;
    if (!strcmp(r, "tool")) return WHALE_ROLE_TOOL;
    return -1;
}

/* Render msgs[0..n) and return the token count, or -1 with err set. ids receives the tokens. */
static int64_t render(const whale_model *m, const char *fmt, const whale_msg *msgs, size_t n, int flags, whale_ids *ids,
                      whale_err *err) {
    ids->n = 0;
    if (whale_chat_apply(m, fmt, msgs, n, NULL, 0, flags, ids, err)) return -1;
    return (int64_t)ids->n;
}

/* Append one conversation (parsed line j) to s. Returns 0, or a negative code with err set
 * (without file:line; the caller adds it). */
static int add_example(tr_sft *s, const whale_model *m, const char *fmt, const cJSON *j, int ctx, whale_err *err) {
    const cJSON *msgs = cJSON_GetObjectItem(j, "messages");
    if (!cJSON_IsObject(j) || !cJSON_IsArray(msgs))
        return err_set(err, WHALE_E_FORMAT, "not a conversation: needs {\"messages\": [...]}");
    int n = cJSON_GetArraySize(msgs);
    if (n < 1 || n > SFT_MAX_MESSAGES)
        return err_set(err, WHALE_E_FORMAT, "\"messages\" holds %d messages (1..%d)", n, SFT_MAX_MESSAGES);
    whale_msg *mv = calloc((size_t)n, sizeof *mv);
    if (!mv) return err_set(err, WHALE_E_NOMEM, "out of memory");
    int n_asst = 0, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const cJSON *e = cJSON_GetArrayItem(msgs, i), *r = cJSON_GetObjectItem(e, "role"), *c = cJSON_GetObjectItem(e, "content");
        if (!cJSON_IsString(r)) rc = err_set(err, WHALE_E_FORMAT, "message %d has no \"role\" string", i + 1);
        else if ((mv[i].role = role_of(r->valuestring)) < 0)
            rc = err_set(err, WHALE_E_FORMAT, "message %d: unknown role \"%.40s\" (system, user, assistant, tool)", i + 1,
                         r->valuestring);
        else if (!cJSON_IsString(c)) rc = err_set(err, WHALE_E_FORMAT, "message %d has no \"content\" string", i + 1);
        else mv[i].content = c->valuestring, n_asst += mv[i].role == WHALE_ROLE_ASSISTANT;
    }
    if (!rc && !n_asst) rc = err_set(err, WHALE_E_FORMAT, "no assistant message: nothing to learn from");
    whale_ids all = {0}, part = {0};
    int64_t len = rc ? -1 : render(m, fmt, mv, (size_t)n, 0, &all, err);
    if (len < 0 && !rc) rc = err->code ? err->code : WHALE_E_FORMAT;
    int64_t keep = len > ctx + 1 ? ctx + 1 : len, base = s->n_tok;
    if (!rc && (grow((void **)&s->tok, &s->cap_tok, base + keep, sizeof(int32_t)) ||
                grow((void **)&s->mask, &s->cap_mask, base + keep, 1) ||
                grow((void **)&s->start, &s->cap_ex, s->n + 2, sizeof(int64_t))))
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
    uint8_t *mk = rc ? NULL : calloc((size_t)len + 1, 1);
    if (!rc && !mk) rc = err_set(err, WHALE_E_NOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        if (mv[i].role != WHALE_ROLE_ASSISTANT) continue;
        int64_t a = render(m, fmt, mv, (size_t)i, WHALE_CHAT_GENERATION_PROMPT | WHALE_CHAT_NO_FORCED_THINK, &part, err);
        if (a >= 0 && (a > len || memcmp(part.v, all.v, sizeof(int32_t) * (size_t)a))) a = -2;
        int64_t b = a < 0 ? a : render(m, fmt, mv, (size_t)i + 1, 0, &part, err);
        if (b >= 0 && (b > len || b < a || memcmp(part.v, all.v, sizeof(int32_t) * (size_t)b))) b = -2;
        if (b == -2)
            rc = err_set(err, WHALE_E_UNSUPPORTED, "the %s format does not render message %d as a prefix of the "
                                                   "conversation: its assistant tokens cannot be told apart", fmt ? fmt : "model's", i + 1);
        else if (b < 0) rc = err->code ? err->code : WHALE_E_FORMAT;
        if (rc) break;
        int64_t e = b; /* the turn ends at its end-of-turn token; what follows (a newline) is layout */
        for (int64_t k = b - 1; k >= a; k--)
            if (whale_token_is_end(m, all.v[k])) {
                e = k + 1;
                break;
            }
        memset(mk + a, 1, (size_t)(e - a));
    }
    int64_t loss = 0;
    for (int64_t k = 1; k < keep && !rc; k++) loss += mk[k]; /* token 0 is never a target */
    if (!rc && !loss) s->st.dropped++;
    else if (!rc) {
        memcpy(s->tok + base, all.v, sizeof(int32_t) * (size_t)keep);
        memcpy(s->mask + base, mk, (size_t)keep);
        s->mask[base] = 0;
        s->start[s->n] = base;
        s->n_tok = base + keep;
        s->start[++s->n] = s->n_tok;
        s->st.truncated += len > keep;
        s->st.tokens += keep, s->st.loss_tokens += loss;
    }
    free(mk), free(mv);
    whale_ids_free(&all), whale_ids_free(&part);
    return rc;
}

int tr_sft_open(tr_sft **out, const char *path, const whale_model *m, const char *format, int ctx, double val_fraction,
                whale_err *err) {
    *out = NULL;
    if (ctx < 2) return err_set(err, WHALE_E_ARG, "ctx must be at least 2");
    if (!(val_fraction >= 0 && val_fraction < 1)) return err_set(err, WHALE_E_ARG, "--val-fraction must be in [0, 1)");
    const char *fmt = whale_chat_format(m, format);
    if (!fmt)
        return err_set(err, WHALE_E_UNSUPPORTED, "%s: the model has no chat format%s (its vocabulary lacks ChatML's "
                                                 "<|im_start|>/<|im_end|> and R1's markers)", path,
                       format ? " of that name" : "");
    FILE *f = fopen(path, "r");
    if (!f) return err_set(err, WHALE_E_IO, "%s: %m", path);
    tr_sft *s = calloc(1, sizeof *s);
    if (!s) {
        fclose(f);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    s->st.format = fmt;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long ln = 0;
    int rc = 0;
    while (!rc && (got = getline(&line, &cap, f)) >= 0) {
        ln++;
        if ((size_t)got > SFT_MAX_LINE) {
            rc = err_set(err, WHALE_E_FORMAT, "%s:%ld: line longer than %u MiB", path, ln, SFT_MAX_LINE >> 20);
            break;
        }
        size_t k = strspn(line, " \t\r\n");
        if (!line[k]) continue;
        s->st.lines++;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)got);
        whale_err e = {0};
        if (!j) rc = err_set(&e, WHALE_E_FORMAT, "not JSON");
        else rc = add_example(s, m, format, j, ctx, &e);
        cJSON_Delete(j);
        if (rc) err_set(err, rc, "%s:%ld: %s", path, ln, e.msg);
    }
    free(line);
    fclose(f);
    if (!rc && !s->n) rc = err_set(err, WHALE_E_FORMAT, "%s: no conversation with an assistant token in it", path);
    /* the split: every k-th example held out, so validation samples the whole file */
    int64_t nv = (int64_t)(val_fraction * (double)s->n + 0.5);
    if (val_fraction > 0 && nv < 1) nv = 1;
    if (!rc && nv >= s->n) rc = err_set(err, WHALE_E_ARG, "%s: %lld conversations leave none to train on with "
                                                         "--val-fraction %g", path, (long long)s->n, val_fraction);
    if (!rc) {
        s->train_ix = malloc(sizeof(int64_t) * (size_t)s->n);
        s->val_ix = malloc(sizeof(int64_t) * (size_t)(nv ? nv : 1));
        if (!s->train_ix || !s->val_ix) rc = err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    int64_t every = nv ? s->n / nv : 0;
    for (int64_t i = 0; !rc && i < s->n; i++) {
        if (nv && i % every == every - 1 && s->n_val < nv) s->val_ix[s->n_val++] = i;
        else s->train_ix[s->n_train++] = i;
    }
    s->st.examples = s->n, s->st.val = s->n_val;
    if (rc) tr_sft_free(s);
    else *out = s;
    return rc;
}

void tr_sft_free(tr_sft *s) {
    if (!s) return;
    free(s->tok), free(s->mask), free(s->start), free(s->train_ix), free(s->val_ix);
    free(s);
}

const tr_sft_stats *tr_sft_stats_get(const tr_sft *s) { return &s->st; }

int tr_sft_batch(const tr_sft *s, int val, uint64_t *rng, int64_t first, int B, int T, int32_t *ids, int32_t *tg) {
    const int64_t *ix = val && s->n_val ? s->val_ix : s->train_ix;
    int64_t n = val && s->n_val ? s->n_val : s->n_train;
    for (int b = 0; b < B; b++) {
        int64_t e = ix[val ? (first + b) % n : (int64_t)(rng_xorshift64(rng) % (uint64_t)n)];
        int64_t at = s->start[e], len = s->start[e + 1] - at;
        int32_t *ri = ids + (size_t)b * T, *rt = tg + (size_t)b * T;
        for (int t = 0; t < T; t++) {
            ri[t] = t < len ? s->tok[at + t] : 0;
            rt[t] = t + 1 < len && s->mask[at + t + 1] ? s->tok[at + t + 1] : -1;
        }
    }
    return tr_sft_trim(ids, tg, B, T);
}

int tr_sft_trim(int32_t *ids, int32_t *tg, int B, int T) {
    int keep = 1;
    for (int b = 0; b < B; b++)
        for (int t = T - 1; t >= keep; t--)
            if (tg[(size_t)b * T + t] >= 0) {
                keep = t + 1;
                break;
            }
    for (int b = 1; keep < T && b < B; b++) {
        memmove(ids + (size_t)b * keep, ids + (size_t)b * T, sizeof(int32_t) * (size_t)keep);
        memmove(tg + (size_t)b * keep, tg + (size_t)b * T, sizeof(int32_t) * (size_t)keep);
    }
    return keep;
}
