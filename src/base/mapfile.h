/* mapfile.h — read-only memory maps of whole files (model weights are never copied). */
#ifndef WHALE_BASE_MAPFILE_H
#define WHALE_BASE_MAPFILE_H

#include <stddef.h>
#include "whale.h"

typedef struct mapfile {
    const unsigned char *data; /* the file's bytes; NULL for an empty file */
    size_t size;
    char *path; /* owned copy, for messages */
    int heap;   /* 1: data is a heap copy (free), 0: an mmap (munmap) */
} mapfile;

/* Map `path` read-only. Returns 0, or WHALE_E_IO with "path: why" in err. */
int mapfile_open(mapfile *m, const char *path, whale_err *err);
/* Map a copy of a memory buffer (used by fuzzers and tests); the copy is owned by m. */
int mapfile_from_memory(mapfile *m, const void *data, size_t size, const char *name, whale_err *err);
void mapfile_close(mapfile *m);

#endif
