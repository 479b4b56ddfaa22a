/* api.c — chat-completions requests and replies in OpenAI / DeepSeek's JSON; see api.h. */
#include "service/api.h"

#include "base/utf8.h"
#include "engine/json_grammar.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

void sbuf_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->s, cap);
        if (!p) return;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void sbuf_free(sbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

char *api_error_body(const char *message, const char *type, const char *param, const char *code) {
    cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddStringToObject(e, "code", code);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* Set *err to an error body and return status. */
static int fail(char **err, int status, const char *param, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *err = api_error_body(msg, "invalid_request_error", param, status == 422 ? "invalid_parameter" : "invalid_request_error");
    return status;
}

/* A number field within [lo, hi]: 1 set, 0 absent (or null), -1 bad (error set). */
static int num_field(const cJSON *j, const char *name, double lo, double hi, int integer, double *out, int *status,
                     char **err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) {
        *status = fail(err, 422, name, "%s must be a number", name);
        return -1;
    }
    double d = v->valuedouble;
    if (d < lo || d > hi || (integer && d != (double)(long long)d)) {
        *status = fail(err, 422, name, "%s must be %s from %g to %g (got %g)", name, integer ? "an integer" : "a number",
                       lo, hi, d);
        return -1;
    }
    *out = d;
    return 1;
}

/* A message's content: a string, or an array of {"type": "text", "text": ...} parts. */
static char *content_text(const cJSON *c) {
    if (cJSON_IsString(c)) return strdup(c->valuestring);
    if (!cJSON_IsArray(c)) return NULL;
    sbuf b = {0};
    sbuf_add(&b, "", 0);
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "type"), *x = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") || !cJSON_IsString(x)) {
            sbuf_free(&b);
            return NULL;
        }
        sbuf_add(&b, x->valuestring, strlen(x->valuestring));
    }
    return b.s;
}

static const char *unsupported[][2] = {
    {"tools", "function calling is not supported by this server yet"},
    {"functions", "function calling is not supported by this server yet"},
};

static int parse_messages(const api_ctx *a, const cJSON *msgs, api_req *out, char **err) {
    int n = cJSON_GetArraySize(msgs);
    if (!cJSON_IsArray(msgs) || n < 1) return fail(err, 422, "messages", "messages must be a non-empty array");
    if (n > API_MAX_MESSAGES) return fail(err, 422, "messages", "at most %d messages per request", API_MAX_MESSAGES);
    chat_msg *m = calloc((size_t)n, sizeof *m);
    char **texts = calloc((size_t)n, sizeof *texts);
    int status = 0, k = 0;
    if (!m || !texts) {
        status = fail(err, 500, NULL, "out of memory");
        goto done;
    }
    const cJSON *msg;
    cJSON_ArrayForEach(msg, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", k);
        if (!cJSON_IsObject(msg) || !cJSON_IsString(role)) {
            status = fail(err, 422, param, "%s must be an object with a string role", param);
            goto done;
        }
        const char *r = role->valuestring;
        if (!strcmp(r, "system") || !strcmp(r, "developer")) m[k].role = CHAT_SYSTEM;
        else if (!strcmp(r, "user")) m[k].role = CHAT_USER;
        else if (!strcmp(r, "assistant")) m[k].role = CHAT_ASSISTANT;
        else if (!strcmp(r, "tool")) {
            status = fail(err, 422, param, "tool messages are not supported by this server yet");
            goto done;
        } else {
            status = fail(err, 422, param, "%s.role must be system, user, assistant or tool (got '%.40s')", param, r);
            goto done;
        }
        if (m[k].role == CHAT_ASSISTANT && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(msg, "prefix"))) {
            if (k != n - 1) {
                status = fail(err, 422, param, "only the last message may be an assistant prefix");
                goto done;
            }
            out->prefix = 1; /* chat prefix completion: the reply continues this text */
        }
        /* an assistant's reasoning_content is never fed back: only content counts */
        texts[k] = m[k].role == CHAT_ASSISTANT && (!content || cJSON_IsNull(content)) ? strdup("") : content_text(content);
        if (!texts[k]) {
            status = fail(err, 422, param, "%s.content must be a string or an array of text parts", param);
            goto done;
        }
        m[k].content = texts[k];
        k++;
    }
    whale_err e = {0};
    /* With a prefix: the conversation before it, the assistant's opening (no forced <think>: the
     * prefix starts the answer), then the prefix itself as plain text. */
    size_t n_conv = out->prefix ? (size_t)k - 1 : (size_t)k;
    int flags = CHAT_GENERATION_PROMPT | (out->prefix ? CHAT_NO_FORCED_THINK : 0);
    if (chat_format_encode(a->tok, a->fmt, m, n_conv, flags, &out->prompt, &e) ||
        (out->prefix && tokenizer_encode(a->tok, m[k - 1].content, strlen(m[k - 1].content), 0, &out->prompt, &e)))
        status = fail(err, 400, "messages", "%s", e.msg);
