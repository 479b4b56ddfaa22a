/* accounts.c — API keys, admission by balance and charges for `whale serve --accounts`; see
 * accounts.h. */
#include "service/accounts.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "service/api.h"

static int unauthorized(char **err_body, const char *why, const char *key) {
    char msg[160];
    size_t n = key ? strlen(key) : 0;
    if (key) snprintf(msg, sizeof msg, "Authentication Fails, Your api key: ****%s %s", n >= 4 ? key + n - 4 : "", why);
    else snprintf(msg, sizeof msg, "Authentication Fails (no API key: send the header Authorization: Bearer sk-...)");
    *err_body = api_error_body(msg, "authentication_error", NULL, "invalid_request_error");
    return 401;
}

int accounts_auth(store *st, const char *authorization, store_key *key, char **err_body) {
    const char *k = NULL;
    if (authorization && !strncasecmp(authorization, "Bearer ", 7)) {
        k = authorization + 7;
        while (*k == ' ') k++;
    }
    if (!k || !*k) return unauthorized(err_body, "", NULL);
    if (strlen(k) > 200) return unauthorized(err_body, "is invalid", k);
    whale_err err = {0};
    int rc = store_key_lookup(st, k, key, &err);
    if (rc == WHALE_E_NOTFOUND) return unauthorized(err_body, "is invalid", k);
    if (rc) {
        fprintf(stderr, "whale serve: %s\n", err.msg);
        *err_body = api_error_body("the account store failed", "server_error", NULL, "server_error");
        return 500;
    }
    int64_t now = clock_wall_s();
    if (key->revoked) return unauthorized(err_body, "has been revoked", k);
    if (key->expires && key->expires <= now) return unauthorized(err_body, "has expired", k);
    if (key->user_disabled) return unauthorized(err_body, "belongs to a disabled account", k);
    if (now - key->last_used >= 60) store_key_touch(st, key->id, now); /* last use, to the minute */
    return 0;
}

int accounts_admit(store *st, const store_key *key, char **err_body) {
    int64_t bal = 0;
    whale_err err = {0};
    if (store_balance(st, key->user, &bal, &err)) {
        fprintf(stderr, "whale serve: %s\n", err.msg);
        *err_body = api_error_body("the account store failed", "server_error", NULL, "server_error");
        return 500;
    }
    if (bal > 0) return 0;
    *err_body = api_error_body("Insufficient Balance", "unknown_error", NULL, "invalid_request_error");
    return 402;
}

void accounts_charge(store *st, const store_key *key, const char *model_name, int is_reasoner, const whale_result *res,
                     size_t reasoning_tokens, const char *request_id, int64_t reservation) {
    /* only what was computed: a request cancelled while queued has no prompt tokens in, one
     * cancelled mid-prompt some (whale_result.n_prompt_done) */
    size_t done = res->n_prompt_done, hit = res->n_cached < done ? res->n_cached : done;
    store_charge c = {key->user, key->id, request_id, model_name, (int64_t)hit, (int64_t)(done - hit),
                      (int64_t)res->n_gen, (int64_t)reasoning_tokens, {0, 0, 0}, key->prefix, reservation};
    whale_err err = {0};
    if (store_price_get(st, model_name, is_reasoner, &c.price, &err) || store_charge_commit(st, &c, NULL, &err))
        fprintf(stderr, "whale serve: charging request %s failed: %s\n", request_id, err.msg);
}

