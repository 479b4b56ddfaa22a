/* api_ollama.c — a reply in Ollama's shapes (its HTTP API's /api/chat and /api/generate): the
 * text state is api_reply's, only the writing differs. A streamed reply is newline-delimited
 * JSON, one object per delta ({"message": {"role", "content", "thinking"?}} or {"response",
 * "thinking"?}, "done": false), then one with "done": true, the finish reason and the counts
 * and durations (nanoseconds) Ollama reports. */
#include "service/api.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

const char *api_ollama_time(long long t, char *buf, size_t cap) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%S.000000000Z", &tm);
    return buf;
}

/* {"model", "created_at", and the text: message.content / .thinking (chat) or response /
 * thinking (generate)}, the strings n bytes long. */
static cJSON *object(const api_reply *r, const char *content, size_t nc, const char *thinking, size_t nt) {
    cJSON *j = cJSON_CreateObject();
    char when[40];
    cJSON_AddStringToObject(j, "model", r->a->model_name);
    cJSON_AddStringToObject(j, "created_at", api_ollama_time(r->created, when, sizeof when));
    char *c = strndup(content ? content : "", nc), *t = thinking ? strndup(thinking, nt) : NULL;
    cJSON *at = j;
    if (r->q->dialect == API_OLLAMA_CHAT) {
        at = cJSON_AddObjectToObject(j, "message");
        cJSON_AddStringToObject(at, "role", "assistant");
        cJSON_AddStringToObject(at, "content", c ? c : "");
    } else {
        cJSON_AddStringToObject(j, "response", c ? c : "");
    }
    if (t) cJSON_AddStringToObject(at, "thinking", t);
    free(c);
    free(t);
    return j;
}

static void line(strbuf *out, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return;
    strbuf_add(out, s, strlen(s));
    strbuf_add(out, "\n", 1);
    free(s);
}

void api_ollama_chunk(api_reply *r, strbuf *out, const char *key, const char *text, size_t n) {
    int think = !strcmp(key, "reasoning_content");
    cJSON *j = think ? object(r, "", 0, text, n) : object(r, text, n, NULL, 0);
    cJSON_AddBoolToObject(j, "done", 0);
    line(out, j);
}

/* The last object's fields: done, why, counts and durations. */
static void finish(const api_reply *r, const whale_result *res, cJSON *j) {
    double total = clock_now_s() - r->t0, first = res->t_first > 0 && res->t_first < total ? res->t_first : total;
    cJSON_AddBoolToObject(j, "done", 1);
    cJSON_AddStringToObject(j, "done_reason", r->stopped || strcmp(res->finish, "length") ? "stop" : "length");
    cJSON_AddNumberToObject(j, "total_duration", (double)(long long)(total * 1e9));
    cJSON_AddNumberToObject(j, "load_duration", 0);
    cJSON_AddNumberToObject(j, "prompt_eval_count", (double)res->n_prompt);
    cJSON_AddNumberToObject(j, "prompt_eval_duration", (double)(long long)((first - res->t_queue > 0 ? first - res->t_queue : 0) * 1e9));
    cJSON_AddNumberToObject(j, "eval_count", (double)res->n_gen);
    cJSON_AddNumberToObject(j, "eval_duration", (double)(long long)((total - first) * 1e9));
}

void api_ollama_end(api_reply *r, const whale_result *res, strbuf *out) {
    cJSON *j = object(r, "", 0, NULL, 0);
    finish(r, res, j);
    line(out, j);
}

char *api_ollama_json(api_reply *r, const whale_result *res) {
    cJSON *j = object(r, r->answer.s, r->answer.n, r->a->reasoning && r->think.n ? r->think.s : NULL, r->think.n);
    finish(r, res, j);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}
