/* cmd_admin.c — `whale admin`: the operator's commands on the accounts store (service/store.h),
 * the same database `whale serve --accounts` uses. Nothing here is reachable over HTTP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "service/accounts.h"
#include "service/store.h"

static void usage(FILE *f) {
    fprintf(f, "usage: whale admin [--db PATH] COMMAND ...\n\n"
               "Users, API keys, balances and prices of `whale serve --accounts` (default database:\n"
               "$WHALE_HOME/whale.db). Amounts are in USD, with up to 6 decimals (kept as integer micro-dollars).\n"
               "  user add EMAIL [--admin]        a new user, balance 0\n"
               "  user disable|enable EMAIL       a disabled user's keys stop working\n"
               "  user password EMAIL             set a new password, read from standard input (first line);\n"
               "                                  the user's web sessions end\n"
               "  invite                          a new invitation code for `whale serve --signup invite`\n"
               "  key create EMAIL [--days N]     a new API key, printed once (expires after N days; default never;\n"
               "                                  at most 100 live keys per user)\n"
               "  key list EMAIL                  prefix, id, creation, last use, expiry, state\n"
               "  key revoke EMAIL PREFIX|ID\n"
               "  balance EMAIL                   the balance\n"
               "  topup EMAIL AMOUNT              add AMOUNT (a negative one corrects); a ledger row each time\n"
               "  balance-set EMAIL AMOUNT        credit or debit the difference to reach AMOUNT\n"
               "  price set MODEL HIT MISS OUTPUT USD per million tokens: input cache hit, miss, output\n"
               "                                  (MODEL as the server names it, or * for every model)\n"
               "  price get MODEL                 (unset: DeepSeek's launch prices, reasoner or chat)\n"
               "  usage [EMAIL]                   tokens and charges by day, user and key\n"
               "  check                           every balance equals the sum of its ledger\n");
}

/* "12", "-0.5", "2.190000" -> micro-units, exactly (no floating point). */
static int parse_money(const char *s, int64_t *out) {
    int neg = *s == '-';
    if (neg || *s == '+') s++;
    int64_t whole = 0, frac = 0;
    int digits = 0, fd = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (whole >= 1000000000LL) return -1; /* a billion USD at most: far from int64's end */
        whole = whole * 10 + (*s - '0');
    }
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9'; s++, fd++) {
            if (fd == 6) return -1; /* finer than a micro-unit */
            frac = frac * 10 + (*s - '0');
        }
    if (*s || (!digits && !fd)) return -1;
    for (; fd < 6; fd++) frac *= 10;
    *out = (neg ? -1 : 1) * (whole * 1000000 + frac);
    return 0;
}

static void print_money(FILE *f, int64_t m) {
    int64_t a = m < 0 ? -m : m;
    fprintf(f, "%s%lld.%06lld", m < 0 ? "-" : "", (long long)(a / 1000000), (long long)(a % 1000000));
}

static void print_time(int64_t t) {
    if (!t) {
        printf("%-20s", "-");
        return;
    }
    char b[32];
    time_t tt = (time_t)t;
    strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S", gmtime(&tt));
    printf("%-20s", b);
}

static void usage_row(void *ctx, const char *day, const char *email, const char *key, int64_t n, int64_t hit,
                      int64_t miss, int64_t out, int64_t amount) {
    (void)ctx;
    printf("%-10s  %-30s  %-12s  %8lld  %10lld  %10lld  %10lld  ", day, email, key[0] ? key : "-", (long long)n,
           (long long)hit, (long long)miss, (long long)out);
    print_money(stdout, amount);
    printf("\n");
}

static int user_of(store *st, const char *email, store_user *u) {
    whale_err err = {0};
    if (!store_user_find(st, email, u, &err)) return 0;
    fprintf(stderr, "whale admin: %s: %s\n", email, err.code == WHALE_E_NOTFOUND ? "no such user" : err.msg);
    return -1;
}

