/* accounts.c — API keys, admission by balance and charges for `whale serve --accounts`; see
 * accounts.h. */
#include "service/accounts.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

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
    int64_t now = (int64_t)time(NULL);
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

void accounts_charge(store *st, const store_key *key, const char *model_name, int is_reasoner, const sched_result *res,
                     size_t reasoning_tokens) {
    unsigned char r[12];
    char id[40];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        memcpy(r, &ts, sizeof r < sizeof ts ? sizeof r : sizeof ts);
    }
    int at = snprintf(id, sizeof id, "req-");
    for (size_t i = 0; i < sizeof r; i++) at += snprintf(id + at, sizeof id - (size_t)at, "%02x", r[i]);
    store_charge c = {key->user, key->id, id, model_name, (int64_t)res->n_cached, (int64_t)(res->n_prompt - res->n_cached),
                      (int64_t)res->n_gen, (int64_t)reasoning_tokens, {0, 0, 0}};
    whale_err err = {0};
    if (store_price_get(st, model_name, is_reasoner, &c.price, &err) || store_charge_commit(st, &c, NULL, &err))
        fprintf(stderr, "whale serve: charging request %s failed: %s\n", id, err.msg);
}

static void usd(char *out, size_t cap, int64_t micro) {
    int64_t a = micro < 0 ? -micro : micro;
    snprintf(out, cap, "%s%lld.%02lld", micro < 0 ? "-" : "", (long long)(a / 1000000), (long long)(a % 1000000 / 10000));
}

char *accounts_balance_json(store *st, const store_key *key) {
    int64_t bal = 0;
    whale_err err = {0};
    if (store_balance(st, key->user, &bal, &err)) return NULL;
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