int accounts_reserve(store *st, const store_key *key, const char *model_name, int is_reasoner, int64_t n_prompt,
                     int64_t max_out, const char *instance, int64_t *id, char **err_body) {
    store_charge c = {.miss = n_prompt, .output = max_out};
    int64_t avail = 0;
    whale_err err = {0};
    int rc = store_price_get(st, model_name, is_reasoner, &c.price, &err);
    if (!rc) {
        if (c.price.hit > c.price.miss) c.price.miss = c.price.hit; /* whichever a prompt token turns out to be */
        rc = store_reserve(st, key->user, store_charge_amount(&c), instance, id, &avail, &err);
    }
    if (rc < 0) {
        fprintf(stderr, "whale serve: %s\n", err.msg);
        *err_body = api_error_body("the account store failed", "server_error", NULL, "server_error");
        return 500;
    }
    if (rc == 0) return 0;
    char msg[256];
    int64_t need = store_charge_amount(&c);
    snprintf(msg, sizeof msg, "Insufficient Balance: this request may cost up to %lld.%06lld USD (%lld prompt tokens and "
             "max_tokens %lld); %s%lld.%06lld USD is available (the balance less running requests)",
             (long long)(need / 1000000), (long long)(need % 1000000), (long long)n_prompt, (long long)max_out,
             avail < 0 ? "-" : "", (long long)(llabs(avail) / 1000000), (long long)(llabs(avail) % 1000000));
    *err_body = api_error_body(msg, "unknown_error", NULL, "invalid_request_error");
    return 402;
}

void accounts_release(store *st, int64_t id) {
    whale_err err = {0};
    if (id && store_release(st, id, &err)) fprintf(stderr, "whale serve: releasing a reservation failed: %s\n", err.msg);
}

static void usd(char *out, size_t cap, int64_t micro) {
    int64_t a = micro < 0 ? -micro : micro;
    snprintf(out, cap, "%s%lld.%02lld", micro < 0 ? "-" : "", (long long)(a / 1000000), (long long)(a % 1000000 / 10000));
}

static char *accounts_balance_json(store *st, int64_t user) {
    int64_t bal = 0;
    whale_err err = {0};
    if (store_balance(st, user, &bal, &err)) return NULL;
    char total[32];
    usd(total, sizeof total, bal);
    cJSON *j = cJSON_CreateObject(), *infos = cJSON_AddArrayToObject(j, "balance_infos"), *b = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "is_available", bal > 0);
    cJSON_AddStringToObject(b, "currency", "USD");
    cJSON_AddStringToObject(b, "total_balance", total);
    cJSON_AddStringToObject(b, "granted_balance", "0.00");
    cJSON_AddStringToObject(b, "topped_up_balance", total);
    cJSON_AddItemToArray(infos, b);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* ---- web accounts ------------------------------------------------------------------------ */

#include <pthread.h>
#include <sodium.h>

#include "service/login_guard.h"

#define ACC_SESSION_S (30 * 86400)  /* a session cookie lives 30 days */
#define ACC_PW_MIN 8                /* password length, bytes */
#define ACC_PW_MAX 256
#define ACC_SIGNUPS_PER_HOUR 3      /* sign-ups from one address per hour unless set (accounts.h):
                                       DeepSeek had to close them; a person needs one */
#define ACC_IP_SLOTS 1024           /* addresses remembered for that (the oldest is forgotten first) */
#define ACC_COOKIE "whale_session"
#define ACC_BUCKETS 4096 /* keys and users tracked for rate limits (open addressing; when full, the
                            least recently used is forgotten) */

typedef struct bucket {
    int64_t id;       /* key id, or -(user id) - 1; 0: empty */
    double req, tok;  /* what is left in the request and token buckets */
    double t;         /* when they were last refilled (seconds) */
} bucket;

typedef struct ip_slot {
    char ip[64];
    int64_t window; /* the hour it counts */
    int count;
} ip_slot;

struct accounts {
    store *st;
    signup_mode signup;
    int secure; /* Secure cookies */
    char dummy[crypto_pwhash_STRBYTES]; /* verified against for unknown emails: the same work either way */
    pthread_mutex_t mu;
    ip_slot ips[ACC_IP_SLOTS];
    int64_t rpm, tpm;
    int signups_per_hour;
    bucket *buckets; /* (ACC_BUCKETS), under mu */
    login_guard *guard; /* failed sign-ins per account and address */
    void (*on_delete)(void *ctx, int64_t user);
    void *on_delete_ctx;
};

