/* api.c — chat-completions requests and replies in OpenAI / DeepSeek's JSON; see api.h. */
#include "service/api.h"

#include "base/utf8.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

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
    strbuf b = {0};
    strbuf_add(&b, "", 0);
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "type"), *x = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") || !cJSON_IsString(x)) {
            strbuf_free(&b);
            return NULL;
        }
        strbuf_add(&b, x->valuestring, strlen(x->valuestring));
    }
    return b.s;
}

static const char *unsupported[][2] = {
    {"functions", "the legacy functions field is not supported: use tools"},
};

/* JSON as Python's json.dumps writes it (", " and ": " separators, non-ASCII kept): what the
 * chat templates' tojson renders, so a prompt with tools reads as the model was trained on. */
static void pyjson(strbuf *b, const cJSON *v) {
    char num[64];
    if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
        int obj = cJSON_IsObject(v), first = 1;
        strbuf_add(b, obj ? "{" : "[", 1);
        const cJSON *c;
        cJSON_ArrayForEach(c, v) {
            if (!first) strbuf_add(b, ", ", 2);
            first = 0;
            if (obj) {
                cJSON key = {0};
                key.type = cJSON_String;
                key.valuestring = c->string;
                pyjson(b, &key);
                strbuf_add(b, ": ", 2);
            }
            pyjson(b, c);
        }
        strbuf_add(b, obj ? "}" : "]", 1);
    } else if (cJSON_IsString(v)) {
        strbuf_add(b, "\"", 1);
        for (const unsigned char *q = (const unsigned char *)v->valuestring; *q; q++) {
            const char *e = *q == '"' ? "\\\"" : *q == '\\' ? "\\\\" : *q == '\n' ? "\\n" : *q == '\r' ? "\\r"
                          : *q == '\t' ? "\\t" : *q == '\b' ? "\\b" : *q == '\f' ? "\\f" : NULL;
            if (e) strbuf_add(b, e, 2);
            else if (*q < 0x20) strbuf_add(b, num, (size_t)snprintf(num, sizeof num, "\\u%04x", *q));
            else strbuf_add(b, (const char *)q, 1);
        }
        strbuf_add(b, "\"", 1);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == (double)(long long)d && d > -1e15 && d < 1e15) snprintf(num, sizeof num, "%lld", (long long)d);
        else {
            for (int prec = 1; prec <= 17; prec++) { /* the shortest that reads back the same, as repr */
                snprintf(num, sizeof num, "%.*g", prec, d);
                if (strtod(num, NULL) == d) break;
            }
        }
        strbuf_add(b, num, strlen(num));
    } else if (cJSON_IsBool(v)) {
        strbuf_add(b, cJSON_IsTrue(v) ? "true" : "false", cJSON_IsTrue(v) ? 4 : 5);
    } else {
        strbuf_add(b, "null", 4);
    }
}

/* An assistant's tool call as the model writes it: {"name": "...", "arguments": {...}}; the
 * API's arguments are a JSON string (kept as a string when it is not JSON). */
static char *call_text(const cJSON *call) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(call, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name"), *args = cJSON_GetObjectItemCaseSensitive(f, "arguments");
    if (!cJSON_IsString(name)) return NULL;
    strbuf b = {0};
    strbuf_add(&b, "{\"name\": ", 9);
    pyjson(&b, name);
    strbuf_add(&b, ", \"arguments\": ", 15);
    cJSON *parsed = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
    pyjson(&b, parsed ? parsed : args ? args : cJSON_GetObjectItemCaseSensitive(f, "no such key"));
    cJSON_Delete(parsed);
    strbuf_add(&b, "}", 1);
    return b.s;
}

/* 1 if name is one of the request's tools. */
static int offered(const api_req *q, const char *name) {
    for (int i = 0; i < q->n_tools; i++) {
        cJSON *t = cJSON_Parse(q->tools[i]);
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
        int ok = cJSON_IsString(n) && !strcmp(n->valuestring, name);
        cJSON_Delete(t);
        if (ok) return 1;
    }
    return 0;
}

/* tools: [{"type": "function", "function": {"name", "description", "parameters"}}]; with
 * tool_choice "none" they are not shown to the model; "required" or a named function makes the
 * reply start with a call (of that function). */
