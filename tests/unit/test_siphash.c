/* test_siphash.c — the keyed hash behind the context cache's names and checks (base/siphash.h):
 * the paper's published test vector (appendix A: key 00..0f, message 00..0e), both output
 * sizes against libsodium's independent implementation (crypto_shorthash_siphash24 and
 * siphashx24) for every message length from 0 to 64 bytes, and incremental hashing in
 * pieces equal to one call. */
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#include "base/siphash.h"
#include "check.h"

static uint8_t g_key[16], g_msg[200];

static void test_paper_vector(void) {
    /* "SipHash-2-4 ... returns a129ca6149be45e5" */
    CHECK(siphash64(g_key, g_msg, 15) == 0xa129ca6149be45e5ull);
    uint8_t out[8], want[8] = {0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1}; /* little-endian bytes */
    siphash h;
    siphash_init(&h, g_key, 8);
    siphash_update(&h, g_msg, 15);
    siphash_final(&h, out);
    CHECK(!memcmp(out, want, 8));
    /* the first entries of the authors' table of vectors (messages 00, 00 01, ... of length 0..) */
    CHECK(siphash64(g_key, g_msg, 0) == 0x726fdb47dd0e0e31ull);
    CHECK(siphash64(g_key, g_msg, 1) == 0x74f839c593dc67fdull);
}

static void test_against_libsodium(void) {
    CHECK(crypto_shorthash_siphash24_KEYBYTES == 16 && crypto_shorthash_siphashx24_BYTES == 16);
    for (size_t n = 0; n <= 64; n++) {
        uint8_t a[16], b[16];
        siphash h;
        siphash_init(&h, g_key, 8);
        siphash_update(&h, g_msg, n);
        siphash_final(&h, a);
        crypto_shorthash_siphash24(b, g_msg, n, g_key);
        CHECKF(!memcmp(a, b, 8), "64-bit, %zu bytes", n);
        siphash_init(&h, g_key, 16);
        siphash_update(&h, g_msg, n);
        siphash_final(&h, a);
        crypto_shorthash_siphashx24(b, g_msg, n, g_key);
        CHECKF(!memcmp(a, b, 16), "128-bit, %zu bytes", n);
    }
    /* another key, a longer message */
    uint8_t k2[16], a[16], b[16];
    for (int i = 0; i < 16; i++) k2[i] = (uint8_t)(0xa5 ^ (i * 29));
    siphash h;
    siphash_init(&h, k2, 16);
    siphash_update(&h, g_msg, sizeof g_msg);
    siphash_final(&h, a);
    crypto_shorthash_siphashx24(b, g_msg, sizeof g_msg, k2);
    CHECK(!memcmp(a, b, 16));
}

static void test_incremental(void) {
    uint8_t one[16], parts[16];
    siphash h;
    siphash_init(&h, g_key, 16);
    siphash_update(&h, g_msg, sizeof g_msg);
    siphash_final(&h, one);
    for (size_t step = 1; step <= 13; step++) { /* pieces of every size, crossing word boundaries */
        siphash_init(&h, g_key, 16);
        for (size_t at = 0; at < sizeof g_msg; at += step)
            siphash_update(&h, g_msg + at, at + step <= sizeof g_msg ? step : sizeof g_msg - at);
        siphash_final(&h, parts);
        CHECKF(!memcmp(one, parts, 16), "pieces of %zu", step);
    }
    siphash_init(&h, g_key, 8); /* empty updates change nothing */
    siphash_update(&h, g_msg, 0);
    siphash_update(&h, g_msg, 15);
    siphash_update(&h, NULL, 0);
    siphash_final(&h, parts);
    CHECK(!memcmp(parts, (uint8_t[8]){0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1}, 8));
}

int main(void) {
    for (int i = 0; i < 16; i++) g_key[i] = (uint8_t)i;
    for (int i = 0; i < (int)sizeof g_msg; i++) g_msg[i] = (uint8_t)i;
    RUN(test_paper_vector);
    RUN(test_against_libsodium);
    RUN(test_incremental);
    return check_report("test_siphash");
}
