/* readall.c — see readall.h. */
#include "base/readall.h"

#include <stdlib.h>

char *read_all(FILE *f, size_t max, size_t *len, int *too_big) {
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap + 1);
    if (too_big) *too_big = 0;
    if (!s) return NULL;
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                if (too_big) *too_big = 1;
                free(s);
                return NULL;
            }
            cap = cap * 2 > max ? max : cap * 2;
            char *p = realloc(s, cap + 1);
            if (!p) {
                free(s);
                return NULL;
            }
            s = p;
        }
        size_t got = fread(s + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(s);
        return NULL;
    }
    s[n] = 0;
    *len = n;
    return s;
}