#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
static int parse_tools(const cJSON *j, api_req *out, char **err) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(j, "tools"), *choice = cJSON_GetObjectItemCaseSensitive(j, "tool_choice");
    if (!tools || cJSON_IsNull(tools) || !cJSON_GetArraySize(tools)) {
        if (choice && !cJSON_IsNull(choice) && !(cJSON_IsString(choice) && !strcmp(choice->valuestring, "none")))
            return fail(err, 422, "tool_choice", "tool_choice needs tools");
        return 0;
    }
    int n = cJSON_GetArraySize(tools);
    if (!cJSON_IsArray(tools) || n > API_MAX_TOOLS) return fail(err, 422, "tools", "tools must be an array of at most %d", API_MAX_TOOLS);
    const char *forced = NULL; /* tool_choice naming a function */
    if (choice && !cJSON_IsNull(choice)) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(choice, "function"), "name");
        if (cJSON_IsObject(choice) && cJSON_IsString(fn)) forced = fn->valuestring;
        else if (!cJSON_IsString(choice) || (strcmp(choice->valuestring, "auto") && strcmp(choice->valuestring, "none") &&
                                             strcmp(choice->valuestring, "required")))
            return fail(err, 422, "tool_choice",
                        "tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
        else if (!strcmp(choice->valuestring, "none")) return 0;
        else if (!strcmp(choice->valuestring, "required")) out->tool_force = 1;
        if (forced && (!*forced || strlen(forced) > API_MAX_TOOL_NAME || strspn(forced, NAME_CHARS) != strlen(forced)))
            return fail(err, 422, "tool_choice", "a function name is 1 to %d letters, digits, '_', '-' or '.'", API_MAX_TOOL_NAME);
        if (forced) snprintf(out->tool_force_name, sizeof out->tool_force_name, "%s", forced), out->tool_force = 2;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsObject(t) || !cJSON_IsObject(f) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(f, "name")))
            return fail(err, 422, "tools", "each tool needs {\"type\": \"function\", \"function\": {\"name\": ...}}");
        strbuf b = {0};
        pyjson(&b, t);
        if (!b.s) return fail(err, 500, NULL, "out of memory");
        out->tools[out->n_tools++] = b.s;
    }
    if (forced && !offered(out, forced))
        return fail(err, 422, "tool_choice", "tool_choice names '%.64s', which is not among the tools", forced);
    return 0;
}

static int parse_messages(const api_ctx *a, const cJSON *msgs, api_req *out, char **err) {
    int n = cJSON_GetArraySize(msgs);
    if (!cJSON_IsArray(msgs) || n < 1) return fail(err, 422, "messages", "messages must be a non-empty array");
    if (n > API_MAX_MESSAGES) return fail(err, 422, "messages", "at most %d messages per request", API_MAX_MESSAGES);
    whale_msg *m = calloc((size_t)n, sizeof *m);
    char **texts = calloc((size_t)n, sizeof *texts), ***call_texts = calloc((size_t)n, sizeof *call_texts);
    int *n_call_texts = calloc((size_t)n, sizeof *n_call_texts);
    int status = 0, k = 0;
    if (!m || !texts || !call_texts || !n_call_texts) {
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
        if (!strcmp(r, "system") || !strcmp(r, "developer")) m[k].role = WHALE_ROLE_SYSTEM;
        else if (!strcmp(r, "user")) m[k].role = WHALE_ROLE_USER;
        else if (!strcmp(r, "assistant")) m[k].role = WHALE_ROLE_ASSISTANT;
        else if (!strcmp(r, "tool")) m[k].role = WHALE_ROLE_TOOL;
        else {
            status = fail(err, 422, param, "%s.role must be system, user, assistant or tool (got '%.40s')", param, r);
            goto done;
        }
        if (m[k].role == WHALE_ROLE_ASSISTANT && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(msg, "prefix"))) {
            if (k != n - 1) {
                status = fail(err, 422, param, "only the last message may be an assistant prefix");
                goto done;
            }
            out->prefix = 1; /* chat prefix completion: the reply continues this text */
        }
        /* an assistant's reasoning_content is never fed back: only content counts */
        texts[k] = m[k].role == WHALE_ROLE_ASSISTANT && (!content || cJSON_IsNull(content)) ? strdup("") : content_text(content);
        if (!texts[k]) {
            status = fail(err, 422, param, "%s.content must be a string or an array of text parts", param);
            goto done;
        }
        m[k].content = texts[k];
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls"), *call;
        if (m[k].role == WHALE_ROLE_ASSISTANT && cJSON_IsArray(calls) && cJSON_GetArraySize(calls) > 0) {
            int nc = cJSON_GetArraySize(calls), ci = 0;
            char **ct = calloc((size_t)nc, sizeof *ct);
            if (!ct) { status = fail(err, 500, NULL, "out of memory"); goto done; }
            call_texts[k] = ct;
            n_call_texts[k] = nc;
            cJSON_ArrayForEach(call, calls) {
                if (!(ct[ci++] = call_text(call))) {
                    status = fail(err, 422, param, "%s.tool_calls: each needs function.name", param);
                    goto done;
                }
            }
            m[k].tool_calls = (const char *const *)ct;
            m[k].n_tool_calls = (size_t)nc;
        }
        k++;
    }
    whale_err e = {0};
    /* With a prefix: the conversation before it, the assistant's opening (no forced <think>: the
     * prefix starts the answer), then the prefix itself as plain text. */
    size_t n_conv = out->prefix ? (size_t)k - 1 : (size_t)k;
    int flags = WHALE_CHAT_GENERATION_PROMPT | (out->prefix ? WHALE_CHAT_NO_FORCED_THINK : 0);
    if (whale_chat_apply(a->m, a->fmt, m, n_conv, (const char *const *)out->tools, (size_t)out->n_tools, flags,
                         &out->prompt, &e) ||
        (out->prefix && whale_tokenize(a->m, m[k - 1].content, strlen(m[k - 1].content), 0, &out->prompt, &e)))
        status = e.code == WHALE_E_UNSUPPORTED && strstr(e.msg, "tools are not supported")
                     ? fail(err, 422, "tools", "function calling is not supported in this model's %s chat format "
                            "(DeepSeek's deepseek-reasoner did not support it either)", a->fmt)
                     : fail(err, 400, "messages", "%s", e.msg);
