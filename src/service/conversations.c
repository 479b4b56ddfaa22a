/* conversations.c — the web page's conversations over HTTP; see conversations.h. */
#include "service/conversations.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "service/api.h"

#define CONV_PATH "/user/conversations"

int conv_is_route(const char *url) {
    size_t n = strlen(CONV_PATH);
    return !strncmp(url, CONV_PATH, n) && (url[n] == 0 || url[n] == '/');
}

static int id_ok(const char *id) {
    size_t n = strlen(id);
    if (!n || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return 0;
    }
    return 1;
}

static int fail(char **out, int status, const char *msg) {
    *out = api_error_body(msg, status >= 500 ? "server_error" : "invalid_request_error", NULL,
                          status >= 500 ? "server_error" : "invalid_request_error");
    return status;
}

static int ok(char **out, int status, cJSON *j) {
    *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return *out ? status : fail(out, 500, "out of memory");
}

/* The messages of a PUT, kept to the known fields: a new array, or NULL with *why. */
static cJSON *clean_messages(const cJSON *msgs, const char **why) {
    if (!cJSON_IsArray(msgs)) return *why = "messages must be an array", NULL;
    if (cJSON_GetArraySize(msgs) > CONV_MAX_MESSAGES) return *why = "too many messages in one conversation", NULL;
    cJSON *a = cJSON_CreateArray();
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        const cJSON *thought = cJSON_GetObjectItemCaseSensitive(m, "reasoning");
        const cJSON *secs = cJSON_GetObjectItemCaseSensitive(m, "thought_s");
        if (!cJSON_IsString(role) || (strcmp(role->valuestring, "user") && strcmp(role->valuestring, "assistant")) ||
            !cJSON_IsString(content) || (thought && !cJSON_IsString(thought) && !cJSON_IsNull(thought)) ||
            (secs && !cJSON_IsNumber(secs) && !cJSON_IsNull(secs))) {
            cJSON_Delete(a);
            return *why = "each message needs a role (user or assistant) and a content string", NULL;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", role->valuestring);
        cJSON_AddStringToObject(o, "content", content->valuestring);
        if (cJSON_IsString(thought)) cJSON_AddStringToObject(o, "reasoning", thought->valuestring);
        if (cJSON_IsNumber(secs) && secs->valuedouble >= 0 && secs->valuedouble < 1e7)
            cJSON_AddNumberToObject(o, "thought_s", secs->valuedouble);
        cJSON_AddItemToArray(a, o);
    }
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

int conv_route(store *st, int64_t user, const char *method, const char *url, const char *body, size_t n, char **out) {
    *out = NULL;
    const char *id = url + strlen(CONV_PATH);
    int get = !strcmp(method, "GET"), put = !strcmp(method, "PUT"), del = !strcmp(method, "DELETE");
    whale_err err = {0};
    if (!*id || !strcmp(id, "/export")) { /* the list */
        if (!get) return fail(out, 405, "use GET");
        cJSON *arr = cJSON_CreateArray();
        if (store_conv_list(st, user, NULL, *id != 0, add_conv, arr, &err)) {
            cJSON_Delete(arr);
            return fail(out, 500, "the account store failed");
        }
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "conversations", arr);
        return ok(out, 200, j);
    }
    id++;
    if (!id_ok(id)) return fail(out, 404, "no such conversation");
    if (get) {
        cJSON *arr = cJSON_CreateArray();
        int rc = store_conv_list(st, user, id, 1, add_conv, arr, &err);
        cJSON *one = rc ? NULL : cJSON_DetachItemFromArray(arr, 0);
        cJSON_Delete(arr);
        if (rc == WHALE_E_NOTFOUND) return fail(out, 404, "no such conversation");
        if (rc || !one) return fail(out, 500, "the account store failed");
        return ok(out, 200, one);
    }
    if (del) {
        int rc = store_conv_delete(st, user, id, &err);
        if (rc == WHALE_E_NOTFOUND) return fail(out, 404, "no such conversation");
        return rc ? fail(out, 500, "the account store failed") : ok(out, 200, cJSON_CreateObject());
    }
    if (!put) return fail(out, 405, "use GET, PUT or DELETE");
    if (n > CONV_MAX_BYTES) return fail(out, 413, "the conversation is too large to keep");
    const char *why = NULL;
    cJSON *j = api_parse_object(body, n, &why);
    if (!j) return fail(out, 400, why);
    const cJSON *title = cJSON_GetObjectItemCaseSensitive(j, "title");
    cJSON *msgs = clean_messages(cJSON_GetObjectItemCaseSensitive(j, "messages"), &why);
    int status;
    if (!msgs) status = fail(out, 422, why);
    else if (!cJSON_IsString(title) || strlen(title->valuestring) > CONV_MAX_TITLE)
        status = fail(out, 422, "title must be a string of at most 200 bytes");
    else {
        char *text = cJSON_PrintUnformatted(msgs);
        int rc = text ? store_conv_put(st, user, id, title->valuestring, text, &err) : WHALE_E_NOMEM;
        free(text);
        if (rc == WHALE_E_BUSY) status = fail(out, 409, err.msg);
        else if (rc) status = fail(out, 500, "the account store failed");
        else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", id);
            status = ok(out, 200, o);
        }
    }
    cJSON_Delete(msgs);
    cJSON_Delete(j);
    return status;
}