static int run(store *st, int argc, char **argv) {
    whale_err err = {0};
    store_user u;
    const char *c0 = argv[0], *c1 = argc > 1 ? argv[1] : "", *c2 = argc > 2 ? argv[2] : NULL;
    int64_t amount;
#define NEED(n) do { if (argc < (n)) { usage(stderr); return 2; } } while (0)
#define OK(x) do { if (x) { fprintf(stderr, "whale admin: %s\n", err.msg); return 1; } } while (0)
    if (!strcmp(c0, "user") && (!strcmp(c1, "add"))) {
        NEED(3);
        int admin = argc > 3 && !strcmp(argv[3], "--admin");
        int64_t id;
        OK(store_user_add(st, c2, admin, &id, &err));
        printf("user %lld: %s%s\n", (long long)id, c2, admin ? " (admin)" : "");
    } else if (!strcmp(c0, "user") && (!strcmp(c1, "disable") || !strcmp(c1, "enable"))) {
        NEED(3);
        if (user_of(st, c2, &u)) return 1;
        OK(store_user_set_disabled(st, u.id, !strcmp(c1, "disable"), &err));
    } else if (!strcmp(c0, "user") && !strcmp(c1, "password")) {
        NEED(3);
        if (user_of(st, c2, &u)) return 1;
        char pw[512], hash[ACCOUNTS_PW_HASH_BYTES];
        if (!fgets(pw, sizeof pw, stdin)) {
            fprintf(stderr, "whale admin: give the new password on standard input\n");
            return 2;
        }
        pw[strcspn(pw, "\r\n")] = 0;
        if (strlen(pw) < 8) {
            fprintf(stderr, "whale admin: a password has at least 8 bytes\n");
            return 2;
        }
        if (accounts_password_hash(pw, hash)) {
            fprintf(stderr, "whale admin: out of memory\n");
            return 1;
        }
        memset(pw, 0, sizeof pw);
        OK(store_user_set_password(st, u.id, hash, &err));
        fprintf(stderr, "password of %s set; its sessions ended\n", c2);
    } else if (!strcmp(c0, "invite")) {
        char code[64];
        OK(accounts_invite_create(st, code, sizeof code, &err));
        printf("%s\n", code);
    } else if (!strcmp(c0, "key") && !strcmp(c1, "create")) {
        NEED(3);
        if (user_of(st, c2, &u)) return 1;
        int64_t expires = 0;
        if (argc > 4 && !strcmp(argv[3], "--days")) {
            long d = strtol(argv[4], NULL, 10);
            if (d <= 0 || d > 36500) {
                fprintf(stderr, "whale admin: --days needs a number from 1 to 36500\n");
                return 2;
            }
            expires = (int64_t)time(NULL) + (int64_t)d * 86400;
        }
        char key[64];
        store_key k;
        OK(store_key_create(st, u.id, expires, key, sizeof key, &k, &err));
        printf("%s\n", key);
        fprintf(stderr, "key %lld for %s (shown once: keep it; only its prefix %s is stored in clear)\n",
                (long long)k.id, c2, k.prefix);
    } else if (!strcmp(c0, "key") && !strcmp(c1, "list")) {
        NEED(3);
        if (user_of(st, c2, &u)) return 1;
        store_key *ks;
        size_t n;
        OK(store_key_list(st, u.id, &ks, &n, &err));
        printf("%-6s  %-14s  %-20s%-20s%-20s%s\n", "id", "prefix", "created", "last used", "expires", "state");
        for (size_t i = 0; i < n; i++) {
            printf("%-6lld  %-14s  ", (long long)ks[i].id, ks[i].prefix);
            print_time(ks[i].created);
            print_time(ks[i].last_used);
            print_time(ks[i].expires);
            printf("%s\n", ks[i].revoked ? "revoked" : ks[i].expires && ks[i].expires <= time(NULL) ? "expired" : "active");
        }
        free(ks);
    } else if (!strcmp(c0, "key") && !strcmp(c1, "revoke")) {
        NEED(4);
        if (user_of(st, c2, &u)) return 1;
        OK(store_key_revoke(st, u.id, argv[3], &err));
    } else if (!strcmp(c0, "balance")) {
        NEED(2);
        if (user_of(st, argv[1], &u)) return 1;
        OK(store_balance(st, u.id, &amount, &err));
        print_money(stdout, amount);
        printf("\n");
    } else if (!strcmp(c0, "topup") || !strcmp(c0, "balance-set")) {
        NEED(3);
        if (user_of(st, argv[1], &u)) return 1;
        if (parse_money(argv[2], &amount)) {
            fprintf(stderr, "whale admin: '%s' is not an amount (USD, up to 6 decimals)\n", argv[2]);
            return 2;
        }
        if (!strcmp(c0, "balance-set")) {
            int64_t now;
            OK(store_balance(st, u.id, &now, &err));
            amount -= now;
        }
        OK(store_credit(st, u.id, amount, c0, &err));
        OK(store_balance(st, u.id, &amount, &err));
        print_money(stdout, amount);
        printf("\n");
    } else if (!strcmp(c0, "price") && !strcmp(c1, "set")) {
        NEED(6);
        store_price p;
        if (parse_money(argv[3], &p.hit) || parse_money(argv[4], &p.miss) || parse_money(argv[5], &p.output)) {
            fprintf(stderr, "whale admin: prices are USD per million tokens, up to 6 decimals\n");
            return 2;
        }
        OK(store_price_set(st, c2, &p, &err));
    } else if (!strcmp(c0, "price") && !strcmp(c1, "get")) {
        NEED(3);
        store_price p;
        for (int r = 1; r >= 0; r--) {
            OK(store_price_get(st, c2, r, &p, &err));
            printf("%s (%s): hit ", c2, r ? "if a reasoning model" : "if a chat model");
            print_money(stdout, p.hit);
            printf("  miss ");
            print_money(stdout, p.miss);
            printf("  output ");
            print_money(stdout, p.output);
            printf("  USD per million tokens\n");
        }
    } else if (!strcmp(c0, "usage")) {
        int64_t uid = 0;
        if (argc > 1) {
            if (user_of(st, argv[1], &u)) return 1;
            uid = u.id;
        }
        printf("%-10s  %-30s  %-12s  %8s  %10s  %10s  %10s  %s\n", "day", "user", "key", "requests", "hit", "miss",
               "output", "charged (USD)");
        OK(store_usage(st, uid, usage_row, NULL, &err));
    } else if (!strcmp(c0, "check")) {
        OK(store_check(st, &err));
        printf("ok: every balance equals the sum of its ledger\n");
    } else {
        fprintf(stderr, "whale admin: unknown command '%s' (see whale admin --help)\n", c0);
        return 2;
    }
    return 0;
}

int cmd_admin(int argc, char **argv) {
    char def[4096];
    const char *db = whale_home_path("whale.db", def, sizeof def);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--db") && i + 1 < argc) db = argv[++i];
        else {
            fprintf(stderr, "whale admin: bad option '%s' (see whale admin --help)\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    store *st = NULL;
    whale_err err = {0};
    if (store_open(&st, db, &err)) {
        fprintf(stderr, "whale admin: %s\n", err.msg);
        return 1;
    }
    int rc = run(st, argc - i, argv + i);
    store_close(st);
    return rc;
}
