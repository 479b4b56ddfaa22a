/* api_reply.c — a reply being generated: token ids in, the chat-completions response or its
 * server-sent events out (OpenAI / DeepSeek JSON); see api.h. */
#include "service/api.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/clock.h"
#include "base/utf8.h"

/* Text for JSON must be valid UTF-8: a random or confused model can emit byte tokens that do
 * not form characters. Invalid bytes become U+FFFD, and so does a NUL byte (a byte token of
 * its own: kept, it would end the C string the reply is built from, and lose what follows);
 * appended to out (malloc'd), returns its length. */
static size_t clean_utf8(const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int l = s[i] ? utf8_seq_len((const unsigned char *)s + i, n - i) : 0;
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

static void reply_sink(void *ctx, whale_text_kind kind, const char *text, size_t n) {
    api_reply *r = ctx;
    strbuf_add(kind == WHALE_TEXT_THINK ? &r->think : &r->answer, text, n);
}

int api_reply_init(api_reply *r, const api_ctx *a, const api_req *q) {
    memset(r, 0, sizeof *r);
    r->a = a;
    r->q = q;
    int flags = q->kind == API_COMPLETION ? WHALE_TEXT_PLAIN : a->reasoning && !q->prefix ? WHALE_TEXT_START_IN_THINK : 0;
    r->tx = whale_text_new(a->m, flags, reply_sink, r);
    strbuf_add(&r->think, "", 0);
    strbuf_add(&r->answer, "", 0);
    unsigned char b[12] = {0};
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)rand();
    int k = snprintf(r->id, sizeof r->id, q->kind == API_CHAT ? "chatcmpl-" : "cmpl-");
    for (size_t i = 0; i < sizeof b; i++) k += snprintf(r->id + k, sizeof r->id - (size_t)k, "%02x", b[i]);
    r->created = (long long)time(NULL);
    r->t0 = clock_now_s();
    return r->tx && r->think.s && r->answer.s ? 0 : -1;
}

static size_t max_stop_len(const api_req *q) {
    size_t m = 0;
    for (int i = 0; i < q->n_stop; i++) m = strlen(q->stop[i]) > m ? strlen(q->stop[i]) : m;
    return m;
}

int api_reply_feed(api_reply *r, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n && !r->stopped; i++, r->n_fed++) {
        if (whale_token_is_end(r->a->m, ids[i])) continue;
        if (r->q->logprobs && !whale_text_in_think(r->tx)) {
            if (r->n_lp == r->cap_lp) {
                size_t cap = r->cap_lp ? 2 * r->cap_lp : 64;
                size_t *p = realloc(r->lp_idx, cap * sizeof *p);
                if (p) r->lp_idx = p, r->cap_lp = cap;
            }
            if (r->n_lp < r->cap_lp) r->lp_idx[r->n_lp++] = r->n_fed;
        }
        if (r->q->kind == API_CHAT && whale_text_in_think(r->tx)) r->n_reasoning_tokens++;
        whale_text_feed(r->tx, ids + i, 1);
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

/* Qwen2.5 writes each call as <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>: the
 * calls become OpenAI's tool_calls (arguments as a JSON string), the text before them content. */
static void find_tool_calls(api_reply *r) {
    const char *a = r->answer.s, *at = strstr(a, "<tool_call>");
    if (!r->q->n_tools) return;
    if (!at) { /* small models sometimes answer with the call object alone: accept it for a tool offered */
        cJSON *j = cJSON_Parse(a), *name = cJSON_GetObjectItemCaseSensitive(j, "name");
        int call = cJSON_IsString(name) && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "arguments")) &&
                   api_req_offers(r->q, name->valuestring);
        cJSON_Delete(j);
        if (!call) return;
        at = a;
        while (*at == ' ' || *at == '\n') at++;
    }
    cJSON *calls = cJSON_CreateArray();
    for (const char *p = at; p; p = strstr(p, "<tool_call>")) {
        if (!strncmp(p, "<tool_call>", 11)) p += 11;
        const char *end = strstr(p, "</tool_call>");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        cJSON *j = cJSON_ParseWithLength(p, len), *name = cJSON_GetObjectItemCaseSensitive(j, "name");
        cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "arguments");
        if (cJSON_IsString(name)) {
            cJSON *c = cJSON_CreateObject(), *f = cJSON_CreateObject();
            unsigned char rb[8] = {0};
            char id[32];
            if (getrandom(rb, sizeof rb, 0) != (ssize_t)sizeof rb) memset(rb, 7, sizeof rb);
            snprintf(id, sizeof id, "call_%02x%02x%02x%02x%02x%02x%02x%02x", rb[0], rb[1], rb[2], rb[3], rb[4], rb[5], rb[6], rb[7]);
            cJSON_AddStringToObject(c, "id", id);
            cJSON_AddStringToObject(c, "type", "function");
            cJSON_AddStringToObject(f, "name", name->valuestring);
            char *as = cJSON_IsString(args) ? strdup(args->valuestring) : cJSON_PrintUnformatted(args ? args : f);
            cJSON_AddStringToObject(f, "arguments", args ? as : "{}");
            free(as);
            cJSON_AddItemToObject(c, "function", f);
            cJSON_AddItemToArray(calls, c);
        }
        cJSON_Delete(j);
        if (!end) break;
        p = end;
    }
    if (!cJSON_GetArraySize(calls)) {
        cJSON_Delete(calls);
        return;
    }
    r->calls = calls;
    r->content_len = (size_t)(at - a);
    while (r->content_len && strchr(" \n\t\r", a[r->content_len - 1])) r->content_len--;
}

