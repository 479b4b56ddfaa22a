/* strbuf.h — the program's one growable string: bytes appended at the end, always
 * NUL-terminated once anything was added. Zero-initialize (strbuf b = {0}) to start; the
 * buffer owns s until strbuf_free (or until the caller takes s and forgets the buffer). */
#ifndef WHALE_BASE_STRBUF_H
#define WHALE_BASE_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *s;  /* NULL until the first append */
    size_t n; /* bytes held, not counting the NUL */
    size_t cap;
} strbuf;

/* Append n bytes of s. Returns 0, or -1 when memory runs out (b is then unchanged). */
int strbuf_add(strbuf *b, const char *s, size_t n);

/* Free the bytes and zero b; a zeroed buffer is a no-op. */
void strbuf_free(strbuf *b);

#endif
