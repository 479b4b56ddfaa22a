/* accounts.h — what `whale serve --accounts` adds to a request: the API key checked (401 with
 * DeepSeek's body otherwise), the balance checked before admission (402), the charge for
 * exactly the tokens used committed when the request ends (also when it was cancelled or its
 * client went away), and GET /user/balance. The money itself lives in service/store.h. */
#ifndef WHALE_SERVICE_ACCOUNTS_H
#define WHALE_SERVICE_ACCOUNTS_H

#include <stddef.h>

#include "whale.h"
#include "service/http.h"
#include "service/store.h"

/* The key in an "Authorization: Bearer sk-..." header (NULL: none): 0 and *key filled, or 401
 * with the error body in *err_body (malloc'd). The body shows at most the key's last 4
 * characters. */
int accounts_auth(store *st, const char *authorization, store_key *key, char **err_body);

/* 0 when the key's user may start a request (balance above zero), else 402 / 500 with a body. */
int accounts_admit(store *st, const store_key *key, char **err_body);

/* Commit the charge of a finished (or cancelled) request under its response id: prompt tokens
 * split into cache hits and misses, generated tokens (reasoning included) as output, at the
 * model's prices. A failure is printed on stderr (no key or text in it); nothing else can be
 * done for the client. */
void accounts_charge(store *st, const store_key *key, const char *model_name, int is_reasoner, const whale_result *res,
                     size_t reasoning_tokens, const char *request_id, int64_t reservation);

/* Once the prompt is known: reserve the most the request may cost (every prompt token at the
 * dearer input price, max_out tokens at the output price) under instance. 0 and the
 * reservation's id in *id (settled by accounts_charge, or released by accounts_release), or 402
 * (the balance less the user's other reservations is below it; the body names both amounts) or
 * 500, with the body in *err_body. */
int accounts_reserve(store *st, const store_key *key, const char *model_name, int is_reasoner, int64_t n_prompt,
                     int64_t max_out, const char *instance, int64_t *id, char **err_body);
/* Release a reservation no charge will settle (the request failed before or while running). */
void accounts_release(store *st, int64_t id);


/* ---- web accounts: sign-up, login, sessions, keys over HTTP ------------------------------ */

typedef struct accounts accounts;
typedef enum { SIGNUP_OPEN = 0, SIGNUP_CLOSED, SIGNUP_INVITE } signup_mode;

/* secure_cookies: add Secure to the cookies (when clients reach the server over TLS, through a
 * proxy). */
accounts *accounts_new(store *st, signup_mode signup, int secure_cookies);

/* Rate limits per API key and per user: in this process on SQLite; on PostgreSQL in the database
 * (store_bucket_take: one statement per bucket), so a user's limit holds for the sum over
 * replicas. rpm: requests per minute, tpm: tokens (prompt + output)
 * per minute; 0: no limit. Token buckets: a burst of a minute's worth, refilled continuously. */
void accounts_set_limits(accounts *ac, int64_t rpm, int64_t tpm);
/* Sign-ups allowed from one address per hour (open sign-ups; 0: the default, 3). */
void accounts_set_signups(accounts *ac, int per_hour);
/* At admission: 0 when the key and its user may start a request now (one request taken from
 * their buckets), else the seconds to wait (for Retry-After) and the 429 body in *err_body. */
int accounts_limit(accounts *ac, const store_key *key, char **err_body);
/* Tokens taken from the key's and the user's token buckets: a request's most at admission, the
 * difference to its real count (negative: given back) when it ends. */
void accounts_limit_tokens(accounts *ac, const store_key *key, int64_t tokens);

/* An argon2id hash string of a password (out: ACCOUNTS_PW_HASH_BYTES); 0 or -1 (out of memory). */
#define ACCOUNTS_PW_HASH_BYTES 128
int accounts_password_hash(const char *password, char *out);
/* A new invitation code (invite-only sign-ups) into code (cap >= 48): 0 or a negative status. */
int accounts_invite_create(store *st, char *code, size_t cap, whale_err *err);
void accounts_free(accounts *ac);

/* The account endpoints (server.c's route table; ctx is the accounts), the user from the
 * session cookie (whale_session) where the route says HTTP_SESSION:
 *   POST /auth/register {email, password[, invite]}   a new user (201 {email}, no session: the
 *                                            caller signs in next; sign-ups per address limited;
 *                                            403 when closed, or without a valid unused
 *                                            invitation in invite-only mode; 422 for a malformed
 *                                            email). A taken email gets the same 201 after the
 *                                            same argon2id work, and nothing changes: the answer
 *                                            does not say whether an account exists, and nobody
 *                                            gets into an existing one (only its own password
 *                                            signs in). What this server cannot hide without
 *                                            mail: the sign-in after it fails when the email was
 *                                            taken (unless the password was the owner's): one
 *                                            sign-up spent per email probed (the per-address
 *                                            limit), and a free email probed becomes the
 *                                            prober's account.
 *   POST /auth/login {email, password}       200 and the cookie, or 401 "Invalid email or
 *                                            password" whether or not the email exists; 429
 *                                            while failures slow the account or address down
 *                                            (service/login_guard.h)
 *   POST /auth/logout                        the session ends
 *   POST /auth/password {password, new_password}   every session ends; a new one starts
 *   POST /auth/delete {password}             the account goes (store_user_delete, then the
 *                                            on_delete hook: its cached prompts are purged)
 *                                            (both: the current password checked under the
 *                                            login's throttle, 401 or 429 like a sign-in)
 *   GET  /user/keys, POST /user/keys {days?}, POST /user/keys/revoke {prefix}
 *   GET  /user/balance                       DeepSeek's body for the key's user (HTTP_CALLER)
 *   GET  /user/usage                         the user's charges by day and key, {"usage": [{date,
 *                                            key_prefix, requests, prompt_cache_hit_tokens,
 *                                            prompt_cache_miss_tokens, completion_tokens, cost,
 *                                            currency}]}
 * Cookies: HttpOnly, SameSite=Strict, Path=/, 30 days; stored as hashes. */
void accounts_register(void *ac, http_req *q, http_reply *out);
void accounts_login(void *ac, http_req *q, http_reply *out);
void accounts_logout(void *ac, http_req *q, http_reply *out);
void accounts_password(void *ac, http_req *q, http_reply *out);
void accounts_delete(void *ac, http_req *q, http_reply *out);
void accounts_keys_list(void *ac, http_req *q, http_reply *out);
void accounts_keys_create(void *ac, http_req *q, http_reply *out);
void accounts_keys_revoke(void *ac, http_req *q, http_reply *out);
void accounts_balance(void *ac, http_req *q, http_reply *out);
void accounts_usage(void *ac, http_req *q, http_reply *out);

/* Called after an account was deleted (e.g. to purge its cached prompts). */
void accounts_on_delete(accounts *ac, void (*fn)(void *ctx, int64_t user), void *ctx);

/* The user of the request's session cookie: 0, or -1 (none or expired). */
int accounts_session(accounts *ac, const char *cookie_header, store_user *out);

#endif
