/* web.c — finding the chat page's embedded files, and their gzip forms; see web.h. */
#include "service/web.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const web_asset *web_find(const char *url) {
    if (!strcmp(url, "/")) url = "/index.html";
    for (size_t i = 0; i < web_n_assets; i++)
        if (!strcmp(web_assets[i].path, url)) return &web_assets[i];
    return NULL;
}

typedef struct gz_form { /* an asset's gzip form, made on first request */
    int made;            /* 1: tried (data NULL: not worth it, or out of memory) */
    unsigned char *data;
    size_t size;
    char etag[40];       /* its own ETag: another representation, another tag */
} gz_form;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static gz_form *g_forms; /* web_n_assets of them */

/* Text compresses; images are compressed already. */
static int compressible(const web_asset *a) {
    return a->size >= WEB_GZIP_MIN && (!strncmp(a->type, "text/", 5) || strstr(a->type, "json") || strstr(a->type, "svg"));
}

static void make(const web_asset *a, gz_form *f) {
    f->made = 1;
    z_stream z = {0};
    uLong cap = compressBound((uLong)a->size) + 32;
    unsigned char *out = malloc(cap);
    if (!out || deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK) { /* 15 + 16: gzip */
        free(out);
        return;
    }
    z.next_in = (unsigned char *)a->data;
    z.avail_in = (uInt)a->size;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t n = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END || n >= a->size) { /* (smaller, or not at all) */
        free(out);
        return;
    }
    f->data = out;
    f->size = n;
    size_t k = strlen(a->etag); /* "\"abc\"" -> "\"abc-gz\"" */
    snprintf(f->etag, sizeof f->etag, "%.*s-gz\"", (int)(k > 1 ? k - 1 : 0), a->etag);
}

int web_gzip(const web_asset *a, const unsigned char **data, size_t *size, const char **etag) {
    size_t i = (size_t)(a - web_assets);
    if (i >= web_n_assets || !compressible(a)) return 0;
    pthread_mutex_lock(&g_mu);
    if (!g_forms) g_forms = calloc(web_n_assets, sizeof *g_forms);
    gz_form *f = g_forms ? &g_forms[i] : NULL;
    if (f && !f->made) make(a, f);
    int ok = f && f->data;
    if (ok) *data = f->data, *size = f->size, *etag = f->etag;
    pthread_mutex_unlock(&g_mu);
    return ok;
}
