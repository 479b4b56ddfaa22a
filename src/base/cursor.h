/* cursor.h — one bounds-checked reader for untrusted bytes (GGUF headers, safetensors
 * headers). Every read checks the remaining length first; a failed read sets `bad` and
 * returns zeros, so parsers check once per record instead of after every field. */
#ifndef WHALE_BASE_CURSOR_H
#define WHALE_BASE_CURSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct cursor {
    const unsigned char *p; /* borrowed */
    size_t len;
    size_t pos;
    int bad; /* set by the first read past the end; sticky */
} cursor;

static inline cursor cursor_make(const void *p, size_t len) {
    cursor c = {(const unsigned char *)p, len, 0, 0};
    return c;
}
static inline size_t cursor_left(const cursor *c) {
    return c->bad ? 0 : c->len - c->pos;
}
/* Borrow n bytes; NULL (and bad set) if fewer remain. */
static inline const unsigned char *cursor_take(cursor *c, size_t n) {
    if (c->bad || n > c->len - c->pos) {
        c->bad = 1;
        return NULL;
    }
    const unsigned char *p = c->p + c->pos;
    c->pos += n;
    return p;
}
#define CURSOR_READ_FN(name, type)                                                           \
    static inline type name(cursor *c) {                                                     \
        type v = 0;                                                                          \
        const unsigned char *p = cursor_take(c, sizeof v);                                   \
        if (p) memcpy(&v, p, sizeof v); /* files are little-endian, as is every host we run on */ \
        return v;                                                                            \
    }
CURSOR_READ_FN(cursor_u8, uint8_t)
CURSOR_READ_FN(cursor_u16, uint16_t)
CURSOR_READ_FN(cursor_u32, uint32_t)
CURSOR_READ_FN(cursor_u64, uint64_t)
CURSOR_READ_FN(cursor_f32, float)
CURSOR_READ_FN(cursor_f64, double)
#undef CURSOR_READ_FN

#endif
