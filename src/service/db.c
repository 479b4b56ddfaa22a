/* db.c — SQLite and PostgreSQL behind db.h. SQLite statements are prepared and stepped as
 * usual; a PostgreSQL statement keeps its SQL (placeholders renumbered) and parameters until the
 * first step, which runs it with PQexecParams (binary parameters for blobs, text for the rest)
 * and then hands out its rows. */
#include "service/db.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define DB_MAX_PARAMS 16

struct db {
    db_kind kind;
    sqlite3 *lite;
    PGconn *pg;
    char msg[512]; /* PostgreSQL: the last error */
};

struct db_stmt {
    db *d;
    sqlite3_stmt *lite;
    /* PostgreSQL */
    char *sql;
    int n_params;
    char *val[DB_MAX_PARAMS];
    int len[DB_MAX_PARAMS], bin[DB_MAX_PARAMS];
    PGresult *res;
    int row, n_rows, ran;
    int64_t changes;
};

static int is_pg_url(const char *t) { return !strncmp(t, "postgres://", 11) || !strncmp(t, "postgresql://", 13); }

int db_open(db **out, const char *target, whale_err *err) {
    *out = NULL;
    db *d = calloc(1, sizeof *d);
    if (!d) return err_set(err, WHALE_E_NOMEM, "out of memory");
    if (is_pg_url(target)) {
        d->kind = DB_PG;
        d->pg = PQconnectdb(target);
        if (!d->pg || PQstatus(d->pg) != CONNECTION_OK) {
            /* libpq's message names host and port, never the password */
            err_set(err, WHALE_E_IO, "cannot connect to PostgreSQL: %s", d->pg ? PQerrorMessage(d->pg) : "out of memory");
            db_close(d);
            return err->code;
        }
        PGresult *r = PQexec(d->pg, "SET client_min_messages = warning");
        PQclear(r);
    } else {
        d->kind = DB_SQLITE;
        if (sqlite3_open_v2(target, &d->lite, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
            SQLITE_OK) {
            err_set(err, WHALE_E_IO, "%s: cannot open the database: %s", target,
                    d->lite ? sqlite3_errmsg(d->lite) : "out of memory");
            db_close(d);
            return err->code;
        }
        sqlite3_busy_timeout(d->lite, 10000); /* other processes (whale admin) hold the lock briefly */
    }
    *out = d;
    return 0;
}

void db_close(db *d) {
    if (!d) return;
    if (d->lite) sqlite3_close(d->lite);
    if (d->pg) PQfinish(d->pg);
    free(d);
}

db_kind db_kind_of(const db *d) { return d->kind; }

const char *db_error(db *d) { return d->kind == DB_SQLITE ? sqlite3_errmsg(d->lite) : d->msg; }

static void pg_msg(db *d, const PGresult *r) {
    snprintf(d->msg, sizeof d->msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(d->pg));
    size_t n = strlen(d->msg);
    while (n && (d->msg[n - 1] == '\n' || d->msg[n - 1] == ' ')) d->msg[--n] = 0;
}

/* PostgreSQL: a connection lost (the server restarted) is opened again before the next
 * statement; the statement that met the loss has failed, and its transaction with it. */
static void pg_revive(db *d) {
    if (d->kind == DB_PG && PQstatus(d->pg) == CONNECTION_BAD) PQreset(d->pg);
}

int db_exec(db *d, const char *sql, whale_err *err) {
    pg_revive(d);
    if (d->kind == DB_SQLITE) {
        if (sqlite3_exec(d->lite, sql, NULL, NULL, NULL) == SQLITE_OK) return 0;
        return err_set(err, WHALE_E_IO, "database: %s", sqlite3_errmsg(d->lite));
    }
    PGresult *r = PQexec(d->pg, sql);
    int ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    if (!ok) pg_msg(d, r);
    PQclear(r);
    return ok ? 0 : err_set(err, WHALE_E_IO, "database: %s", d->msg);
}

/* `?` -> `$n` (outside quotes). */
static char *pg_sql(const char *sql, int *n) {
    size_t len = strlen(sql);
    char *out = malloc(len * 3 + 1), *o = out;
    if (!out) return NULL;
    int q = 0;
    *n = 0;
    for (const char *p = sql; *p; p++) {
        if (*p == '\'') q = !q;
        if (*p == '?' && !q) o += sprintf(o, "$%d", ++*n);
        else *o++ = *p;
    }
    *o = 0;
    return out;
}

db_stmt *db_vprepare(db *d, whale_err *err, const char *sql, const char *fmt, va_list ap) {
    db_stmt *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, WHALE_E_NOMEM, "out of memory");
        return NULL;
    }
    s->d = d;
    int np = fmt ? (int)strlen(fmt) : 0;
    if (np > DB_MAX_PARAMS) {
        free(s);
        err_set(err, WHALE_E_ARG, "too many parameters");
        return NULL;
    }
    if (d->kind == DB_SQLITE) {
        if (sqlite3_prepare_v2(d->lite, sql, -1, &s->lite, NULL) != SQLITE_OK) {
            err_set(err, WHALE_E_IO, "database: prepare: %s", sqlite3_errmsg(d->lite));
            free(s);
            return NULL;
        }
    } else {
        int n = 0;
        if (!(s->sql = pg_sql(sql, &n))) {
            free(s);
            err_set(err, WHALE_E_NOMEM, "out of memory");
            return NULL;
        }
        s->n_params = np;
    }
    int bad = 0;
    for (int i = 0; i < np && !bad; i++) {
        if (d->kind == DB_SQLITE) {
            int rc;
            if (fmt[i] == 'i') rc = sqlite3_bind_int64(s->lite, i + 1, va_arg(ap, int64_t));
            else if (fmt[i] == 't') {
                const char *t = va_arg(ap, const char *);
                rc = t ? sqlite3_bind_text(s->lite, i + 1, t, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s->lite, i + 1);
            } else rc = sqlite3_bind_blob(s->lite, i + 1, va_arg(ap, const void *), DB_BLOB_BYTES, SQLITE_TRANSIENT);
            bad = rc != SQLITE_OK;
        } else {
            char num[32];
            const char *t = NULL;
            int len = 0, bin = 0;
            if (fmt[i] == 'i') snprintf(num, sizeof num, "%lld", (long long)va_arg(ap, int64_t)), t = num;
            else if (fmt[i] == 't') t = va_arg(ap, const char *);
            else t = va_arg(ap, const char *), len = DB_BLOB_BYTES, bin = 1;
            if (t) {
                size_t n = bin ? (size_t)len : strlen(t) + 1;
                if (!(s->val[i] = malloc(n))) bad = 1;
                else memcpy(s->val[i], t, n);
            }
            s->len[i] = len;
            s->bin[i] = bin;
        }
    }
    if (bad) {
        err_set(err, WHALE_E_IO, "database: bind: %s", db_error(d));
        db_finish(s);
        return NULL;
    }
    return s;
}