done:
    for (int i = 0; texts && i < n; i++) free(texts[i]);
    free(texts);
    free(m);
    return status;
}

static int check_model(const api_ctx *a, const cJSON *j, char **err);

/* Sampling, limits, streaming and stop strings: what chat and completions share. */
static int parse_common(const api_ctx *a, const cJSON *j, api_req *out, char **err) {
    int status = 0, r;
    double d;
    out->sp.sp = sampler_default_params();
    out->sp.sp.temperature = 1.0f; /* the API's default, as OpenAI's and DeepSeek's */
    out->sp.sp.top_p = 1.0f;
    out->sp.sp.seed = SAMPLER_SEED_RANDOM;
#define NUM(name, lo, hi, integer, assign)                                                      \
    if ((r = num_field(j, name, lo, hi, integer, &d, &status, err)) < 0) return status;             \
    if (r > 0) assign;
    NUM("temperature", 0, 2, 0, out->sp.sp.temperature = (float)d);
    NUM("top_p", 1e-6, 1, 0, out->sp.sp.top_p = (float)d);
    NUM("presence_penalty", -2, 2, 0, out->sp.sp.presence_penalty = (float)d);
    NUM("frequency_penalty", -2, 2, 0, out->sp.sp.frequency_penalty = (float)d);
    NUM("seed", 0, 9007199254740991.0, 1, out->sp.sp.seed = (uint64_t)d);
    NUM("n", 1, 1, 1, (void)0);
    NUM("max_tokens", 1, (double)(a->n_ctx > 1 ? a->n_ctx - 1 : 1), 1, out->sp.max_tokens = (int64_t)d);
    NUM("max_completion_tokens", 1, (double)(a->n_ctx > 1 ? a->n_ctx - 1 : 1), 1, out->sp.max_tokens = (int64_t)d);
#undef NUM
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(j, "stream");
    if (stream && !cJSON_IsNull(stream) && !cJSON_IsBool(stream)) {
        status = fail(err, 422, "stream", "stream must be true or false");
        return status;
    }
    out->stream = cJSON_IsTrue(stream);
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
    out->include_usage = so && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(j, "stop"), *s1;
    if (cJSON_IsString(stop)) {
        if (stop->valuestring[0]) out->stop[out->n_stop++] = strdup(stop->valuestring);
    } else if (cJSON_IsArray(stop)) {
        if (cJSON_GetArraySize(stop) > API_MAX_STOP) {
            status = fail(err, 422, "stop", "at most %d stop strings", API_MAX_STOP);
            return status;
        }
        cJSON_ArrayForEach(s1, stop) {
            if (!cJSON_IsString(s1) || strlen(s1->valuestring) > API_MAX_STOP_LEN) {
                status = fail(err, 422, "stop", "stop must be strings of at most %d bytes", API_MAX_STOP_LEN);
                return status;
            }
            if (s1->valuestring[0]) out->stop[out->n_stop++] = strdup(s1->valuestring);
        }
    } else if (stop && !cJSON_IsNull(stop)) {
        status = fail(err, 422, "stop", "stop must be a string or an array of strings");
        return status;
    }
    if (cJSON_IsString(stop) && strlen(stop->valuestring) > API_MAX_STOP_LEN) {
        status = fail(err, 422, "stop", "stop must be at most %d bytes", API_MAX_STOP_LEN);
        return status;
    }
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(j, "logprobs");
    if (lp && !cJSON_IsNull(lp)) {
        if (out->kind == API_COMPLETION || !cJSON_IsBool(lp))
            return fail(err, 422, "logprobs", out->kind == API_COMPLETION ? "logprobs are not supported on completions"
                                                                          : "logprobs must be true or false");
        out->logprobs = cJSON_IsTrue(lp);
        if (out->logprobs && a->reasoning)
            return fail(err, 422, "logprobs", "logprobs are not supported for reasoning models (as DeepSeek's reasoner)");
    }
    if ((r = num_field(j, "top_logprobs", 0, SCHED_MAX_TOP, 1, &d, &status, err)) < 0) return status;
    if (r > 0 && !out->logprobs) return fail(err, 422, "top_logprobs", "top_logprobs needs logprobs: true");
    out->sp.logprobs = out->logprobs;
    out->sp.top_logprobs = r > 0 ? (int)d : 0;
    if ((r = num_field(j, "reasoning_budget", 0, 1e9, 1, &d, &status, err)) < 0) return status;
    out->sp.think_budget = -1;
    if (r > 0 && a->reasoning && a->think_end >= 0 && a->n_close) { /* ignored by other models */
        out->sp.think_budget = (int64_t)d;
        out->sp.think_end = a->think_end;
        out->sp.close = a->close;
        out->sp.n_close = a->n_close;
    }
    return 0;
}

