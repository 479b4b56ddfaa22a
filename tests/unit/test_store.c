/* test_store.c — the accounts store on a real SQLite file (and, with WHALE_PG_URL, the same
 * cases on a real PostgreSQL database): users, keys found by their text and
 * never stored in clear, revocation, prices (defaults and overrides), credits and charges with
 * their ledger rows (a balance always equals its ledger; a request charged twice is refused),
 * the append-only ledger enforced by the database, a reopen that keeps everything, and key ids
 * never given twice (the ledger keeping each charge's key prefix). */
#include <pthread.h>
#include <unistd.h>

#include "check.h"
#include "service/db.h"
#include "service/store.h"

static char g_path[512];
static int g_pg; /* g_path is a PostgreSQL URL */

static store *open_store(void) {
    store *s = NULL;
    whale_err err = {0};
    CHECKF(!store_open(&s, g_path, &err), "%s", err.msg);
    return s;
}

static void test_users_and_keys(void) {
    store *s = open_store();
    whale_err err = {0};
    int64_t alice, bob;
    CHECK(!store_user_add(s, "alice@example.com", 0, &alice, &err));
    CHECK(!store_user_add(s, "bob@example.com", 1, &bob, &err));
    CHECK(store_user_add(s, "alice@example.com", 0, NULL, &err) == WHALE_E_ARG); /* taken */
    CHECK(store_user_add(s, "not an email", 0, NULL, &err) == WHALE_E_ARG);
    store_user u;
    CHECK(!store_user_find(s, "bob@example.com", &u, &err) && u.id == bob && u.admin && !u.disabled);
    CHECK(store_user_find(s, "carol@example.com", &u, &err) == WHALE_E_NOTFOUND);

    char key[64], key2[64];
    store_key k, found;
    CHECK(!store_key_create(s, alice, 0, key, sizeof key, &k, &err));
    CHECK(!strncmp(key, "sk-", 3) && strlen(key) == 35 && !strncmp(k.prefix, key, STORE_KEY_PREFIX));
    CHECK(!store_key_create(s, alice, 1000, key2, sizeof key2, NULL, &err) && strcmp(key, key2));
    CHECK(!store_key_lookup(s, key, &found, &err) && found.id == k.id && found.user == alice && !found.revoked);
    CHECK(store_key_lookup(s, "sk-not-a-key", &found, &err) == WHALE_E_NOTFOUND);
    store_key *list;
    size_t n;
    CHECK(!store_key_list(s, alice, &list, &n, &err) && n == 2 && list[0].expires == 1000);
    free(list);
    CHECK(store_key_revoke(s, bob, k.prefix, &err) == WHALE_E_NOTFOUND); /* not bob's key */
    CHECK(!store_key_revoke(s, alice, k.prefix, &err));
    CHECK(!store_key_lookup(s, key, &found, &err) && found.revoked);
    CHECK(!store_user_set_disabled(s, alice, 1, &err));
    CHECK(!store_key_lookup(s, key2, &found, &err) && found.user_disabled);
    store_close(s);

    if (!g_pg) { /* the database file holds no key in clear */
        FILE *f = fopen(g_path, "rb");
        char buf[1 << 16];
        size_t got = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        CHECK(got > 0 && !memmem(buf, got, key + 3, strlen(key + 3)));
    }
}

static void test_prices(void) {
    store *s = open_store();
    whale_err err = {0};
    store_price p;
    CHECK(!store_price_get(s, "m", 1, &p, &err) && p.hit == 140000 && p.miss == 550000 && p.output == 2190000);
    CHECK(!store_price_get(s, "m", 0, &p, &err) && p.hit == 70000 && p.miss == 270000 && p.output == 1100000);
    store_price any = {1, 2, 3}, mine = {10, 20, 30};
    CHECK(!store_price_set(s, "*", &any, &err) && !store_price_set(s, "m", &mine, &err));
    CHECK(!store_price_get(s, "m", 1, &p, &err) && p.miss == 20);
    CHECK(!store_price_get(s, "other", 1, &p, &err) && p.miss == 2);
    store_price bad = {-1, 0, 0};
    CHECK(store_price_set(s, "m", &bad, &err) == WHALE_E_ARG);
    store_close(s);
}

typedef struct {
    store *s;
    int64_t user;
    int base;
} charger;

static void *charge_many(void *p) {
    charger *c = p;
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof id, "req-%d", c->base + i);
        store_charge ch = {c->user, 0, id, "m", i, 100 + i, 7 * i, i, {140000, 550000, 2190000}, NULL, 0};
        whale_err err = {0};
        CHECK(!store_charge_commit(c->s, &ch, NULL, &err));
    }
    return NULL;
}

