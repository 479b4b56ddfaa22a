/* accounts.h — what `whale serve --accounts` adds to a request: the API key checked (401 with
 * DeepSeek's body otherwise), the balance checked before admission (402), the charge for
 * exactly the tokens used committed when the request ends (also when it was cancelled or its
 * client went away), and GET /user/balance. The money itself lives in service/store.h. */
#ifndef WHALE_SERVICE_ACCOUNTS_H
#define WHALE_SERVICE_ACCOUNTS_H

#include <stddef.h>

#include "engine/scheduler.h"
#include "service/store.h"

/* The key in an "Authorization: Bearer sk-..." header (NULL: none): 0 and *key filled, or 401
 * with the error body in *err_body (malloc'd). The body shows at most the key's last 4
 * characters. */
int accounts_auth(store *st, const char *authorization, store_key *key, char **err_body);

/* 0 when the key's user may start a request (balance above zero), else 402 / 500 with a body. */
int accounts_admit(store *st, const store_key *key, char **err_body);

/* Commit the charge of a finished (or cancelled) request: prompt tokens split into cache hits
 * and misses, generated tokens (reasoning included) as output, at the model's prices. A failure
 * is printed on stderr (no key or text in it); nothing else can be done for the client. */
void accounts_charge(store *st, const store_key *key, const char *model_name, int is_reasoner, const sched_result *res,
                     size_t reasoning_tokens);

/* DeepSeek's GET /user/balance body for the key's user (malloc'd), or NULL. */
char *accounts_balance_json(store *st, const store_key *key);

#endif