int api_parse_chat(const api_ctx *a, const char *body, size_t n, api_req *out, char **err) {
    memset(out, 0, sizeof *out);
    cJSON *j = cJSON_ParseWithLength(body, n);
    int status = 0;
    if (!j || !cJSON_IsObject(j)) {
        status = fail(err, 400, NULL, "the request body must be a JSON object");
        goto done;
    }
    if ((status = check_model(a, j, err))) goto done;
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, unsupported[i][0]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v) && !(cJSON_IsArray(v) && !cJSON_GetArraySize(v))) {
            status = fail(err, 422, unsupported[i][0], "%s", unsupported[i][1]);
            goto done;
        }
    }
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(j, "response_format");
    if (rf && !cJSON_IsNull(rf)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rf, "type");
        if (!cJSON_IsString(t) || (strcmp(t->valuestring, "text") && strcmp(t->valuestring, "json_object"))) {
            status = fail(err, 422, "response_format", "response_format.type must be text or json_object");
            goto done;
        }
        out->json = !strcmp(t->valuestring, "json_object");
    }
    if ((status = parse_messages(a, cJSON_GetObjectItemCaseSensitive(j, "messages"), out, err))) goto done;
    if ((status = parse_common(a, j, out, err))) goto done;
    out->sp.prompt = out->prompt.v;
    out->sp.n_prompt = out->prompt.n;
done:
    cJSON_Delete(j);
    if (status) api_req_free(out);
    return status;
}

