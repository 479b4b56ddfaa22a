/* api_parse.c — chat-completions and completions request bodies (OpenAI / DeepSeek JSON) checked
 * and turned into a prompt and the engine's request; see api.h. */
#include "service/api.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int too_long(const api_ctx *a, size_t text, const char *param, char **err);

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
        if (d > -1e15 && d < 1e15 && d == (double)(long long)d) snprintf(num, sizeof num, "%lld", (long long)d);
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


int api_req_offers(const api_req *q, const char *name) {
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
    if (forced && !api_req_offers(out, forced))
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
        const cJSON *rc = cJSON_GetObjectItemCaseSensitive(msg, "reasoning_content");
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
        if ((rc && !cJSON_IsNull(rc) && !cJSON_IsString(rc)) || (tc && !cJSON_IsNull(tc) && !cJSON_IsArray(tc))) {
            status = fail(err, 422, param, "%s: reasoning_content must be a string and tool_calls an array", param);
            goto done;
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
    size_t text = 0;
    for (int i = 0; i < k; i++) text += m[i].content ? strlen(m[i].content) : 0;
    if ((status = too_long(a, text, "messages", err))) goto done;
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
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(so, "resumable");
    if ((so && !cJSON_IsNull(so) && !cJSON_IsObject(so)) || (iu && !cJSON_IsNull(iu) && !cJSON_IsBool(iu)) ||
        (rs && !cJSON_IsNull(rs) && !cJSON_IsBool(rs)))
        return fail(err, 422, "stream_options", "stream_options must be an object like {\"include_usage\": true}");
    out->include_usage = cJSON_IsTrue(iu);
    out->resumable = out->stream && cJSON_IsTrue(rs);
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

int api_parse_head(const char *body, size_t n, cJSON **j, const char **model, char **err) {
    const char *why = NULL;
    *model = NULL;
    if (!(*j = api_parse_object(body, n, &why))) return fail(err, 400, NULL, "%s", why);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(*j, "model");
    if (m && !cJSON_IsNull(m) && !cJSON_IsString(m)) {
        cJSON_Delete(*j);
        *j = NULL;
        return fail(err, 422, "model", "model must be a string");
    }
    if (cJSON_IsString(m)) *model = m->valuestring;
    return 0;
}

int api_model_unknown(const char *model, const char *served, char **err) {
    return fail(err, 400, "model", "Model Not Exist: '%.128s' (this server has %s)", model, served);
}

/* The one-model forms (tools and fuzzers): the body, routed to a (its name or alias) or refused. */
static int parse_one(const api_ctx *a, const char *body, size_t n, api_req *out, char **err,
                     int (*parse)(const api_ctx *, const cJSON *, api_req *, char **)) {
    memset(out, 0, sizeof *out);
    cJSON *j;
    const char *model;
    int status = api_parse_head(body, n, &j, &model, err);
    if (status) return status;
    if (model && strcmp(model, a->model_name) && (!a->alias || strcmp(model, a->alias))) {
        char has[300];
        snprintf(has, sizeof has, "'%s'%s%s%s", a->model_name, a->alias ? ", also called '" : "", a->alias ? a->alias : "",
                 a->alias ? "'" : "");
        status = api_model_unknown(model, has, err);
    } else status = parse(a, j, out, err);
    cJSON_Delete(j);
    return status;
}

int api_parse_chat(const api_ctx *a, const char *body, size_t n, api_req *out, char **err) {
    return parse_one(a, body, n, out, err, api_parse_chat_json);
}

int api_parse_completion(const api_ctx *a, const char *body, size_t n, api_req *out, char **err) {
    return parse_one(a, body, n, out, err, api_parse_completion_json);
}

int api_parse_chat_json(const api_ctx *a, const cJSON *j, api_req *out, char **err) {
    memset(out, 0, sizeof *out);
    int status = 0;
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
    if (status) api_req_free(out);
    return status;
}

void api_req_free(api_req *r) {
    whale_ids_free(&r->prompt);
    for (int i = 0; i < r->n_tools; i++) free(r->tools[i]);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

size_t api_max_body(int64_t n_ctx) {
    if (n_ctx <= 0 || (uint64_t)n_ctx > (API_MAX_BODY - API_BODY_EXTRA) / API_BODY_PER_TOKEN) return API_MAX_BODY;
    return (size_t)n_ctx * API_BODY_PER_TOKEN + API_BODY_EXTRA;
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
    whale_model_info mi;
    whale_model_info_get(a->m, &mi);
    a->max_token_bytes = 0;
    for (int64_t i = 0; i < mi.n_vocab; i++) {
        char c;
        int n = whale_token_bytes(a->m, (int32_t)i, &c, 0);
        if (n > 0 && (size_t)n > a->max_token_bytes) a->max_token_bytes = (size_t)n;
    }
}

/* Text that cannot fit, by its length alone, is refused before the work of tokenizing it: 400
 * context_length_exceeded, or 0. */
static int too_long(const api_ctx *a, size_t text, const char *param, char **err) {
    if (!a->max_token_bytes || a->n_ctx <= 0 || text / a->max_token_bytes < (size_t)a->n_ctx) return 0;
    char why[256];
    snprintf(why, sizeof why, "the %s hold %zu bytes of text: at least %zu tokens (no token stands for more than %zu "
             "bytes); this server's context holds %lld", param, text, text / a->max_token_bytes, a->max_token_bytes,
             (long long)a->n_ctx);
    *err = api_error_body(why, "invalid_request_error", param, "context_length_exceeded");
    return 400;
}

int api_parse_completion_json(const api_ctx *a, const cJSON *j, api_req *out, char **err) {
    memset(out, 0, sizeof *out);
    out->kind = API_COMPLETION;
    int status = 0;
    whale_err e = {0};
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
    if ((status = too_long(a, strlen(p) + (cJSON_IsString(suffix) ? strlen(suffix->valuestring) : 0), "prompt", err)))
        goto done;
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
    if (status) api_req_free(out);
    return status;
}
