/* err.h — filling a whale_err. Owns the formatting of error messages; callers own the
 * record. A NULL whale_err pointer is allowed everywhere: the message is then dropped. */
#ifndef WHALE_BASE_ERR_H
#define WHALE_BASE_ERR_H

#include "whale.h"

#if defined(__GNUC__)
#define WHALE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define WHALE_PRINTF(a, b)
#endif

/* Set code and message; returns code so callers can `return err_set(...)`. */
int err_set(whale_err *e, int code, const char *fmt, ...) WHALE_PRINTF(3, 4);

/* Put "prefix: " in front of the message already in e (e.g. the file name). Returns e->code. */
int err_prefix(whale_err *e, const char *fmt, ...) WHALE_PRINTF(2, 3);

void err_clear(whale_err *e);

#endif