void api_req_free(api_req *r) {
    tok_ids_free(&r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

int api_ctx_tokens(api_ctx *a) {
    a->think_end = tokenizer_find_added(a->tok, "</think>", 8);
    tok_ids ids = {0};
    whale_err e = {0};
    a->n_close = 0;
    if (a->think_end >= 0 && !tokenizer_encode(a->tok, "\n</think>\n\n", 12, TOK_PARSE_SPECIAL, &ids, &e) &&
        ids.n <= 8) {
        memcpy(a->close, ids.v, ids.n * sizeof *ids.v);
        a->n_close = ids.n;
    }
    tok_ids_free(&ids);
    /* fill-in-the-middle markers: Qwen2.5-Coder's, then DeepSeek-Coder's */
    static const char *fim[2][3] = {{"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"},
                                    {"<ï½" "fimâ" "beginï½>", "<ï½" "fimâ" "holeï½>",
                                     "<ï½" "fimâ" "endï½>"}};
    a->fim[0] = a->fim[1] = a->fim[2] = -1;
    for (int k = 0; k < 2 && a->fim[0] < 0; k++) {
        int32_t id[3];
        int ok = 1;
        for (int i = 0; i < 3; i++) ok &= (id[i] = tokenizer_find_added(a->tok, fim[k][i], strlen(fim[k][i]))) >= 0;
        if (ok) memcpy(a->fim, id, sizeof id);
    }
    int64_t V = tokenizer_n_vocab(a->tok);
    size_t total = 0;
    char tmp[512];
    for (int64_t i = 0; i < V; i++) {
        int l = tokenizer_token_bytes(a->tok, (int32_t)i, tmp, sizeof tmp);
        total += l > 0 ? (size_t)l : 0;
    }
    a->tb = malloc(total + 1);
    a->tb_off = malloc((size_t)V * sizeof *a->tb_off);
    a->tb_len = malloc((size_t)V * sizeof *a->tb_len);
    if (!a->tb || !a->tb_off || !a->tb_len) return -1;
    size_t at = 0;
    for (int64_t i = 0; i < V; i++) {
        int attr = tokenizer_attr(a->tok, (int32_t)i);
        int l = tokenizer_token_bytes(a->tok, (int32_t)i, a->tb + at, total + 1 - at);
        a->tb_off[i] = (uint32_t)at;
        a->tb_len[i] = attr == TOK_CONTROL || attr == TOK_USER || l <= 0 || l > (int)sizeof tmp ? -1 : (int16_t)l;
        at += l > 0 && (size_t)l <= total + 1 - at ? (size_t)l : 0;
    }
    return 0;
}

void api_ctx_free(api_ctx *a) {
    free(a->tb);
    free(a->tb_off);
    free(a->tb_len);
}

/* ---- JSON mode ------------------------------------------------------------------------------ */

typedef struct json_con {
    const api_ctx *a;
    json_grammar g;
    int active; /* reasoning models: only once the thinking has ended */
} json_con;

static int json_allowed(const json_con *c, int32_t t) {
    int l = c->a->tb_len[t];
    if (l <= 0) return 0;
    json_grammar g = c->g;
    return json_grammar_feed(&g, c->a->tb + c->a->tb_off[t], (size_t)l) == 0;
}

static int is_end_token(const api_ctx *a, int32_t t) {
    return t == tokenizer_eos(a->tok) || tokenizer_attr(a->tok, t) == TOK_CONTROL;
}

static void json_mask(void *ctx, float *logits, int64_t V, int greedy) {
    json_con *c = ctx;
    if (!c->active) return;
    if (json_grammar_complete(&c->g)) { /* the object is whole: only the end of the turn */
        for (int64_t i = 0; i < V; i++)
            if (!is_end_token(c->a, (int32_t)i)) logits[i] = -INFINITY;
        return;
    }
    if (greedy) { /* best first, until one is allowed; then it alone survives */
        for (int tries = 0; tries < 4096; tries++) {
            int64_t best = -1;
            for (int64_t i = 0; i < V; i++)
                if (logits[i] > -INFINITY && (best < 0 || logits[i] > logits[best])) best = i;
            if (best < 0) break;
            if (json_allowed(c, (int32_t)best)) {
                float keep = logits[best];
                for (int64_t i = 0; i < V; i++) logits[i] = -INFINITY;
                logits[best] = keep;
                return;
            }
            logits[best] = -INFINITY;
        }
    }
    for (int64_t i = 0; i < V; i++)
        if (logits[i] > -INFINITY && !json_allowed(c, (int32_t)i)) logits[i] = -INFINITY;
}

static void json_accept(void *ctx, int32_t t) {
    json_con *c = ctx;
    if (!c->active) {
        c->active = t == c->a->think_end;
        return;
    }
    if (c->a->tb_len[t] > 0) json_grammar_feed(&c->g, c->a->tb + c->a->tb_off[t], (size_t)c->a->tb_len[t]);
}

sched_constraint *api_json_constraint(const api_ctx *a, int start_in_think) {
    sched_constraint *k = malloc(sizeof *k);
    json_con *c = malloc(sizeof *c);
    if (!k || !c) {
        free(k);
        free(c);
        return NULL;
    }
    c->a = a;
    json_grammar_init(&c->g);
    c->active = !start_in_think;
    *k = (sched_constraint){json_mask, json_accept, free, c};
    return k;
}

static int check_model(const api_ctx *a, const cJSON *j, char **err) {
    const cJSON *mname = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (mname && !cJSON_IsString(mname)) return fail(err, 422, "model", "model must be a string");
    if (mname && strcmp(mname->valuestring, a->model_name) && strcmp(mname->valuestring, a->alias))
        return fail(err, 400, "model", "Model Not Exist (this server has '%s', also called '%s')", a->model_name, a->alias);
    return 0;
}

int api_parse_completion(const api_ctx *a, const char *body, size_t n, api_req *out, char **err) {
    memset(out, 0, sizeof *out);
    out->kind = API_COMPLETION;
    cJSON *j = cJSON_ParseWithLength(body, n);
    int status = 0;
    whale_err e = {0};
    if (!j || !cJSON_IsObject(j)) {
        status = fail(err, 400, NULL, "the request body must be a JSON object");
        goto done;
    }
    if ((status = check_model(a, j, err))) goto done;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt"), *suffix = cJSON_GetObjectItemCaseSensitive(j, "suffix");
    if (!cJSON_IsString(prompt)) {
        status = fail(err, 422, "prompt", "prompt must be a string");
        goto done;
    }
    if (suffix && !cJSON_IsNull(suffix) && !cJSON_IsString(suffix)) {
        status = fail(err, 422, "suffix", "suffix must be a string");
        goto done;
    }
    const char *p = prompt->valuestring;
    if (cJSON_IsString(suffix)) { /* fill in the middle: prefix, suffix, then the middle is written */
        if (a->fim[0] < 0) {
            status = fail(err, 422, "suffix", "this model has no fill-in-the-middle tokens");
            goto done;
        }
        if (tok_ids_push(&out->prompt, a->fim[0]) ||
            tokenizer_encode(a->tok, p, strlen(p), 0, &out->prompt, &e) || tok_ids_push(&out->prompt, a->fim[1]) ||
            tokenizer_encode(a->tok, suffix->valuestring, strlen(suffix->valuestring), 0, &out->prompt, &e) ||
            tok_ids_push(&out->prompt, a->fim[2])) {
            status = fail(err, 400, "prompt", "%s", e.msg[0] ? e.msg : "out of memory");
            goto done;
        }
    } else if (tokenizer_encode(a->tok, p, strlen(p), TOK_ADD_BOS, &out->prompt, &e)) {
        status = fail(err, 400, "prompt", "%s", e.msg);
        goto done;
    }
    if (!out->prompt.n) {
        status = fail(err, 422, "prompt", "prompt is empty");
        goto done;
    }
    if ((status = parse_common(a, j, out, err))) goto done;
    out->sp.think_budget = -1;
    out->sp.prompt = out->prompt.v;
    out->sp.n_prompt = out->prompt.n;
done:
    cJSON_Delete(j);
    if (status) api_req_free(out);
    return status;
}

/* Text for JSON must be valid UTF-8: a random or confused model can emit byte tokens that do
 * not form characters. Invalid bytes become U+FFFD; appended to out (malloc'd), returns its length. */
static size_t clean_utf8(const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int l = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (l > 0) {
            memcpy(out + k, s + i, (size_t)l);
            k += (size_t)l, i += (size_t)l;
        } else {
            memcpy(out + k, "\xef\xbf\xbd", 3);
            k += 3, i++;
        }
    }
    return k;
}

/* ---- the reply --------------------------------------------------------------------------- */

static void reply_sink(void *ctx, reasoning_kind kind, const char *text, size_t n) {
    api_reply *r = ctx;
    sbuf_add(kind == REASONING_THINK ? &r->think : &r->answer, text, n);
}

void api_reply_init(api_reply *r, const api_ctx *a, const api_req *q) {
    memset(r, 0, sizeof *r);
    r->a = a;
    r->q = q;
    reasoning_init(&r->rs, a->reasoning && q->kind == API_CHAT && !q->prefix, reply_sink, r);
    sbuf_add(&r->think, "", 0);
    sbuf_add(&r->answer, "", 0);
    unsigned char b[12] = {0};
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)rand();
    int k = snprintf(r->id, sizeof r->id, q->kind == API_CHAT ? "chatcmpl-" : "cmpl-");
    for (size_t i = 0; i < sizeof b; i++) k += snprintf(r->id + k, sizeof r->id - (size_t)k, "%02x", b[i]);
    r->created = (long long)time(NULL);
}