done:
    for (int i = 0; texts && i < n; i++) free(texts[i]);
    for (int i = 0; call_texts && i < n; i++) {
        for (int c = 0; call_texts[i] && c < n_call_texts[i]; c++) free(call_texts[i][c]);
        free(call_texts[i]);
    }
    free(texts);
    free(call_texts);
    free(n_call_texts);
    free(m);
    return status;
}

static int check_model(const api_ctx *a, const cJSON *j, char **err);

/* Sampling, limits, streaming and stop strings: what chat and completions share. */
static int parse_common(const api_ctx *a, const cJSON *j, api_req *out, char **err) {
    int status = 0, r;
    double d;
    whale_request_default(&out->sp);
    out->sp.sampling.temperature = 1.0f; /* the API's default, as OpenAI's and DeepSeek's */
    out->sp.sampling.top_p = 1.0f;
    out->sp.sampling.seed = WHALE_SEED_RANDOM;
#define NUM(name, lo, hi, integer, assign)                                                      \
    if ((r = num_field(j, name, lo, hi, integer, &d, &status, err)) < 0) return status;             \
    if (r > 0) assign;
    NUM("temperature", 0, 2, 0, out->sp.sampling.temperature = (float)d);
    NUM("top_p", 1e-6, 1, 0, out->sp.sampling.top_p = (float)d);
    NUM("presence_penalty", -2, 2, 0, out->sp.sampling.presence_penalty = (float)d);
    NUM("frequency_penalty", -2, 2, 0, out->sp.sampling.frequency_penalty = (float)d);
    NUM("seed", 0, 9007199254740991.0, 1, out->sp.sampling.seed = (uint64_t)d);
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
    const cJSON *iu = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
    if ((so && !cJSON_IsNull(so) && !cJSON_IsObject(so)) || (iu && !cJSON_IsNull(iu) && !cJSON_IsBool(iu)))
        return fail(err, 422, "stream_options", "stream_options must be an object like {\"include_usage\": true}");
    out->include_usage = cJSON_IsTrue(iu);
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
    if ((r = num_field(j, "top_logprobs", 0, WHALE_MAX_TOP_LOGPROBS, 1, &d, &status, err)) < 0) return status;
    if (r > 0 && !out->logprobs) return fail(err, 422, "top_logprobs", "top_logprobs needs logprobs: true");
    out->sp.logprobs = out->logprobs;
    out->sp.top_logprobs = r > 0 ? (int)d : 0;
    if ((r = num_field(j, "reasoning_budget", 0, 1e9, 1, &d, &status, err)) < 0) return status;
    out->sp.reasoning_budget = r > 0 && a->reasoning ? (int64_t)d : -1; /* ignored by other models */
    return 0;
}

