/* err.c — error records: formatting and prefixing messages. */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *whale_status_str(int code) {
    switch (code) {
    case WHALE_OK: return "ok";
    case WHALE_E_IO: return "I/O error";
    case WHALE_E_FORMAT: return "format error";
    case WHALE_E_NOMEM: return "out of memory";
    case WHALE_E_ARG: return "invalid argument";
    case WHALE_E_UNSUPPORTED: return "unsupported";
    case WHALE_E_NOTFOUND: return "not found";
    case WHALE_E_BUSY: return "busy";
    default: return "error";
    }
}

int err_set(whale_err *e, int code, const char *fmt, ...) {
    if (!e) return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int err_prefix(whale_err *e, const char *fmt, ...) {
    /* Without a record the code is unknown; prefixing happens on parse failures. */
    if (!e) return WHALE_E_FORMAT;
    char head[WHALE_ERR_MAX], old[WHALE_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    /* Truncation is fine: a message is for a person, and the head matters most. */
    size_t n = strlen(head);
    if (n > sizeof e->msg - 3) n = sizeof e->msg - 3;
    memcpy(e->msg, head, n);
    memcpy(e->msg + n, ": ", 2);
    size_t room = sizeof e->msg - n - 3, m = strlen(old);
    if (m > room) m = room;
    memcpy(e->msg + n + 2, old, m);
    e->msg[n + 2 + m] = 0;
    return e->code;
}

void err_clear(whale_err *e) {
    if (!e) return;
    e->code = 0;
    e->msg[0] = 0;
}