static size_t max_stop_len(const api_req *q) {
    size_t m = 0;
    for (int i = 0; i < q->n_stop; i++) m = strlen(q->stop[i]) > m ? strlen(q->stop[i]) : m;
    return m;
}

int api_reply_feed(api_reply *r, const int32_t *ids, size_t n) {
    char buf[256], clean[3 * 256];
    for (size_t i = 0; i < n && !r->stopped; i++, r->n_fed++) {
        if (ids[i] == tokenizer_eos(r->a->tok) || tokenizer_attr(r->a->tok, ids[i]) == TOK_CONTROL) continue;
        if (r->q->logprobs && !r->rs.in_think) {
            if (r->n_lp == r->cap_lp) {
                size_t cap = r->cap_lp ? 2 * r->cap_lp : 64;
                size_t *p = realloc(r->lp_idx, cap * sizeof *p);
                if (p) r->lp_idx = p, r->cap_lp = cap;
            }
            if (r->n_lp < r->cap_lp) r->lp_idx[r->n_lp++] = r->n_fed;
        }
        if (r->q->kind == API_CHAT && r->rs.in_think) r->n_reasoning_tokens++;
        int k = tokenizer_stream(r->a->tok, &r->ts, ids[i], buf, sizeof buf);
        if (k > 0) k = (int)clean_utf8(buf, (size_t)k, clean);
        if (k > 0 && r->q->kind == API_COMPLETION) sbuf_add(&r->answer, clean, (size_t)k);
        else if (k > 0) reasoning_feed(&r->rs, clean, (size_t)k);
        if (!r->q->n_stop) continue;
        size_t from = r->sent_answer > max_stop_len(r->q) ? r->sent_answer - max_stop_len(r->q) : 0;
        for (int s = 0; s < r->q->n_stop; s++) {
            char *hit = strstr(r->answer.s + from, r->q->stop[s]);
            if (hit) {
                r->answer.n = (size_t)(hit - r->answer.s);
                r->answer.s[r->answer.n] = 0;
                r->stopped = 1;
            }
        }
    }
    return r->stopped;
}

