/* http.c — building the service's replies; see http.h. */
#include "service/http.h"

#include <stdlib.h>
#include <string.h>

#include "service/api.h"

void http_body(http_reply *out, int status, char *body, const char *type) {
    if (!body) {
        http_error(out, 500, "out of memory", "server_error", "server_error");
        return;
    }
    free(out->body);
    out->status = status;
    out->body = body;
    out->type = type;
}

void http_error(http_reply *out, int status, const char *message, const char *type, const char *code) {
    free(out->body);
    out->status = status;
    out->type = NULL;
    out->body = api_error_body(message, type, NULL, code); /* NULL when out of memory: server.c says so */
}

void http_json(http_reply *out, int status, cJSON *j) {
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    http_body(out, status, s, NULL);
}

cJSON *http_json_body(const http_req *q, http_reply *out) {
    const char *why = NULL;
    cJSON *j = api_parse_object(q->body, q->n, &why);
    if (!j) http_error(out, 400, why, "invalid_request_error", "invalid_request_error");
    return j;
}
