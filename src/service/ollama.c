/* ollama.c — Ollama's HTTP API: its requests as OpenAI-shaped bodies for completions.c, its
 * model listings from the registry; see ollama.h. */
#include "service/ollama.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

/* An error in Ollama's shape: {"error": "..."}. */
static void fail(http_reply *out, int status, const char *msg) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", msg);
    http_json(out, status, j);
}

/* A reply completions.c wrote as an OpenAI error, rewritten in Ollama's shape (status and
 * Retry-After kept). */
static void reshape_error(http_reply *out) {
    if (out->status < 400 || !out->body) return;
    cJSON *j = cJSON_Parse(out->body);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "message");
    if (cJSON_IsString(m)) {
        int status = out->status, retry = out->retry_after;
        free(out->body);
        out->body = NULL;
        fail(out, status, m->valuestring);
        out->retry_after = retry;
    }
    cJSON_Delete(j);
}

/* options, format, think and stream into the OpenAI body o (n_ctx: the model's context, at
 * most); NULL, or why the request is refused. */
static const char *common(const cJSON *in, cJSON *o, int64_t n_ctx) {
    static const char *const same[] = {"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "stop"};
    const cJSON *opt = cJSON_GetObjectItemCaseSensitive(in, "options");
    if (opt && !cJSON_IsNull(opt) && !cJSON_IsObject(opt)) return "options must be an object";
    for (size_t i = 0; opt && i < sizeof same / sizeof same[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(opt, same[i]);
        if (v && !cJSON_IsNull(v)) cJSON_AddItemToObject(o, same[i], cJSON_Duplicate(v, 1));
    }
    const cJSON *np = cJSON_GetObjectItemCaseSensitive(opt, "num_predict");
    if (cJSON_IsNumber(np) && np->valuedouble >= 1) /* (Ollama takes any count: a whole one, within the context) */
        cJSON_AddNumberToObject(o, "max_tokens", np->valuedouble < (double)(n_ctx - 1) ? (double)(int64_t)np->valuedouble
                                                                                        : (double)(n_ctx > 1 ? n_ctx - 1 : 1));
    else if (np && !cJSON_IsNull(np) && !cJSON_IsNumber(np)) return "options.num_predict must be a number";
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(in, "format");
    if (cJSON_IsObject(fmt) || (cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "json")))
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "response_format"), "type", "json_object");
    else if (fmt && !cJSON_IsNull(fmt) && !(cJSON_IsString(fmt) && !fmt->valuestring[0]))
        return "format must be \"json\" or a JSON schema";
    const cJSON *think = cJSON_GetObjectItemCaseSensitive(in, "think");
    if (cJSON_IsFalse(think)) cJSON_AddNumberToObject(o, "reasoning_budget", 0);
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(in, "stream");
    cJSON_AddBoolToObject(o, "stream", !cJSON_IsFalse(stream)); /* Ollama streams unless told not to */
    return NULL;
}

/* Fields Whale does not serve, refused rather than ignored (the answer would not be what was
 * asked): NULL or why. */
static const char *unsupported(const cJSON *in) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(in, "tools");
    if (cJSON_IsArray(t) && cJSON_GetArraySize(t)) return "tools are not served on /api/chat: use /v1/chat/completions";
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(in, "template");
    if (cJSON_IsString(tm) && tm->valuestring[0]) return "template is not supported: the model's chat format is used";
    const cJSON *cx = cJSON_GetObjectItemCaseSensitive(in, "context");
    if (cJSON_IsArray(cx) && cJSON_GetArraySize(cx)) return "context is not supported: send the conversation to /api/chat";
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(in, "images");
    if (cJSON_IsArray(im) && cJSON_GetArraySize(im)) return "images are not supported: the served models read text";
    return NULL;
}

static void add_message(cJSON *msgs, const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    cJSON_AddItemToArray(msgs, m);
}

/* /api/chat's messages into o; NULL or why. */
static const char *chat_messages(const cJSON *in, cJSON *o) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(in, "messages"), *m;
    if (!cJSON_IsArray(msgs)) return "messages must be an array";
    cJSON *to = cJSON_AddArrayToObject(o, "messages");
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role)) return "each message needs a role";
        if (content && !cJSON_IsNull(content) && !cJSON_IsString(content)) return "a message's content must be a string";
        const char *why = unsupported(m);
        if (why) return why;
        add_message(to, role->valuestring, cJSON_IsString(content) ? content->valuestring : "");
    }
    return NULL;
}

