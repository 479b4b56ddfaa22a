/* store_db.c — the store (service/store.h) on SQLite or PostgreSQL (service/db.h): numbered
 * migrations (SQLite: PRAGMA user_version; PostgreSQL: the table whale_schema, migrated under an
 * advisory lock so replicas starting together migrate once), parameterized statements only,
 * each change in one transaction. The SQL is shared; only the schema's types and one date
 * function differ between the two. */
#include "service/store.h"

#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "service/db.h"

struct store {
    db *d;
    pthread_mutex_t mu;
    int64_t changes; /* rows the last run_done changed */
    unsigned n_login_failed; /* store_login_failed calls, for its sweeps */
    int64_t conv_total;      /* store_set_conv_total */
};

/* Migration N brings the schema from version N-1 to N; never edit one that has shipped. */
static const char *const MIGRATIONS_SQLITE[] = {
    /* 1: accounts, keys, prices, balances and the ledger (append-only: triggers make the
     * database itself refuse to change or remove a ledger row). Each migration is parenthesized:
     * its lines are one string. */
    ("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, pw_hash TEXT,"
    "  admin INTEGER NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
    "CREATE TABLE balances (user_id INTEGER PRIMARY KEY REFERENCES users(id), amount INTEGER NOT NULL);"
    "CREATE TABLE api_keys (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
    "  prefix TEXT NOT NULL, hash BLOB NOT NULL UNIQUE, created INTEGER NOT NULL, last_used INTEGER NOT NULL DEFAULT 0,"
    "  expires INTEGER NOT NULL DEFAULT 0, revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX api_keys_user ON api_keys(user_id);"
    "CREATE TABLE prices (model TEXT PRIMARY KEY, hit INTEGER NOT NULL, miss INTEGER NOT NULL, output INTEGER NOT NULL);"
    "CREATE TABLE ledger (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), key_id INTEGER,"
    "  at INTEGER NOT NULL, kind TEXT NOT NULL, amount INTEGER NOT NULL, request_id TEXT UNIQUE, model TEXT,"
    "  hit INTEGER NOT NULL DEFAULT 0, miss INTEGER NOT NULL DEFAULT 0, output INTEGER NOT NULL DEFAULT 0,"
    "  reasoning INTEGER NOT NULL DEFAULT 0, note TEXT);"
    "CREATE INDEX ledger_user ON ledger(user_id, at);"
    "CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;"
    "CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;"),
    /* 2: web sessions (cookies), stored hashed */
    ("CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
    "  hash BLOB NOT NULL UNIQUE, created INTEGER NOT NULL, expires INTEGER NOT NULL);"
    "CREATE INDEX sessions_user ON sessions(user_id);"),
    /* 3: invitations (invite-only sign-ups), stored hashed */
    ("CREATE TABLE invites (id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, created INTEGER NOT NULL,"
    "  used INTEGER NOT NULL DEFAULT 0);"),
    /* 4: the web page's conversations, per user (cid: the page's id for one) */
    ("CREATE TABLE conversations (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
    "  cid TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL, updated INTEGER NOT NULL, UNIQUE (user_id, cid));"),
    /* 5: key ids are never used twice (AUTOINCREMENT: before, a deleted user's key id went to
     * the next key made, and old charges showed under it), the sequence starting past every id
     * the ledger names; each ledger row keeps its key's prefix (filled for old rows from the
     * keys as they are now: the best there is) */
    ("CREATE TABLE api_keys_5 (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users(id),"
    "  prefix TEXT NOT NULL, hash BLOB NOT NULL UNIQUE, created INTEGER NOT NULL, last_used INTEGER NOT NULL DEFAULT 0,"
    "  expires INTEGER NOT NULL DEFAULT 0, revoked INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO api_keys_5 SELECT id, user_id, prefix, hash, created, last_used, expires, revoked FROM api_keys;"
    "DROP TABLE api_keys;"
    "ALTER TABLE api_keys_5 RENAME TO api_keys;"
    "CREATE INDEX api_keys_user ON api_keys(user_id);"
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'api_keys', 0"
    "  WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'api_keys');"
    "UPDATE sqlite_sequence SET seq = max(seq, (SELECT COALESCE(max(key_id), 0) FROM ledger)) WHERE name = 'api_keys';"
    "ALTER TABLE ledger ADD COLUMN key_prefix TEXT;"
    "DROP TRIGGER ledger_no_update;"
    "UPDATE ledger SET key_prefix = (SELECT prefix FROM api_keys k WHERE k.id = ledger.key_id) WHERE key_id <> 0;"
    "CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;"),
    /* 6: reservations: what running requests may still cost (store_reserve), per server instance */
    ("CREATE TABLE reservations (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
    "  amount INTEGER NOT NULL, created INTEGER NOT NULL, instance TEXT NOT NULL);"
    "CREATE INDEX reservations_user ON reservations(user_id);"
    "CREATE INDEX reservations_instance ON reservations(instance);"
    /* and rate-limit buckets shared by replicas (used on PostgreSQL: store_bucket_take) */
    "CREATE TABLE rate_buckets (id INTEGER PRIMARY KEY, req REAL NOT NULL, tok REAL NOT NULL, t REAL NOT NULL,"
    "  admitted INTEGER NOT NULL DEFAULT 1);"),
    /* 7: read-only share links: a copy of a conversation as it was when shared, found by the
     * hash of the link's token; one per conversation (sharing again makes a new link) */
    ("CREATE TABLE shares (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
    "  cid TEXT NOT NULL, hash BLOB NOT NULL UNIQUE, title TEXT NOT NULL, body TEXT NOT NULL,"
    "  created INTEGER NOT NULL, UNIQUE (user_id, cid));"),
};