cJSON *api_parse_object(const char *body, size_t n, const char **why) {
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) { /* brackets outside strings, before the parser recurses */
        char c = body[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') in_str = 1;
        else if ((c == '[' || c == '{') && ++depth > API_MAX_JSON_DEPTH) {
            *why = "the request body is nested too deeply (at most 64 levels)";
            return NULL;
        } else if (c == ']' || c == '}') depth--;
    }
    cJSON *j = cJSON_ParseWithLength(body ? body : "", n);
    if (!j) *why = "the request body is not valid JSON";
    else if (!cJSON_IsObject(j)) *why = "the request body must be a JSON object";
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

int api_parse_chat(const api_ctx *a, const char *body, size_t n, api_req *out, char **err) {
    memset(out, 0, sizeof *out);
    const char *why = NULL;
    cJSON *j = api_parse_object(body, n, &why);
    int status = 0;
    if (!j) {
        status = fail(err, 400, NULL, why);
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
    if ((status = parse_tools(j, out, err))) goto done;
    if (out->json && out->tool_force) { /* both would constrain the reply's start: refuse, as OpenAI does */
        status = fail(err, 422, "tool_choice", "a forced tool call cannot be combined with response_format json_object");
        goto done;
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
    whale_ids_free(&r->prompt);
    for (int i = 0; i < r->n_tools; i++) free(r->tools[i]);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

void api_ctx_tokens(api_ctx *a) {
    /* fill-in-the-middle markers: Qwen2.5-Coder's, then DeepSeek-Coder's */
    static const char *fim[2][3] = {{"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"},
                                    {"<ï½" "fimâ" "beginï½>", "<ï½" "fimâ" "holeï½>",
                                     "<ï½" "fimâ" "endï½>"}};
    a->fim[0] = a->fim[1] = a->fim[2] = -1;
    for (int k = 0; k < 2 && a->fim[0] < 0; k++) {
        int32_t id[3];
        int ok = 1;
        for (int i = 0; i < 3; i++) ok &= (id[i] = whale_token_find(a->m, fim[k][i])) >= 0;
        if (ok) memcpy(a->fim, id, sizeof id);
    }
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
    const char *why = NULL;
    cJSON *j = api_parse_object(body, n, &why);
    int status = 0;
    whale_err e = {0};
    if (!j) {
        status = fail(err, 400, NULL, why);
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
        if (whale_ids_push(&out->prompt, a->fim[0]) ||
            whale_tokenize(a->m, p, strlen(p), 0, &out->prompt, &e) || whale_ids_push(&out->prompt, a->fim[1]) ||
            whale_tokenize(a->m, suffix->valuestring, strlen(suffix->valuestring), 0, &out->prompt, &e) ||
            whale_ids_push(&out->prompt, a->fim[2])) {
            status = fail(err, 400, "prompt", "%s", e.msg[0] ? e.msg : "out of memory");
            goto done;
        }
    } else if (whale_tokenize(a->m, p, strlen(p), WHALE_TOK_ADD_BOS, &out->prompt, &e)) {
        status = fail(err, 400, "prompt", "%s", e.msg);
        goto done;
    }
    if (!out->prompt.n) {
        status = fail(err, 422, "prompt", "prompt is empty");
        goto done;
    }
    if ((status = parse_common(a, j, out, err))) goto done;
    out->sp.reasoning_budget = -1;
    out->sp.prompt = out->prompt.v;
    out->sp.n_prompt = out->prompt.n;
done:
    cJSON_Delete(j);
    if (status) api_req_free(out);
    return status;
}

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
                   offered(r->q, name->valuestring);
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

static void emit(strbuf *out, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return;
    strbuf_add(out, "data: ", 6);
    strbuf_add(out, s, strlen(s));
    strbuf_add(out, "\n\n", 2);
    free(s);
}

static void chunk(api_reply *r, strbuf *out, const char *key, const char *text, size_t n, const char *finish) {
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
        emit(out, j);
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
    chunk(r, out, NULL, NULL, 0, finish_reason(r, res));
    if (r->q->include_usage) {
        cJSON *j = envelope(r, r->q->kind == API_CHAT ? "chat.completion.chunk" : "text_completion");
        cJSON_AddArrayToObject(j, "choices");
        cJSON_AddItemToObject(j, "usage", usage(r, res));
        emit(out, j);
    }
    strbuf_add(out, "data: [DONE]\n\n", 14);
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
