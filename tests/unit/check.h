/* check.h — the tiny harness every C unit test uses.
 *
 * A test file defines functions `static void test_x(void)` and runs them with RUN(test_x)
 * from main, then `return check_report("name");`. CHECK records a failure with file:line
 * and keeps going, so one run shows every broken case. The last line a test binary prints is
 * "<name>: N passed, N failed", which scripts/test sums into the suite's summary. */
#ifndef WHALE_TEST_CHECK_H
#define WHALE_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_cases_passed, check_cases_failed, check_case_failures;

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            check_case_failures++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
        }                                                                                     \
    } while (0)

#define CHECKF(cond, ...)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            check_case_failures++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
        }                                                                                     \
    } while (0)

#define RUN(fn)                                                                               \
    do {                                                                                      \
        check_case_failures = 0;                                                              \
        fn();                                                                                 \
        if (check_case_failures) {                                                            \
            check_cases_failed++;                                                             \
            fprintf(stderr, "FAIL %s\n", #fn);                                                \
        } else {                                                                              \
            check_cases_passed++;                                                             \
            printf("ok   %s\n", #fn);                                                         \
        }                                                                                     \
    } while (0)

static inline int check_report(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_cases_passed, check_cases_failed);
    return check_cases_failed ? 1 : 0;
}

/* Path of a file under ../shared (WHALE_SHARED, set by ctest), in a static buffer. */
static inline const char *check_shared(const char *rel) {
    static char buf[4096];
    const char *root = getenv("WHALE_SHARED");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "../shared", rel);
    return buf;
}

#endif
