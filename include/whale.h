/* whale.h — the public C API of Whale.
 *
 * Owns: status codes, the error record every fallible call fills, and the opaque handles
 * that the CLI (and later the server) use. It does not expose tensors or kernels: those stay
 * inside the engine. Every function that can fail on input returns 0 on success or a negative
 * WHALE_E_* code and writes a message a user can act on into a whale_err. */
#ifndef WHALE_H
#define WHALE_H

#include <stddef.h>
#include <stdint.h>

#define WHALE_VERSION "0.1.0"

enum whale_status {
    WHALE_OK = 0,
    WHALE_E_IO = -1,          /* a file could not be opened, read or mapped */
    WHALE_E_FORMAT = -2,      /* bytes do not follow the format they claim */
    WHALE_E_NOMEM = -3,       /* an allocation failed */
    WHALE_E_ARG = -4,         /* the caller passed something invalid */
    WHALE_E_UNSUPPORTED = -5, /* valid, but not something Whale handles (yet) */
    WHALE_E_NOTFOUND = -6,    /* a named thing (tensor, key, token) is missing */
    WHALE_E_BUSY = -7,        /* no capacity now (queue full); try again later */
};

/* Room for one message: "<file>: <what>: <why> (<hint>)". */
#define WHALE_ERR_MAX 512

typedef struct whale_err {
    int code;
    char msg[WHALE_ERR_MAX];
} whale_err;

/* Short name of a status code ("format error", ...). Never NULL. */
const char *whale_status_str(int code);

#endif
