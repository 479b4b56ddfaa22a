/* web.h — the chat page that `whale serve` answers at /: its files, embedded in the binary at
 * build time (cmake/embed.cmake writes the table from web/), and the security headers they are
 * served with. The page talks to the same API as any client; it never gets markup from the
 * server, only JSON, and renders all text through DOM text nodes. */
#ifndef WHALE_SERVICE_WEB_H
#define WHALE_SERVICE_WEB_H

#include <stddef.h>

typedef struct web_asset {
    const char *path; /* "/index.html" */
    const char *type; /* Content-Type */
    const char *etag; /* quoted, from the content's hash */
    const unsigned char *data;
    size_t size;
} web_asset;

extern const web_asset web_assets[];
extern const size_t web_n_assets;

/* The asset for a URL ("/" is /index.html), or NULL. */
const web_asset *web_find(const char *url);

#define WEB_GZIP_MIN 1024 /* bytes below which a file is sent as it is */
/* The asset's gzip form (made once, on first use, kept for the process's life; for text files of
 * WEB_GZIP_MIN bytes or more that it makes smaller): 1 with its bytes and its own ETag, or 0
 * (send the file as it is). Thread-safe. */
int web_gzip(const web_asset *a, const unsigned char **data, size_t *size, const char **etag);

/* The page may load only its own scripts, styles and service worker (web/sw.js, the files kept
 * for use offline), connect only to this server, never be framed, and never submit a form
 * elsewhere. No inline script or style is allowed, so injected
 * markup could not run even if some escaped the page's text rendering. */
#define WEB_CSP                                                                                          \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " \
    "manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

#endif
