/* strbuf.c — see strbuf.h. Grows to twice what is needed, so n appends cost O(n) copies. */
#include "base/strbuf.h"

#include <stdlib.h>
#include <string.h>

int strbuf_add(strbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->s, cap);
        if (!p) return -1;
        b->s = p;
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

void strbuf_free(strbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}
