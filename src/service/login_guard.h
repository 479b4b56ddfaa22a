/* login_guard.h — slowing down password guessing. Failed password checks (sign-in, password
 * change, account deletion: one throttle for all three) are counted per account (email) and per
 * client address (IPv6: per /64, what one host or home usually holds); past a few free failures,
 * each further one makes that account or address wait twice as long before its next try (up to
 * a cap). A try during the wait is refused at once (429 with Retry-After) without any password
 * hashing, so a flood of guesses costs the server almost nothing and the argon2id work stays
 * bounded.
 *
 * The per-account cap is short on purpose: an account under a flood from many addresses is
 * guessed at slowly, and its owner gets in within seconds of the flood ending. The per-address
 * cap is long: one address guessing at many accounts is slowed for minutes. A success clears its
 * account's record.
 *
 * In one process (SQLite), records are kept in a fixed table, found by a hash keyed with a random
 * key drawn at start (nobody can choose, offline, emails that land on a victim's slots). A record
 * past its free failures is never dropped to make room before LOGIN_FORGET_S: when all the slots
 * an account or address may use hold such records, its failures go to one shared overflow record
 * of its kind, which slows every account (or address) in that case together. We chose that over
 * the two alternatives: dropping a record would reset a victim's wait (the attack), and refusing
 * every try without a slot would let a flood of made-up emails lock everyone out for good; the
 * overflow only slows, with the same caps. With a shared store (PostgreSQL: several replicas),
 * records are rows of its login_fails table instead (store_login_*), so failures spread over
 * the replicas add up as on one. */
#ifndef WHALE_SERVICE_LOGIN_GUARD_H
#define WHALE_SERVICE_LOGIN_GUARD_H

#include "service/store.h"

#define LOGIN_FREE_PER_ACCOUNT 5     /* failures before an account's sign-ins slow down */
#define LOGIN_FREE_PER_ADDRESS 20    /* failures before an address's sign-ins slow down */
#define LOGIN_FIRST_WAIT 0.5         /* seconds after the first failure past those; doubling */
#define LOGIN_MAX_WAIT_ACCOUNT 8.0   /* seconds: the owner gets in soon after a flood */
#define LOGIN_MAX_WAIT_ADDRESS 300.0 /* seconds: one address guessing is slowed for minutes */
#define LOGIN_FORGET_S 900.0         /* a record with no failure for this long is forgotten */
#define LOGIN_SLOTS 8192             /* accounts and addresses remembered (in memory) */
#define LOGIN_PROBES 16              /* slots one account or address may use */

typedef struct login_guard login_guard;

/* A guard in memory (LOGIN_SLOTS), or with a shared store (store_shared) its records in the
 * store; NULL when out of memory. */
login_guard *login_guard_new(store *st);
/* In memory with n_slots slots (tests: a table an attack fills quickly). */
login_guard *login_guard_new_sized(int n_slots);
void login_guard_free(login_guard *g);
/* Seconds to wait before a password for email may be tried from ip (0: now). */
double login_guard_wait(login_guard *g, const char *email, const char *ip);
/* A password check failed (wrong password, unknown email: counted the same). */
void login_guard_failed(login_guard *g, const char *email, const char *ip);
/* A password check succeeded: the account's failures are forgotten (the address's are not). */
void login_guard_succeeded(login_guard *g, const char *email);

#endif