static const char *const MIGRATIONS_PG[] = { /* the same, in PostgreSQL's types */
    ("CREATE TABLE users (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL UNIQUE, pw_hash TEXT,"
    "  admin INTEGER NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0, created BIGINT NOT NULL);"
    "CREATE TABLE balances (user_id BIGINT PRIMARY KEY REFERENCES users(id), amount BIGINT NOT NULL);"
    "CREATE TABLE api_keys (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id),"
    "  prefix TEXT NOT NULL, hash BYTEA NOT NULL UNIQUE, created BIGINT NOT NULL, last_used BIGINT NOT NULL DEFAULT 0,"
    "  expires BIGINT NOT NULL DEFAULT 0, revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX api_keys_user ON api_keys(user_id);"
    "CREATE TABLE prices (model TEXT PRIMARY KEY, hit BIGINT NOT NULL, miss BIGINT NOT NULL, output BIGINT NOT NULL);"
    "CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), key_id BIGINT,"
    "  at BIGINT NOT NULL, kind TEXT NOT NULL, amount BIGINT NOT NULL, request_id TEXT UNIQUE, model TEXT,"
    "  hit BIGINT NOT NULL DEFAULT 0, miss BIGINT NOT NULL DEFAULT 0, output BIGINT NOT NULL DEFAULT 0,"
    "  reasoning BIGINT NOT NULL DEFAULT 0, note TEXT);"
    "CREATE INDEX ledger_user ON ledger(user_id, at);"
    "CREATE FUNCTION whale_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    "  $f$ BEGIN RAISE EXCEPTION 'the ledger is append-only'; END $f$;"
    "CREATE TRIGGER ledger_no_change BEFORE UPDATE OR DELETE ON ledger FOR EACH ROW"
    "  EXECUTE FUNCTION whale_ledger_append_only();"),
    ("CREATE TABLE sessions (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id),"
    "  hash BYTEA NOT NULL UNIQUE, created BIGINT NOT NULL, expires BIGINT NOT NULL);"
    "CREATE INDEX sessions_user ON sessions(user_id);"),
    ("CREATE TABLE invites (id BIGSERIAL PRIMARY KEY, hash BYTEA NOT NULL UNIQUE, created BIGINT NOT NULL,"
    "  used INTEGER NOT NULL DEFAULT 0);"),
    ("CREATE TABLE conversations (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id),"
    "  cid TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL, updated BIGINT NOT NULL, UNIQUE (user_id, cid));"),
    /* 5: BIGSERIAL never gives an id twice already; the ledger's key prefixes; failed sign-ins,
     * shared by the replicas (service/login_guard.h; k: a hash of the account or address;
     * SQLite has one process, which keeps them in memory) */
    ("ALTER TABLE ledger ADD COLUMN key_prefix TEXT;"
    "ALTER TABLE ledger DISABLE TRIGGER ledger_no_change;"
    "UPDATE ledger SET key_prefix = (SELECT prefix FROM api_keys k WHERE k.id = ledger.key_id) WHERE key_id <> 0;"
    "ALTER TABLE ledger ENABLE TRIGGER ledger_no_change;"
    "CREATE TABLE login_fails (k BYTEA PRIMARY KEY, fails INTEGER NOT NULL, last_ms BIGINT NOT NULL);"
    "CREATE INDEX login_fails_last ON login_fails(last_ms);"),
    ("CREATE TABLE reservations (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id),"
    "  amount BIGINT NOT NULL, created BIGINT NOT NULL, instance TEXT NOT NULL);"
    "CREATE INDEX reservations_user ON reservations(user_id);"
    "CREATE INDEX reservations_instance ON reservations(instance);"
    "CREATE TABLE rate_buckets (id BIGINT PRIMARY KEY, req DOUBLE PRECISION NOT NULL, tok DOUBLE PRECISION NOT NULL,"
    "  t DOUBLE PRECISION NOT NULL, admitted INTEGER NOT NULL DEFAULT 1);"),
    ("CREATE TABLE shares (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id),"
    "  cid TEXT NOT NULL, hash BYTEA NOT NULL UNIQUE, title TEXT NOT NULL, body TEXT NOT NULL,"
    "  created BIGINT NOT NULL, UNIQUE (user_id, cid));"),
};
#define N_MIGRATIONS ((int)(sizeof MIGRATIONS_SQLITE / sizeof MIGRATIONS_SQLITE[0]))
_Static_assert(sizeof MIGRATIONS_SQLITE == sizeof MIGRATIONS_PG, "one migration list per database, in step");
#define PG_MIGRATION_LOCK 0x5768616c65 /* advisory lock id for migrations ("Whale") */

static int db_fail(store *s, whale_err *err, const char *what) {
    return err_set(err, WHALE_E_IO, "database: %s: %s", what, db_error(s->d));
}

/* Prepare and bind ("i" int64, "t" text, "b" 32-byte blob); NULL with a message. */
static db_stmt *prep(store *s, const char *sql, whale_err *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    db_stmt *st = db_vprepare(s->d, err, sql, fmt, ap);
    va_end(ap);
    return st;
}

/* Step a statement that changes rows (or returns one); its changed rows into s->changes. */
static int run_done(store *s, db_stmt *st, whale_err *err, const char *what) {
    int rc = db_step(st);
    s->changes = rc >= 0 ? db_changes(st) : 0;
    db_finish(st);
    if (rc == 0 || rc == 1) return 0;
    if (rc == DB_CONSTRAINT) return err_set(err, WHALE_E_ARG, "%s: already there", what);
    return db_fail(s, err, what);
}

/* An INSERT ... RETURNING id: the id into *id. */
static int run_id(store *s, db_stmt *st, whale_err *err, const char *what, int64_t *id) {
    int rc = db_step(st);
    if (rc == 1) *id = db_int(st, 0);
    db_finish(st);
    if (rc == 1) return 0;
    if (rc == DB_CONSTRAINT) return err_set(err, WHALE_E_ARG, "%s: already there", what);
    return db_fail(s, err, what);
}

static int begin(store *s, whale_err *err) {
    return db_exec(s->d, db_kind_of(s->d) == DB_SQLITE ? "BEGIN IMMEDIATE" : "BEGIN", err);
}
static int commit(store *s, whale_err *err) { return db_exec(s->d, "COMMIT", err); }
static void rollback(store *s) {
    whale_err e = {0};
    db_exec(s->d, "ROLLBACK", &e);
}

/* The schema version: SQLite's user_version, PostgreSQL's whale_schema (created if missing). */
static int version_get(store *s, int *v, whale_err *err) {
    int pg = db_kind_of(s->d) == DB_PG;
    if (pg && db_exec(s->d, "CREATE TABLE IF NOT EXISTS whale_schema (version INTEGER NOT NULL);"
                            "INSERT INTO whale_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM whale_schema)", err))
        return err->code;
    db_stmt *st = prep(s, pg ? "SELECT version FROM whale_schema" : "PRAGMA user_version", err, NULL);
    if (!st) return err->code;
    int rc = db_step(st);
    *v = rc == 1 ? (int)db_int(st, 0) : 0;
    db_finish(st);
    return rc < 0 ? db_fail(s, err, "schema version") : 0;
}

