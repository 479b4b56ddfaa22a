/* conversations.h — the web page's conversations, kept per user on the server (--accounts):
 *   GET    /user/conversations              {"conversations": [{id, title, updated}]}, newest first
 *   GET    /user/conversations/export       the same with each one's messages (a download)
 *   GET    /user/conversations/<id>         {id, title, updated, messages}
 *   PUT    /user/conversations/<id>         {title, messages}: stored (created or replaced)
 *   DELETE /user/conversations/<id>
 * <id> is the page's id for a conversation: 1 to 64 of [A-Za-z0-9_-]. Messages are
 * {role: "user"|"assistant", content, reasoning?, thought_s?}; other fields are dropped. The
 * caller has authenticated the user (session cookie) and applied the CSRF rules. */
#ifndef WHALE_SERVICE_CONVERSATIONS_H
#define WHALE_SERVICE_CONVERSATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "service/store.h"

#define CONV_MAX_BYTES (1u << 20)  /* one conversation's stored JSON: a long chat, not a file store */
#define CONV_MAX_TITLE 200         /* bytes of a title */
#define CONV_MAX_MESSAGES 2000     /* messages in one conversation */

/* 1 if url is one of the endpoints above. */
int conv_is_route(const char *url);
/* Answer one request: the status, and the JSON body (malloc'd) into *body. */
int conv_route(store *st, int64_t user, const char *method, const char *url, const char *body, size_t n, char **out);

#endif
