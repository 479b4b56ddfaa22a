/* db.h — the two SQL databases the store runs on, behind one small interface: SQLite (a file
 * path) and PostgreSQL (a postgres:// or postgresql:// URL, through libpq). Statements use `?`
 * placeholders (rewritten to $1, $2, ... for PostgreSQL) and are always parameterized; results
 * are read row by row. Not thread-safe: the store serializes its use. */
#ifndef WHALE_SERVICE_DB_H
#define WHALE_SERVICE_DB_H

#include <stdarg.h>
#include <stdint.h>

#include "whale.h"

typedef struct db db;
typedef struct db_stmt db_stmt;
typedef enum { DB_SQLITE, DB_PG } db_kind;

#define DB_BLOB_BYTES 32 /* the one blob size the store binds (a hash) */

int db_open(db **out, const char *target, whale_err *err);
void db_close(db *d);
db_kind db_kind_of(const db *d);
/* Run SQL without parameters (migrations: several statements). 0 or WHALE_E_IO with a message. */
int db_exec(db *d, const char *sql, whale_err *err);

/* Prepare and bind: fmt has one letter per parameter: i int64, t text (NULL binds NULL), b a
 * DB_BLOB_BYTES blob. NULL with a message. */
db_stmt *db_vprepare(db *d, whale_err *err, const char *sql, const char *fmt, va_list ap);
/* 1: a row is ready; 0: done; DB_CONSTRAINT: a uniqueness or key constraint refused the
 * change; other negative: error (db_error for the message). */
#define DB_CONSTRAINT (-100)
int db_step(db_stmt *s);
int64_t db_int(db_stmt *s, int col);
const char *db_text(db_stmt *s, int col); /* "" for NULL */
int64_t db_changes(db_stmt *s);          /* rows a finished INSERT/UPDATE/DELETE changed */
void db_finish(db_stmt *s);
const char *db_error(db *d);

#endif
