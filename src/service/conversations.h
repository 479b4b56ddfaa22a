/* conversations.h — the web page's conversations, kept per user on the server (--accounts):
 *   GET    /user/conversations              {"conversations": [{id, title, updated}]}, newest first
 *   GET    /user/conversations/export       the same with each one's messages (a download)
 *   GET    /user/conversations/<id>         {id, title, updated, messages}
 *   PUT    /user/conversations/<id>         {title, messages}: stored (created or replaced)
 *   DELETE /user/conversations/<id>
 * Read-only share links (a copy of a conversation as it is when shared; sharing again makes a new
 * link, and the old one stops working; deleting the conversation deletes its link):
 *   POST   /user/shares                     {id}: 201 {token, path}; path is the page's view of it
 *   GET    /user/shares/<id>                {shared: true, created} or {shared: false}
 *   DELETE /user/shares/<id>                the link stops working
 *   GET    /shared/<token>                  {title, created, messages}: anyone with the link
 * <id> is the page's id for a conversation: 1 to 64 of [A-Za-z0-9_-]. Messages are
 * {role: "user"|"assistant", content, reasoning?, thought_s?}, and an edited question also
 * {versions: [{content, tail?: [messages]}], v}: each version's text, the ones not shown with
 * the messages that followed them, and the one shown (its messages are the list's own); other
 * fields are dropped. The server has authenticated the user (session cookie) and applied the
 * CSRF rules. */
#ifndef WHALE_SERVICE_CONVERSATIONS_H
#define WHALE_SERVICE_CONVERSATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "service/http.h"
#include "service/store.h"

#define CONV_MAX_BYTES (1u << 20)  /* one conversation's stored JSON: a long chat, not a file store */
#define CONV_MAX_TITLE 200         /* bytes of a title */
#define CONV_MAX_MESSAGES 2000     /* messages in one conversation, those of every version counted */
#define CONV_MAX_VERSIONS 64       /* versions of one question */
#define CONV_MAX_DEPTH 8           /* versions inside versions (an edit in an earlier version's tail) */

/* The handlers (server.c's route table; ctx is the store, the user in q->user). */
void conv_list(void *st, http_req *q, http_reply *out);
void conv_export(void *st, http_req *q, http_reply *out);
void conv_get(void *st, http_req *q, http_reply *out);   /* q->rest: "/<id>" */
void conv_put(void *st, http_req *q, http_reply *out);
void conv_delete(void *st, http_req *q, http_reply *out);
void share_create(void *st, http_req *q, http_reply *out);
void share_status(void *st, http_req *q, http_reply *out);  /* q->rest: "/<id>" */
void share_delete(void *st, http_req *q, http_reply *out);
void share_get(void *st, http_req *q, http_reply *out);     /* anyone; q->rest: "/<token>" */

#endif
