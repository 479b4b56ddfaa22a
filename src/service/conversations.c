/* conversations.c — the web page's conversations over HTTP; see conversations.h. */
#include "service/conversations.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int id_ok(const char *id) {
    size_t n = strlen(id);
    if (!n || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return 0;
    }
    return 1;
}

typedef struct clean_ctx {
    int budget; /* messages left to CONV_MAX_MESSAGES, over every version */
    const char *why;
} clean_ctx;

static cJSON *clean_list(const cJSON *msgs, int depth, clean_ctx *cx);

/* A question's versions and the index of the one shown, into o; 0, or -1 with cx->why. */
static int clean_versions(const cJSON *versions, const cJSON *v, int depth, cJSON *o, clean_ctx *cx) {
    int n = cJSON_GetArraySize(versions);
    if (!cJSON_IsArray(versions) || n < 2 || n > CONV_MAX_VERSIONS)
        return cx->why = "versions must be an array of 2 to 64 versions", -1;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 0 && d < n) || d != (double)(int)d) /* (in range before the cast) */
        return cx->why = "v must be the index of one of the versions", -1;
    if (depth >= CONV_MAX_DEPTH) return cx->why = "versions are nested too deeply", -1;
    cJSON *arr = cJSON_AddArrayToObject(o, "versions");
    const cJSON *x;
    cJSON_ArrayForEach(x, versions) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(x, "content");
        const cJSON *tail = cJSON_GetObjectItemCaseSensitive(x, "tail");
        if (!cJSON_IsString(content)) return cx->why = "each version needs a content string", -1;
        cJSON *c = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, c);
        cJSON_AddStringToObject(c, "content", content->valuestring);
        if (tail && !cJSON_IsNull(tail)) {
            cJSON *t = clean_list(tail, depth + 1, cx);
            if (!t) return -1;
            cJSON_AddItemToObject(c, "tail", t);
        }
    }
    cJSON_AddNumberToObject(o, "v", d);
    return 0;
}

