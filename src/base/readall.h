/* readall.h — reading a whole stream (standard input, a text file) into memory, bounded. */
#ifndef WHALE_BASE_READALL_H
#define WHALE_BASE_READALL_H

#include <stddef.h>
#include <stdio.h>

/* All of f, NUL-terminated, in a malloc'd buffer; *len gets its length. Returns NULL when
 * reading fails, memory runs out, or f holds more than max bytes (*too_big is then set). */
char *read_all(FILE *f, size_t max, size_t *len, int *too_big);

#endif
