/* fetch.c — the HTTP client of `whale pull` (see fetch.h). */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "pull/fetch.h"

enum { PAGE_MAX = 8 << 20 };

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static CURL *new_handle(const char *url, char *errbuf) {
    pthread_once(&once, init);
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "whale/" WHALE_VERSION);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a stalled transfer (under 1 KB/s for 60 s) is a failure, retried */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    errbuf[0] = 0;
    return c;
}

static const char *why(CURLcode rc, const char *errbuf) { return errbuf[0] ? errbuf : curl_easy_strerror(rc); }

const char *fetch_redact(const char *url, char *out, size_t cap) {
    pthread_once(&once, init);
    CURLU *u = curl_url();
    char *s = NULL;
    if (u && !curl_url_set(u, CURLUPART_URL, url, 0) && !curl_url_set(u, CURLUPART_USER, NULL, 0) &&
        !curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) && !curl_url_get(u, CURLUPART_URL, &s, 0))
        snprintf(out, cap, "%s", s);
    else
        snprintf(out, cap, "%s", strchr(url, '@') ? "(the index URL)" : url);
    curl_free(s);
    curl_url_cleanup(u);
    return out;
}

static int transient(CURLcode rc, long code) {
    if (rc == CURLE_HTTP_RETURNED_ERROR) return code >= 500 || code == 429 || code == 408;
    return rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
           rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_CONNECT || rc == CURLE_GOT_NOTHING ||
           rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_SSL_CONNECT_ERROR;
}

typedef struct page {
    char *p;
    size_t n;
    int too_big;
} page;

static size_t page_write(char *data, size_t size, size_t nmemb, void *ctx) {
    page *pg = ctx;
    size_t n = size * nmemb;
    if (pg->n + n > PAGE_MAX) {
        pg->too_big = 1;
        return 0;
    }
    char *q = realloc(pg->p, pg->n + n + 1);
    if (!q) return 0;
    memcpy(q + pg->n, data, n);
    pg->p = q;
    pg->n += n;
    q[pg->n] = 0;
    return n;
}

int fetch_page(const char *url, const char *accept, char **body, size_t *n, char *content_type, size_t ct_cap,
               char *final_url, size_t url_cap, whale_err *err) {
    char errbuf[CURL_ERROR_SIZE], hdr[256], shown[2400];
    *body = NULL;
    for (int attempt = 0;; attempt++) {
        page pg = {0};
        CURL *c = new_handle(url, errbuf);
        if (!c) return err_set(err, WHALE_E_NOMEM, "out of memory");
        struct curl_slist *h = NULL;
        snprintf(hdr, sizeof hdr, "Accept: %s", accept);
        h = curl_slist_append(h, hdr);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, page_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &pg);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
        CURLcode rc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        int out = 0, again = 0;
        if (rc == CURLE_OK) {
            *body = pg.p ? pg.p : strdup("");
            *n = pg.n;
            char *ct = NULL, *eff = NULL;
            curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
            curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &eff);
            if (content_type) snprintf(content_type, ct_cap, "%s", ct ? ct : "");
            if (final_url) snprintf(final_url, url_cap, "%s", eff ? eff : url);
        } else {
            free(pg.p);
            fetch_redact(url, shown, sizeof shown);
            if (pg.too_big) out = err_set(err, WHALE_E_IO, "%s: the page is larger than 8 MiB", shown);
            else if (rc == CURLE_HTTP_RETURNED_ERROR && code == 404)
                out = err_set(err, WHALE_E_NOTFOUND, "%s: no such project on this index (404)", shown);
            else if (transient(rc, code) && attempt < 4) again = 1;
            else
                out = err_set(err, WHALE_E_IO, "%s: %s%s", shown, why(rc, errbuf),
                              transient(rc, code) ? " (5 tries; run the same command again)" : "");
        }
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        if (!again) return out;
        sleep(1u << attempt);
    }
}

typedef struct sink {
    FILE *f;
    CURL *c;
    uint64_t start, got; /* bytes on disk when this try began; bytes this try wrote */
    int checked, failed, too_big;
    uint64_t max; /* 0: no limit */
    fetch_progress_fn fn;
    void *ctx;
} sink;

