/* fuzz_pull.c — libFuzzer target for what `whale pull` reads from a package index: index pages
 * (PEP 691 JSON and PEP 503 HTML) and wheels (zip). The first byte picks the parser; every input
 * must be accepted or refused with a message, a found link must resolve to a URL, and an
 * extracted member's size must be what was written. ASan/UBSan turn any out-of-bounds read or
 * overflow into a crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pull/index.h"
#include "pull/zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int any_bin(const char *name, size_t n) { return n > 4 && !memcmp(name + n - 4, ".bin", 4); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int kind = data[0] % 3;
    data++, size--;
    whale_err err = {0};
    if (kind < 2) {
        char *page = malloc(size + 1);
        memcpy(page, data, size);
        page[size] = 0;
        index_file f;
        int rc = index_parse(page, size, kind == 0, "https://idx.example/simple/p/", "p-1.0-", &f, &err);
        if (rc < 0 && !err.msg[0]) abort();
        if (rc == 1 && (strncmp(f.url, "http", 4) || strlen(f.sha256) > 64)) abort();
        free(page);
        return 0;
    }
    FILE *out = tmpfile();
    if (!out) return 0;
    uint64_t written = 0;
    int rc = zip_extract_one_memory(data, size, any_bin, 1 << 20, out, &written, &err);
    if (rc && !err.msg[0]) abort();
    if (!rc && (uint64_t)ftell(out) != written) abort();
    fclose(out);
    return 0;
}