/* argon2id takes 64 MiB per hash: at most ACC_HASHES at once, whatever the number of logins
 * arriving (the others wait their turn), so a login flood cannot exhaust memory. */
#define ACC_HASHES 2
static pthread_mutex_t g_hash_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_hash_cv = PTHREAD_COND_INITIALIZER;
static int g_hashing;

static void hash_enter(void) {
    pthread_mutex_lock(&g_hash_mu);
    while (g_hashing >= ACC_HASHES) pthread_cond_wait(&g_hash_cv, &g_hash_mu);
    g_hashing++;
    pthread_mutex_unlock(&g_hash_mu);
}

static void hash_leave(void) {
    pthread_mutex_lock(&g_hash_mu);
    g_hashing--;
    pthread_cond_signal(&g_hash_cv);
    pthread_mutex_unlock(&g_hash_mu);
}

static int pw_hash(const char *pw, char out[crypto_pwhash_STRBYTES]) {
    hash_enter();
    int rc = crypto_pwhash_str(out, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE);
    hash_leave();
    return rc;
}

static int pw_verify(const char *stored, const char *pw) {
    hash_enter();
    int rc = crypto_pwhash_str_verify(stored, pw, strlen(pw));
    hash_leave();
    return rc;
}

_Static_assert(ACCOUNTS_PW_HASH_BYTES == crypto_pwhash_STRBYTES, "argon2id strings fit");
int accounts_password_hash(const char *password, char *out) {
    return sodium_init() < 0 || pw_hash(password, out) ? -1 : 0;
}