int store_open(store **out, const char *path, whale_err *err) {
    *out = NULL;
    if (sodium_init() < 0) return err_set(err, WHALE_E_UNSUPPORTED, "libsodium could not start");
    store *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, WHALE_E_NOMEM, "out of memory");
    if (db_open(&s->d, path, err)) {
        free(s);
        return err->code;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->conv_total = STORE_CONV_TOTAL_DEFAULT;
    int pg = db_kind_of(s->d) == DB_PG, rc = 0;
    if (!pg && db_exec(s->d, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err))
        rc = err->code;
    /* each migration and its version bump: one transaction (PostgreSQL: under a lock, the
     * version read again inside it, so that replicas starting at once migrate once) */
    for (int done = 0; !rc && !done;) {
        char lock[96];
        int version = 0;
        if (begin(s, err)) {
            rc = err->code;
            break;
        }
        snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(%lld)", (long long)PG_MIGRATION_LOCK);
        if ((pg && db_exec(s->d, lock, err)) || version_get(s, &version, err)) rc = err->code;
        else if (version > N_MIGRATIONS)
            rc = err_set(err, WHALE_E_UNSUPPORTED, "the database is from a newer Whale (schema %d; this one knows %d)",
                         version, N_MIGRATIONS);
        else if (version == N_MIGRATIONS) done = 1;
        else {
            char bump[64];
            snprintf(bump, sizeof bump, pg ? "UPDATE whale_schema SET version = %d" : "PRAGMA user_version=%d", version + 1);
            if (db_exec(s->d, (pg ? MIGRATIONS_PG : MIGRATIONS_SQLITE)[version], err) || db_exec(s->d, bump, err))
                rc = err_set(err, WHALE_E_IO, "migration %d: %s", version + 1, err->msg);
        }
        if (rc) rollback(s);
        else if (commit(s, err)) rc = err->code;
    }
    if (rc) {
        store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_close(store *s) {
    if (!s) return;
    db_close(s->d);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int email_ok(const char *e) {
    size_t n = strlen(e);
    const char *at = strchr(e, '@');
    if (!n || n > STORE_MAX_EMAIL || !at || at == e || !at[1] || strchr(at + 1, '@')) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)e[i] <= ' ' || e[i] == 0x7f) return 0;
    return 1;
}

int store_user_add(store *s, const char *email, int admin, int64_t *id, whale_err *err) {
    if (!email_ok(email)) return err_set(err, WHALE_E_ARG, "not an email address");
    pthread_mutex_lock(&s->mu);
    int rc = begin(s, err);
    if (!rc) {
        int64_t uid = 0;
        db_stmt *st = prep(s, "INSERT INTO users (email, admin, created) VALUES (?, ?, ?) RETURNING id", err, "tii", email,
                           (int64_t)admin, clock_wall_s());
        rc = st ? run_id(s, st, err, "that email has an account", &uid) : err->code;
        if (!rc) {
            st = prep(s, "INSERT INTO balances (user_id, amount) VALUES (?, 0)", err, "i", uid);
            rc = st ? run_done(s, st, err, "balance") : err->code;
        }
        if (!rc) rc = commit(s, err);
        if (rc) rollback(s);
        else if (id) *id = uid;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_user_find(store *s, const char *email, store_user *out, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "SELECT id, email, admin, disabled FROM users WHERE email = ?", err, "t", email);
    int rc = st ? 0 : err->code;
    if (st) {
        int r = db_step(st);
        if (r == 1) {
            out->id = db_int(st, 0);
            snprintf(out->email, sizeof out->email, "%s", db_text(st, 1));
            out->admin = (int)db_int(st, 2);
            out->disabled = (int)db_int(st, 3);
        } else rc = r == 0 ? err_set(err, WHALE_E_NOTFOUND, "no such user") : db_fail(s, err, "find user");
        db_finish(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_user_set_disabled(store *s, int64_t user, int disabled, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "UPDATE users SET disabled = ? WHERE id = ?", err, "ii", (int64_t)disabled, user);
    int rc = st ? run_done(s, st, err, "disable user") : err->code;
    if (!rc && !s->changes) rc = err_set(err, WHALE_E_NOTFOUND, "no such user");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_user_password(store *s, const char *email, store_user *u, char *pw_hash, size_t cap, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "SELECT id, email, admin, disabled, COALESCE(pw_hash, '') FROM users WHERE email = ?", err, "t", email);
    int rc = st ? 0 : err->code;
    if (st) {
        int r = db_step(st);
        if (r == 1) {
            u->id = db_int(st, 0);
            snprintf(u->email, sizeof u->email, "%s", db_text(st, 1));
            u->admin = (int)db_int(st, 2);
            u->disabled = (int)db_int(st, 3);
            snprintf(pw_hash, cap, "%s", db_text(st, 4));
        } else rc = r == 0 ? err_set(err, WHALE_E_NOTFOUND, "no such user") : db_fail(s, err, "find user");
        db_finish(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_user_set_password(store *s, int64_t user, const char *pw_hash, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "UPDATE users SET pw_hash = ? WHERE id = ?", err, "ti", pw_hash, user);
    int rc = st ? run_done(s, st, err, "password") : err->code;
    if (!rc && !s->changes) rc = err_set(err, WHALE_E_NOTFOUND, "no such user");
    if (!rc) { /* a new password ends every session */
        st = prep(s, "DELETE FROM sessions WHERE user_id = ?", err, "i", user);
        rc = st ? run_done(s, st, err, "sessions") : err->code;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_user_delete(store *s, int64_t user, whale_err *err) {
    char gone[96];
    unsigned char r[8];
    randombytes_buf(r, sizeof r); /* not guessable: nobody can take the name first */
    snprintf(gone, sizeof gone, "deleted-%lld-%02x%02x%02x%02x%02x%02x%02x%02x@invalid", (long long)user, r[0], r[1], r[2],
             r[3], r[4], r[5], r[6], r[7]);
    pthread_mutex_lock(&s->mu);
    int rc = begin(s, err);
    const char *sql[] = {"DELETE FROM sessions WHERE user_id = ?", "DELETE FROM api_keys WHERE user_id = ?",
                         "DELETE FROM conversations WHERE user_id = ?", "DELETE FROM shares WHERE user_id = ?",
                         "UPDATE users SET email = ?, pw_hash = NULL, disabled = 1 WHERE id = ?"};
    for (int i = 0; i < 5 && !rc; i++) {
        db_stmt *st = i < 4 ? prep(s, sql[i], err, "i", user) : prep(s, sql[i], err, "ti", gone, user);
        rc = st ? run_done(s, st, err, "delete account") : err->code;
    }
    if (!rc && !s->changes) rc = err_set(err, WHALE_E_NOTFOUND, "no such user");
    if (!rc) rc = commit(s, err);
    if (rc) rollback(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_invite_add(store *s, const uint8_t hash[STORE_KEY_HASH], whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "INSERT INTO invites (hash, created) VALUES (?, ?)", err, "bi", hash, clock_wall_s());
    int rc = st ? run_done(s, st, err, "invite") : err->code;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_invite_take(store *s, const uint8_t hash[STORE_KEY_HASH], whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "UPDATE invites SET used = 1 WHERE hash = ? AND used = 0", err, "b", hash);
    int rc = st ? run_done(s, st, err, "invite") : err->code;
    if (!rc && s->changes != 1) rc = err_set(err, WHALE_E_NOTFOUND, "no such unused invitation");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_session_add(store *s, int64_t user, const uint8_t hash[STORE_KEY_HASH], int64_t expires, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "INSERT INTO sessions (user_id, hash, created, expires) VALUES (?, ?, ?, ?)", err, "ibii",
                            user, hash, clock_wall_s(), expires);
    int rc = st ? run_done(s, st, err, "session") : err->code;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_session_user(store *s, const uint8_t hash[STORE_KEY_HASH], int64_t now, store_user *u, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "SELECT u.id, u.email, u.admin, u.disabled FROM sessions x JOIN users u ON u.id = x.user_id"
                               " WHERE x.hash = ? AND x.expires > ?", err, "bi", hash, now);
    int rc = st ? 0 : err->code;
    if (st) {
        if (db_step(st) == 1) {
            u->id = db_int(st, 0);
            snprintf(u->email, sizeof u->email, "%s", db_text(st, 1));
            u->admin = (int)db_int(st, 2);
            u->disabled = (int)db_int(st, 3);
        } else rc = err_set(err, WHALE_E_NOTFOUND, "no such session");
        db_finish(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_session_end(store *s, const uint8_t hash[STORE_KEY_HASH], whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "DELETE FROM sessions WHERE hash = ? OR expires <= ?", err, "bi", hash, clock_wall_s());
    int rc = st ? run_done(s, st, err, "session") : err->code;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void store_token_hash(const char *token, uint8_t out[STORE_KEY_HASH]) {
    crypto_generichash(out, STORE_KEY_HASH, (const unsigned char *)token, strlen(token), NULL, 0);
}

_Static_assert(STORE_TOKEN_CHARS == sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING), "a token fits");
void store_token_new(char out[STORE_TOKEN_CHARS], uint8_t hash[STORE_KEY_HASH]) {
    unsigned char r[32];
    randombytes_buf(r, sizeof r);
    sodium_bin2base64(out, STORE_TOKEN_CHARS, r, sizeof r, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    store_token_hash(out, hash);
}

static void key_hash(const char *key, uint8_t out[STORE_KEY_HASH]) {
    crypto_generichash(out, STORE_KEY_HASH, (const unsigned char *)key, strlen(key), NULL, 0);
}

static void key_row(db_stmt *st, store_key *k) {
    k->id = db_int(st, 0);
    k->user = db_int(st, 1);
    snprintf(k->prefix, sizeof k->prefix, "%s", db_text(st, 2));
    k->created = db_int(st, 3);
    k->last_used = db_int(st, 4);
    k->expires = db_int(st, 5);
    k->revoked = (int)db_int(st, 6);
    k->user_disabled = (int)db_int(st, 7);
}

#define KEY_COLS "k.id, k.user_id, k.prefix, k.created, k.last_used, k.expires, k.revoked, u.disabled"

int store_key_create(store *s, int64_t user, int64_t expires, char *key_out, size_t cap, store_key *out, whale_err *err) {
    unsigned char rnd[24];
    char b64[sodium_base64_ENCODED_LEN(24, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    if (cap < 3 + sizeof b64) return err_set(err, WHALE_E_ARG, "key buffer too small");
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2base64(b64, sizeof b64, rnd, sizeof rnd, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(key_out, cap, "sk-%s", b64);
    uint8_t h[STORE_KEY_HASH];
    key_hash(key_out, h);
    char prefix[STORE_KEY_PREFIX + 1];
    snprintf(prefix, sizeof prefix, "%.*s", STORE_KEY_PREFIX, key_out);
    pthread_mutex_lock(&s->mu);
    int64_t kid = 0;
    /* at most STORE_MAX_KEYS live keys: counted and inserted in one transaction, on PostgreSQL
     * with the user's row locked, so two replicas creating keys at once cannot both pass */
    int rc = begin(s, err);
    db_stmt *st = NULL;
    if (!rc && db_kind_of(s->d) == DB_PG) {
        st = prep(s, "SELECT id FROM users WHERE id = ? FOR UPDATE", err, "i", user);
        rc = st ? run_done(s, st, err, "key") : err->code;
    }
    if (!rc && (st = prep(s, "SELECT count(*) FROM api_keys WHERE user_id = ? AND revoked = 0", err, "i", user))) {
        int64_t n = db_step(st) == 1 ? db_int(st, 0) : -1;
        db_finish(st);
        if (n < 0) rc = db_fail(s, err, "key");
        else if (n >= STORE_MAX_KEYS)
            rc = err_set(err, WHALE_E_ARG, "this account has %d keys already: revoke one first", STORE_MAX_KEYS);
    } else if (!rc) rc = err->code;
    if (!rc) {
        st = prep(s, "INSERT INTO api_keys (user_id, prefix, hash, created, expires) VALUES (?, ?, ?, ?, ?) RETURNING id",
                  err, "itbii", user, prefix, h, clock_wall_s(), expires);
        rc = st ? run_id(s, st, err, "key", &kid) : err->code;
    }
    if (!rc) rc = commit(s, err);
    if (rc) rollback(s);
    if (!rc && out) {
        memset(out, 0, sizeof *out);
        out->id = kid;
        out->user = user;
        snprintf(out->prefix, sizeof out->prefix, "%s", prefix);
        out->created = clock_wall_s();
        out->expires = expires;
    }
    pthread_mutex_unlock(&s->mu);
    sodium_memzero(rnd, sizeof rnd);
    return rc;
}

int store_key_lookup(store *s, const char *key, store_key *out, whale_err *err) {
    uint8_t h[STORE_KEY_HASH];
    key_hash(key, h);
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "SELECT " KEY_COLS " FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.hash = ?", err,
                            "b", h);
    int rc = st ? 0 : err->code;
    if (st) {
        int r = db_step(st);
        if (r == 1) key_row(st, out);
        else rc = r == 0 ? err_set(err, WHALE_E_NOTFOUND, "no such key") : db_fail(s, err, "key lookup");
        db_finish(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_key_list(store *s, int64_t user, store_key **out, size_t *n, whale_err *err) {
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "SELECT " KEY_COLS " FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.user_id = ?"
                               " ORDER BY k.id DESC", err, "i", user);
    int rc = st ? 0 : err->code;
    size_t cap = 0;
    while (st) {
        int r = db_step(st);
        if (r == 0) break;
        if (r != 1) {
            rc = db_fail(s, err, "list keys");
            break;
        }
        if (*n == cap) {
            store_key *g = realloc(*out, (cap = cap ? cap * 2 : 8) * sizeof **out);
            if (!g) {
                rc = err_set(err, WHALE_E_NOMEM, "out of memory");
                break;
            }
            *out = g;
        }
        key_row(st, &(*out)[(*n)++]);
    }
    db_finish(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_key_revoke(store *s, int64_t user, const char *id_or_prefix, whale_err *err) {
    char *end;
    long long id = strtoll(id_or_prefix, &end, 10);
    pthread_mutex_lock(&s->mu);
    db_stmt *st = *end || !*id_or_prefix
                           ? prep(s, "UPDATE api_keys SET revoked = 1 WHERE user_id = ? AND prefix = ?", err, "it", user, id_or_prefix)
                           : prep(s, "UPDATE api_keys SET revoked = 1 WHERE user_id = ? AND id = ?", err, "ii", user, (int64_t)id);
    int rc = st ? run_done(s, st, err, "revoke") : err->code;
    if (!rc && !s->changes) rc = err_set(err, WHALE_E_NOTFOUND, "this user has no such key");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void store_key_touch(store *s, int64_t key, int64_t now) {
    whale_err err = {0};
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "UPDATE api_keys SET last_used = ? WHERE id = ?", &err, "ii", now, key);
    if (st) run_done(s, st, &err, "touch");
    pthread_mutex_unlock(&s->mu);
}

/* DeepSeek's launch prices (ANCHORS.md), micro-USD per million tokens. */
static const store_price PRICE_REASONER = {140000, 550000, 2190000}, PRICE_CHAT = {70000, 270000, 1100000};

int store_price_get(store *s, const char *model, int reasoning, store_price *out, whale_err *err) {
    *out = reasoning ? PRICE_REASONER : PRICE_CHAT;
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "SELECT hit, miss, output FROM prices WHERE model IN (?, '*') ORDER BY model = '*' LIMIT 1",
                            err, "t", model);
    int rc = st ? 0 : err->code, r = st ? db_step(st) : 0;
    if (st && r < 0) rc = db_fail(s, err, "prices"); /* not the defaults in silence */
    if (st && r == 1) {
        out->hit = db_int(st, 0);
        out->miss = db_int(st, 1);
        out->output = db_int(st, 2);
    }
    db_finish(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_price_set(store *s, const char *model, const store_price *p, whale_err *err) {
    if (p->hit < 0 || p->miss < 0 || p->output < 0) return err_set(err, WHALE_E_ARG, "prices cannot be negative");
    if (p->hit > STORE_MAX_PRICE || p->miss > STORE_MAX_PRICE || p->output > STORE_MAX_PRICE)
        return err_set(err, WHALE_E_ARG, "prices above 1,000,000 USD per million tokens are refused");
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "INSERT INTO prices (model, hit, miss, output) VALUES (?, ?, ?, ?) ON CONFLICT(model) DO "
                               "UPDATE SET hit = excluded.hit, miss = excluded.miss, output = excluded.output",
                            err, "tiii", model, p->hit, p->miss, p->output);
    int rc = st ? run_done(s, st, err, "price") : err->code;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Under mu, inside a transaction: the ledger row, then the balance. */
static int apply(store *s, int64_t user, int64_t key, const char *kind, int64_t amount, const store_charge *c,
                 const char *note, whale_err *err) {
    db_stmt *st = prep(s, "INSERT INTO ledger (user_id, key_id, at, kind, amount, request_id, model, hit, miss, output,"
                               " reasoning, note, key_prefix) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            err, "iiitittiiiitt", user, key, clock_wall_s(), kind, amount, c ? c->request_id : NULL,
                            c ? c->model : NULL, c ? c->hit : 0, c ? c->miss : 0, c ? c->output : 0,
                            c ? c->reasoning : 0, note, c ? c->key_prefix : NULL);
    int rc = st ? run_done(s, st, err, "this request is already in the ledger") : err->code;
    if (rc) return rc;
    st = prep(s, "UPDATE balances SET amount = amount + ? WHERE user_id = ?", err, "ii", amount, user);
    rc = st ? run_done(s, st, err, "balance") : err->code;
    if (!rc && !s->changes) rc = err_set(err, WHALE_E_NOTFOUND, "no such user");
    return rc;
}

int store_credit(store *s, int64_t user, int64_t amount, const char *note, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    int rc = begin(s, err);
    if (!rc) {
        rc = apply(s, user, 0, "credit", amount, NULL, note, err);
        if (!rc) rc = commit(s, err);
        if (rc) rollback(s);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_balance(store *s, int64_t user, int64_t *amount, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "SELECT amount FROM balances WHERE user_id = ?", err, "i", user);
    int rc = st ? 0 : err->code;
    if (st) {
        if (db_step(st) == 1) *amount = db_int(st, 0);
        else rc = err_set(err, WHALE_E_NOTFOUND, "no such user");
        db_finish(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int64_t store_charge_amount(const store_charge *c) {
    /* in 128 bits: tokens x prices (each price at most STORE_MAX_PRICE) cannot overflow there;
     * the result, in micro-units, fits int64 for any real request and saturates otherwise */
    __int128 x = (__int128)c->hit * c->price.hit + (__int128)c->miss * c->price.miss + (__int128)c->output * c->price.output;
    x = (x + 500000) / 1000000;
    return x > INT64_MAX ? INT64_MAX : (int64_t)x;
}

int store_charge_commit(store *s, const store_charge *c, int64_t *amount, whale_err *err) {
    int64_t a = store_charge_amount(c);
    pthread_mutex_lock(&s->mu);
    int rc = begin(s, err);
    if (!rc) {
        rc = apply(s, c->user, c->key, "charge", -a, c, NULL, err);
        if (!rc && c->reservation) {
            db_stmt *st = prep(s, "DELETE FROM reservations WHERE id = ?", err, "i", c->reservation);
            rc = st ? run_done(s, st, err, "reservation") : err->code;
        }
        if (!rc) rc = commit(s, err);
        if (rc) rollback(s);
    }
    pthread_mutex_unlock(&s->mu);
    if (!rc && amount) *amount = a;
    return rc;
}

/* Under mu: the user's balance less its reservations into *out. */
static int available(store *s, int64_t user, int64_t *out, whale_err *err) {
    db_stmt *st = prep(s, "SELECT b.amount - COALESCE((SELECT sum(r.amount) FROM reservations r WHERE r.user_id ="
                          " b.user_id), 0) FROM balances b WHERE b.user_id = ?",
                       err, "i", user);
    if (!st) return err->code;
    int r = db_step(st), rc = 0;
    if (r == 1) *out = db_int(st, 0);
    else rc = r == 0 ? err_set(err, WHALE_E_NOTFOUND, "no such user") : db_fail(s, err, "balance");
    db_finish(st);
    return rc;
}

int store_available(store *s, int64_t user, int64_t *amount, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    int rc = available(s, user, amount, err);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_reserve(store *s, int64_t user, int64_t amount, const char *instance, int64_t *id, int64_t *avail,
                  whale_err *err) {
    pthread_mutex_lock(&s->mu);
    int rc = begin(s, err); /* SQLite: BEGIN IMMEDIATE, one writer at a time */
    db_stmt *st = NULL;
    if (!rc && db_kind_of(s->d) == DB_PG) { /* the balance row locked: reservations and charges of one
                                               user, on any replica, one after another */
        st = prep(s, "SELECT amount FROM balances WHERE user_id = ? FOR UPDATE", err, "i", user);
        rc = st ? run_done(s, st, err, "balance") : err->code;
    }
    if (!rc) rc = available(s, user, avail, err);
    if (!rc && *avail < amount) rc = 1;
    if (!rc) {
        st = prep(s, "INSERT INTO reservations (user_id, amount, created, instance) VALUES (?, ?, ?, ?) RETURNING id",
                  err, "iiit", user, amount, clock_wall_s(), instance);
        rc = st ? run_id(s, st, err, "reservation", id) : err->code;
    }
    if (!rc) rc = commit(s, err);
    if (rc) rollback(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_release(store *s, int64_t id, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "DELETE FROM reservations WHERE id = ?", err, "i", id);
    int rc = st ? run_done(s, st, err, "reservation") : err->code;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_reservations_release(store *s, const char *instance, int64_t *n, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "DELETE FROM reservations WHERE instance = ?", err, "t", instance);
    int rc = st ? run_done(s, st, err, "reservations") : err->code;
    if (!rc && n) *n = s->changes;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_shared_limits(store *s) { return db_kind_of(s->d) == DB_PG; }

int store_bucket_take(store *s, int64_t id, int64_t rpm, int64_t tpm, int take_req, int64_t tokens, int64_t *wait_ms,
                      whale_err *err) {
    /* one statement: the bucket refilled to the database's clock (one clock for every replica),
     * then a request taken if it may start (or tokens taken, or a request given back, in any
     * case); $1 id, $2 rpm, $3 tpm, $4 requests to take (1, 0, or -1: give one back), $5 tokens */
#define NOW "extract(epoch FROM clock_timestamp())"
#define R "LEAST(CAST($2 AS DOUBLE PRECISION), b.req + (excluded.t - b.t) * $2 / 60.0)"
#define T "LEAST(CAST($3 AS DOUBLE PRECISION), b.tok + (excluded.t - b.t) * $3 / 60.0)"
#define OK "(CAST($4 AS INTEGER) <= 0 OR (($2 = 0 OR " R " >= 1) AND ($3 = 0 OR " T " > 0)))"
    static const char sql[] =
        "INSERT INTO rate_buckets AS b (id, req, tok, t, admitted) VALUES (CAST($1 AS BIGINT),"
        " CAST($2 AS DOUBLE PRECISION) - $4, CAST($3 AS DOUBLE PRECISION) - $5, " NOW ", 1)"
        " ON CONFLICT (id) DO UPDATE SET req = " R " - CASE WHEN " OK " THEN $4 ELSE 0 END,"
        " tok = " T " - CASE WHEN " OK " THEN $5 ELSE 0 END, t = excluded.t,"
        " admitted = CASE WHEN " OK " THEN 1 ELSE 0 END"
        " RETURNING admitted, CAST(ceil(1000 * GREATEST(0,"
        " CASE WHEN $2 > 0 AND req < 1 THEN (1 - req) * 60 / $2 ELSE 0 END,"
        " CASE WHEN $3 > 0 AND tok <= 0 THEN (1 - tok) * 60 / $3 ELSE 0 END)) AS BIGINT)";
#undef NOW
#undef R
#undef T
#undef OK
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, sql, err, "iiiii", id, rpm, tpm, (int64_t)take_req, tokens);
    int rc = st ? 0 : err->code;
    if (st) {
        if (db_step(st) == 1) *wait_ms = db_int(st, 0) ? 0 : (db_int(st, 1) > 0 ? db_int(st, 1) : 1);
        else rc = db_fail(s, err, "rate limit");
        db_finish(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_usage(store *s, int64_t user, store_usage_fn fn, void *ctx, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    /* the day of a unix time: the one expression the two databases spell differently */
#define USAGE_SQL(DAY)                                                                                        \
    "SELECT " DAY ", u.email, CASE WHEN l.key_id = 0 THEN 'web' ELSE COALESCE(l.key_prefix, '') END, count(*), sum(l.hit), sum(l.miss), sum(l.output),"     \
    " -sum(l.amount) FROM ledger l JOIN users u ON u.id = l.user_id" \
    " WHERE l.kind = 'charge' AND (CAST(? AS BIGINT) = 0 OR l.user_id = ?) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    db_stmt *st = prep(s,
                       db_kind_of(s->d) == DB_PG ? USAGE_SQL("to_char(to_timestamp(l.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
                                                 : USAGE_SQL("date(l.at, 'unixepoch')"),
                            err, "ii", user, user);
    int rc = st ? 0 : err->code;
    while (st) {
        int r = db_step(st);
        if (r == 0) break;
        if (r != 1) {
            rc = db_fail(s, err, "usage");
            break;
        }
        fn(ctx, db_text(st, 0), db_text(st, 1),
           db_text(st, 2), db_int(st, 3), db_int(st, 4),
           db_int(st, 5), db_int(st, 6), db_int(st, 7));
    }
    db_finish(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_check(store *s, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s,
                            "SELECT b.user_id, b.amount, COALESCE((SELECT sum(amount) FROM ledger l WHERE l.user_id ="
                            " b.user_id), 0) FROM balances b",
                            err, NULL);
    int rc = st ? 0 : err->code;
    while (st && !rc) {
        int r = db_step(st);
        if (r == 0) break;
        if (r != 1) rc = db_fail(s, err, "check");
        else if (db_int(st, 1) != db_int(st, 2))
            rc = err_set(err, WHALE_E_FORMAT, "user %lld: balance %lld but ledger sum %lld",
                         (long long)db_int(st, 0), (long long)db_int(st, 1),
                         (long long)db_int(st, 2));
    }
    db_finish(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* The database's size on disk: PostgreSQL's pg_database_size, or the SQLite file and its
 * write-ahead log (which holds recent commits until a checkpoint). 0 or WHALE_E_IO. */
int store_size_bytes(store *s, int64_t *bytes, whale_err *err) {
    *bytes = 0;
    int pg = db_kind_of(s->d) == DB_PG;
    char path[4096] = "";
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s,
                       pg ? "SELECT pg_database_size(current_database())"
                          : "SELECT file FROM pragma_database_list WHERE name = 'main'",
                       err, NULL);
    int rc = st ? 0 : err->code;
    if (st) {
        if (db_step(st) != 1) rc = db_fail(s, err, "size");
        else if (pg) *bytes = db_int(st, 0);
        else snprintf(path, sizeof path, "%s", db_text(st, 0));
        db_finish(st);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc || pg || !path[0]) return rc; /* an in-memory SQLite database has no file */
    struct stat sb;
    if (stat(path, &sb) == 0) *bytes += (int64_t)sb.st_size;
    strncat(path, "-wal", sizeof path - strlen(path) - 1);
    if (stat(path, &sb) == 0) *bytes += (int64_t)sb.st_size;
    return 0;
}

/* ---- the web page's conversations -------------------------------------------------------- */

void store_set_conv_total(store *s, int64_t chars) {
    pthread_mutex_lock(&s->mu);
    s->conv_total = chars < 1 ? 1 : chars > STORE_MAX_CONV_TOTAL ? STORE_MAX_CONV_TOTAL : chars;
    pthread_mutex_unlock(&s->mu);
}

int store_conv_put(store *s, int64_t user, const char *cid, const char *title, const char *body, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    int rc = begin(s, err);
    if (rc) {
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    /* a new conversation past the cap is refused; replacing one is always allowed */
    /* (shared copies count against the same space) */
    db_stmt *st = prep(s, "SELECT count(*), COALESCE(sum(CASE WHEN cid = ? THEN 1 ELSE 0 END), 0),"
                          " COALESCE(sum(CASE WHEN cid = ? THEN 0 ELSE length(body) END), 0)"
                          " + (SELECT COALESCE(sum(length(body)), 0) FROM shares WHERE user_id = ?) FROM conversations"
                          " WHERE user_id = ?", err, "ttii", cid, cid, user, user);
    if (!st) rc = err->code;
    else {
        int r = db_step(st);
        if (r != 1) rc = db_fail(s, err, "conversations");
        else if (db_int(st, 1) == 0 && db_int(st, 0) >= STORE_MAX_CONVERSATIONS)
            rc = err_set(err, WHALE_E_BUSY, "you have %d conversations, the most this server keeps: delete some first",
                         STORE_MAX_CONVERSATIONS);
        else if (db_int(st, 2) + (int64_t)strlen(body) > s->conv_total)
            rc = err_set(err, WHALE_E_BUSY, "your conversations fill the %.3g MiB this server keeps per user: delete "
                         "some first", (double)s->conv_total / (1 << 20));
        db_finish(st);
    }
    if (!rc) {
        st = prep(s, "INSERT INTO conversations (user_id, cid, title, body, updated) VALUES (?, ?, ?, ?, ?)"
                     " ON CONFLICT (user_id, cid) DO UPDATE SET title = excluded.title, body = excluded.body,"
                     " updated = excluded.updated", err, "ittti", user, cid, title, body, clock_wall_s());
        rc = st ? run_done(s, st, err, "conversation") : err->code;
    }
    if (!rc) rc = commit(s, err);
    if (rc) rollback(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_conv_list(store *s, int64_t user, const char *cid, int with_body, store_conv_fn fn, void *ctx, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = cid ? prep(s, "SELECT cid, title, updated, body FROM conversations WHERE user_id = ? AND cid = ?", err,
                             "it", user, cid)
                : with_body ? prep(s, "SELECT cid, title, updated, body FROM conversations WHERE user_id = ?"
                                      " ORDER BY updated DESC, id DESC", err, "i", user)
                            : prep(s, "SELECT cid, title, updated, '' FROM conversations WHERE user_id = ?"
                                      " ORDER BY updated DESC, id DESC", err, "i", user);
    int rc = st ? 0 : err->code, n = 0;
    while (st) {
        int r = db_step(st);
        if (r == 0) break;
        if (r != 1) {
            rc = db_fail(s, err, "conversations");
            break;
        }
        fn(ctx, db_text(st, 0), db_text(st, 1), db_int(st, 2), cid || with_body ? db_text(st, 3) : NULL);
        n++;
    }
    db_finish(st);
    pthread_mutex_unlock(&s->mu);
    if (!rc && cid && !n) rc = err_set(err, WHALE_E_NOTFOUND, "no such conversation");
    return rc;
}

int store_conv_delete(store *s, int64_t user, const char *cid, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    int rc = begin(s, err);
    db_stmt *st = rc ? NULL : prep(s, "DELETE FROM conversations WHERE user_id = ? AND cid = ?", err, "it", user, cid);
    if (!rc) rc = st ? run_done(s, st, err, "conversation") : err->code;
    if (!rc && !s->changes) rc = err_set(err, WHALE_E_NOTFOUND, "no such conversation");
    if (!rc) { /* its link goes with it */
        st = prep(s, "DELETE FROM shares WHERE user_id = ? AND cid = ?", err, "it", user, cid);
        rc = st ? run_done(s, st, err, "share") : err->code;
    }
    if (!rc) rc = commit(s, err);
    if (rc) rollback(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- read-only share links ----------------------------------------------------------------- */

int store_share_add(store *s, int64_t user, const char *cid, const uint8_t hash[STORE_KEY_HASH], const char *title,
                    const char *body, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    int rc = begin(s, err);
    if (rc) {
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    /* the copy counts against the user's space: everything kept, less the link it replaces */
    db_stmt *st = prep(s, "SELECT (SELECT COALESCE(sum(length(body)), 0) FROM conversations WHERE user_id = ?)"
                          " + (SELECT COALESCE(sum(length(body)), 0) FROM shares WHERE user_id = ? AND cid <> ?)"
                          " FROM conversations c WHERE c.user_id = ? AND c.cid = ?", err, "iitit", user, user, cid, user, cid);
    if (!st) rc = err->code;
    else {
        int r = db_step(st);
        if (r == 0) rc = err_set(err, WHALE_E_NOTFOUND, "no such conversation");
        else if (r != 1) rc = db_fail(s, err, "share");
        else if (db_int(st, 0) + (int64_t)strlen(body) > s->conv_total)
            rc = err_set(err, WHALE_E_BUSY, "a shared copy would pass the %.3g MiB this server keeps per user: delete "
                         "some conversations first", (double)s->conv_total / (1 << 20));
        db_finish(st);
    }
    if (!rc) {
        st = prep(s, "INSERT INTO shares (user_id, cid, hash, title, body, created) VALUES (?, ?, ?, ?, ?, ?)"
                     " ON CONFLICT (user_id, cid) DO UPDATE SET hash = excluded.hash, title = excluded.title,"
                     " body = excluded.body, created = excluded.created", err, "itbtti", user, cid, hash, title, body,
                  clock_wall_s());
        rc = st ? run_done(s, st, err, "share") : err->code;
    }
    if (!rc) rc = commit(s, err);
    if (rc) rollback(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_share_of(store *s, int64_t user, const char *cid, int64_t *created, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "SELECT created FROM shares WHERE user_id = ? AND cid = ?", err, "it", user, cid);
    int rc = st ? 0 : err->code;
    if (st) {
        int r = db_step(st);
        if (r == 1) *created = db_int(st, 0);
        else rc = r == 0 ? err_set(err, WHALE_E_NOTFOUND, "this conversation is not shared") : db_fail(s, err, "share");
        db_finish(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_share_get(store *s, const uint8_t hash[STORE_KEY_HASH], store_conv_fn fn, void *ctx, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "SELECT s.cid, s.title, s.created, s.body FROM shares s JOIN users u ON u.id = s.user_id"
                          " WHERE s.hash = ? AND u.disabled = 0", err, "b", hash);
    int rc = st ? 0 : err->code;
    if (st) {
        int r = db_step(st);
        if (r == 1) fn(ctx, db_text(st, 0), db_text(st, 1), db_int(st, 2), db_text(st, 3));
        else rc = r == 0 ? err_set(err, WHALE_E_NOTFOUND, "no such shared conversation") : db_fail(s, err, "share");
        db_finish(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_share_delete(store *s, int64_t user, const char *cid, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "DELETE FROM shares WHERE user_id = ? AND cid = ?", err, "it", user, cid);
    int rc = st ? run_done(s, st, err, "share") : err->code;
    if (!rc && !s->changes) rc = err_set(err, WHALE_E_NOTFOUND, "this conversation is not shared");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_shared(const store *s) { return db_kind_of(s->d) == DB_PG; }

int store_login_get(store *s, const uint8_t k[STORE_KEY_HASH], int *fails, int64_t *last_ms, whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "SELECT fails, last_ms FROM login_fails WHERE k = ?", err, "b", k);
    int rc = st ? 0 : err->code;
    if (st) {
        int r = db_step(st);
        if (r == 1) *fails = (int)db_int(st, 0), *last_ms = db_int(st, 1);
        else rc = r == 0 ? WHALE_E_NOTFOUND : db_fail(s, err, "sign-in records");
        db_finish(st);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

#define STORE_LOGIN_PRUNE_EVERY 256 /* failures between two sweeps of forgotten sign-in records */

int store_login_failed(store *s, const uint8_t k[STORE_KEY_HASH], int64_t now_ms, int64_t forget_ms, int *fails,
                       whale_err *err) {
    pthread_mutex_lock(&s->mu);
    /* one statement: failures counted by two replicas at once both land */
    db_stmt *st = prep(s, "INSERT INTO login_fails (k, fails, last_ms) VALUES (?, 1, ?) ON CONFLICT (k) DO UPDATE SET"
                          " fails = CASE WHEN login_fails.last_ms < ? THEN 1 ELSE login_fails.fails + 1 END,"
                          " last_ms = excluded.last_ms RETURNING fails", err, "bii", k, now_ms, now_ms - forget_ms);
    int rc = st ? 0 : err->code;
    if (st) {
        if (db_step(st) == 1) *fails = (int)db_int(st, 0);
        else rc = db_fail(s, err, "sign-in records");
        db_finish(st);
    }
    if (!rc && ++s->n_login_failed % STORE_LOGIN_PRUNE_EVERY == 0) {
        st = prep(s, "DELETE FROM login_fails WHERE last_ms < ?", err, "i", now_ms - forget_ms);
        if (st) run_done(s, st, err, "sign-in records");
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_login_clear(store *s, const uint8_t k[STORE_KEY_HASH], whale_err *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st = prep(s, "DELETE FROM login_fails WHERE k = ?", err, "b", k);
    int rc = st ? run_done(s, st, err, "sign-in records") : err->code;
    pthread_mutex_unlock(&s->mu);
    return rc;
}
