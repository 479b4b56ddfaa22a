/* store.h — accounts, API keys, prices, balances and the usage ledger: what `whale serve
 * --accounts` and `whale admin` keep between runs.
 *
 * One interface, implemented once (store_db.c) over two databases (db.h): a SQLite file (WAL)
 * or a PostgreSQL server shared by several replicas; numbered migrations, prepared statements
 * only.
 *
 * Money is an integer number of micro-units of the currency (1 USD = 1,000,000), never a float.
 * Prices are micro-units per million tokens. The ledger is append-only: every change of a
 * balance is a ledger row written in the same transaction as the balance, so a balance always
 * equals the sum of its user's ledger (store_check verifies it). A charge carries the request's
 * id, unique in the ledger: committing the same request twice is refused, never counted twice.
 *
 * API keys are stored as a BLAKE2b-256 hash of the key (they are long random strings, so a fast
 * hash is enough); only the key's first characters (its prefix) are kept in clear, to list
 * them. Passwords (web logins) as argon2id strings.
 *
 * Thread-safe: one connection behind a mutex. Fallible functions return 0 or a negative
 * WHALE_E_* with a message that never contains a key or password. */
#ifndef WHALE_SERVICE_STORE_H
#define WHALE_SERVICE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

#define STORE_KEY_HASH 32   /* bytes of a key's hash */
#define STORE_MAX_KEYS 100  /* live (not revoked) API keys per user: each may hold a rate-limit
                               bucket, and nobody needs more to tell their programs apart */
#define STORE_KEY_PREFIX 12 /* characters of a key kept in clear ("sk-" and 9 more) */
#define STORE_MAX_EMAIL 254 /* RFC 5321's limit on an address */
#define STORE_MAX_PRICE 1000000000000LL /* micro-units per million tokens: 1,000,000 USD (keeps charges in int64) */

typedef struct store store;

/* Open (creating and migrating as needed) the database at path. */
int store_open(store **out, const char *path, whale_err *err);
void store_close(store *s);

typedef struct store_user {
    int64_t id;
    char email[STORE_MAX_EMAIL + 1];
    int admin, disabled;
} store_user;

/* A new user with a zero balance; WHALE_E_ARG when the email is taken or malformed. */
int store_user_add(store *s, const char *email, int admin, int64_t *id, whale_err *err);
/* By email; WHALE_E_NOTFOUND when there is none. */
int store_user_find(store *s, const char *email, store_user *out, whale_err *err);
int store_user_set_disabled(store *s, int64_t user, int disabled, whale_err *err);
/* By email, with its password hash ("" when it has none) into pw_hash (cap >= 128). */
int store_user_password(store *s, const char *email, store_user *out, char *pw_hash, size_t cap, whale_err *err);
/* Set the password hash (argon2id string); ends every session of the user. */
int store_user_set_password(store *s, int64_t user, const char *pw_hash, whale_err *err);

/* Delete an account: its sessions, keys and conversations go, its email and password are erased and it is
 * disabled. Its ledger rows stay (the ledger is append-only; they hold tokens and amounts under
 * a user id, nothing personal). */
int store_user_delete(store *s, int64_t user, whale_err *err);

/* Invitations (invite-only sign-ups): a random code, stored as its hash, used once. take: 0
 * when the code was unused (it is used now), WHALE_E_NOTFOUND otherwise. */
int store_invite_add(store *s, const uint8_t hash[STORE_KEY_HASH], whale_err *err);
int store_invite_take(store *s, const uint8_t hash[STORE_KEY_HASH], whale_err *err);

/* Web sessions: random tokens in cookies, stored as their hash (store_token_hash), with expiry. */
void store_token_hash(const char *token, uint8_t out[STORE_KEY_HASH]);
#define STORE_TOKEN_CHARS 44 /* a token of 32 random bytes, URL-safe base64, and its NUL */
/* A new random token (session cookies, share links) into out, and its hash. */
void store_token_new(char out[STORE_TOKEN_CHARS], uint8_t hash[STORE_KEY_HASH]);
int store_session_add(store *s, int64_t user, const uint8_t hash[STORE_KEY_HASH], int64_t expires, whale_err *err);
/* The user of a live session; WHALE_E_NOTFOUND when it is unknown or expired. */
int store_session_user(store *s, const uint8_t hash[STORE_KEY_HASH], int64_t now, store_user *out, whale_err *err);
/* End the session (and clear expired ones). */
int store_session_end(store *s, const uint8_t hash[STORE_KEY_HASH], whale_err *err);