int accounts_invite_create(store *st, char *code, size_t cap, whale_err *err) {
    unsigned char r[18];
    char b64[sodium_base64_ENCODED_LEN(18, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    if (sodium_init() < 0 || cap < 4 + sizeof b64) return err_set(err, WHALE_E_ARG, "no room for the code");
    randombytes_buf(r, sizeof r);
    sodium_bin2base64(b64, sizeof b64, r, sizeof r, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(code, cap, "inv-%s", b64);
    uint8_t h[STORE_KEY_HASH];
    store_token_hash(code, h);
    return store_invite_add(st, h, err);
}

accounts *accounts_new(store *st, signup_mode signup, int secure_cookies) {
    accounts *ac = calloc(1, sizeof *ac);
    if (!ac || sodium_init() < 0 || pw_hash("not a password of anyone", ac->dummy)) {
        free(ac);
        return NULL;
    }
    if (!(ac->buckets = calloc(ACC_BUCKETS, sizeof *ac->buckets)) || !(ac->guard = login_guard_new(st))) {
        free(ac->buckets);
        free(ac);
        return NULL;
    }
    ac->st = st;
    ac->signup = signup;
    ac->secure = secure_cookies;
    ac->signups_per_hour = ACC_SIGNUPS_PER_HOUR;
    pthread_mutex_init(&ac->mu, NULL);
    return ac;
}

void accounts_set_signups(accounts *ac, int per_hour) {
    pthread_mutex_lock(&ac->mu);
    ac->signups_per_hour = per_hour > 0 ? per_hour : ACC_SIGNUPS_PER_HOUR;
    pthread_mutex_unlock(&ac->mu);
}

void accounts_on_delete(accounts *ac, void (*fn)(void *ctx, int64_t user), void *ctx) {
    ac->on_delete = fn;
    ac->on_delete_ctx = ctx;
}

void accounts_free(accounts *ac) {
    if (!ac) return;
    free(ac->buckets);
    login_guard_free(ac->guard);
    pthread_mutex_destroy(&ac->mu);
    free(ac);
}

/* The cookie's token from a Cookie header, into tok (cap); 0 or -1. */
static int cookie_token(const char *hdr, char *tok, size_t cap) {
    for (const char *p = hdr; p && *p;) {
        while (*p == ' ' || *p == ';') p++;
        size_t n = strlen(ACC_COOKIE);
        if (!strncmp(p, ACC_COOKIE, n) && p[n] == '=') {
            p += n + 1;
            size_t k = strcspn(p, ";");
            if (!k || k >= cap) return -1;
            memcpy(tok, p, k);
            tok[k] = 0;
            return 0;
        }
        p = strchr(p, ';');
    }
    return -1;
}

int accounts_session(accounts *ac, const char *cookie_header, store_user *out) {
    char tok[128];
    if (cookie_token(cookie_header, tok, sizeof tok)) return -1;
    uint8_t h[STORE_KEY_HASH];
    store_token_hash(tok, h);
    whale_err err = {0};
    if (store_session_user(ac->st, h, clock_wall_s(), out, &err) || out->disabled) return -1;
    return 0;
}

/* A new session for user: its cookie into out->cookie. */
static int start_session(accounts *ac, int64_t user, http_reply *out) {
    char tok[STORE_TOKEN_CHARS];
    uint8_t h[STORE_KEY_HASH];
    store_token_new(tok, h);
    whale_err err = {0};
    if (store_session_add(ac->st, user, h, clock_wall_s() + ACC_SESSION_S, &err)) return -1;
    snprintf(out->cookie, sizeof out->cookie, ACC_COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%d%s", tok,
             ACC_SESSION_S, ac->secure ? "; Secure" : "");
    return 0;
}

/* 1 if this address may sign up now (and it is counted), else 0. */
static int signup_allowed(accounts *ac, const char *ip) {
    int64_t hour = clock_wall_s() / 3600;
    uint64_t h = 1469598103934665603ull;
    for (const char *p = ip; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    pthread_mutex_lock(&ac->mu);
    ip_slot *s = NULL, *oldest = NULL; /* the address's slot among 8, else the stalest of them */
    for (int i = 0; i < 8 && !s; i++) {
        ip_slot *c = &ac->ips[(h + (uint64_t)i) % ACC_IP_SLOTS];
        if (!strcmp(c->ip, ip)) s = c;
        else if (!oldest || c->window < oldest->window) oldest = c;
    }
    if (!s) {
        s = oldest;
        snprintf(s->ip, sizeof s->ip, "%s", ip);
        s->window = hour;
        s->count = 0;
    }
    if (s->window != hour) s->window = hour, s->count = 0;
    int ok = s->count < ac->signups_per_hour;
    if (ok) s->count++;
    pthread_mutex_unlock(&ac->mu);
    return ok;
}

/* Invite-only: the code exists and was unused (it is used now). */
static int invite_ok(accounts *ac, const char *code) {
    if (!code || strlen(code) > 100) return 0;
    uint8_t h[STORE_KEY_HASH];
    store_token_hash(code, h);
    whale_err err = {0};
    return !store_invite_take(ac->st, h, &err);
}

static const char *jstr(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void key_json(cJSON *a, const store_key *k) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)k->id);
    cJSON_AddStringToObject(o, "prefix", k->prefix);
    cJSON_AddNumberToObject(o, "created", (double)k->created);
    cJSON_AddNumberToObject(o, "last_used", (double)k->last_used);
    cJSON_AddNumberToObject(o, "expires", (double)k->expires);
    cJSON_AddBoolToObject(o, "revoked", k->revoked);
    cJSON_AddItemToArray(a, o);
}

/* Sign-in work refused while failures slow this account or address down: 1 (a 429 is in out). */
static int throttled(accounts *ac, const char *who, const char *ip, http_reply *out) {
    double wait = login_guard_wait(ac->guard, who, ip);
    if (wait <= 0) return 0; /* refused before any hashing: a flood of guesses costs nothing */
    char msg[160];
    out->retry_after = (int)ceil(wait);
    snprintf(msg, sizeof msg, "too many failed sign-ins for this account or from this address: try again in %d s",
             out->retry_after);
    http_error(out, 429, msg, "rate_limit_error", "rate_limit_exceeded");
    return 1;
}

static void end_cookie(http_reply *out) {
    snprintf(out->cookie, sizeof out->cookie, ACC_COOKIE "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
}

static void store_failed(http_reply *out) { http_error(out, 500, "the account store failed", "server_error", "server_error"); }

void accounts_register(void *ctx, http_req *q, http_reply *out) {
    accounts *ac = ctx;
    cJSON *j = http_json_body(q, out);
    if (!j) return;
    const char *email = jstr(j, "email"), *pw = jstr(j, "password");
    size_t pl = pw ? strlen(pw) : 0;
    char hash[crypto_pwhash_STRBYTES];
    whale_err err = {0};
    if (ac->signup == SIGNUP_CLOSED)
        http_error(out, 403, "sign-ups are closed on this server", "invalid_request_error", "forbidden");
    else if (!email || !pw || pl < ACC_PW_MIN || pl > ACC_PW_MAX)
        http_error(out, 422, "an email and a password of 8 to 256 bytes are needed", "invalid_request_error",
                   "invalid_request_error");
    else if (!signup_allowed(ac, q->ip)) {
        http_error(out, 429, "too many sign-ups from this address: try again later", "rate_limit_error",
                   "rate_limit_exceeded");
        out->retry_after = 3600 - (int)(clock_wall_s() % 3600); /* the counting hour's end */
    } else if (ac->signup == SIGNUP_INVITE && !invite_ok(ac, jstr(j, "invite")))
        http_error(out, 403, "sign-ups on this server need an invitation code", "invalid_request_error", "forbidden");
    else if (pw_hash(pw, hash)) http_error(out, 500, "out of memory", "server_error", "server_error");
    else {
        /* A taken email gets the answer of a new account, after the same argon2id work: no
         * session either way (the caller signs in next), so neither the status, the body, the
         * cookie nor the time tells whether the email was free (accounts.h). A malformed email
         * is refused as before: that says nothing about anyone. */
        int64_t id;
        store_user u;
        int rc = store_user_add(ac->st, email, 0, &id, &err);
        if (!rc) rc = store_user_set_password(ac->st, id, hash, &err);
        else if (rc == WHALE_E_ARG && !store_user_find(ac->st, email, &u, &err)) rc = 0; /* taken */
        if (rc == WHALE_E_ARG) http_error(out, 422, "this is not an email address", "invalid_request_error", "invalid_request_error");
        else if (rc) store_failed(out);
        else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "email", email);
            http_json(out, 201, o);
        }
    }
    cJSON_Delete(j);
}

void accounts_login(void *ctx, http_req *q, http_reply *out) {
    accounts *ac = ctx;
    cJSON *j = http_json_body(q, out);
    if (!j) return;
    const char *email = jstr(j, "email"), *pw = jstr(j, "password");
    const char *who = email && strlen(email) <= STORE_MAX_EMAIL ? email : "";
    char stored[crypto_pwhash_STRBYTES] = "";
    store_user u;
    whale_err err = {0};
    if (!throttled(ac, who, q->ip, out)) {
        int found = email && !store_user_password(ac->st, email, &u, stored, sizeof stored, &err) && stored[0];
        /* the same argon2id work whether or not the email exists */
        int ok = pw && !pw_verify(found ? stored : ac->dummy, pw) && found && !u.disabled;
        if (ok) login_guard_succeeded(ac->guard, who);
        else login_guard_failed(ac->guard, who, q->ip);
        if (!ok) http_error(out, 401, "Invalid email or password", "authentication_error", "invalid_request_error");
        else if (start_session(ac, u.id, out)) store_failed(out);
        else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "email", u.email);
            http_json(out, 200, o);
        }
    }
    cJSON_Delete(j);
}