static void test_money(void) {
    store *s = open_store();
    whale_err err = {0};
    store_user u;
    CHECK(!store_user_find(s, "bob@example.com", &u, &err));
    CHECK(!store_credit(s, u.id, 5000000, "top-up", &err));
    store_charge c = {u.id, 0, "req-a", "m", 1000, 3000, 500, 200, {140000, 550000, 2190000}, NULL, 0};
    /* 1000*0.14 + 3000*0.55 + 500*2.19 = 140 + 1650 + 1095 = 2885 micro-units */
    CHECK(store_charge_amount(&c) == 2885);
    int64_t a = 0, bal = 0;
    CHECK(!store_charge_commit(s, &c, &a, &err) && a == 2885);
    CHECK(store_charge_commit(s, &c, &a, &err) == WHALE_E_ARG); /* the same request again */
    CHECK(!store_balance(s, u.id, &bal, &err) && bal == 5000000 - 2885);
    /* concurrent charges from two threads: every one lands once */
    charger c1 = {s, u.id, 0}, c2 = {s, u.id, 1000};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, charge_many, &c1);
    pthread_create(&t2, NULL, charge_many, &c2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    int64_t want = 5000000 - 2885;
    for (int i = 0; i < 50; i++) {
        store_charge ch = {u.id, 0, "x", "m", i, 100 + i, 7 * i, i, {140000, 550000, 2190000}, NULL, 0};
        want -= 2 * store_charge_amount(&ch);
    }
    CHECK(!store_balance(s, u.id, &bal, &err) && bal == want);
    CHECKF(!store_check(s, &err), "%s", err.msg);
    store_close(s);
    s = open_store(); /* reopened: same figures, and the ledger refuses changes */
    CHECK(!store_balance(s, u.id, &bal, &err) && bal == want);
    CHECK(!store_check(s, &err));
    store_close(s);
    db *d = NULL; /* behind the store's back: the database itself keeps the ledger append-only */
    CHECK(!db_open(&d, g_path, &err));
    CHECK(db_exec(d, "UPDATE ledger SET amount = 0", &err) != 0);
    CHECK(db_exec(d, "DELETE FROM ledger", &err) != 0);
    db_close(d);
}

typedef struct usage_seen {
    char prefix[64];
    int64_t requests;
} usage_seen;

static void usage_one(void *ctx, const char *day, const char *email, const char *key_prefix, int64_t requests,
                      int64_t hit, int64_t miss, int64_t output, int64_t amount) {
    (void)day, (void)email, (void)hit, (void)miss, (void)output, (void)amount;
    usage_seen *u = ctx;
    snprintf(u->prefix, sizeof u->prefix, "%s", key_prefix);
    u->requests += requests;
}

/* A deleted user's key id is never given to a later key (issue #18: the deleted user's charges
 * showed under someone else's key), and the usage shows the prefix the charge was made with. */
static void test_key_ids_never_reused(void) {
    store *s = open_store();
    whale_err err = {0};
    int64_t gone, next;
    char key[64];
    store_key kg, kn;
    CHECK(!store_user_add(s, "gone@example.com", 0, &gone, &err));
    CHECK(!store_key_create(s, gone, 0, key, sizeof key, &kg, &err)); /* the highest key id */
    CHECK(!store_credit(s, gone, 1000000, "top-up", &err));
    store_charge c = {gone, kg.id, "req-gone", "m", 1, 2, 3, 0, {140000, 550000, 2190000}, kg.prefix, 0};
    CHECK(!store_charge_commit(s, &c, NULL, &err));
    CHECK(!store_user_delete(s, gone, &err));
    store_close(s);
    s = open_store(); /* reopened: SQLite without AUTOINCREMENT took max(id) + 1 again */
    CHECK(!store_user_add(s, "next@example.com", 0, &next, &err));
    CHECK(!store_key_create(s, next, 0, key, sizeof key, &kn, &err));
    CHECKF(kn.id != kg.id, "key id %lld given twice", (long long)kn.id);
    usage_seen u = {{0}, 0};
    CHECK(!store_usage(s, gone, usage_one, &u, &err) && u.requests == 1);
    CHECKF(!strcmp(u.prefix, kg.prefix), "usage shows '%s', the charge was made with '%s'", u.prefix, kg.prefix);
    store_close(s);
}

int main(void) {
    /* SQLite by default; WHALE_PG_URL (an empty PostgreSQL database) runs the same cases there */
    const char *pg = getenv("WHALE_PG_URL");
    g_pg = pg && *pg;
    if (g_pg) snprintf(g_path, sizeof g_path, "%s", pg);
    else snprintf(g_path, sizeof g_path, "/tmp/whale-test-store-%d.db", (int)getpid());
    if (!g_pg) unlink(g_path);
    RUN(test_users_and_keys);
    RUN(test_prices);
    RUN(test_money);
    RUN(test_key_ids_never_reused);
    char p[600];
    if (g_pg) return check_report("test_store (PostgreSQL)");
    unlink(g_path);
    snprintf(p, sizeof p, "%s-wal", g_path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", g_path);
    unlink(p);
    return check_report("test_store");
}
