/* test_base.c — the small shared helpers in src/base: strbuf (growth, NUL, empty appends),
 * the RNGs (the exact bits the test data and the sampler's seeding rely on) and the clock. */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/rng.h"
#include "base/strbuf.h"
#include "check.h"

static void test_strbuf(void) {
    strbuf b = {0};
    CHECK(strbuf_add(&b, "", 0) == 0 && b.s && b.n == 0 && b.s[0] == 0); /* an empty string, not NULL */
    char want[5000];
    for (int i = 0; i < 1000; i++) {
        CHECK(strbuf_add(&b, "abcde", 5) == 0);
        memcpy(want + 5 * i, "abcde", 5);
    }
    CHECK(b.n == 5000 && b.cap > b.n && b.s[b.n] == 0 && !memcmp(b.s, want, 5000));
    CHECK(strbuf_add(&b, NULL, 0) == 0 && b.n == 5000);
    strbuf_free(&b);
    CHECK(!b.s && !b.n && !b.cap);
    strbuf_free(&b); /* a freed buffer frees again as a no-op */
}

static void test_rng_bits(void) {
    /* xorshift64 13/7/17, as the copies it replaced computed it inline */
    uint64_t s = 0x9e3779b97f4a7c15ull, x = s;
    for (int i = 0; i < 1000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        CHECK(rng_xorshift64(&s) == x && s == x);
    }
    /* splitmix64 from state 0: the published first outputs */
    uint64_t z = 0;
    CHECK(rng_splitmix64(&z) == 0xe220a8397b1dcdafull);
    CHECK(rng_splitmix64(&z) == 0x6e789e6aa1b965f4ull);
    CHECK(rng_splitmix64(&z) == 0x06c45d188009454full);
    CHECK(rng_unit(0) == 0.0 && rng_unit(UINT64_MAX) < 1.0 && rng_unit(1ull << 63) == 0.5);
}

static void test_clock(void) {
    double a = clock_now_s(), b = clock_now_s();
    CHECK(b >= a);
    struct timespec d = {0, 2000000};
    nanosleep(&d, NULL);
    CHECK(clock_now_s() - a >= 0.002);
    int64_t w = clock_wall_s(), t = (int64_t)time(NULL);
    CHECK(w <= t && t - w <= 1);
}

int main(void) {
    RUN(test_strbuf);
    RUN(test_rng_bits);
    RUN(test_clock);
    return check_report("test_base");
}