void accounts_logout(void *ctx, http_req *q, http_reply *out) {
    accounts *ac = ctx;
    char tok[128];
    uint8_t h[STORE_KEY_HASH];
    whale_err err = {0};
    if (!cookie_token(q->cookie, tok, sizeof tok)) store_token_hash(tok, h), store_session_end(ac->st, h, &err);
    end_cookie(out);
    http_json(out, 200, cJSON_CreateObject());
}

/* The signed-in user's current password checked (the body's "password"), under the same
 * throttle as sign-ins (a stolen session must not guess the password faster than a login
 * could): 1, or 0 with a 401 or 429 in out. */
static int password_ok(accounts *ac, const http_req *q, const cJSON *j, http_reply *out) {
    char stored[crypto_pwhash_STRBYTES] = "";
    const char *pw = jstr(j, "password");
    store_user me;
    whale_err err = {0};
    if (throttled(ac, q->user.email, q->ip, out)) return 0;
    int ok = pw && !store_user_password(ac->st, q->user.email, &me, stored, sizeof stored, &err) && !pw_verify(stored, pw);
    if (ok) login_guard_succeeded(ac->guard, q->user.email);
    else login_guard_failed(ac->guard, q->user.email, q->ip);
    if (!ok) http_error(out, 401, "Invalid email or password", "authentication_error", "invalid_request_error");
    return ok;
}

