/* index.h — finding a wheel on a Python package index: the "simple" API, as JSON (PEP 691,
 * what PyPI answers) or HTML (PEP 503, what a directory of files behind a web server or a
 * mirror answers). */
#ifndef WHALE_PULL_INDEX_H
#define WHALE_PULL_INDEX_H

#include <stdint.h>

#include "whale.h"

typedef struct index_file {
    char filename[256];
    char url[2048];
    char sha256[65]; /* "" when the index gives none */
    uint64_t size;   /* 0 when the index gives none */
} index_file;

/* The index to use: WHALE_INDEX_URL, else PIP_INDEX_URL, else https://pypi.org/simple. */
const char *index_base_url(void);

/* The wheel of project==version on the index at base into out. WHALE_E_NOTFOUND when the index
 * lists no such file. */
int index_find_wheel(const char *base, const char *project, const char *version, index_file *out, whale_err *err);

/* Parse an index page (exposed for tests): JSON when json is 1, else HTML. Returns 1 found,
 * 0 not found, negative for a page that is neither. */
int index_parse(const char *page, size_t n, int json, const char *page_url, const char *prefix, index_file *out,
                whale_err *err);

#endif