void api_reply_end(api_reply *r) {
    if (r->stopped) {
        find_tool_calls(r);
        return;
    }
    whale_text_end(r->tx);
    find_tool_calls(r);
}

void api_reply_free(api_reply *r) {
    whale_text_free(r->tx);
    r->tx = NULL;
    strbuf_free(&r->think);
    strbuf_free(&r->answer);
    free(r->lp_idx);
    cJSON_Delete(r->calls);
}

/* {"token", "logprob", "bytes"} for token id with log probability lp. */
static cJSON *lp_entry(const api_reply *r, int32_t id, float lp) {
    char raw[256], clean[768];
    int n = whale_token_bytes(r->a->m, id, raw, sizeof raw);
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
    int32_t ids[WHALE_MAX_TOP_LOGPROBS];
    float lps[WHALE_MAX_TOP_LOGPROBS], lp;
    int32_t tok[1];
    for (size_t i = from; i < to; i++) {
        int n = whale_job_logprobs(r->req, r->lp_idx[i], &lp, ids, lps);
        if (n < 0) continue;
        int done;
        if (whale_job_wait(r->req, r->lp_idx[i], tok, 1, 0, &done) != 1) continue;
        cJSON *e = lp_entry(r, tok[0], lp), *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int k = 0; k < n; k++) cJSON_AddItemToArray(top, lp_entry(r, ids[k], lps[k]));
        cJSON_AddItemToArray(content, e);
    }
    return j;
}

static const char *finish_reason(const api_reply *r, const whale_result *res) {
    if (r->calls) return "tool_calls";
    if (r->stopped) return "stop";
    if (!strcmp(res->finish, "length")) return "length";
    return "stop";
}

static cJSON *usage(const api_reply *r, const whale_result *res) {
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

char *api_reply_json(api_reply *r, const whale_result *res) {
    if (r->q->dialect != API_OPENAI) return api_ollama_json(r, res);
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
    if (r->calls) {
        char *t = strndup(r->answer.s, r->content_len);
        if (t && *t) cJSON_AddStringToObject(m, "content", t);
        else cJSON_AddNullToObject(m, "content");
        free(t);
        cJSON_AddItemToObject(m, "tool_calls", cJSON_Duplicate(r->calls, 1));
    } else {
        cJSON_AddStringToObject(m, "content", r->answer.s);
    }
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

/* "id: <answer>:<n>": every event is numbered, so a client can resume after the last it got */
static void event_id(api_reply *r, strbuf *out) {
    char id[sizeof r->id + 32];
    strbuf_add(out, id, (size_t)snprintf(id, sizeof id, "id: %s:%llu\n", r->id, (unsigned long long)++r->n_events));
}

static void emit(api_reply *r, strbuf *out, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return;
    event_id(r, out);
    strbuf_add(out, "data: ", 6);
    strbuf_add(out, s, strlen(s));
    strbuf_add(out, "\n\n", 2);
    free(s);
}

static void chunk(api_reply *r, strbuf *out, const char *key, const char *text, size_t n, const char *finish) {
    if (r->q->dialect != API_OPENAI) {
        if (key && strcmp(key, "role")) api_ollama_chunk(r, out, key, text, n); /* (the end is api_ollama_end's) */
        return;
    }
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
    emit(r, out, j);
}

void api_stream_first(api_reply *r, strbuf *out) { chunk(r, out, "role", "", 0, NULL); }

void api_stream_deltas(api_reply *r, strbuf *out, int final) {
    if (r->think.n > r->sent_think) {
        chunk(r, out, "reasoning_content", r->think.s + r->sent_think, r->think.n - r->sent_think, NULL);
        r->sent_think = r->think.n;
    }
    if (r->q->n_tools && !final) return; /* the answer may turn into tool calls: sent at the end */
    if (r->calls) { /* only the text before the calls is content */
        if (r->content_len > r->sent_answer) {
            chunk(r, out, "content", r->answer.s + r->sent_answer, r->content_len - r->sent_answer, NULL);
            r->sent_answer = r->content_len;
        }
        cJSON *j = envelope(r, "chat.completion.chunk"), *choices = cJSON_AddArrayToObject(j, "choices");
        cJSON *c = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(c, "delta"), *tc = cJSON_Duplicate(r->calls, 1);
        cJSON *call;
        int i = 0;
        cJSON_ArrayForEach(call, tc) cJSON_AddNumberToObject(call, "index", i++);
        cJSON_AddItemToObject(d, "tool_calls", tc);
        cJSON_AddNumberToObject(c, "index", 0);
        cJSON_AddNullToObject(c, "finish_reason");
        cJSON_AddItemToArray(choices, c);
        emit(r, out, j);
        r->sent_answer = r->answer.n;
        return;
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

void api_stream_end(api_reply *r, const whale_result *res, strbuf *out) {
    api_stream_deltas(r, out, 1);
    if (r->q->dialect != API_OPENAI) {
        api_ollama_end(r, res, out);
        return;
    }
    chunk(r, out, NULL, NULL, 0, finish_reason(r, res));
    if (r->q->include_usage) {
        cJSON *j = envelope(r, r->q->kind == API_CHAT ? "chat.completion.chunk" : "text_completion");
        cJSON_AddArrayToObject(j, "choices");
        cJSON_AddItemToObject(j, "usage", usage(r, res));
        emit(r, out, j);
    }
    event_id(r, out);
    strbuf_add(out, "data: [DONE]\n\n", 14);
}