void accounts_password(void *ctx, http_req *q, http_reply *out) {
    accounts *ac = ctx;
    cJSON *j = http_json_body(q, out);
    if (!j) return;
    const char *np = jstr(j, "new_password");
    size_t nl = np ? strlen(np) : 0;
    char hash[crypto_pwhash_STRBYTES];
    whale_err err = {0};
    if (!password_ok(ac, q, j, out)) {
    } else if (nl < ACC_PW_MIN || nl > ACC_PW_MAX)
        http_error(out, 422, "the new password must have 8 to 256 bytes", "invalid_request_error", "invalid_request_error");
    else if (pw_hash(np, hash) || store_user_set_password(ac->st, q->user.id, hash, &err) || start_session(ac, q->user.id, out))
        store_failed(out);
    else http_json(out, 200, cJSON_CreateObject());
    cJSON_Delete(j);
}

void accounts_delete(void *ctx, http_req *q, http_reply *out) { /* the password again, then the account goes */
    accounts *ac = ctx;
    cJSON *j = http_json_body(q, out);
    if (!j) return;
    whale_err err = {0};
    if (!password_ok(ac, q, j, out)) {
    } else if (store_user_delete(ac->st, q->user.id, &err)) store_failed(out);
    else {
        if (ac->on_delete) ac->on_delete(ac->on_delete_ctx, q->user.id);
        end_cookie(out);
        http_json(out, 200, cJSON_CreateObject());
    }
    cJSON_Delete(j);
}

void accounts_keys_list(void *ctx, http_req *q, http_reply *out) {
    accounts *ac = ctx;
    store_key *ks;
    size_t nk;
    whale_err err = {0};
    if (store_key_list(ac->st, q->user.id, &ks, &nk, &err)) {
        store_failed(out);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "keys");
    for (size_t i = 0; i < nk; i++) key_json(a, &ks[i]);
    free(ks);
    http_json(out, 200, o);
}

void accounts_keys_create(void *ctx, http_req *q, http_reply *out) {
    accounts *ac = ctx;
    cJSON *j = http_json_body(q, out);
    if (!j) return;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "days");
    int64_t exp = cJSON_IsNumber(d) && d->valuedouble >= 1 && d->valuedouble <= 36500
                      ? clock_wall_s() + (int64_t)d->valuedouble * 86400 : 0;
    char key[64];
    store_key k;
    whale_err err = {0};
    if (d && !cJSON_IsNull(d) && !exp)
        http_error(out, 422, "days must be a number from 1 to 36500", "invalid_request_error", "invalid_request_error");
    else if (store_key_create(ac->st, q->user.id, exp, key, sizeof key, &k, &err)) {
        if (err.code == WHALE_E_ARG) http_error(out, 422, err.msg, "invalid_request_error", "too_many_keys");
        else store_failed(out);
    }
    else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "key", key); /* the only time it is shown */
        cJSON_AddStringToObject(o, "prefix", k.prefix);
        cJSON_AddNumberToObject(o, "id", (double)k.id);
        http_json(out, 201, o);
        sodium_memzero(key, sizeof key);
    }
    cJSON_Delete(j);
}