/* Run the translated body o (deleted) as the request q, written in dialect. */
static void run(completions *c, http_req *q, http_reply *out, cJSON *o, api_kind kind, api_dialect dialect) {
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!body) {
        fail(out, 500, "out of memory");
        return;
    }
    http_req t = *q;
    t.body = body;
    t.n = strlen(body);
    completions_run(c, &t, out, kind, dialect);
    free(body);
    reshape_error(out);
}

/* The request's JSON object and the served model it names (required, as Ollama's; 404 when not
 * served, as Ollama's, whose clients offer to pull it), or NULL with the error in out. */
static cJSON *request(completions *c, const http_req *q, http_reply *out, served **model) {
    const char *why = NULL;
    char msg[200];
    cJSON *in = api_parse_object(q->body, q->n, &why);
    const cJSON *m = in ? cJSON_GetObjectItemCaseSensitive(in, "model") : NULL;
    if (!in) fail(out, 400, why);
    else if (!cJSON_IsString(m) || !m->valuestring[0]) fail(out, 400, "model is required");
    else if (!(*model = models_find(c->reg, m->valuestring))) {
        snprintf(msg, sizeof msg, "model '%.128s' not found (GET /api/tags lists this server's)", m->valuestring);
        fail(out, 404, msg);
    } else if ((why = unsupported(in))) fail(out, 400, why);
    else return in;
    cJSON_Delete(in);
    return NULL;
}

/* The most context the model may have (its own once loaded). */
static int64_t context_of(completions *c, const served *model) {
    api_ctx a;
    models_ctx(c->reg, model, &a);
    return a.n_ctx;
}

void ollama_chat(void *ctx, http_req *q, http_reply *out) {
    served *model;
    cJSON *in = request(ctx, q, out, &model);
    if (!in) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model->name);
    const char *why = chat_messages(in, o);
    if (!why) why = common(in, o, context_of(ctx, model));
    cJSON_Delete(in);
    if (why) {
        cJSON_Delete(o);
        fail(out, 400, why);
        return;
    }
    run(ctx, q, out, o, API_CHAT, API_OLLAMA_CHAT);
}

/* /api/generate with an empty prompt: load the model, answer at once (as Ollama does). */
static void load_only(completions *c, const cJSON *in, served *s, http_reply *out) {
    whale_err e = {0};
    if (models_lease(c->reg, s, &e)) {
        fail(out, e.code == WHALE_E_BUSY ? 503 : 500, e.msg);
        return;
    }
    models_release(c->reg, s);
    cJSON *j = cJSON_CreateObject();
    char when[40];
    cJSON_AddStringToObject(j, "model", s->name);
    cJSON_AddStringToObject(j, "created_at", api_ollama_time(clock_wall_s(), when, sizeof when));
    cJSON_AddStringToObject(j, "response", "");
    cJSON_AddBoolToObject(j, "done", 1);
    cJSON_AddStringToObject(j, "done_reason", "load");
    if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(in, "stream"))) {
        http_json(out, 200, j);
        return;
    }
    char *s1 = cJSON_PrintUnformatted(j), *line = s1 ? malloc(strlen(s1) + 2) : NULL;
    cJSON_Delete(j);
    if (line) sprintf(line, "%s\n", s1);
    free(s1);
    http_body(out, 200, line, "application/x-ndjson");
}

void ollama_generate(void *ctx, http_req *q, http_reply *out) {
    served *model;
    cJSON *in = request(ctx, q, out, &model);
    if (!in) return;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(in, "prompt"), *suffix = cJSON_GetObjectItemCaseSensitive(in, "suffix");
    const cJSON *system = cJSON_GetObjectItemCaseSensitive(in, "system");
    const char *why = NULL;
    if (prompt && !cJSON_IsNull(prompt) && !cJSON_IsString(prompt)) why = "prompt must be a string";
    else if (suffix && !cJSON_IsNull(suffix) && !cJSON_IsString(suffix)) why = "suffix must be a string";
    else if (system && !cJSON_IsNull(system) && !cJSON_IsString(system)) why = "system must be a string";
    if (why) {
        cJSON_Delete(in);
        fail(out, 400, why);
        return;
    }
    const char *p = cJSON_IsString(prompt) ? prompt->valuestring : "";
    int fim = cJSON_IsString(suffix) && suffix->valuestring[0];
    if (!p[0] && !fim) {
        load_only(ctx, in, model, out);
        cJSON_Delete(in);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model->name);
    /* fill in the middle, or raw text: a plain completion; else the prompt as a user's question */
    api_kind kind = fim || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(in, "raw")) ? API_COMPLETION : API_CHAT;
    if (kind == API_COMPLETION) {
        cJSON_AddStringToObject(o, "prompt", p);
        if (fim) cJSON_AddStringToObject(o, "suffix", suffix->valuestring);
    } else {
        cJSON *msgs = cJSON_AddArrayToObject(o, "messages");
        if (cJSON_IsString(system) && system->valuestring[0]) add_message(msgs, "system", system->valuestring);
        add_message(msgs, "user", p);
    }
    why = common(in, o, context_of(ctx, model));
    cJSON_Delete(in);
    if (why) {
        cJSON_Delete(o);
        fail(out, 400, why);
        return;
    }
    run(ctx, q, out, o, kind, API_OLLAMA_GENERATE);
}

