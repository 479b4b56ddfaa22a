/* fetch.h — HTTP(S) downloads for `whale pull` (libcurl): a page into memory, a file onto disk
 * resumed from what is there, transient failures retried. */
#ifndef WHALE_PULL_FETCH_H
#define WHALE_PULL_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

/* GET url into *body (NUL-terminated, malloc'd, at most 8 MiB), with the given Accept header.
 * content_type and final_url (after redirects) are copied out when not NULL. */
int fetch_page(const char *url, const char *accept, char **body, size_t *n, char *content_type, size_t ct_cap,
               char *final_url, size_t url_cap, whale_err *err);

/* Called as bytes arrive: the bytes of the file now on disk (resumed bytes included). */
typedef void (*fetch_progress_fn)(void *ctx, uint64_t have);

/* Download url to path, appending to what path already holds (an HTTP Range request; a server
 * that ignores it is read from the start). A dropped connection, a timeout or a 5xx/429 reply is
 * retried up to 4 times (after 1, 2, 4, 8 s), resuming each time. expect_size, when not 0, is the
 * file's full size; max_size, when not 0, the most it may hold (a longer reply is refused and
 * what came is dropped). A server that ignores Range is read again from the start. */
int fetch_file(const char *url, const char *path, uint64_t expect_size, uint64_t max_size, fetch_progress_fn fn, void *ctx,
               whale_err *err);

/* url without its user and password (for messages) into out. */
const char *fetch_redact(const char *url, char *out, size_t cap);

/* url resolved against base (a page's URL) into out, without its #fragment. */
int fetch_resolve_url(const char *base, const char *url, char *out, size_t cap, whale_err *err);

#endif