void api_reply_end(api_reply *r) {
    if (r->stopped) return;
    char buf[16], clean[48];
    int k = tokenizer_stream(r->a->tok, &r->ts, -1, buf, sizeof buf);
    if (k > 0) k = (int)clean_utf8(buf, (size_t)k, clean);
    if (k > 0 && r->q->kind == API_COMPLETION) sbuf_add(&r->answer, clean, (size_t)k);
    else if (k > 0) reasoning_feed(&r->rs, clean, (size_t)k);
    if (r->q->kind == API_CHAT) reasoning_flush(&r->rs);
}

void api_reply_free(api_reply *r) {
    sbuf_free(&r->think);
    sbuf_free(&r->answer);
    free(r->lp_idx);
}

/* {"token", "logprob", "bytes"} for token id with log probability lp. */
static cJSON *lp_entry(const api_reply *r, int32_t id, float lp) {
    char raw[256], clean[768];
    int n = tokenizer_token_bytes(r->a->tok, id, raw, sizeof raw);
    if (n < 0 || n > (int)sizeof raw) n = 0;
    size_t k = clean_utf8(raw, (size_t)n, clean);
    clean[k] = 0;
    cJSON *e = cJSON_CreateObject(), *b = cJSON_CreateArray();
    cJSON_AddStringToObject(e, "token", clean);
    cJSON_AddNumberToObject(e, "logprob", lp);
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(b, cJSON_CreateNumber((unsigned char)raw[i]));
    cJSON_AddItemToObject(e, "bytes", b);
    return e;
}