typedef struct store_key {
    int64_t id, user;
    char prefix[STORE_KEY_PREFIX + 1];
    int64_t created, last_used, expires; /* unix seconds; expires 0: never */
    int revoked;
    int user_disabled;
} store_key;

/* Make a key for user: the whole key (shown once) into key_out (cap >= 52), its record into out.
 * expires: unix seconds, 0 for never. */
int store_key_create(store *s, int64_t user, int64_t expires, char *key_out, size_t cap, store_key *out, whale_err *err);
/* The key's record by its text; WHALE_E_NOTFOUND when no key hashes to it (revoked and expired
 * keys are found: the caller decides, and says why). */
int store_key_lookup(store *s, const char *key, store_key *out, whale_err *err);
/* A user's keys, newest first: *out malloc'd (free it), *n of them. */
int store_key_list(store *s, int64_t user, store_key **out, size_t *n, whale_err *err);
/* Revoke the user's key with that id or prefix; WHALE_E_NOTFOUND when the user has none such. */
int store_key_revoke(store *s, int64_t user, const char *id_or_prefix, whale_err *err);
void store_key_touch(store *s, int64_t key, int64_t now);

typedef struct store_price {
    int64_t hit, miss, output; /* micro-units per million tokens: input cache hit, input cache miss, output */
} store_price;
/* The model's prices, or the default's ("*"), or DeepSeek's launch prices for R1 (reasoning)
 * or V3 (chat) when neither is set. */
int store_price_get(store *s, const char *model, int reasoning, store_price *out, whale_err *err);
int store_price_set(store *s, const char *model, const store_price *p, whale_err *err);

/* Add amount (may be negative: a correction) to a user's balance, with its ledger row. */
int store_credit(store *s, int64_t user, int64_t amount, const char *note, whale_err *err);
int store_balance(store *s, int64_t user, int64_t *amount, whale_err *err);

typedef struct store_charge {
    int64_t user, key;
    const char *request_id; /* unique in the ledger */
    const char *model;
    int64_t hit, miss, output, reasoning; /* tokens (reasoning tokens are part of output) */
    store_price price;
    const char *key_prefix; /* the key's prefix, kept in the ledger row (NULL: none) */
    int64_t reservation;    /* the request's reservation (store_reserve), released by the charge; 0: none */
} store_charge;
/* The amount of a charge: sum of tokens x price / 1e6, rounded half up to a micro-unit. */
int64_t store_charge_amount(const store_charge *c);
/* Commit the charge: ledger row and balance in one transaction, with c->reservation released in
 * it. WHALE_E_ARG when the request id is already in the ledger (nothing changes). The balance may go below zero (a request admitted
 * with a positive balance is charged in full). */
int store_charge_commit(store *s, const store_charge *c, int64_t *amount, whale_err *err);

/* Reservations: a running request holds the most it may cost, so that requests admitted
 * together cannot spend more than the balance. They are never ledger rows: the balance stays
 * the sum of the ledger, and what a user may start with is the balance less its reservations.
 * Each names the server instance that made it (store_reserve's instance: "host:port", the same
 * for a replica across restarts, different between replicas), so a restarted replica releases
 * what its dead predecessor held (store_reservations_release) and no other replica's. */
#define STORE_MAX_INSTANCE 128 /* bytes of an instance name */
/* Reserve amount for user: 0 and the reservation's id in *id, or 1 (nothing reserved) when the
 * balance less the user's other reservations is below amount, with that available amount in
 * *available; a negative WHALE_E_* when the database fails. */
int store_reserve(store *s, int64_t user, int64_t amount, const char *instance, int64_t *id, int64_t *available,
                  whale_err *err);
/* Release a reservation that no charge settles (the request failed or was never run). */
int store_release(store *s, int64_t id, whale_err *err);
/* Release every reservation of instance (at its start: what a crashed run of it held). The
 * number released into *n (may be NULL). */
int store_reservations_release(store *s, const char *instance, int64_t *n, whale_err *err);
/* The user's balance less its reservations. */
int store_available(store *s, int64_t user, int64_t *amount, whale_err *err);

/* Rate limits shared by replicas (PostgreSQL; store_shared_limits says 1): the token bucket id
 * (accounts.c's numbering) refilled to the database's clock at rpm/tpm a minute, then, with
 * take_req, a request and tokens taken if it may start (*wait_ms 0), else nothing taken and
 * *wait_ms the wait; with take_req 0 (or -1: a request given back), tokens taken (or given
 * back, negative) in any case. */
