/* login_guard.h — slowing down password guessing. Failed sign-ins are counted per account
 * (email) and per client address; past a few free failures, each further one makes that account
 * or address wait twice as long before its next try (up to a cap). A try during the wait is
 * refused at once (429 with Retry-After) without any password hashing, so a flood of guesses
 * costs the server almost nothing and the argon2id work stays bounded.
 *
 * The per-account cap is short on purpose: an account under a flood from many addresses is
 * guessed at slowly, and its owner gets in within seconds of the flood ending. The per-address
 * cap is long: one address guessing at many accounts is slowed for minutes. Records are kept in
 * a fixed table (the stalest forgotten first); a success clears its account's record. In this
 * process only: with several replicas, each slows its own share. */
#ifndef WHALE_SERVICE_LOGIN_GUARD_H
#define WHALE_SERVICE_LOGIN_GUARD_H

#define LOGIN_FREE_PER_ACCOUNT 5     /* failures before an account's sign-ins slow down */
#define LOGIN_FREE_PER_ADDRESS 20    /* failures before an address's sign-ins slow down */
#define LOGIN_FIRST_WAIT 0.5         /* seconds after the first failure past those; doubling */
#define LOGIN_MAX_WAIT_ACCOUNT 8.0   /* seconds: the owner gets in soon after a flood */
#define LOGIN_MAX_WAIT_ADDRESS 300.0 /* seconds: one address guessing is slowed for minutes */
#define LOGIN_FORGET_S 900.0         /* a record with no failure for this long is forgotten */
#define LOGIN_SLOTS 8192             /* accounts and addresses remembered */

typedef struct login_guard login_guard;

login_guard *login_guard_new(void);
void login_guard_free(login_guard *g);
/* Seconds to wait before a sign-in to email from ip may be tried (0: now). */
double login_guard_wait(login_guard *g, const char *email, const char *ip);
/* A sign-in failed (wrong password, unknown email: counted the same). */
void login_guard_failed(login_guard *g, const char *email, const char *ip);
/* A sign-in succeeded: the account's failures are forgotten (the address's are not). */
void login_guard_succeeded(login_guard *g, const char *email);

#endif