/* {"content": [...]} for answer tokens [from, to) of the reply, or NULL without logprobs. */
static cJSON *logprobs_json(const api_reply *r, size_t from, size_t to) {
    if (!r->q->logprobs || !r->req) return NULL;
    cJSON *j = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(j, "content");
    int32_t ids[SCHED_MAX_TOP];
    float lps[SCHED_MAX_TOP], lp;
    int32_t tok[1];
    for (size_t i = from; i < to; i++) {
        int n = sched_logprobs(r->req, r->lp_idx[i], &lp, ids, lps);
        if (n < 0) continue;
        int done;
        if (sched_wait(r->req, r->lp_idx[i], tok, 1, 0, &done) != 1) continue;
        cJSON *e = lp_entry(r, tok[0], lp), *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int k = 0; k < n; k++) cJSON_AddItemToArray(top, lp_entry(r, ids[k], lps[k]));
        cJSON_AddItemToArray(content, e);
    }
    return j;
}

static const char *finish_reason(const api_reply *r, const sched_result *res) {
    if (r->stopped) return "stop";
    if (!strcmp(res->finish, "length")) return "length";
    return "stop";
}

static cJSON *usage(const api_reply *r, const sched_result *res) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)res->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)res->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(res->n_prompt + res->n_gen));
    cJSON_AddNumberToObject(u, "prompt_cache_hit_tokens", (double)res->n_cached);
    cJSON_AddNumberToObject(u, "prompt_cache_miss_tokens", (double)(res->n_prompt - res->n_cached));
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "prompt_tokens_details"), "cached_tokens", (double)res->n_cached);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "completion_tokens_details"), "reasoning_tokens",
                            (double)r->n_reasoning_tokens);
    return u;
}

static cJSON *envelope(const api_reply *r, const char *object) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", r->id);
    cJSON_AddStringToObject(j, "object", object);
    cJSON_AddNumberToObject(j, "created", (double)r->created);
    cJSON_AddStringToObject(j, "model", r->a->model_name);
    cJSON_AddStringToObject(j, "system_fingerprint", "whale");
    return j;
}