int store_shared_limits(store *s);
int store_bucket_take(store *s, int64_t id, int64_t rpm, int64_t tpm, int take_req, int64_t tokens, int64_t *wait_ms,
                      whale_err *err);

/* Usage: one line per (day, user, key) with tokens and amount, as text rows into a callback. */
typedef void (*store_usage_fn)(void *ctx, const char *day, const char *email, const char *key_prefix, int64_t requests,
                               int64_t hit, int64_t miss, int64_t output, int64_t amount);
int store_usage(store *s, int64_t user, store_usage_fn fn, void *ctx, whale_err *err);

/* Every balance equals the sum of its ledger: 0, or WHALE_E_FORMAT naming the first user whose
 * does not. */
int store_check(store *s, whale_err *err);

/* The database's bytes on disk into *bytes (SQLite: the file and its WAL; PostgreSQL:
 * pg_database_size). 0, or WHALE_E_IO with a message. */
int store_size_bytes(store *s, int64_t *bytes, whale_err *err);

/* The web page's conversations, per user. cid is the page's id for one (checked by the
 * caller), body its messages as JSON text. put inserts or replaces; a new one past
 * STORE_MAX_CONVERSATIONS, or one that would take the user past store_set_conv_total's, is
 * WHALE_E_BUSY. list calls fn for each, newest first (body NULL unless
 * with_body), or for the one named cid (WHALE_E_NOTFOUND when the user has none by that id; a
 * user never reaches another's). */
#define STORE_MAX_CONVERSATIONS 1000
#define STORE_CONV_TOTAL_DEFAULT (8 << 20) /* characters of all of a user's conversations unless
                                              set (whale serve --user-storage): a free account's
                                              disk, with 3 sign-ups an hour per address */
#define STORE_MAX_CONV_TOTAL ((int64_t)1 << 30) /* the most that may be set (what an export builds
                                                   in memory) */
/* The characters of conversations one user may keep (1..STORE_MAX_CONV_TOTAL; before any call:
 * STORE_CONV_TOTAL_DEFAULT). */
void store_set_conv_total(store *s, int64_t chars);
typedef void (*store_conv_fn)(void *ctx, const char *cid, const char *title, int64_t updated, const char *body);
int store_conv_put(store *s, int64_t user, const char *cid, const char *title, const char *body, whale_err *err);
int store_conv_list(store *s, int64_t user, const char *cid, int with_body, store_conv_fn fn, void *ctx, whale_err *err);
int store_conv_delete(store *s, int64_t user, const char *cid, whale_err *err);

/* Read-only share links: a copy (title, body: the caller's, of the user's conversation cid)
 * found by the hash of the link's random token (the token itself is not kept). One per
 * conversation: add replaces the copy and the link (the old link stops working). The copy counts
 * against the user's conversation space (WHALE_E_BUSY past it); WHALE_E_NOTFOUND when the user
 * has no conversation cid.
 * Deleting the conversation or the account deletes its link. get calls fn with the copy (body
 * its messages) for a live account's link, else WHALE_E_NOTFOUND; of says when the user's
 * conversation cid was shared (WHALE_E_NOTFOUND: it is not). */
int store_share_add(store *s, int64_t user, const char *cid, const uint8_t hash[STORE_KEY_HASH], const char *title,
                    const char *body, whale_err *err);
int store_share_of(store *s, int64_t user, const char *cid, int64_t *created, whale_err *err);
int store_share_get(store *s, const uint8_t hash[STORE_KEY_HASH], store_conv_fn fn, void *ctx, whale_err *err);
int store_share_delete(store *s, int64_t user, const char *cid, whale_err *err);

/* Failed sign-ins kept in the database, for replicas sharing one (service/login_guard.h): 1 when
 * the store is one several processes may share (PostgreSQL), 0 for a SQLite file. */
int store_shared(const store *s);
/* The record of k (a hash of an account or an address): 0 with its failures and the time of the
 * last one (unix ms), WHALE_E_NOTFOUND when there is none, or another negative status. */
int store_login_get(store *s, const uint8_t k[STORE_KEY_HASH], int *fails, int64_t *last_ms, whale_err *err);
/* One more failure for k at now_ms (the count starts again when the last one is older than
 * forget_ms): 0 and the count in *fails, or a negative status. */
int store_login_failed(store *s, const uint8_t k[STORE_KEY_HASH], int64_t now_ms, int64_t forget_ms, int *fails,
                       whale_err *err);
/* k's record removed (a success): 0 or a negative status. */
int store_login_clear(store *s, const uint8_t k[STORE_KEY_HASH], whale_err *err);

#endif