/* A list of messages kept to the known fields: a new array, or NULL with cx->why. */
static cJSON *clean_list(const cJSON *msgs, int depth, clean_ctx *cx) {
    if (!cJSON_IsArray(msgs)) return cx->why = "messages must be an array", NULL;
    if ((cx->budget -= cJSON_GetArraySize(msgs)) < 0) return cx->why = "too many messages in one conversation", NULL;
    cJSON *a = cJSON_CreateArray();
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        const cJSON *thought = cJSON_GetObjectItemCaseSensitive(m, "reasoning");
        const cJSON *secs = cJSON_GetObjectItemCaseSensitive(m, "thought_s");
        const cJSON *versions = cJSON_GetObjectItemCaseSensitive(m, "versions");
        if (!cJSON_IsString(role) || (strcmp(role->valuestring, "user") && strcmp(role->valuestring, "assistant")) ||
            !cJSON_IsString(content) || (thought && !cJSON_IsString(thought) && !cJSON_IsNull(thought)) ||
            (secs && !cJSON_IsNumber(secs) && !cJSON_IsNull(secs))) {
            cJSON_Delete(a);
            return cx->why = "each message needs a role (user or assistant) and a content string", NULL;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(a, o);
        cJSON_AddStringToObject(o, "role", role->valuestring);
        cJSON_AddStringToObject(o, "content", content->valuestring);
        if (cJSON_IsString(thought)) cJSON_AddStringToObject(o, "reasoning", thought->valuestring);
        if (cJSON_IsNumber(secs) && secs->valuedouble >= 0 && secs->valuedouble < 1e7)
            cJSON_AddNumberToObject(o, "thought_s", secs->valuedouble);
        if (versions && !cJSON_IsNull(versions) &&
            (strcmp(role->valuestring, "user") ||
             clean_versions(versions, cJSON_GetObjectItemCaseSensitive(m, "v"), depth, o, cx))) {
            if (!cx->why) cx->why = "only a question has versions";
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* The messages of a PUT, kept to the known fields: a new array, or NULL with *why. */
static cJSON *clean_messages(const cJSON *msgs, const char **why) {
    clean_ctx cx = {CONV_MAX_MESSAGES, NULL};
    cJSON *a = clean_list(msgs, 0, &cx);
    *why = cx.why;
    return a;
}

static void add_conv(void *ctx, const char *cid, const char *title, int64_t updated, const char *body) {
    cJSON *arr = ctx;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", cid);
    cJSON_AddStringToObject(o, "title", title);
    cJSON_AddNumberToObject(o, "updated", (double)updated);
    if (body) {
        cJSON *m = cJSON_Parse(body);
        if (!m) m = cJSON_CreateArray(); /* only this file writes bodies, as JSON */
        cJSON_AddItemToObject(o, "messages", m);
    }
    cJSON_AddItemToArray(arr, o);
}

static void store_failed(http_reply *out) { http_error(out, 500, "the account store failed", "server_error", "server_error"); }

/* GET /user/conversations[/export]: the list (with every one's messages for the export). */
static void list(store *st, int64_t user, int with_body, http_reply *out) {
    whale_err err = {0};
    cJSON *arr = cJSON_CreateArray();
    if (store_conv_list(st, user, NULL, with_body, add_conv, arr, &err)) {
        cJSON_Delete(arr);
        store_failed(out);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "conversations", arr);
    http_json(out, 200, j);
}

void conv_list(void *st, http_req *q, http_reply *out) { list(st, q->user.id, 0, out); }
void conv_export(void *st, http_req *q, http_reply *out) { list(st, q->user.id, 1, out); }

/* The id of /user/conversations/<id>, or NULL with a 404 in out. */
static const char *conv_id(const http_req *q, http_reply *out) {
    const char *id = q->rest[0] == '/' ? q->rest + 1 : "";
    if (id_ok(id)) return id;
    http_error(out, 404, "no such conversation", "invalid_request_error", "not_found");
    return NULL;
}

void conv_get(void *st, http_req *q, http_reply *out) {
    const char *id = conv_id(q, out);
    if (!id) return;
    whale_err err = {0};
    cJSON *arr = cJSON_CreateArray();
    int rc = store_conv_list(st, q->user.id, id, 1, add_conv, arr, &err);
    cJSON *one = rc ? NULL : cJSON_DetachItemFromArray(arr, 0);
    cJSON_Delete(arr);
    if (rc == WHALE_E_NOTFOUND) http_error(out, 404, "no such conversation", "invalid_request_error", "not_found");
    else if (rc || !one) store_failed(out);
    else {
        http_json(out, 200, one);
        return;
    }
    cJSON_Delete(one);
}

void conv_delete(void *st, http_req *q, http_reply *out) {
    const char *id = conv_id(q, out);
    if (!id) return;
    whale_err err = {0};
    int rc = store_conv_delete(st, q->user.id, id, &err);
    if (rc == WHALE_E_NOTFOUND) http_error(out, 404, "no such conversation", "invalid_request_error", "not_found");
    else if (rc) store_failed(out);
    else http_json(out, 200, cJSON_CreateObject());
}

void conv_put(void *st, http_req *q, http_reply *out) {
    const char *id = conv_id(q, out);
    if (!id) return;
    if (q->n > CONV_MAX_BYTES) {
        http_error(out, 413, "the conversation is too large to keep", "invalid_request_error", "request_too_large");
        return;
    }
    cJSON *j = http_json_body(q, out);
    if (!j) return;
    const char *why = NULL;
    const cJSON *title = cJSON_GetObjectItemCaseSensitive(j, "title");
    cJSON *msgs = clean_messages(cJSON_GetObjectItemCaseSensitive(j, "messages"), &why);
    whale_err err = {0};
    if (!msgs) http_error(out, 422, why, "invalid_request_error", "invalid_request_error");
    else if (!cJSON_IsString(title) || strlen(title->valuestring) > CONV_MAX_TITLE)
        http_error(out, 422, "title must be a string of at most 200 bytes", "invalid_request_error", "invalid_request_error");
    else {
        char *text = cJSON_PrintUnformatted(msgs);
        int rc = text ? store_conv_put(st, q->user.id, id, title->valuestring, text, &err) : WHALE_E_NOMEM;
        free(text);
        if (rc == WHALE_E_BUSY) http_error(out, 409, err.msg, "invalid_request_error", "invalid_request_error");
        else if (rc) store_failed(out);
        else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", id);
            http_json(out, 200, o);
        }
    }
    cJSON_Delete(msgs);
    cJSON_Delete(j);
}

/* ---- share links -------------------------------------------------------------------------- */

void share_create(void *st, http_req *q, http_reply *out) {
    cJSON *j = http_json_body(q, out);
    if (!j) return;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    if (!cJSON_IsString(id) || !id_ok(id->valuestring)) {
        http_error(out, 422, "id must be a conversation's id", "invalid_request_error", "invalid_request_error");
        cJSON_Delete(j);
        return;
    }
    /* the conversation as it shows: a question's other versions, and what followed them, stay private */
    whale_err err = {0};
    cJSON *arr = cJSON_CreateArray();
    int rc = store_conv_list(st, q->user.id, id->valuestring, 1, add_conv, arr, &err);
    cJSON *conv = cJSON_GetArrayItem(arr, 0), *msgs = cJSON_GetObjectItemCaseSensitive(conv, "messages"), *m;
    cJSON_ArrayForEach(m, msgs) {
        cJSON_DeleteItemFromObjectCaseSensitive(m, "versions");
        cJSON_DeleteItemFromObjectCaseSensitive(m, "v");
    }
    char *body = rc ? NULL : cJSON_PrintUnformatted(msgs);
    char tok[STORE_TOKEN_CHARS];
    uint8_t h[STORE_KEY_HASH];
    store_token_new(tok, h);
    if (!rc && !body) rc = WHALE_E_NOMEM;
    if (!rc) rc = store_share_add(st, q->user.id, id->valuestring, h, cJSON_GetObjectItem(conv, "title")->valuestring, body,
                                  &err);
    free(body);
    cJSON_Delete(arr);
    cJSON_Delete(j);
    if (rc == WHALE_E_NOTFOUND) http_error(out, 404, "no such conversation", "invalid_request_error", "not_found");
    else if (rc == WHALE_E_BUSY) http_error(out, 409, err.msg, "invalid_request_error", "invalid_request_error");
    else if (rc) store_failed(out);
    else {
        char path[STORE_TOKEN_CHARS + 8];
        snprintf(path, sizeof path, "/#/s/%s", tok);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "token", tok);
        cJSON_AddStringToObject(o, "path", path);
        http_json(out, 201, o);
    }
}

void share_status(void *st, http_req *q, http_reply *out) {
    const char *id = conv_id(q, out);
    if (!id) return;
    int64_t created = 0;
    whale_err err = {0};
    int rc = store_share_of(st, q->user.id, id, &created, &err);
    if (rc && rc != WHALE_E_NOTFOUND) {
        store_failed(out);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "shared", !rc);
    if (!rc) cJSON_AddNumberToObject(o, "created", (double)created);
    http_json(out, 200, o);
}

void share_delete(void *st, http_req *q, http_reply *out) {
    const char *id = conv_id(q, out);
    if (!id) return;
    whale_err err = {0};
    int rc = store_share_delete(st, q->user.id, id, &err);
    if (rc == WHALE_E_NOTFOUND) http_error(out, 404, "this conversation is not shared", "invalid_request_error", "not_found");
    else if (rc) store_failed(out);
    else http_json(out, 200, cJSON_CreateObject());
}

static void add_shared(void *ctx, const char *cid, const char *title, int64_t created, const char *body) {
    (void)cid; /* the owner's id for it is theirs */
    cJSON *o = ctx;
    cJSON *m = cJSON_Parse(body);
    cJSON_AddStringToObject(o, "title", title);
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddItemToObject(o, "messages", m ? m : cJSON_CreateArray());
}

void share_get(void *st, http_req *q, http_reply *out) {
    const char *tok = q->rest[0] == '/' ? q->rest + 1 : "";
    uint8_t h[STORE_KEY_HASH];
    whale_err err = {0};
    int rc = WHALE_E_NOTFOUND;
    cJSON *o = cJSON_CreateObject();
    if (strlen(tok) == STORE_TOKEN_CHARS - 1) { /* another length is no link of ours */
        store_token_hash(tok, h);
        rc = store_share_get(st, h, add_shared, o, &err);
    }
    if (!rc) {
        http_json(out, 200, o);
        return;
    }
    cJSON_Delete(o);
    if (rc == WHALE_E_NOTFOUND)
        http_error(out, 404, "no such shared conversation: the link was stopped, or is mistyped", "invalid_request_error",
                   "not_found");
    else store_failed(out);
}