void accounts_keys_revoke(void *ctx, http_req *q, http_reply *out) {
    accounts *ac = ctx;
    cJSON *j = http_json_body(q, out);
    if (!j) return;
    const char *prefix = jstr(j, "prefix");
    whale_err err = {0};
    int rc = prefix ? store_key_revoke(ac->st, q->user.id, prefix, &err) : WHALE_E_ARG;
    if (rc == WHALE_E_ARG) http_error(out, 422, "give the key's prefix", "invalid_request_error", "invalid_request_error");
    else if (rc == WHALE_E_NOTFOUND) http_error(out, 404, "you have no such key", "invalid_request_error", "not_found");
    else if (rc) store_failed(out);
    else http_json(out, 200, cJSON_CreateObject());
    cJSON_Delete(j);
}

static void usage_row(void *ctx, const char *day, const char *email, const char *key, int64_t n, int64_t hit, int64_t miss,
                      int64_t out, int64_t amount) {
    (void)email;
    cJSON *o = cJSON_CreateObject();
    char cost[32];
    snprintf(cost, sizeof cost, "%s%lld.%06lld", amount < 0 ? "-" : "", (long long)(llabs(amount) / 1000000),
             (long long)(llabs(amount) % 1000000));
    cJSON_AddStringToObject(o, "date", day);
    cJSON_AddStringToObject(o, "key_prefix", key);
    cJSON_AddNumberToObject(o, "requests", (double)n);
    cJSON_AddNumberToObject(o, "prompt_cache_hit_tokens", (double)hit);
    cJSON_AddNumberToObject(o, "prompt_cache_miss_tokens", (double)miss);
    cJSON_AddNumberToObject(o, "completion_tokens", (double)out);
    cJSON_AddStringToObject(o, "cost", cost);
    cJSON_AddStringToObject(o, "currency", "USD");
    cJSON_AddItemToArray(ctx, o);
}