char *api_reply_json(api_reply *r, const sched_result *res) {
    int chat = r->q->kind == API_CHAT;
    cJSON *j = envelope(r, chat ? "chat.completion" : "text_completion"), *choices = cJSON_AddArrayToObject(j, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (!chat) {
        cJSON_AddStringToObject(c, "text", r->answer.s);
        cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", finish_reason(r, res));
        cJSON_AddItemToArray(choices, c);
        cJSON_AddItemToObject(j, "usage", usage(r, res));
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        return s;
    }
    cJSON *m = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "content", r->answer.s);
    if (r->a->reasoning) cJSON_AddStringToObject(m, "reasoning_content", r->think.s);
    cJSON *lpj = logprobs_json(r, 0, r->n_lp);
    if (lpj) cJSON_AddItemToObject(c, "logprobs", lpj);
    else cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", finish_reason(r, res));
    cJSON_AddItemToArray(choices, c);
    cJSON_AddItemToObject(j, "usage", usage(r, res));
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static void emit(sbuf *out, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return;
    sbuf_add(out, "data: ", 6);
    sbuf_add(out, s, strlen(s));
    sbuf_add(out, "\n\n", 2);
    free(s);
}

static void chunk(api_reply *r, sbuf *out, const char *key, const char *text, size_t n, const char *finish) {
    int chat = r->q->kind == API_CHAT;
    if (!chat && key && !strcmp(key, "role")) return; /* completions have no opening chunk */
    cJSON *j = envelope(r, chat ? "chat.completion.chunk" : "text_completion"), *choices = cJSON_AddArrayToObject(j, "choices");
    cJSON *c = cJSON_CreateObject(), *d = chat ? cJSON_AddObjectToObject(c, "delta") : c;
    cJSON_AddNumberToObject(c, "index", 0);
    if (!chat) {
        char *t = key ? strndup(text, n) : NULL;
        cJSON_AddStringToObject(c, "text", t ? t : "");
        free(t);
    } else if (key) {
        char *t = strndup(text, n);
        if (!strcmp(key, "role")) cJSON_AddStringToObject(d, "role", "assistant"), cJSON_AddStringToObject(d, "content", "");
        else cJSON_AddStringToObject(d, key, t ? t : "");
        free(t);
    }
    cJSON *lpj = chat && key && !strcmp(key, "content") ? logprobs_json(r, r->sent_lp, r->n_lp) : NULL;
    if (lpj) {
        cJSON_AddItemToObject(c, "logprobs", lpj);
        r->sent_lp = r->n_lp;
    } else {
        cJSON_AddNullToObject(c, "logprobs");
    }
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(choices, c);
    emit(out, j);
}

void api_stream_first(api_reply *r, sbuf *out) { chunk(r, out, "role", "", 0, NULL); }

void api_stream_deltas(api_reply *r, sbuf *out, int final) {
    if (r->think.n > r->sent_think) {
        chunk(r, out, "reasoning_content", r->think.s + r->sent_think, r->think.n - r->sent_think, NULL);
        r->sent_think = r->think.n;
    }
    /* hold back what could still be the start of a stop string (never inside a UTF-8 sequence) */
    size_t safe = r->answer.n, hold = final || r->stopped ? 0 : max_stop_len(r->q);
    safe = safe > r->sent_answer + (hold ? hold - 1 : 0) ? safe - (hold ? hold - 1 : 0) : r->sent_answer;
    while (safe > r->sent_answer && safe < r->answer.n && ((unsigned char)r->answer.s[safe] & 0xC0) == 0x80) safe--;
    if (safe > r->sent_answer) {
        chunk(r, out, "content", r->answer.s + r->sent_answer, safe - r->sent_answer, NULL);
        r->sent_answer = safe;
    }
}

void api_stream_end(api_reply *r, const sched_result *res, sbuf *out) {
    api_stream_deltas(r, out, 1);
    chunk(r, out, NULL, NULL, 0, finish_reason(r, res));
    if (r->q->include_usage) {
        cJSON *j = envelope(r, r->q->kind == API_CHAT ? "chat.completion.chunk" : "text_completion");
        cJSON_AddArrayToObject(j, "choices");
        cJSON_AddItemToObject(j, "usage", usage(r, res));
        emit(out, j);
    }
    sbuf_add(out, "data: [DONE]\n\n", 14);
}

char *api_models_json(const api_ctx *a) {
    cJSON *j = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(j, "data");
    cJSON_AddStringToObject(j, "object", "list");
    const char *names[2] = {a->model_name, a->alias};
    for (int i = 0; i < 2; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", names[i]);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "whale");
        cJSON_AddItemToArray(data, m);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}