/* ---- listings ------------------------------------------------------------------------------ */

static cJSON *details(const served *s) {
    cJSON *d = cJSON_CreateObject();
    size_t n = strlen(s->path);
    cJSON_AddStringToObject(d, "format", n > 5 && !strcmp(s->path + n - 5, ".gguf") ? "gguf" : "safetensors");
    cJSON_AddStringToObject(d, "family", "");
    cJSON_AddStringToObject(d, "parameter_size", "");
    cJSON_AddStringToObject(d, "quantization_level", "");
    return d;
}

static void entry(cJSON *list, const served *s, const char *name, size_t size) {
    char when[40];
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", name);
    cJSON_AddStringToObject(m, "model", name);
    cJSON_AddStringToObject(m, "modified_at", api_ollama_time(s->mtime, when, sizeof when));
    cJSON_AddNumberToObject(m, "size", (double)size);
    cJSON_AddStringToObject(m, "digest", "");
    cJSON_AddItemToObject(m, "details", details(s));
    cJSON_AddItemToArray(list, m);
}

/* Each model under its name and its aliases (Ollama's clients ask by "name:tag"). */
static void tag(void *ctx, const served *s, whale_engine *e) {
    (void)e;
    entry(ctx, s, s->name, s->file_bytes);
    for (int i = 0; i < s->n_aliases; i++) entry(ctx, s, s->aliases[i], s->file_bytes);
}

static void loaded(void *ctx, const served *s, whale_engine *e) {
    if (!e) return;
    entry(ctx, s, s->name, s->bytes);
    cJSON *m = cJSON_GetArrayItem(ctx, cJSON_GetArraySize(ctx) - 1);
    cJSON_AddStringToObject(m, "expires_at", "0001-01-01T00:00:00Z"); /* unloaded by use, not by time */
    cJSON_AddNumberToObject(m, "size_vram", 0);
}

static void listing(completions *c, http_reply *out, void (*fn)(void *, const served *, whale_engine *)) {
    cJSON *j = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(j, "models");
    models_each(c->reg, fn, list);
    http_json(out, 200, j);
}

void ollama_tags(void *ctx, http_req *q, http_reply *out) {
    (void)q;
    listing(ctx, out, tag);
}

void ollama_ps(void *ctx, http_req *q, http_reply *out) {
    (void)q;
    listing(ctx, out, loaded);
}

void ollama_show(void *ctx, http_req *q, http_reply *out) {
    served *s;
    cJSON *in = request(ctx, q, out, &s);
    if (!in) return;
    cJSON_Delete(in);
    cJSON *j = cJSON_CreateObject(), *caps = cJSON_AddArrayToObject(j, "capabilities");
    char when[40];
    cJSON_AddStringToObject(j, "modelfile", "");
    cJSON_AddStringToObject(j, "parameters", "");
    cJSON_AddStringToObject(j, "template", s->a.fmt);
    cJSON_AddItemToObject(j, "details", details(s));
    cJSON_AddObjectToObject(j, "model_info");
    cJSON_AddStringToObject(j, "modified_at", api_ollama_time(s->mtime, when, sizeof when));
    cJSON_AddItemToArray(caps, cJSON_CreateString("completion"));
    if (s->a.fim[0] >= 0) cJSON_AddItemToArray(caps, cJSON_CreateString("insert"));
    if (s->a.reasoning) cJSON_AddItemToArray(caps, cJSON_CreateString("thinking"));
    http_json(out, 200, j);
}

void ollama_version(void *ctx, http_req *q, http_reply *out) {
    (void)ctx, (void)q;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", WHALE_VERSION);
    http_json(out, 200, j);
}