int db_step(db_stmt *s) {
    db *d = s->d;
    if (d->kind == DB_SQLITE) {
        int rc = sqlite3_step(s->lite);
        if (rc == SQLITE_ROW) return 1;
        if (rc == SQLITE_DONE) return 0;
        return (rc & 0xff) == SQLITE_CONSTRAINT ? DB_CONSTRAINT : -1;
    }
    if (!s->ran) {
        s->ran = 1;
        pg_revive(d);
        s->res = PQexecParams(d->pg, s->sql, s->n_params, NULL, (const char *const *)s->val, s->len, s->bin, 0);
        ExecStatusType st = s->res ? PQresultStatus(s->res) : PGRES_FATAL_ERROR;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            pg_msg(d, s->res);
            const char *code = s->res ? PQresultErrorField(s->res, PG_DIAG_SQLSTATE) : NULL;
            return code && !strncmp(code, "23", 2) ? DB_CONSTRAINT : -1; /* class 23: integrity constraint */
        }
        s->n_rows = PQntuples(s->res);
        const char *ch = PQcmdTuples(s->res);
        s->changes = ch && *ch ? strtoll(ch, NULL, 10) : 0;
        s->row = -1;
    }
    if (s->row + 1 < s->n_rows) {
        s->row++;
        return 1;
    }
    return 0;
}

int64_t db_int(db_stmt *s, int col) {
    if (s->d->kind == DB_SQLITE) return sqlite3_column_int64(s->lite, col);
    const char *v = PQgetvalue(s->res, s->row, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

const char *db_text(db_stmt *s, int col) {
    const char *v = s->d->kind == DB_SQLITE ? (const char *)sqlite3_column_text(s->lite, col) : PQgetvalue(s->res, s->row, col);
    return v ? v : "";
}

int64_t db_changes(db_stmt *s) { return s->d->kind == DB_SQLITE ? sqlite3_changes(s->d->lite) : s->changes; }

void db_finish(db_stmt *s) {
    if (!s) return;
    if (s->lite) sqlite3_finalize(s->lite);
    for (int i = 0; i < DB_MAX_PARAMS; i++) free(s->val[i]);
    free(s->sql);
    PQclear(s->res);
    free(s);
}