static size_t sink_write(char *data, size_t size, size_t nmemb, void *ctx) {
    sink *s = ctx;
    size_t n = size * nmemb;
    if (!s->checked) {
        s->checked = 1;
        long code = 0;
        curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &code);
        if (s->start && code == 200) { /* the server ignored the Range: start over */
            if (fflush(s->f) || ftruncate(fileno(s->f), 0) || fseeko(s->f, 0, SEEK_SET)) return 0;
            s->start = 0;
        }
    }
    if (s->max && s->start + s->got + n > s->max) { /* past what this file can be: stop */
        s->too_big = 1;
        return 0;
    }
    if (fwrite(data, 1, n, s->f) != n) {
        s->failed = errno ? errno : EIO;
        return 0;
    }
    s->got += n;
    if (s->fn) s->fn(s->ctx, s->start + s->got);
    return n;
}

int fetch_file(const char *url, const char *path, uint64_t expect_size, uint64_t max_size, fetch_progress_fn fn, void *ctx,
               whale_err *err) {
    char errbuf[CURL_ERROR_SIZE], shown[2400];
    for (int attempt = 0;; attempt++) {
        struct stat st;
        uint64_t have = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
        if (expect_size && have == expect_size) return 0;
        if (expect_size && have > expect_size) {
            if (truncate(path, 0)) return err_set(err, WHALE_E_IO, "%s: %m", path);
            have = 0;
        }
        FILE *f = fopen(path, "ab");
        if (!f) return err_set(err, WHALE_E_IO, "%s: %m", path);
        CURL *c = new_handle(url, errbuf);
        if (!c) {
            fclose(f);
            return err_set(err, WHALE_E_NOMEM, "out of memory");
        }
        sink s = {.f = f, .c = c, .start = have, .max = max_size, .fn = fn, .ctx = ctx};
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
        if (have) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)have);
        if (max_size) curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_size); /* a reply larger is refused */
        CURLcode rc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(c);
        if (fclose(f) && rc == CURLE_OK) return err_set(err, WHALE_E_IO, "%s: %m", path);
        if (s.failed) return err_set(err, WHALE_E_IO, "%s: %s", path, strerror(s.failed));
        if (rc == CURLE_OK) return 0;
        /* 416: what is there is not a prefix of this file; 33: the server cannot resume (it
         * ignores Range, and libcurl stops before reading): start over from the first byte */
        if (have && ((rc == CURLE_HTTP_RETURNED_ERROR && code == 416) || rc == CURLE_RANGE_ERROR) && attempt < 4) {
            if (truncate(path, 0)) return err_set(err, WHALE_E_IO, "%s: %m", path);
            continue;
        }
        fetch_redact(url, shown, sizeof shown);
        if (rc == CURLE_FILESIZE_EXCEEDED || s.too_big) {
            if (truncate(path, 0)) return err_set(err, WHALE_E_IO, "%s: %m", path);
            return err_set(err, WHALE_E_FORMAT, "%s: larger than the %llu bytes this part can be", shown,
                           (unsigned long long)max_size);
        }
        if (!transient(rc, code) || attempt == 4)
            return err_set(err, WHALE_E_IO, "%s: %s%s", shown, why(rc, errbuf),
                           transient(rc, code) ? " (5 tries; run the same command again to resume)" : "");
        sleep(1u << attempt);
    }
}

int fetch_resolve_url(const char *base, const char *url, char *out, size_t cap, whale_err *err) {
    pthread_once(&once, init);
    CURLU *u = curl_url();
    char *s = NULL;
    int rc = 0;
    if (!u || curl_url_set(u, CURLUPART_URL, base, 0) || curl_url_set(u, CURLUPART_URL, url, 0) ||
        curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) || curl_url_get(u, CURLUPART_URL, &s, 0) ||
        strlen(s) >= cap)
        rc = err_set(err, WHALE_E_FORMAT, "cannot resolve the link %.200s against %.200s", url, base);
    else
        memcpy(out, s, strlen(s) + 1);
    curl_free(s);
    curl_url_cleanup(u);
    return rc;
}