static char *accounts_usage_json(store *st, int64_t user) {
    cJSON *j = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(j, "usage");
    whale_err err = {0};
    char *s = NULL;
    if (!store_usage(st, user, usage_row, a, &err)) s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

void accounts_balance(void *ctx, http_req *q, http_reply *out) {
    accounts *ac = ctx;
    http_body(out, 200, accounts_balance_json(ac->st, q->key.user), NULL);
}

void accounts_usage(void *ctx, http_req *q, http_reply *out) {
    accounts *ac = ctx;
    http_body(out, 200, accounts_usage_json(ac->st, q->key.user), NULL);
}

/* ---- rate limits ------------------------------------------------------------------------- */

void accounts_set_limits(accounts *ac, int64_t rpm, int64_t tpm) {
    ac->rpm = rpm > 0 ? rpm : 0;
    ac->tpm = tpm > 0 ? tpm : 0;
}

/* Under mu: the bucket of id, refilled to now. A bucket idle for a minute is full again, the
 * same as a new one, so its slot may be taken; when none is free the least recently used is
 * (a slot is never emptied, so no other id's probe run is cut). Never NULL. */
static bucket *bucket_of(accounts *ac, int64_t id, double now) {
    uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;
    bucket *free_slot = NULL;
    for (int i = 0; i < ACC_BUCKETS; i++) {
        bucket *b = &ac->buckets[(h + (uint64_t)i) % ACC_BUCKETS];
        if (b->id == 0 || (b->id != id && now - b->t >= 60.0)) {
            if (!free_slot) free_slot = b;
            if (b->id == 0) break; /* past the end of id's probe run */
            continue;
        }
        if (b->id != id) continue;
        double dt = now - b->t;
        b->req = fmin((double)ac->rpm, b->req + dt * (double)ac->rpm / 60.0);
        b->tok = fmin((double)ac->tpm, b->tok + dt * (double)ac->tpm / 60.0);
        b->t = now;
        return b;
    }
    if (!free_slot) { /* full: forget the least recently used (it comes back full, as after a minute) */
        free_slot = &ac->buckets[0];
        for (int i = 1; i < ACC_BUCKETS; i++)
            if (ac->buckets[i].t < free_slot->t) free_slot = &ac->buckets[i];
    }
    *free_slot = (bucket){id, (double)ac->rpm, (double)ac->tpm, now};
    return free_slot;
}

/* Seconds until b can start a request (0: now). */
static double wait_for(const accounts *ac, const bucket *b) {
    double w = 0;
    if (ac->rpm && b->req < 1) w = fmax(w, (1 - b->req) * 60.0 / (double)ac->rpm);
    if (ac->tpm && b->tok <= 0) w = fmax(w, (1 - b->tok) * 60.0 / (double)ac->tpm);
    return w;
}

/* Shared limits (PostgreSQL): take from id's bucket in the database. The wait in seconds (0: taken);
 * a failing database refuses for a second (limits fail closed). */
static double shared_take(accounts *ac, int64_t id, int take_req, int64_t tokens) {
    int64_t wait_ms = 0;
    whale_err err = {0};
    if (store_bucket_take(ac->st, id, ac->rpm, ac->tpm, take_req, tokens, &wait_ms, &err)) {
        fprintf(stderr, "whale serve: %s\n", err.msg);
        return 1.0;
    }
    return (double)wait_ms / 1000.0;
}

int accounts_limit(accounts *ac, const store_key *key, char **err_body) {
    if (!ac || (!ac->rpm && !ac->tpm)) return 0;
    double now = clock_now_s(), w = 0;
    if (store_shared_limits(ac->st)) { /* several replicas: one bucket each in the database */
        w = shared_take(ac, -key->user - 1, 1, 0);
        if (w == 0 && key->id && (w = shared_take(ac, key->id, 1, 0)) > 0)
            shared_take(ac, -key->user - 1, -1, 0); /* the key may not: the user's request back */
        goto decided;
    }
    pthread_mutex_lock(&ac->mu);
    /* the web page's requests (key id 0: a session, no key) count once, on the user. The user's
     * bucket first: a key's is made only for a request its user may send, so a user with many
     * keys holds no more buckets than its own limit lets it use */
    bucket *u = bucket_of(ac, -key->user - 1, now), *k = u;
    w = wait_for(ac, u);
    if (w == 0 && key->id) { /* u was used just now: it is not the one a key's bucket replaces */
        k = bucket_of(ac, key->id, now);
        w = wait_for(ac, k);
    }
    if (w == 0) {
        if (k != u) k->req -= 1;
        u->req -= 1;
    }
    pthread_mutex_unlock(&ac->mu);
decided:
    if (w == 0) return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "Rate Limit Reached: this key or its account may send %lld requests and %lld tokens a "
             "minute here; retry in %.0f s", (long long)ac->rpm, (long long)ac->tpm, ceil(w));
    *err_body = api_error_body(msg, "rate_limit_error", NULL, "rate_limit_exceeded");
    return (int)ceil(w) > 0 ? (int)ceil(w) : 1;
}

void accounts_limit_tokens(accounts *ac, const store_key *key, int64_t tokens) {
    if (!ac || !ac->tpm || !tokens) return;
    if (store_shared_limits(ac->st)) {
        if (key->id) shared_take(ac, key->id, 0, tokens);
        shared_take(ac, -key->user - 1, 0, tokens);
        return;
    }
    double now = clock_now_s();
    pthread_mutex_lock(&ac->mu);
    bucket *k = key->id ? bucket_of(ac, key->id, now) : NULL, *u = bucket_of(ac, -key->user - 1, now);
    if (k && k != u) k->tok -= (double)tokens;
    u->tok -= (double)tokens;
    pthread_mutex_unlock(&ac->mu);
}
